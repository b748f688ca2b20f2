"""The briefing's figures on small hand-made histories whose right answers can be read off, on both backends.

The rows are written straight into the tables (as the writer would have left them): the figures read
the stored history only, so building it row by row keeps each case's answer visible in the test.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from dispatcher.briefing import (
    _BEHIND,
    _CLOSED,
    _DUE,
    _FIGURES,
    _UNIT_COLUMN,
    Figure,
    Stage,
    StageTimes,
    Unit,
    UnitFigures,
    _bound,
    base_sql,
    compute,
    compute_many,
    incidents_behind,
)
from dispatcher.core.incidents import Report
from dispatcher.core.lifecycle import IncidentAction, UnitAction
from dispatcher.sql_store import SqlIncidentStore, build_engine
from dispatcher.tables import AssignmentRow, EventRow, IncidentRow, UtcDateTime
from server.cli import app
from tests.conftest import HubRig

JUNE = datetime(2026, 6, 1, tzinfo=UTC)
JULY = datetime(2026, 7, 1, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


_ENDS = {
    "acked_at": ("acknowledged", "en_route", "on_scene", "resolved"),
    "arrived_at": ("on_scene",),
    "resolved_at": ("resolved",),
}


class History:
    """Writes incidents, lead assignments and events as rows, with the stage end and close columns the
    writer keeps beside the events (the team's first move ending each stage; the first close)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.seq = 0

    async def incident(
        self,
        incident_id: int,
        *,
        at: datetime,
        module: str = "enforcement",
        team: str | None = None,
        team_state: str = "resolved",
        resolve_within: timedelta = D,
        moves: tuple[tuple[str, timedelta], ...] = (),
        closed_after: timedelta | None = None,
        status: str | None = None,
        exercise: bool = False,
        merged_into: int | None = None,
        queue: str | None = None,
        rule_id: str | None = "r-default",
        zone: str | None = "market-square",
        officer: str | None = None,
    ) -> None:
        status = status or ("closed" if closed_after is not None else "dispatched" if team else "reported")
        rows: list[tuple[Any, dict[str, Any]]] = [
            (
                IncidentRow,
                dict(
                    id=incident_id,
                    report_id=f"r-{incident_id}",
                    description="hand-made",
                    zone=zone,
                    zones=zone or "",
                    exercise=exercise,
                    status=status,
                    module=module,
                    queue=queue,
                    priority=2,
                    rule_id=rule_id,
                    table_version="t1",
                    escalation="[]",
                    reported_at=at,
                    updated_at=at,
                    version=1,
                    merged_into=merged_into,
                    closed_at=at + closed_after if closed_after is not None else None,
                ),
            )
        ]
        if team is not None:
            rows.append(
                (
                    AssignmentRow,
                    dict(
                        incident_id=incident_id,
                        team=team,
                        position=0,
                        role="lead",
                        state=team_state,
                        dispatched_at=at,
                        updated_at=at,
                        resolve_due_at=at + resolve_within,
                        resolve_state="pending",
                        officer=officer,
                        **{
                            column: min((at + after for to, after in moves if to in states), default=None)
                            for column, states in _ENDS.items()
                        },
                    ),
                )
            )
        for to_state, after in moves:
            rows.append(self._event(incident_id, "UnitMoved", at + after, team=team, to_state=to_state))
        if closed_after is not None:
            rows.append(self._event(incident_id, "IncidentClosed", at + closed_after))
        async with self.engine.begin() as conn:
            for table, values in rows:
                await conn.execute(table.__table__.insert(), values)

    async def event(self, incident_id: int, type_name: str, at: datetime, **payload: Any) -> None:
        table, values = self._event(incident_id, type_name, at, **payload)
        async with self.engine.begin() as conn:
            await conn.execute(table.__table__.insert(), values)

    def _event(self, incident_id: int, type_name: str, at: datetime, **payload: Any) -> tuple[Any, dict[str, Any]]:
        self.seq += 1
        body = orjson.dumps({"incident_id": incident_id, **payload}).decode()
        return EventRow, dict(seq=self.seq, incident_id=incident_id, type=type_name, at=at, payload=body)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlIncidentStore]:
    store = SqlIncidentStore(database_url, durable=False)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def history(database_url: str, store: SqlIncidentStore) -> AsyncIterator[History]:
    engine = build_engine(database_url, durable=False)
    try:
        yield History(engine)
    finally:
        await engine.dispose()


async def june_history(h: History) -> None:
    """The month every test below reads; each line says what it must count as."""
    # 1: closed on time by traffic (due 3 June, closed 2 June).
    await h.incident(
        1,
        at=JUNE + D + 8 * H,
        team="traffic",
        officer="tp-01",
        moves=(("acknowledged", timedelta(seconds=60)), ("on_scene", timedelta(minutes=10)), ("resolved", H)),
        closed_after=90 * timedelta(minutes=1),
    )
    # 2: closed late by traffic (due 6 June, closed 7 June).
    await h.incident(
        2,
        at=JUNE + 4 * D,
        team="traffic",
        officer="tp-02",
        moves=(("acknowledged", timedelta(seconds=120)), ("on_scene", timedelta(minutes=20)), ("resolved", 2 * D)),
        closed_after=2 * D + H,
    )
    # 3: market's, due 12 June and still open on 1 July: counts against the on-time rate like a late close.
    await h.incident(
        3, at=JUNE + 9 * D, team="market", team_state="acknowledged", resolve_within=2 * D, zone="north-road"
    )
    # 4: a drill, closed on time: counts nowhere.
    await h.incident(4, at=JUNE + 2 * D, team="traffic", closed_after=H, exercise=True)
    # 5 merged into 6: counts once, as 6 (the service module's, due after the period).
    await h.incident(5, at=JUNE + 19 * D, team="market", status="merged", merged_into=6)
    await h.incident(6, at=JUNE + 19 * D, module="service", team="court", resolve_within=15 * D, rule_id="r-wage")
    # 7: in triage, no owner: received, not accepted.
    await h.incident(7, at=JUNE + 20 * D, module="command-room", queue="triage", rule_id=None)
    # 8: the labour team sent it back (回退): it counts against the rule r-wage, not the team.
    await h.incident(
        8, at=JUNE + 14 * D, module="service", team="labour", team_state="returned", status="reported", rule_id="r-wage"
    )
    await h.event(8, "AssignmentReturned", JUNE + 14 * D + H, team="labour", rule_id="r-wage", reason="not ours")
    # 9: reported in May, closed in June, due in May: closed in June, but not due in June.
    await h.incident(9, at=JUNE - 3 * D, team="traffic", closed_after=4 * D)


def figures(units: list[UnitFigures]) -> dict[str | None, tuple[int, ...]]:
    """unit → (received, accepted, due, closed, due_closed, on_time, overdue_open)."""
    return {u.unit: (u.received, u.accepted, u.due, u.closed, u.due_closed, u.on_time, u.overdue_open) for u in units}


async def test_per_team(store: SqlIncidentStore, history: History) -> None:
    await june_history(history)
    briefing = await store.briefing(start=JUNE, end=JULY, by=Unit.TEAM)
    assert figures(briefing.units) == {
        "traffic": (2, 2, 2, 3, 2, 1, 0),
        "market": (1, 1, 1, 0, 0, 0, 1),
        "court": (1, 1, 0, 0, 0, 0, 0),
        None: (2, 1, 0, 0, 0, 0, 0),  # 7 in triage, 8 handed back: neither has a lead now
    }
    traffic = next(u for u in briefing.units if u.unit == "traffic")
    assert traffic.close_rate == 1.0 and traffic.on_time_rate == 0.5
    assert [(r.rule_id, r.returns) for r in briefing.returns] == [("r-wage", 1)]


async def test_per_module_and_township(store: SqlIncidentStore, history: History) -> None:
    await june_history(history)
    by_module = await store.briefing(start=JUNE, end=JULY, by=Unit.MODULE)
    assert figures(by_module.units) == {
        "command-room": (1, 0, 0, 0, 0, 0, 0),
        "enforcement": (3, 3, 3, 3, 2, 1, 1),
        "service": (2, 2, 0, 0, 0, 0, 0),
    }
    enforcement = next(u for u in by_module.units if u.unit == "enforcement")
    assert enforcement.close_rate == pytest.approx(2 / 3)
    assert enforcement.on_time_rate == pytest.approx(1 / 3)
    township = await store.briefing(start=JUNE, end=JULY, by=Unit.TOWNSHIP)
    assert figures(township.units) == {"township": (6, 5, 3, 3, 2, 1, 1)}


async def test_per_officer_and_zone(store: SqlIncidentStore, history: History) -> None:
    await june_history(history)
    by_officer = figures((await store.briefing(start=JUNE, end=JULY, by=Unit.OFFICER)).units)
    assert by_officer["tp-01"] == (1, 1, 1, 1, 1, 1, 0)
    assert by_officer["tp-02"] == (1, 1, 1, 1, 1, 0, 0)
    by_zone = figures((await store.briefing(start=JUNE, end=JULY, by=Unit.ZONE)).units)
    assert by_zone["north-road"] == (1, 1, 1, 0, 0, 0, 1)


async def test_a_period_that_ends_earlier_sees_the_late_close_as_open(
    store: SqlIncidentStore, history: History
) -> None:
    await june_history(history)
    # Up to 7 June 00:00: incident 2 (due 6 June 00:00) is not closed yet; incident 1 is on time.
    first_week = await store.briefing(start=JUNE, end=JUNE + 6 * D, by=Unit.TEAM)
    assert figures(first_week.units)["traffic"] == (2, 2, 2, 2, 1, 1, 1)


async def test_stage_medians_and_p90(store: SqlIncidentStore, history: History) -> None:
    for n, ack_s in enumerate((50, 10, 40, 20, 30), start=1):
        await history.incident(
            n,
            at=JUNE + n * H,
            team="quick",
            moves=(
                ("acknowledged", timedelta(seconds=ack_s)),
                ("en_route", timedelta(seconds=ack_s + 5)),
                ("resolved", timedelta(minutes=10 * n)),
            ),
        )
    quick = (await store.briefing(start=JUNE, end=JULY, by=Unit.TEAM)).units[0]
    # Nearest rank: the median of five is the 3rd, the p90 the 5th (ceil(0.9 × 5)).
    assert quick.stages[Stage.ACK] == StageTimes(count=5, median_s=30.0, p90_s=50.0)
    assert quick.stages[Stage.RESOLVE] == StageTimes(count=5, median_s=1800.0, p90_s=3000.0)
    assert Stage.ARRIVE not in quick.stages  # none went on scene


def _nearest(durations: list[float]) -> StageTimes:
    ordered = sorted(durations)
    n = len(ordered)
    return StageTimes(count=n, median_s=ordered[-(-n // 2) - 1], p90_s=ordered[-(-9 * n // 10) - 1])


async def test_stage_times_of_many_units_match_the_nearest_ranks(store: SqlIncidentStore, history: History) -> None:
    # Names whose order differs by case, accent and script (SQLite ranks each unit's durations in one table
    # ordered by unit, its position found from the counts of the units before it), incidents with no
    # officer (the row without a unit), unmeasured stages and stages that end after the period, and an
    # older incident due in the period (read, not measured).
    teams = ("Roads", "parks", "ärzte", "消防", "Zoo", "a")
    officers = ("tp-1", "TP-2", "é-3", None)
    modules = ("works", "Works", "服务")
    expected: dict[Unit, dict[str | None, dict[Stage, list[float]]]] = {kind: {} for kind in Unit}
    end = JULY
    for n in range(1, 121):
        team, officer, module = teams[n % 6], officers[n % 4], modules[n % 3]
        ack, arrive = (n * 37) % 611 + 1, (n * 53) % 907 + 700
        resolve = ((n * 71) % 97 + 1) * 3600
        at = JUNE + (n * 5) * H
        moves: tuple[tuple[str, timedelta], ...] = (("acknowledged", timedelta(seconds=ack)),) if n % 7 else ()
        if n % 5:
            moves += (("on_scene", timedelta(seconds=arrive)),)
        moves += (("resolved", timedelta(seconds=resolve)),)
        await history.incident(
            n, at=at, team=team, officer=officer, module=module, zone=teams[n % 4], resolve_within=2 * D, moves=moves
        )
        units = {Unit.TEAM: team, Unit.OFFICER: officer, Unit.MODULE: module, Unit.ZONE: teams[n % 4]}
        units[Unit.TOWNSHIP] = "township"
        # any first move ends the acknowledgement (see ``_ENDS``); only going on scene ends the way there
        ends: dict[Stage, float | None] = {Stage.ACK: min(m.total_seconds() for _, m in moves)}
        ends |= {Stage.ARRIVE: arrive if n % 5 else None, Stage.RESOLVE: resolve}
        for stage, seconds in ends.items():
            if seconds is not None and at + timedelta(seconds=seconds) < end:
                for kind, unit in units.items():
                    expected[kind].setdefault(unit, {}).setdefault(stage, []).append(float(seconds))
    await history.incident(
        500, at=JUNE - 2 * D, team="Roads", officer=None, resolve_within=5 * D, moves=(("resolved", H),)
    )
    together = await compute_many(history.engine, start=JUNE, end=end, by=list(Unit))
    for kind in Unit:
        computed = await compute(history.engine, start=JUNE, end=end, by=kind)
        assert together[kind] == computed, kind
        got = {u.unit: u.stages for u in computed.units if u.stages}
        want = {unit: {stage: _nearest(d) for stage, d in stages.items()} for unit, stages in expected[kind].items()}
        assert got == want, kind


async def test_the_temporary_tables_do_not_outlive_the_computation(history: History) -> None:
    # SQLite ranks the stage times through temporary tables of the read connection: its rollback when the
    # connection goes back to the pool removes them (on PostgreSQL there are none).
    await june_history(history)
    engine = history.engine
    used: list[Any] = []
    sa.event.listen(engine.sync_engine, "checkout", lambda dbapi, record, proxy: used.append(dbapi))
    await compute_many(engine, start=JUNE, end=JULY, by=list(Unit))
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert raw.dbapi_connection is used[0]  # the same connection the figures were read on
        if engine.dialect.name == "sqlite":
            left = (await conn.exec_driver_sql("SELECT name FROM sqlite_temp_master")).scalars().all()
            assert left == []


_NAMES = ("received", "accepted", "due", "closed", "due_closed", "on_time", "overdue_open", "extended", "reworked")


async def _read_everything(
    engine: AsyncEngine, *, start: datetime, end: datetime, by: Unit
) -> dict[str | None, tuple[int, ...]]:
    """The figures as they were computed before revision 0018: from every incident reported before the
    period's end (one row per unit any of them has, zeros included)."""
    sql = _FIGURES.format(base=base_sql(_UNIT_COLUMN[by]), due=_DUE, closed=_CLOSED, stages="")
    async with engine.connect() as conn:
        rows = (await conn.execute(_bound(sql), {"start": start, "end": end})).all()
    return {
        r.unit if by is not Unit.TOWNSHIP else "township": tuple(int(getattr(r, name) or 0) for name in _NAMES)
        for r in rows
    }


async def _behind_from_everything(
    engine: AsyncEngine, *, start: datetime, end: datetime, by: Unit, unit: str | None, figure: Figure
) -> list[tuple[int, str | None]]:
    """The incidents behind a figure as they were listed before they were read by period: from every
    incident reported before the period's end."""
    which = "1 = 1" if by is Unit.TOWNSHIP else "unit IS NULL" if unit is None else "unit = :unit"
    sql = (
        f"WITH b AS ({base_sql(_UNIT_COLUMN[by])}) SELECT id, unit FROM b "
        f"WHERE {which} AND {_BEHIND[figure]} ORDER BY reported_at, id"
    )
    params: dict[str, Any] = {"start": start, "end": end} | ({"unit": unit} if "unit = :unit" in which else {})
    async with engine.connect() as conn:
        return [(int(r.id), r.unit) for r in (await conn.execute(_bound(sql), params)).all()]


async def test_a_period_reads_its_own_incidents_and_keeps_the_older_units(
    store: SqlIncidentStore, history: History
) -> None:
    await june_history(history)
    # 10: reported in May by the parks team, due in July and closed in August: due in July, from May.
    await history.incident(
        10,
        at=JUNE - 5 * D,
        module="works",
        team="parks",
        officer="pk-01",
        resolve_within=40 * D,
        closed_after=70 * D,
        zone="old-town",
    )
    # 11: reported and closed in May by the roads team in the hills, with no zone: nothing after May, but
    # the team, its officer, its module and the row without a zone stay (all zeros) in any later period.
    await history.incident(
        11, at=JUNE - 20 * D, module="roads", team="roads", officer="rd-01", closed_after=D, zone=None
    )
    # 12: a drill in May of a team seen nowhere else: no row for it, ever.
    await history.incident(12, at=JUNE - 10 * D, module="drills", team="drill-team", exercise=True, zone="range")
    engine = history.engine
    july_team = {u.unit: u for u in (await compute(engine, start=JULY, end=JULY + 31 * D, by=Unit.TEAM)).units}
    assert (july_team["parks"].received, july_team["parks"].due, july_team["parks"].overdue_open) == (0, 1, 1)
    assert july_team["roads"].received == july_team["roads"].due == july_team["roads"].closed == 0
    assert "drill-team" not in july_team
    periods = [
        (JULY, JULY + 31 * D),  # after everything was reported
        (JUNE + 15 * D, JULY + 15 * D),  # across a month's end
        (JUNE - 30 * D, JUNE + 90 * D),  # from before the first report: nothing before it
        (JUNE, JULY),
        (JUNE - 6 * D, JUNE - 5 * D),  # one day: incident 10's
    ]
    for start, end in periods:
        together = await compute_many(engine, start=start, end=end, by=list(Unit))
        for by in Unit:
            computed = await compute(engine, start=start, end=end, by=by)
            assert together[by] == computed, (start, end, by)  # one read for all kinds: the same figures
            assert {
                u.unit: (
                    u.received,
                    u.accepted,
                    u.due,
                    u.closed,
                    u.due_closed,
                    u.on_time,
                    u.overdue_open,
                    u.extended,
                    u.reworked,
                )
                for u in computed.units
            } == await _read_everything(engine, start=start, end=end, by=by), (start, end, by)
            for u in computed.units:
                for figure in Figure:
                    listed = await incidents_behind(engine, start=start, end=end, by=by, unit=u.unit, figure=figure)
                    assert [(line.incident_id, line.unit) for line in listed] == await _behind_from_everything(
                        engine, start=start, end=end, by=by, unit=u.unit, figure=figure
                    ), (
                        start,
                        end,
                        by,
                        u.unit,
                        figure,
                    )


def _migration_0015() -> Any:
    path = Path(__file__).resolve().parent.parent / "dispatcher/migrations/versions/0015_stage_ends.py"
    spec = importlib.util.spec_from_file_location("migration_0015", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_END_COLUMNS = sa.text(
    "SELECT a.incident_id, a.team, a.acked_at, a.arrived_at, a.resolved_at, i.closed_at "
    "FROM assignment a JOIN incident i ON i.id = a.incident_id ORDER BY a.incident_id, a.team"
).columns(
    sa.column("incident_id"),
    sa.column("team"),
    *(sa.column(name, UtcDateTime()) for name in ("acked_at", "arrived_at", "resolved_at", "closed_at")),
)
_FORGET = (
    "UPDATE incident SET closed_at = NULL",
    "UPDATE assignment SET acked_at = NULL, arrived_at = NULL, resolved_at = NULL",
)


async def _refill_from_the_log(engine: AsyncEngine) -> None:
    """Forget the four columns and fill them again as revision 0015 does for a history written before it."""
    async with engine.begin() as conn:
        for statement in _FORGET:
            await conn.execute(sa.text(statement))
        await conn.run_sync(_migration_0015().fill)


async def test_the_migration_fills_the_columns_the_figures_read_from_the_log(
    store: SqlIncidentStore, history: History
) -> None:
    await june_history(history)
    async with history.engine.connect() as conn:
        written = (await conn.execute(_END_COLUMNS)).all()
    before = {by: await store.briefing(start=JUNE, end=JULY, by=by) for by in Unit}
    await _refill_from_the_log(history.engine)
    async with history.engine.connect() as conn:
        assert (await conn.execute(_END_COLUMNS)).all() == written
    assert {by: await store.briefing(start=JUNE, end=JULY, by=by) for by in Unit} == before
    assert sum(1 for row in written if row.acked_at is not None) == 2  # incidents 1 and 2 moved


async def test_the_writer_keeps_the_first_stage_ends_and_close(rig: HubRig) -> None:
    report = Report(report_id="r-ends", category="traffic.congestion", description="jam", zone="five-way")
    incident = (await rig.hub.report(report, rig.clock.now())).incident
    dispatched = rig.clock.now()
    steps = [(UnitAction.ACKNOWLEDGE, 40), (UnitAction.DEPART, 20), (UnitAction.ARRIVE, 300), (UnitAction.RESOLVE, 600)]
    for action, after_s in steps:
        await rig.advance(timedelta(seconds=after_s))
        await rig.hub.move_unit(incident.id, "traffic-police", action, rig.clock.now())
    await rig.advance(timedelta(seconds=60))
    await rig.hub.finish(incident.id, IncidentAction.CLOSE, rig.clock.now())
    hub = await rig.restart()  # read back from the rows
    lead = (await hub.store.get(incident.id)).assignment("traffic-police")  # type: ignore[union-attr]
    assert (lead.acked_at, lead.arrived_at, lead.resolved_at) == (
        dispatched + timedelta(seconds=40),
        dispatched + timedelta(seconds=360),
        dispatched + timedelta(seconds=960),
    )
    engine = build_engine(rig.url, durable=False)
    try:
        async with engine.connect() as conn:
            written = (await conn.execute(_END_COLUMNS)).all()
        assert {row.closed_at for row in written} == {dispatched + timedelta(seconds=1020)}
        await _refill_from_the_log(engine)  # the migration reads the same times from the events
        async with engine.connect() as conn:
            assert (await conn.execute(_END_COLUMNS)).all() == written
        figures = await compute(engine, start=dispatched, end=dispatched + D, by=Unit.TEAM)
    finally:
        await engine.dispose()
    traffic = next(u for u in figures.units if u.unit == "traffic-police")
    assert traffic.stages[Stage.ARRIVE] == StageTimes(count=1, median_s=360.0, p90_s=360.0)
    assert (traffic.received, traffic.closed) == (1, 1)


async def test_an_empty_period_is_refused(store: SqlIncidentStore) -> None:
    with pytest.raises(ValueError):
        await store.briefing(start=JULY, end=JUNE, by=Unit.TEAM)


def test_the_command_prints_a_table(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dispatcher.db'}"

    async def fill() -> None:
        store = SqlIncidentStore(url, durable=False)
        await store.open()
        await store.close()
        engine = build_engine(url, durable=False)
        try:
            await june_history(History(engine))
        finally:
            await engine.dispose()

    asyncio.run(fill())
    args = ["briefing", "--from", "2026-06-01", "--to", "2026-07-01", "--by", "module", "--database-url", url]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split()[:8] == ["unit", "受理", "立案", "应结案", "结案", "结案率", "按期结案率", "逾期未结"]
    assert lines[3].split()[:8] == ["enforcement", "3", "3", "3", "3", "66.7%", "33.3%", "1"]
    assert lines[-1] == "回退 by rule: r-wage 1"
    wrong = CliRunner().invoke(app, ["briefing", "--from", "2026-06-01", "--to", "2026-07-01", "--by", "planet"])
    assert wrong.exit_code != 0
