"""Reports benchmark: the briefing's figures over a township-year, on SQLite and PostgreSQL.

Run by hand from the repository root:

    .venv/bin/python benchmarks/reports.py
    .venv/bin/python benchmarks/reports.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test
    .venv/bin/python benchmarks/reports.py --incidents 100000 --repeats 5 --json out.json

A fresh database (a SQLite file, or a PostgreSQL database created and dropped through the given one) is
filled with ``--incidents`` incidents over 2026 straight through SQLAlchemy Core ``executemany`` (not
HTTP, not the hub: the figures read the tables only), in a realistic mix:

- 30% five-way intersection jams: the traffic police lead and four supporting teams;
- 10% wage disputes: the service module with the court and judicial office, a week to resolve;
- 42% routine matters of one team (governance, enforcement, economy);
- 8% in triage (no owner), 2% handed to the county, 3% drills, 2% merged into the incident before;
- 3% sent back (回退) by their lead; 15% closed late, 3% still open past their deadline.

Each incident has its ``IncidentReported`` and ``UnitsDispatched`` events, the lead's moves (``UnitMoved``)
and its close, about seven events an incident. The close and stage end columns the writer keeps beside
the events are then filled from them by revision 0015's own ``fill`` (timed as ``columns_s``). Then each
grouping (township, module, team, officer, zone) is timed for a month and for the whole year, ``--repeats``
times (median and max reported). Bounded in count; the only network traffic is to PostgreSQL on 127.0.0.1 when asked.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _common import create_database, drop_database, machine_info, make_tempdir, run_async  # noqa: E402

from dispatcher.briefing import Unit, compute  # noqa: E402
from dispatcher.sql_store import SqlIncidentStore, build_engine  # noqa: E402
from dispatcher.tables import AssignmentRow, EventRow, IncidentRow  # noqa: E402

YEAR = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 5_000  # incidents per insert batch
ZONES = ["five-way", "market-square", "north-road", "east-village", "west-village", "river-bank", "station"]
SUPPORT = ["police-station", "market-supervision", "law-enforcement", "town-management"]


def incidents(n: int, seed: int) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]], list[tuple[str, Any]]]]:
    """Each incident's row, its assignment rows, and its events as (type, at, payload) in order."""
    rng = random.Random(seed)
    span = 365 * 24 * 3600
    for i in range(1, n + 1):
        at = YEAR + timedelta(seconds=span * (i - 1) / n + rng.random() * 60)
        roll = rng.random()
        zone = rng.choice(ZONES)
        module, resolve = "governance", timedelta(days=2)
        lead: str | None = "grid-team"
        rule: str | None = "r-grid"
        supports: list[str] = []
        queue: str | None = None
        handover: str | None = None
        if roll < 0.30:
            module, lead, supports, rule, resolve = (
                "enforcement",
                "traffic-police",
                SUPPORT,
                "r-jam",
                timedelta(hours=4),
            )
            zone = "five-way"
        elif roll < 0.40:
            module, lead, supports, rule = "service", "labour-office", ["court", "judicial-office"], "r-wage"
            resolve = timedelta(days=7)
        elif roll < 0.82:
            module, lead, rule = rng.choice(
                [
                    ("governance", "grid-team", "r-grid"),
                    ("enforcement", "law-enforcement", "r-stall"),
                    ("economy", "economy-office", "r-firm"),
                ]
            )
        elif roll < 0.90:
            module, lead, rule, queue = "command-room", None, None, "triage"
        elif roll < 0.92:
            module, lead, rule, queue, handover = "command-room", None, "r-county", "handover", "natural-resources"
        exercise = 0.92 <= roll < 0.95
        merged_into = i - 1 if 0.95 <= roll < 0.97 and i > 1 else None
        returned = roll >= 0.97 and lead is not None
        status = "reported"
        rows: list[dict[str, Any]] = []
        events: list[tuple[str, Any]] = [("IncidentReported", at)]
        if lead is not None:
            officer = f"{lead}-{rng.randrange(1, 13):02d}"
            ack = timedelta(seconds=rng.lognormvariate(4.5, 0.6))
            arrive = ack + timedelta(seconds=rng.lognormvariate(6.3, 0.5))
            late = rng.random()
            done = arrive + resolve * (rng.uniform(1.05, 2.0) if late < 0.15 else rng.uniform(0.1, 0.9))
            still_open = late > 0.97 or returned or merged_into is not None
            state = "returned" if returned else "acknowledged" if still_open else "resolved"
            for position, team in enumerate([lead, *supports]):
                rows.append(
                    dict(
                        incident_id=i,
                        team=team,
                        position=position,
                        role="lead" if position == 0 else "support",
                        state=state if position == 0 else "resolved",
                        dispatched_at=at,
                        updated_at=at,
                        ack_due_at=at + timedelta(minutes=5),
                        ack_state="met",
                        arrive_due_at=at + timedelta(minutes=30),
                        arrive_state="met",
                        resolve_due_at=at + resolve,
                        resolve_state="pending" if still_open else "met",
                        officer=officer if position == 0 else None,
                    )
                )
            events.append(("UnitsDispatched", at))
            events.append(("UnitMoved", (at + ack, lead, "acknowledged")))
            if returned:
                events.append(("AssignmentReturned", (at + ack + timedelta(minutes=1), lead, rule)))
            elif not still_open:
                events.append(("UnitMoved", (at + ack + timedelta(seconds=30), lead, "en_route")))
                events.append(("UnitMoved", (at + arrive, lead, "on_scene")))
                events.append(("UnitMoved", (at + done, lead, "resolved")))
                events.append(("IncidentClosed", at + done + timedelta(minutes=rng.randrange(1, 30))))
                status = "closed"
            else:
                status = "acknowledged"
        if merged_into is not None:
            status = "merged"
        incident = dict(
            id=i,
            report_id=f"bench-{i}",
            description="基准",
            zone=zone,
            zones=zone,
            exercise=exercise,
            status=status,
            module=module,
            queue="returned" if returned else queue,
            priority=rng.randrange(1, 5),
            rule_id=rule,
            table_version="bench",
            handover=handover,
            escalation="[]",
            reported_at=at,
            updated_at=at,
            version=len(events),
            merged_into=merged_into,
        )
        yield incident, rows, events


def event_rows(incident_id: int, events: list[tuple[str, Any]], seq: int) -> list[dict[str, Any]]:
    out = []
    for type_name, detail in events:
        seq += 1
        if type_name == "UnitMoved":
            at, team, to_state = detail
            payload = {"incident_id": incident_id, "team": team, "to_state": to_state}
        elif type_name == "AssignmentReturned":
            at, team, rule = detail
            payload = {"incident_id": incident_id, "team": team, "rule_id": rule, "reason": "not ours"}
        else:
            at, payload = detail, {"incident_id": incident_id}
        out.append(dict(seq=seq, incident_id=incident_id, type=type_name, at=at, payload=json.dumps(payload)))
    return out


async def fill(url: str, n: int, seed: int) -> dict[str, Any]:
    store = SqlIncidentStore(url, durable=False)
    await store.open()  # the schema, by the migrations
    await store.close()
    engine = build_engine(url, durable=False)
    started = time.perf_counter()
    counts = {"incident": 0, "assignment": 0, "event": 0}
    seq = 0
    try:
        batch: tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]] = ([], [], [])
        for incident, rows, events in incidents(n, seed):
            batch[0].append(incident)
            batch[1].extend(rows)
            made = event_rows(incident["id"], events, seq)
            seq += len(made)
            batch[2].extend(made)
            if len(batch[0]) >= CHUNK or incident["id"] == n:
                async with engine.begin() as conn:
                    for table, values in zip((IncidentRow, AssignmentRow, EventRow), batch, strict=True):
                        if values:
                            await conn.execute(table.__table__.insert(), values)  # type: ignore[attr-defined]
                counts = {k: counts[k] + len(v) for k, v in zip(counts, batch, strict=True)}
                batch = ([], [], [])
        filled = time.perf_counter()
        async with engine.begin() as conn:
            await conn.run_sync(migration_0015().fill)
    finally:
        await engine.dispose()
    done = time.perf_counter()
    return {"rows": counts, "fill_s": round(filled - started, 1), "columns_s": round(done - filled, 1)}


def migration_0015() -> Any:
    """Revision 0015 (stage end and close columns, filled from the events), loaded from its file."""
    path = ROOT / "dispatcher" / "migrations" / "versions" / "0015_stage_ends.py"
    spec = importlib.util.spec_from_file_location("migration_0015", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def measure(url: str, repeats: int) -> dict[str, Any]:
    engine = build_engine(url, durable=False)
    periods = {
        "month": (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        "year": (YEAR, datetime(2027, 1, 1, tzinfo=UTC)),
    }
    results: dict[str, Any] = {}
    try:
        for period, (start, end) in periods.items():
            for unit in Unit:
                times = []
                rows = 0
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    briefing = await compute(engine, start=start, end=end, by=unit)
                    times.append(time.perf_counter() - t0)
                    rows = len(briefing.units)
                results[f"{period}/{unit.value}"] = {
                    "median_ms": round(1000 * statistics.median(times), 1),
                    "max_ms": round(1000 * max(times), 1),
                    "units": rows,
                }
    finally:
        await engine.dispose()
    return results


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    db = await create_database(args.database_url, make_tempdir())
    try:
        filled = await fill(db.url, args.incidents, args.seed)
        await db.analyze()
        figures = await measure(db.url, args.repeats)
    finally:
        await drop_database(db)
    return {
        "database": db.describe(),
        "incidents": args.incidents,
        **filled,
        "figures": figures,
        "load_average": os.getloadavg(),
        "machine": machine_info(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="postgresql+asyncpg://user@127.0.0.1:5432/admin_db (default: SQLite)")
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if not 1 <= args.incidents <= 1_000_000 or not 1 <= args.repeats <= 50:
        parser.error("--incidents 1..1,000,000 and --repeats 1..50")
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    result = run_async(main_async(args))
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
