"""The ``dispatcher`` command: ``serve`` runs the command room, ``rules check`` checks a table."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rules import LoadedTable, RuleBook, RuleTableError, compile_table, load_source
from rules.checker import TableRefused, check
from rules.explain import explain, explanation_json, explanation_text
from rules.inputs import InputError, read_records, routing_input
from server import logs
from server.accounts_cli import accounts_app
from server.progress import Progress

if TYPE_CHECKING:
    from dispatcher.briefing import Briefing, UnitFigures
    from simulations.drill import DrillOutcome

app = typer.Typer(help="The township command room's dispatcher.", no_args_is_help=True, add_completion=False)
rules_app = typer.Typer(help="Work with rule tables (the responsibility boundary list).", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
roster_app = typer.Typer(help="Work with duty rosters (officers, shifts, overrides).", no_args_is_help=True)
app.add_typer(roster_app, name="roster")
app.add_typer(accounts_app, name="accounts")
places_app = typer.Typer(
    help="Places with printed codes (龙游通): load them, print their QR codes.", no_args_is_help=True
)
app.add_typer(places_app, name="places")
classify_app = typer.Typer(help="Citizen messages: train the model that backs the keywords.", no_args_is_help=True)
app.add_typer(classify_app, name="classify")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on [env DISPATCHER_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on [env DISPATCHER_PORT]")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy async URL [env DISPATCHER_DATABASE_URL]")
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option("--rules", help="rule table YAML put in force at first start [env DISPATCHER_RULES_PATH]"),
    ] = None,
    rules_from_file: Annotated[
        bool | None,
        typer.Option(
            "--rules-from-file",
            help="put --rules in force over the table stored in the database [env DISPATCHER_RULES_FROM_FILE]",
        ),
    ] = None,
    roster: Annotated[
        Path | None,
        typer.Option("--roster", help="roster YAML loaded when the database holds none [env DISPATCHER_ROSTER_PATH]"),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning [env DISPATCHER_LOG_LEVEL]")] = None,
    mqtt_url: Annotated[
        str | None,
        typer.Option("--mqtt-url", help="mqtt://user:password@host:1883 for field devices [env DISPATCHER_MQTT_URL]"),
    ] = None,
) -> None:
    """Run the dispatcher: HTTP API, board websocket, the board page at /board, and MQTT with --mqtt-url."""
    import uvicorn

    from dispatcher.settings import Settings
    from server.app import create_app

    overrides = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "database_url": database_url,
            "rules_path": rules,
            "rules_from_file": rules_from_file,
            "roster_path": roster,
            "log_level": log_level,
            "mqtt_url": mqtt_url,
        }.items()
        if v is not None
    }
    settings = Settings.model_validate(overrides)
    logs.configure(settings.log_level, settings.log_format)
    from rules.message_file import MessageModelError

    try:
        application = create_app(settings)
    except (RuleTableError, TableRefused) as exc:
        typer.echo(f"the rule table cannot be used:\n{exc}", err=True)
        raise typer.Exit(2) from None
    except MessageModelError as exc:
        typer.echo(f"the message model (DISPATCHER_MESSAGE_MODEL) cannot be used:\n{exc}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:  # the townships or the replica settings
        typer.echo(f"not started: {exc}", err=True)
        raise typer.Exit(2) from None
    roster_path = settings.roster_file()
    if roster_path is not None:
        from dispatcher.roster_file import RosterError, build_roster, read_roster

        try:
            build_roster(read_roster(roster_path), application.state.context.hub.rules)
        except RosterError as exc:
            problems = "\n".join(f"  {p}" for p in exc.problems)
            typer.echo(f"the roster {roster_path} cannot be used:\n{problems}", err=True)
            raise typer.Exit(2) from None
    _refuse_a_second_writer(application)
    where = (
        f"board: http://{settings.host}:{settings.port}/board   API docs: http://{settings.host}:{settings.port}/docs"
    )
    if settings.log_format == "json":
        logging.getLogger("server").info(where)  # a log pipeline reads only JSON lines
    else:
        typer.echo(where)
    from gateways.ws_frames import SharedFrameProtocol

    uvicorn.run(
        application,
        ws=SharedFrameProtocol,  # the board's frames are built once for every board
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's loggers go through the root logger's format (server/logs.py)
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def _load_book(path: Path) -> tuple[RuleBook, LoadedTable]:
    """Load, validate and compile; on a bad table print every problem and exit 1."""
    try:
        source = load_source(path)
        return compile_table(source.table), source
    except RuleTableError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1) from None


@rules_app.command("check")
def rules_check(
    path: Annotated[Path, typer.Argument(help="the rule table to check")],
    as_json: Annotated[bool, typer.Option("--json", help="print the findings as JSON")] = False,
) -> None:
    """Check a rule table: references, gaps, overlaps, unreachable rules, escalation chains.

    Exits 0 only when the table is clean; every finding names the rule(s), file and line.
    """
    started = time.perf_counter()
    try:
        source = load_source(path)
    except RuleTableError as exc:
        if as_json:
            problems = [{"kind": "invalid", **asdict(p)} for p in exc.problems]
            typer.echo(json.dumps({"ok": False, "findings": problems}, ensure_ascii=False))
        else:
            for problem in exc.problems:
                typer.echo(str(problem), err=True)
        raise typer.Exit(1) from None
    book = compile_table(source.table)
    findings = check(book, source, today=datetime.now(book.tz).date())
    elapsed = time.perf_counter() - started
    table = book.table
    if as_json:
        body = {
            "ok": not findings,
            "version": table.version,
            "rules": len(table.rules),
            "seconds": round(elapsed, 3),
            "findings": [asdict(f) for f in findings],
        }
        typer.echo(json.dumps(body, ensure_ascii=False))
    else:
        for finding in findings:
            typer.echo(str(finding), err=True)
        verdict = "ok" if not findings else f"{len(findings)} finding(s)"
        typer.echo(
            f"{path}: {verdict}: table {table.version} of {table.township.name} ({table.township.id}): "
            f"{len(table.rules)} rules, {len(table.catalogue)} categories, {len(table.teams)} teams, "
            f"{len(table.zones)} zones; checked in {elapsed:.2f} s"
        )
    if findings:
        raise typer.Exit(1)


@rules_app.command("catalogue")
def rules_catalogue(
    path: Annotated[Path | None, typer.Argument(help="the rule table (default: the bundled one)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or xlsx")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write (csv: default stdout)")] = None,
    crosswalk: Annotated[
        Path | None, typer.Option("--crosswalk", help="reasons of the codes (default: <table>-crosswalk.csv beside it)")
    ] = None,
) -> None:
    """Export the catalogue: each category, its message-board class and GB/T 47678.5 code with the reason."""
    from dispatcher.settings import BUNDLED_TABLE
    from rules.crosswalk import CrosswalkError, crosswalk_path, crosswalk_rows, to_csv, to_xlsx

    if fmt not in ("csv", "xlsx"):
        typer.echo(f"--format must be csv or xlsx, not {fmt!r}", err=True)
        raise typer.Exit(2)
    if fmt == "xlsx" and output is None:
        typer.echo("--format xlsx needs --output FILE.xlsx", err=True)
        raise typer.Exit(2)
    table_path = path or BUNDLED_TABLE
    book, _ = _load_book(table_path)
    reasons = crosswalk or crosswalk_path(table_path)
    try:
        rows = crosswalk_rows(book.table, reasons.read_text(encoding="utf-8"))
    except OSError as exc:
        typer.echo(f"{reasons}: cannot read the crosswalk: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    except CrosswalkError as exc:
        typer.echo(f"{reasons}: {exc}", err=True)
        raise typer.Exit(1) from None
    if fmt == "xlsx":
        assert output is not None
        output.write_bytes(to_xlsx(rows))
    elif output is not None:
        output.write_text(to_csv(rows), encoding="utf-8")
    else:
        typer.echo(to_csv(rows), nl=False)
    if output is not None:
        coded = sum(1 for r in rows if r.gbt_code)
        typer.echo(f"{output}: {len(rows)} categories, {coded} with a GB/T 47678.5 code", err=True)


@rules_app.command("explain")
def rules_explain(
    path: Annotated[Path, typer.Argument(help="the rule table")],
    incident: Annotated[Path, typer.Argument(help="a report as JSON (the API's body), or a list of them")],
    as_json: Annotated[bool, typer.Option("--json", help="print the explanation as JSON")] = False,
    model: Annotated[
        Path | None, typer.Option(help="a message model (dispatcher classify train) deciding weak keywords")
    ] = None,
) -> None:
    """Why a report goes where it goes: the rule, each condition, and the nearest rules that missed; for a
    report without a category, the keywords found and (with ``--model``) the model's three best classes."""
    book, _ = _load_book(path)
    if model is not None:
        from rules.message_file import read_message_model

        try:
            book = book.with_messages(read_message_model(model))
        except ValueError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
    try:
        records = list(read_records(incident))
        items = [(n, routing_input(r)) for n, r in records]
    except (InputError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    for number, item in items:
        explanation = explain(book, item)
        if as_json:
            typer.echo(json.dumps({"record": number, **explanation_json(explanation)}, ensure_ascii=False))
        else:
            typer.echo(f"record {number}: {explanation_text(explanation)}")


def _joined(row: dict[str, str | None], columns: list[str]) -> str:
    return " ".join((row.get(c) or "").strip() for c in columns).strip()


@classify_app.command("train")
def classify_train(
    csv_path: Annotated[Path, typer.Option("--csv", help="labelled messages, UTF-8 CSV with a header row")],
    out: Annotated[Path, typer.Option(help="where to write the model (JSON), e.g. beside the rule table")],
    label: Annotated[str, typer.Option(help="the label column: a catalogue category or a board class")] = "label",
    text: Annotated[
        str, typer.Option(help="the text columns, joined by a space (missing ones skipped)")
    ] = "title,text",
    table: Annotated[
        Path | None, typer.Option(help="the rule table the model serves: labels checked against it, version kept")
    ] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="below this, triage")] = 0.5,
    keyword_margin: Annotated[int, typer.Option(min=0, help="keywords leading by this much decide alone")] = 15,
    max_chars: Annotated[int, typer.Option(min=20, help="characters of a message the model reads")] = 200,
) -> None:
    """Train the message model: jieba words, TF-IDF and logistic regression, from a labelled CSV."""
    import csv

    from rules.message_file import write_message_model
    from rules.training import train

    columns = [c.strip() for c in text.split(",") if c.strip()]
    try:
        with csv_path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in [label] if c not in header] or ([] if set(columns) & set(header) else columns)
            if missing:
                typer.echo(f"{csv_path}: the CSV has no column {', '.join(map(repr, missing))}", err=True)
                raise typer.Exit(2)
            rows = [
                (" ".join((r.get(c) or "").strip() for c in columns).strip(), (r[label] or "").strip()) for r in reader
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        typer.echo(f"{csv_path}: cannot read: {exc}", err=True)
        raise typer.Exit(2) from None
    empty = [n for n, (t, y) in enumerate(rows, 2) if not t or not y]
    if empty:
        typer.echo(f"{csv_path}: line {empty[0]}: a message without text or label ({len(empty)} such rows)", err=True)
        raise typer.Exit(2)
    trained_on: dict[str, object] = {"csv": csv_path.name}
    if table is not None:
        book, _ = _load_book(table)
        known = set(book.board_classes) | set(book.board_classes.values())
        unknown = sorted({y for _, y in rows} - known)
        if unknown:
            typer.echo(f"{csv_path}: labels neither a category nor a board class of {table}: {unknown[:10]}", err=True)
            raise typer.Exit(2)
        trained_on["table_version"] = book.version
    started = time.perf_counter()
    try:
        data = train(
            [t for t, _ in rows],
            [y for _, y in rows],
            threshold=threshold,
            keyword_margin=keyword_margin,
            max_chars=max_chars,
            trained_on=trained_on,
        )
    except ValueError as exc:
        typer.echo(f"{csv_path}: {exc}", err=True)
        raise typer.Exit(2) from None
    write_message_model(data, out)
    typer.echo(
        f"{out}: {len(data['labels'])} labels, {len(data['words'])} words, from {len(rows)} messages, "
        f"trained in {time.perf_counter() - started:.1f} s"
    )


@rules_app.command("diff")
def rules_diff(
    old: Annotated[Path, typer.Argument(help="the table in force")],
    new: Annotated[Path, typer.Argument(help="the proposed table")],
    incidents: Annotated[
        Path, typer.Option("--incidents", help="reports or incidents: JSON array, API listing or JSON lines")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    examples: Annotated[int, typer.Option(help="example records shown per change")] = 3,
) -> None:
    """Route a history under both tables and show what would go elsewhere, grouped by owner change."""
    old_book, _ = _load_book(old)
    new_book, _ = _load_book(new)
    try:
        records = [(n, routing_input(r)) for n, r in read_records(incidents)]
    except (InputError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    changes: dict[tuple[str, str], list[int]] = {}
    for number, item in records:
        before, after = old_book.route(item).owner, new_book.route(item).owner
        if before != after:
            changes.setdefault((before, after), []).append(number)
    moved = sum(len(v) for v in changes.values())
    ordered = sorted(changes.items(), key=lambda kv: -len(kv[1]))
    if as_json:
        body = {
            "old": old_book.version,
            "new": new_book.version,
            "records": len(records),
            "moved": moved,
            "changes": [{"from": a, "to": b, "count": len(n), "records": n[:examples]} for (a, b), n in ordered],
        }
        typer.echo(json.dumps(body, ensure_ascii=False))
        return
    typer.echo(f"{old_book.version} → {new_book.version}: {moved} of {len(records)} records would go elsewhere")
    for (before, after), numbers in ordered:
        typer.echo(f"  {len(numbers):6d}  {before}  →  {after}   (records {numbers[:examples]})")


@rules_app.command("load")
def rules_load(
    path: Annotated[Path, typer.Argument(help="the rule table to put in force")],
    url: Annotated[str, typer.Option(help="the running dispatcher")] = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(envvar="DISPATCHER_TOKEN", help="a bearer token")] = None,
    user: Annotated[str | None, typer.Option(help="or sign in as this account ...")] = None,
    password: Annotated[str | None, typer.Option(envvar="DISPATCHER_PASSWORD", help="... with this password")] = None,
) -> None:
    """Put a table in force on a running dispatcher (it checks it again and keeps the old one on errors)."""
    import httpx
    import yaml

    book, _ = _load_book(path)
    merged = book.table.model_dump(mode="json", exclude={"include"}, exclude_none=True)
    body = yaml.safe_dump(merged, allow_unicode=True, sort_keys=False)
    try:
        answer = httpx.put(
            f"{url.rstrip('/')}/api/v1/rules",
            content=body.encode(),
            headers={"content-type": "application/yaml", **_bearer(url, token, user, password)},
        )
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach {url}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(answer.text)
    if answer.status_code != 200:
        raise typer.Exit(1)


@roster_app.command("check")
def roster_check(
    path: Annotated[Path, typer.Argument(help="the roster to check")],
    rules: Annotated[Path | None, typer.Option("--rules", help="the rule table it serves (default: bundled)")] = None,
) -> None:
    """Check a roster against its rule table: teams, zones, shift members. Exits 0 when it fits."""
    from dispatcher.roster_file import RosterError, build_roster, read_roster
    from dispatcher.settings import BUNDLED_TABLE

    book, _ = _load_book(rules or BUNDLED_TABLE)
    try:
        roster = build_roster(read_roster(path), book)
    except RosterError as exc:
        for problem in exc.problems:
            typer.echo(f"{path}: {problem}", err=True)
        raise typer.Exit(1) from None
    teams = {o.team for o in roster.officers.values()}
    typer.echo(
        f"{path}: roster {roster.version} fits table {book.version}: {len(roster.officers)} officers in "
        f"{len(teams)} teams, {len(roster.shifts)} shifts, {len(roster.overrides)} overrides"
    )


def _instant(text: str) -> datetime:
    """An ISO date or time from the command line; one without an offset is read as UTC (say +08:00 for 北京时间)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not an ISO date or time") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@app.command()
def briefing(
    start: Annotated[
        str, typer.Option("--from", help="the period's start: 2026-11-01 (UTC) or 2026-11-01T00:00+08:00")
    ],
    end: Annotated[str, typer.Option("--to", help="the period's end, exclusive")],
    by: Annotated[str, typer.Option("--by", help="township, module, team, officer or zone")] = "team",
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy async URL [env DISPATCHER_DATABASE_URL]")
    ] = None,
) -> None:
    """Print the briefing's figures per unit for [from, to) (read-only; see docs/reports.md)."""
    import asyncio

    from dispatcher import briefing as figures
    from dispatcher.settings import Settings
    from dispatcher.sql_store import build_engine

    try:
        unit = figures.Unit(by)
    except ValueError:
        raise typer.BadParameter(f"--by must be one of {', '.join(u.value for u in figures.Unit)}") from None
    settings = Settings.model_validate({"database_url": database_url} if database_url else {})

    async def read() -> figures.Briefing:
        engine = build_engine(settings.database_url)
        try:
            return await figures.compute(engine, start=_instant(start), end=_instant(end), by=unit)
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(read())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(briefing_table(result))


def briefing_table(result: Briefing) -> str:
    """The figures as a fixed-width text table, one unit a line, then the returns by rule."""
    from dispatcher.briefing import Stage

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    def times(u: UnitFigures, stage: Stage) -> str:
        t = u.stages.get(stage)
        return "-" if t is None else f"{t.median_s:.0f}/{t.p90_s:.0f}"

    head = [
        "unit",
        "受理",
        "立案",
        "应结案",
        "结案",
        "结案率",
        "按期结案率",
        "逾期未结",
        "延期率",
        "返工率",
        "ack s",
        "arrive s",
        "resolve s",
    ]
    rows = [
        [
            u.unit or "(none)",
            str(u.received),
            str(u.accepted),
            str(u.due),
            str(u.closed),
            rate(u.close_rate),
            rate(u.on_time_rate),
            str(u.overdue_open),
            rate(u.extension_rate),
            rate(u.rework_rate),
            times(u, Stage.ACK),
            times(u, Stage.ARRIVE),
            times(u, Stage.RESOLVE),
        ]
        for u in result.units
    ]
    widths = [max(_width(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [f"{result.by.value} {result.start.isoformat()} .. {result.end.isoformat()}  (stage times: median/p90)"]
    for r in [head, *rows]:
        lines.append("  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(r, widths, strict=True)).rstrip())
    lines.append(
        "回退 by rule: " + (", ".join(f"{r.rule_id or '(none)'} {r.returns}" for r in result.returns) or "none")
    )
    return "\n".join(lines)


def _width(text: str) -> int:
    """Columns a string takes in a terminal: CJK characters take two."""
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


@app.command()
def assess(
    period: Annotated[str, typer.Option("--period", help="2026-11, 2026-Q4 or 2026 (北京时间)")],
    scoring: Annotated[
        Path | None,
        typer.Option(
            "--scoring",
            help="score by this scoring table (default: the one put in force for the period, as the API does; "
            "before any: the bundled one of 廿里镇)",
        ),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy async URL [env DISPATCHER_DATABASE_URL]")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of text")] = False,
) -> None:
    """Print the assessment of a period: post points, team points and module scores, each with its lines
    and the incidents behind them (read-only; see docs/reports.md). The scoring table is the one the
    supervision office put in force for the period (the last before its end), unless ``--scoring`` names
    a file; a broken one is refused with file:line."""
    import asyncio

    from dispatcher.assessment import (
        Assessment,
        logged_bonuses,
        scoring_text,
        stored_scoring_tables,
        table_of_period,
        with_bonuses,
    )
    from dispatcher.assessment import assess as run_assessment
    from dispatcher.briefing import Period
    from dispatcher.settings import Settings
    from dispatcher.sql_store import build_engine
    from rules import RuleTableError, compile_table, load_table
    from rules.scoring import BUNDLED_SCORING, LoadedScoring, check_scoring, load_scoring, load_scoring_text

    try:
        named = Period.parse(period).so_far(datetime.now(UTC))  # a running period: up to now
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    settings = Settings.model_validate({"database_url": database_url} if database_url else {})

    def checked(path: Path) -> LoadedScoring:
        try:
            loaded = load_scoring(path)
            problems = check_scoring(loaded, compile_table(load_table(settings.rules_path)))
        except RuleTableError as exc:
            problems = exc.problems
        if problems:
            for problem in problems:
                typer.echo(str(problem), err=True)
            raise typer.Exit(1)
        return loaded

    given = checked(scoring) if scoring is not None else None

    async def read() -> Assessment:
        engine = build_engine(settings.database_url)
        try:
            if given is not None:
                table = given.table
            else:
                # As GET /api/v1/assessment: the table of the period, checked when it was put in force.
                stored = table_of_period(await stored_scoring_tables(engine), named)
                if stored is None:
                    table = checked(BUNDLED_SCORING).table
                else:
                    table = load_scoring_text(scoring_text(stored[1]), source=f"scoring#{stored[0]}").table
            found = await run_assessment(engine, period=named, table=table)
            return with_bonuses(found, table, (await logged_bonuses(engine)).values())
        finally:
            await engine.dispose()

    result = asyncio.run(read())
    if as_json:
        from gateways.reports import assessment_public

        typer.echo(assessment_public(result).model_dump_json(indent=2))
        return
    typer.echo(f"assessment {result.period.name} by scoring table {result.table_version}")
    for title, scores in (
        ("岗位赋分 posts", result.posts),
        ("组团积分 teams", result.teams),
        ("模块评分 modules", result.modules),
    ):
        typer.echo(f"\n{title}")
        for s in scores:
            typer.echo(f"  {s.unit}: {s.score:g} (base {s.base:g})")
            for line in s.lines:
                ids = ", ".join(f"#{i}" for i in line.incidents[:20]) + (" …" if len(line.incidents) > 20 else "")
                typer.echo(f"    {line.rule}: {line.count} × {line.points_each:g} = {line.points:g}  [{ids}]")
    for b in result.bonuses:
        state = f"approved by {b.approved.approved_by}" if b.approved else "waiting for a second person's approval"
        typer.echo(
            f"special bonus {b.bonus}: {b.entered.unit_kind} {b.entered.unit} {b.entered.points:+g} "
            f"({b.entered.reason}; entered by {b.entered.entered_by}, {state})"
        )
    for what, why in result.not_counted.items():
        typer.echo(f"not counted: {what}: {why}")


@app.command()
def report(
    period: Annotated[str, typer.Option("--period", help="2026-11, 2026-Q4 or 2026 (北京时间)")],
    township: Annotated[str | None, typer.Option("--township", help="the township id")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="write the briefing as one HTML file here")] = None,
    xlsx_out: Annotated[Path | None, typer.Option("--xlsx", help="write the briefing as an XLSX workbook here")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy async URL [env DISPATCHER_DATABASE_URL]")
    ] = None,
) -> None:
    """Write the briefing document (简报) of a period as HTML and/or XLSX (read-only; see docs/reports.md)."""
    import asyncio

    from dispatcher import briefing as figures
    from dispatcher.roster_file import RosterError, read_roster
    from dispatcher.settings import Settings
    from dispatcher.sql_store import build_engine
    from gateways.briefing_document import names_of, render_html, render_xlsx
    from rules.loader import load_table

    if html_out is None and xlsx_out is None:
        raise typer.BadParameter("say where to write it: --html out.html and/or --xlsx out.xlsx")
    try:
        named = figures.Period.parse(period).so_far(datetime.now(UTC))  # a running period: up to now
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    settings = Settings.model_validate({"database_url": database_url} if database_url else {})
    entries = {t: (path, url) for t, path, url in settings.township_entries()}
    if entries and database_url is None:
        if township not in entries:
            raise typer.BadParameter(f"--township must be one of {', '.join(sorted(entries))}")
        rules_path, url = entries[township]
    else:
        rules_path, url = settings.rules_path, settings.database_url
    table = load_table(rules_path)
    if township is not None and township != table.township.id:
        raise typer.BadParameter(f"--township {township!r}: this database serves {table.township.id!r}")

    async def read() -> figures.Document:
        engine = build_engine(url)
        try:
            return await figures.document(engine, township=table.township.name, period=named)
        finally:
            await engine.dispose()

    # Officers are named from the roster file the server starts from (an officer added later through the API
    # is shown by id); the units from the rule table.
    roster = settings.roster_file()
    try:
        officers = read_roster(roster).officers if roster is not None else []
    except RosterError:
        officers = []
    names = names_of(table, officers)
    doc = asyncio.run(read())
    if html_out is not None:
        html_out.write_text(render_html(doc, names=names), encoding="utf-8")
        typer.echo(f"wrote {html_out}")
    if xlsx_out is not None:
        xlsx_out.write_bytes(render_xlsx(doc, names))
        typer.echo(f"wrote {xlsx_out}")


@app.command()
def simulate(
    scenario: Annotated[Path | None, typer.Argument(help="a scenario file (see docs/simulations.md)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the summary and verdicts here")] = None,
    report_out: Annotated[Path | None, typer.Option("--report", help="write a self-contained HTML report")] = None,
    lang: Annotated[str, typer.Option("--lang", help="the HTML report's language: en or zh-CN")] = "en",
    from_csv: Annotated[Path | None, typer.Option("--from-csv", help="replay real service requests instead")] = None,
    mapping: Annotated[Path | None, typer.Option(help="with --from-csv: how its rows become reports")] = None,
    table: Annotated[Path | None, typer.Option(help="with --from-csv: the rule table (default: the mapping's)")] = None,
    limit: Annotated[int | None, typer.Option(help="with --from-csv: read at most this many rows")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="with --from-csv: check the mapping against the file, replay nothing")
    ] = False,
) -> None:
    """Replay a scenario on a virtual clock through the real hub; exit 1 when an expectation fails.

    With ``--from-csv FILE --mapping MAP.yaml`` it replays real records with their own timestamps and
    reports routing agreement: how often the table sends a record to the owner the real city chose.
    """
    import asyncio

    if from_csv is not None:
        if mapping is None:
            typer.echo("--from-csv needs --mapping", err=True)
            raise typer.Exit(2)
        if dry_run:
            _check_csv(from_csv, mapping, table, limit, json_out)
        else:
            _replay_csv(from_csv, mapping, table, limit, json_out)
        return
    if scenario is None:
        typer.echo("give a scenario file, or --from-csv FILE --mapping MAP.yaml", err=True)
        raise typer.Exit(2)

    from simulations.html import LANGS, html_report
    from simulations.report import summarise, verdicts

    if lang not in LANGS:
        typer.echo(f"--lang {lang}: the report speaks {' or '.join(LANGS)}", err=True)
        raise typer.Exit(2)
    from simulations.runner import run_scenario
    from simulations.scenario import load_scenario

    try:
        loaded = load_scenario(scenario)
    except RuleTableError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    started = time.perf_counter()
    with _progress("simulating") as advance:
        results = asyncio.run(run_scenario(scenario, loaded, progress=advance))
    elapsed = time.perf_counter() - started
    body: dict[str, object] = {"scenario": loaded.name, "seconds": round(elapsed, 3), "runs": {}}
    passed = True
    header = (
        f"{'run':<10}{'module':<16}{'incidents':>10}{'lead ack p50':>14}{'resolve p50':>13}{'on time':>9}{'escal.':>8}"
    )
    for name, result in results.items():
        summary = summarise(result)
        found = verdicts(result, variant=name)
        passed = passed and all(v.passed for v in found)
        typer.echo(
            f"{loaded.name} [{name}, table {result.rules_version}]: {summary['incidents']} incidents, "
            f"{summary['events']} events, {result.started:%Y-%m-%d %H:%M} to {result.ended:%Y-%m-%d %H:%M}"
        )
        typer.echo(header)
        for module, row in summary["by_module"].items():
            ack, resolve, rate = row["lead_ack"]["median_s"], row["lead_resolve"]["median_s"], row["on_time_rate"]
            typer.echo(
                f"{name:<10}{module:<16}{row['incidents']:>10}{_minutes(ack):>14}{_minutes(resolve):>13}"
                f"{'' if rate is None else f'{rate:.0%}':>9}{row['escalations']:>8}"
            )
        for verdict in found:
            typer.echo(f"{'PASS' if verdict.passed else 'FAIL'}  {verdict.name}: {verdict.detail}")
        body["runs"][name] = {**summary, "verdicts": [asdict(v) for v in found]}  # type: ignore[index]
    typer.echo(f"simulated in {elapsed:.2f} s")
    if json_out is not None:
        json_out.write_text(json.dumps(body, ensure_ascii=False, indent=2), encoding="utf-8")
    if report_out is not None:
        report_out.write_text(html_report(loaded, results, lang), encoding="utf-8")
        typer.echo(f"report: {report_out}")
    if not passed:
        raise typer.Exit(1)


def _bearer(url: str, token: str | None, user: str | None, password: str | None) -> dict[str, str]:
    """The bearer header for a running dispatcher: ``token``, or one signed in for as ``user``; exits 2 on failure."""
    import httpx

    if token:
        return {"Authorization": f"Bearer {token}"}
    if user is None:
        return {}
    try:
        answer = httpx.post(
            f"{url.rstrip('/')}/api/v1/auth/token", data={"username": user, "password": password or ""}, timeout=30
        )
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach {url}: {exc}", err=True)
        raise typer.Exit(2) from None
    if answer.status_code != 200:
        typer.echo(f"signing in as {user} failed: {answer.status_code} {answer.text}", err=True)
        raise typer.Exit(2)
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@app.command()
def drill(
    scenario: Annotated[Path, typer.Argument(help="a scenario file to play live")],
    url: Annotated[str, typer.Option(help="the running dispatcher")] = "http://127.0.0.1:8000",
    speed: Annotated[
        float, typer.Option(help="virtual seconds per second: 1 is real time, 60 a minute a second")
    ] = 1.0,
    max_seconds: Annotated[float, typer.Option(help="stop after this many wall-clock seconds")] = 4 * 3600.0,
    token: Annotated[str | None, typer.Option(envvar="DISPATCHER_TOKEN", help="a bearer token")] = None,
    user: Annotated[str | None, typer.Option(help="or sign in as this account ...")] = None,
    password: Annotated[str | None, typer.Option(envvar="DISPATCHER_PASSWORD", help="... with this password")] = None,
) -> None:
    """Play a scenario live against a running dispatcher (演练): reports marked as exercises, on the real board."""
    import asyncio

    import httpx

    from simulations.drill import run_drill
    from simulations.scenario import load_scenario, offset

    try:
        loaded = load_scenario(scenario)
    except RuleTableError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None

    headers = _bearer(url, token, user, password)

    expected_s = offset(loaded.until).total_seconds() / speed
    typer.echo(
        f"drill {loaded.name!r} against {url}: {loaded.until} of scenario at speed {speed:g}, "
        f"about {expected_s / 60:.1f} min",
        err=True,
    )

    async def play() -> DrillOutcome:
        async with httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as client:
            seen: list[DrillOutcome] = []

            def so_far() -> str:
                o = seen[-1] if seen else None
                return "starting" if o is None else f"{o.reports} reports, {o.moves} moves, {o.refused} refused"

            with Progress("drill", sys.stderr, describe=so_far) as progress:

                def tick(outcome: DrillOutcome) -> None:
                    seen[:] = [outcome]
                    progress(outcome.share)

                outcome = await run_drill(loaded, client, speed=speed, max_seconds=max_seconds, tick=tick)
                seen[:] = [outcome]
                if not outcome.finished:
                    raise _Stopped(outcome)
        return outcome

    try:
        outcome = asyncio.run(play())
    except _Stopped as stopped:
        outcome = stopped.outcome
    except httpx.TransportError as exc:
        typer.echo(f"cannot reach {url}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(drill_summary(outcome))
    for error in outcome.errors[:20]:
        typer.echo(f"  {error}", err=True)
    if outcome.errors:
        raise typer.Exit(1)


class _Stopped(Exception):
    """The drill stopped before its end (max_seconds): its progress is not finished."""

    def __init__(self, outcome: DrillOutcome) -> None:
        super().__init__("stopped")
        self.outcome = outcome


def drill_summary(outcome: DrillOutcome) -> str:
    """What a drill did, and each kind of refused move with how often and why (nothing was changed by them)."""
    lines = [
        f"drill {outcome.run_id}: {outcome.reports} reports ({outcome.joined} joined an open incident), "
        f"{outcome.moves} unit moves, {outcome.refused} refused, {len(outcome.errors)} errors "
        f"in {outcome.seconds:.1f} s"
    ]
    if outcome.refusals:
        lines.append("refused (the incident was no longer where the plan expected; nothing changed):")
        lines += [f"  {count} × {why}" for why, count in outcome.refusals.most_common()]
    return "\n".join(lines)


@app.command()
def devices(
    mqtt_url: Annotated[
        str, typer.Option("--mqtt-url", help="the broker the dispatcher uses")
    ] = "mqtt://127.0.0.1:1883",
    officers: Annotated[
        int | None, typer.Option(help="simulated officers' phones (default: one per officer of the roster)")
    ] = None,
    no_roster: Annotated[
        bool, typer.Option("--no-roster", help="made-up officer ids, for a dispatcher run with DISPATCHER_NO_ROSTER")
    ] = False,
    duration: Annotated[float, typer.Option(help="seconds to run")] = 60.0,
    reports: Annotated[int, typer.Option(help="reports the officers send in all")] = 10,
    seed: Annotated[int, typer.Option(help="seed of every random draw")] = 1,
    prefix: Annotated[str | None, typer.Option(help="topic prefix (default township/<township-id>/)")] = None,
) -> None:
    """Simulate officers' phones over MQTT: positions, reports, and working the tasks they are sent."""
    import asyncio

    from simulations.devices import DeviceConfig, TooManyPhones, run_devices

    config = DeviceConfig(
        mqtt_url=mqtt_url,
        prefix=prefix,
        officers=officers,
        roster=() if no_roster else None,
        duration_s=duration,
        reports=reports,
        seed=seed,
    )
    try:
        typer.echo(asyncio.run(run_devices(config)).line())
    except TooManyPhones as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _check_csv(csv_path: Path, mapping: Path, table: Path | None, limit: int | None, json_out: Path | None) -> None:
    from simulations.realdata import dry_run

    started = time.perf_counter()
    try:
        found = dry_run(csv_path, mapping, table, limit=limit)
    except (RuleTableError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    elapsed = time.perf_counter() - started
    typer.echo(
        f"{csv_path.name}: {found['rows_read']} rows read, {found['usable']} usable, "
        f"{found['rejected']} rejected, checked in {elapsed:.2f} s (nothing replayed)"
    )
    if found["rejected"]:
        typer.echo("rejected: " + ", ".join(f"{k} {n}" for k, n in found["rejected_reasons"].items()))
        for example in found["rejected_examples"][:5]:
            typer.echo(f"  line {example['line']} (row {example['row']}): {example['reason']}")
    typer.echo(f"without a category (the table's keywords decide): {found['without_category']}")
    for kind, count in list(found["without_category_top"].items())[:5]:
        typer.echo(f"  {count:>6}  {kind}")
    typer.echo(f"agency without an owner (not compared): {found['agency_without_owner']}")
    for agency, count in list(found["agencies_without_owner"].items())[:5]:
        typer.echo(f"  {count:>6}  {agency}")
    if json_out is not None:
        json_out.write_text(json.dumps(found, ensure_ascii=False, indent=2), encoding="utf-8")
    if not found["usable"]:
        raise typer.Exit(1)


def _replay_csv(csv_path: Path, mapping: Path, table: Path | None, limit: int | None, json_out: Path | None) -> None:
    import asyncio

    from simulations.realdata import run_from_csv

    started = time.perf_counter()
    try:
        with _progress("replaying") as advance:
            _, report = asyncio.run(run_from_csv(csv_path, mapping, table, limit=limit, progress=advance))
    except (RuleTableError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    elapsed = time.perf_counter() - started
    agreement = report["agreement"]
    typer.echo(
        f"{csv_path.name}: {report['rows_read']} rows read, {report['replayed']} replayed, "
        f"{report['rejected']} rejected {report['rejected_reasons']}, simulated in {elapsed:.1f} s"
    )
    for example in report["rejected_examples"][:5]:
        typer.echo(f"  line {example['line']} (row {example['row']}): {example['reason']}")
    overall = agreement.get("overall")
    typer.echo(f"routing agreement with the real owners: {'-' if overall is None else f'{overall:.1%}'}")
    for category, row in list(agreement.get("by_category", {}).items())[:15]:
        share = row.get("share")
        typer.echo(f"  {category:<40} {'-' if share is None else f'{share:.1%}':>7}  of {row.get('compared', 0)}")
    if json_out is not None:
        body = {k: v for k, v in report.items() if k != "summary"} | {"seconds": round(elapsed, 3)}
        json_out.write_text(json.dumps(body, ensure_ascii=False, indent=2, default=str), encoding="utf-8")


@contextmanager
def _progress(label: str) -> Iterator[Callable[[float], None]]:
    """Progress on stderr (a bar on a terminal, else a line a minute), advanced by the share done (0 to 1)."""
    with Progress(label, sys.stderr) as progress:
        yield progress


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def _refuse_a_second_writer(application: Any) -> None:
    """Say so plainly, before the server starts, when another dispatcher writes to a township's database."""
    import asyncio

    if application.state.context.replicas is not None:
        return  # replicas share the databases: leases, not the writer lock, say who writes

    from dispatcher.sql_store import SqlIncidentStore, WriterLock
    from dispatcher.store import StoreLocked

    async def check() -> None:
        for township in application.state.context.townships.values():
            store = township.hub.store
            if isinstance(store, SqlIncidentStore):
                await WriterLock.check_free(store.url)

    try:
        asyncio.run(check())
    except StoreLocked as exc:
        typer.echo(f"not started: {exc}", err=True)
        raise typer.Exit(1) from None


def _places_township(rules: Path | None) -> tuple[str, frozenset[str]]:
    """The township and zone ids of the rule table ``rules`` (default: the settings' table)."""
    from dispatcher.settings import Settings

    book, _ = _load_book(rules or Settings().rules_path)
    return book.table.township.id, frozenset(z.id for z in book.table.zones)


@places_app.command("load")
def places_load(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a .csv or .yaml places file")],
    rules: Annotated[
        Path | None, typer.Option("--rules", help="the rule table whose township and zones the places belong to")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy async URL [env DISPATCHER_DATABASE_URL]")
    ] = None,
) -> None:
    """Check a places file (every problem with its line) and store its places, replacing those of the same code."""
    import asyncio

    from dispatcher.field_store import SqlFieldStore
    from dispatcher.places import PlacesError, read_places
    from dispatcher.settings import Settings

    township, zones = _places_township(rules)
    try:
        places = read_places(path, township, zones=zones)
    except PlacesError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    settings = Settings.model_validate({"database_url": database_url} if database_url else {})

    async def store() -> int:
        field = SqlFieldStore(settings.database_url)
        try:
            await field.open()
            return await field.put_places(places)
        finally:
            await field.close()

    typer.echo(f"{asyncio.run(store())} places of {township} stored from {path.name}")


@places_app.command("codes")
def places_codes(
    out: Annotated[Path, typer.Option("--out", help="the file to write")],
    fmt: Annotated[str, typer.Option("--format", help="svg or pdf")] = "pdf",
    base_url: Annotated[
        str, typer.Option("--base-url", help="the address phones open: <base-url>/field/place/<code>")
    ] = "http://127.0.0.1:8000",
    source: Annotated[
        Path | None, typer.Option("--from", help="a places file to print instead of the stored places")
    ] = None,
    rules: Annotated[Path | None, typer.Option("--rules", help="the rule table (its township)")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy async URL [env DISPATCHER_DATABASE_URL]")
    ] = None,
) -> None:
    """Write a printable sheet of the places' QR codes (A4, 3 × 4 a page), each with its name and code."""
    import asyncio

    from dispatcher.field_store import SqlFieldStore
    from dispatcher.places import PlacesError, find_cjk_font, read_places, sheet_pdf, sheet_svg
    from dispatcher.settings import Settings

    if fmt not in ("svg", "pdf"):
        raise typer.BadParameter("--format must be svg or pdf")
    if not base_url.startswith(("http://", "https://")):
        raise typer.BadParameter("--base-url must start with http:// or https://")
    township, zones = _places_township(rules)
    if source is not None:
        try:
            places = read_places(source, township, zones=zones)
        except PlacesError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
    else:
        settings = Settings.model_validate({"database_url": database_url} if database_url else {})

        async def read() -> list[Any]:
            field = SqlFieldStore(settings.database_url)
            try:
                await field.open()
                return await field.places(township)
            finally:
                await field.close()

        places = asyncio.run(read())
    if not places:
        typer.echo(f"no places of {township} to print: load some first (dispatcher places load FILE)", err=True)
        raise typer.Exit(1)
    if fmt == "svg":
        out.write_text(sheet_svg(places, base_url), encoding="utf-8")
    else:
        if find_cjk_font() is None:
            typer.echo("no CJK font (Noto Sans CJK) under /usr/share/fonts: the PDF shows the codes without names")
        out.write_bytes(sheet_pdf(places, base_url))
    typer.echo(f"{len(places)} place codes written to {out}")


def main() -> None:
    app()
