"""The briefing's figures (简报) per unit for a period, computed by SQL over the stored tables.

Read-only: nothing here writes to the stored tables (on SQLite the figures go through temporary tables of
the reading connection, gone with its transaction). Every figure is computed by SQL on the engine's pool
(SQLite or PostgreSQL); no incident is loaded into Python. The definitions are written out in docs/reports.md
and repeated, briefly, at the column that computes each.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from itertools import pairwise
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dispatcher.tables import UtcDateTime


class Unit(StrEnum):
    """What the figures are grouped by, one at a time."""

    TOWNSHIP = "township"  # the whole database: one township per dispatcher database
    MODULE = "module"
    TEAM = "team"  # the current lead team
    OFFICER = "officer"  # the officer (post) holding the lead assignment
    ZONE = "zone"


class Stage(StrEnum):
    ACK = "ack"
    ARRIVE = "arrive"
    RESOLVE = "resolve"


@dataclass(frozen=True, slots=True, kw_only=True)
class StageTimes:
    """Nearest-rank median and p90 of one stage's durations (seconds) over ``count`` measurements."""

    count: int
    median_s: float | None
    p90_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitFigures:
    """One unit's row of the briefing. ``unit`` is None for incidents that have no such unit (no lead
    team, no officer, no zone)."""

    unit: str | None
    received: int  # 受理
    accepted: int  # 立案
    due: int  # 应结案
    closed: int  # 结案
    due_closed: int  # of the due ones, closed before the period's end
    on_time: int  # of the due ones, closed by their resolve deadline
    overdue_open: int  # of the due ones, still open at the period's end
    stages: dict[Stage, StageTimes]
    extended: int = 0  # of the due ones, those with an extension (延期) approved
    reworked: int = 0  # of the closed ones, those sent back at least once by a failed verification (返工)

    @property
    def close_rate(self) -> float | None:
        """结案率: due_closed / due (None when nothing was due)."""
        return self.due_closed / self.due if self.due else None

    @property
    def on_time_rate(self) -> float | None:
        """按期结案率: on_time / due (None when nothing was due)."""
        return self.on_time / self.due if self.due else None

    @property
    def extension_rate(self) -> float | None:
        """延期率: extended / due (None when nothing was due)."""
        return self.extended / self.due if self.due else None

    @property
    def rework_rate(self) -> float | None:
        """返工率: reworked / closed (None when nothing was closed)."""
        return self.reworked / self.closed if self.closed else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleReturns:
    """回退 in the period counted against the rule that routed the incident."""

    rule_id: str | None
    returns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Briefing:
    start: datetime
    end: datetime
    by: Unit
    units: list[UnitFigures]
    returns: list[RuleReturns]


_UNIT_COLUMN = {
    Unit.TOWNSHIP: "NULL",
    Unit.MODULE: "i.module",
    Unit.TEAM: "a.team",
    Unit.OFFICER: "a.officer",
    Unit.ZONE: "i.zone",
}

# The incidents that count: no drill, and no incident merged into another (its reports count there, once).
# The lead is the current one: not a part handed back (回退) or given to another team (cancelled).
#
# Read from columns the writer keeps (revision 0015): ``closed_at``, the first close (结案), the lead
# team's first move ending each stage (``acked_at``, ``arrived_at``, ``resolved_at``), as the event log has
# them, and how many extensions were approved and verifications failed. ``had_lead`` is looked up only
# for incidents received in the period that have no current lead (``CASE`` evaluates lazily on both
# backends). ``{durations}``: the stage durations, on PostgreSQL only (see ``_STAGE_DURATIONS``).
_BASE = """
SELECT i.id AS id, {unit} AS unit, i.reported_at AS reported_at, i.status AS status,
       i.handover AS handover, a.team AS team, a.dispatched_at AS dispatched_at,
       a.resolve_due_at AS due_at,
       CASE WHEN a.team IS NOT NULL THEN 1
            WHEN i.reported_at < :start THEN 0
            WHEN EXISTS (SELECT 1 FROM assignment x WHERE x.incident_id = i.id AND x.role = 'lead') THEN 1
            ELSE 0 END AS had_lead,
       i.closed_at AS closed_at, i.extensions AS extensions, i.reworks AS reworks{durations}
FROM incident i
LEFT JOIN assignment a
  ON a.incident_id = i.id AND a.role = 'lead' AND a.state NOT IN ('returned', 'cancelled')
WHERE NOT i.exercise AND i.merged_into IS NULL AND i.status <> 'merged'
  AND (i.reported_at < :end)
"""

# A period's figures, read by index (revision 0018) rather than from every incident reported before its
# end. An incident reported before the period counts in none of its figures unless its lead's resolve
# deadline or its close falls in the period; every other one adds only zeros. So the base is the incidents
# reported in the period (by ``ix_incident_reported_at``), then those reported before it whose lead (any
# lead: a superset, the figures test the current one) is due in it (``ix_assignment_lead_due``) or that were
# closed in it (``ix_incident_closed_at``). The units of the rest still have a row (all zeros), as when
# every incident was read: ``_UNITS_BEFORE`` lists them.
_PERIOD_BASE = """
{reported}
UNION ALL
{before}
"""
_BEFORE = """
  AND i.reported_at < :start
  AND i.id IN (SELECT x.incident_id FROM assignment x
               WHERE x.role = 'lead' AND x.resolve_due_at >= :start AND x.resolve_due_at < :end
               UNION
               SELECT y.id FROM incident y
               WHERE y.closed_at IS NOT NULL AND y.closed_at >= :start AND y.closed_at < :end)"""
# The units that had a counted incident reported before ``:start``, without reading those incidents: each
# value of the unit's column is found by its index, one step at a time (``MIN(col) WHERE col > the last``),
# then kept when one such incident has it (the search stops at the first found: a unit active before the
# period is usually found at once; one whose rows are all drills or merged is read through). NULL (the row
# without a unit) is kept when one such incident has none. Each search is a scalar subquery with
# ``LIMIT 1`` rather than ``EXISTS``: PostgreSQL turned the ``EXISTS`` into a semi-join that read every
# incident before the period (374 ms for a month by team, against a few ms).
_UNIT_INDEXED = {  # the unit's column, and the condition of the (partial) index on it
    Unit.MODULE: ("incident", "module", ""),
    Unit.TEAM: ("assignment", "team", " AND role = 'lead'"),  # ix_assignment_lead_team: the leads only
    Unit.OFFICER: ("assignment", "officer", ""),
    Unit.ZONE: ("incident", "zone", ""),
}
_BEFORE_START = """
SELECT 1 FROM incident i{lead}
WHERE NOT i.exercise AND i.merged_into IS NULL AND i.status <> 'merged' AND i.reported_at < :start AND {which}"""
_ANY_BEFORE = sa.text("SELECT 1 FROM incident WHERE reported_at < :start LIMIT 1").bindparams(
    sa.bindparam("start", type_=UtcDateTime())
)
_LEAD = """
LEFT JOIN assignment a
  ON a.incident_id = i.id AND a.role = 'lead' AND a.state NOT IN ('returned', 'cancelled')"""
# An incident without a team or officer: no current lead, or (officer) a current lead with no officer (found
# by the index on the officer, which holds the NULLs). Said without the join, which PostgreSQL planned as a
# hash join of every lead to find the first such incident (100 ms for a month).
_CURRENT_LEAD = (
    "SELECT 1 FROM assignment x"
    " WHERE x.incident_id = i.id AND x.role = 'lead' AND x.state NOT IN ('returned', 'cancelled')"
)
_LEAD_WITHOUT_OFFICER = """
SELECT 1 FROM assignment a
JOIN incident i ON i.id = a.incident_id
WHERE a.officer IS NULL AND a.role = 'lead' AND a.state NOT IN ('returned', 'cancelled')
  AND NOT i.exercise AND i.merged_into IS NULL AND i.status <> 'merged' AND i.reported_at < :start"""
_UNITS_BEFORE = """
WITH RECURSIVE v(unit) AS (
  SELECT MIN({column}) FROM {table} WHERE {column} IS NOT NULL{only}
  UNION ALL
  SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > v.unit{only}) FROM v WHERE v.unit IS NOT NULL
)
SELECT unit FROM v WHERE unit IS NOT NULL AND ({has_value} LIMIT 1) IS NOT NULL
UNION ALL
SELECT NULL AS unit WHERE {has_none}
"""


def units_before_sql(by: Unit) -> str:
    """The query listing the units of kind ``by`` with a counted incident reported before ``:start``."""
    if by is Unit.TOWNSHIP:
        return f"SELECT NULL AS unit WHERE ({_BEFORE_START.format(lead='', which='1 = 1')} LIMIT 1) IS NOT NULL"
    table, column, only = _UNIT_INDEXED[by]
    unit = _UNIT_COLUMN[by]
    lead = _LEAD if table == "assignment" else ""
    if by is Unit.TEAM:
        nones = [_BEFORE_START.format(lead="", which=f"NOT EXISTS ({_CURRENT_LEAD})")]
    elif by is Unit.OFFICER:
        nones = [_BEFORE_START.format(lead="", which=f"NOT EXISTS ({_CURRENT_LEAD})"), _LEAD_WITHOUT_OFFICER]
    else:  # by the column's index (left to itself, SQLite read the incidents before the period instead)
        nones = [_BEFORE_START.format(lead="", which=f"i.id IN (SELECT z.id FROM incident z WHERE z.{column} IS NULL)")]
    return _UNITS_BEFORE.format(
        table=table,
        column=column,
        only=only,
        has_value=_BEFORE_START.format(lead=lead, which=f"{unit} = v.unit"),
        has_none=" OR ".join(f"({q} LIMIT 1) IS NOT NULL" for q in nones),
    )


_AGGREGATES = """
  SUM(CASE WHEN reported_at >= :start THEN 1 ELSE 0 END) AS received,
  SUM(CASE WHEN reported_at >= :start AND had_lead = 1 AND handover IS NULL THEN 1 ELSE 0 END) AS accepted,
  SUM(CASE WHEN {due} THEN 1 ELSE 0 END) AS due,
  SUM(CASE WHEN {closed} THEN 1 ELSE 0 END) AS closed,
  SUM(CASE WHEN {due} AND closed_at < :end THEN 1 ELSE 0 END) AS due_closed,
  SUM(CASE WHEN {due} AND closed_at <= due_at THEN 1 ELSE 0 END) AS on_time,
  SUM(CASE WHEN {due} AND (closed_at IS NULL OR closed_at >= :end) THEN 1 ELSE 0 END) AS overdue_open,
  SUM(CASE WHEN {due} AND extensions > 0 THEN 1 ELSE 0 END) AS extended,
  SUM(CASE WHEN {closed} AND reworks > 0 THEN 1 ELSE 0 END) AS reworked{stages}"""
_FIGURES = (
    """
WITH b AS ({base})
SELECT unit,"""
    + _AGGREGATES
    + """
FROM b
GROUP BY unit
"""
)
_DUE = "(due_at >= :start AND due_at < :end AND status NOT IN ('cancelled', 'parked'))"
_CLOSED = "(closed_at >= :start AND closed_at < :end)"

# Stage times of the incidents received in the period: the lead team's first end of each stage before the
# period's end, less its dispatch; per unit, for each stage, how many were measured and the nearest-rank
# median and p90 (the first duration whose rank reaches half the count, 0.9 of it). One row per unit,
# the three stages side by side: ``{stage}_n``, ``{stage}_median``, ``{stage}_p90``.
#
# PostgreSQL computes them in the figures' own pass over the incidents: the durations are columns of the
# base (NULL where not measured), and ``percentile_disc`` (the same nearest rank: "the first value whose
# position in the ordering equals or exceeds the fraction") ignores NULLs; one sort per unit and stage,
# both fractions from it.
_STAGE_DURATIONS = """,
       CASE WHEN i.reported_at >= :start AND a.acked_at < :end
            THEN EXTRACT(EPOCH FROM (a.acked_at - a.dispatched_at))::float8 END AS ack_s,
       CASE WHEN i.reported_at >= :start AND a.arrived_at < :end
            THEN EXTRACT(EPOCH FROM (a.arrived_at - a.dispatched_at))::float8 END AS arrive_s,
       CASE WHEN i.reported_at >= :start AND a.resolved_at < :end
            THEN EXTRACT(EPOCH FROM (a.resolved_at - a.dispatched_at))::float8 END AS resolve_s"""
_STAGE_PERCENTILES = "".join(
    f""",
  COUNT({s}_s) AS {s}_n, percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY {s}_s) AS {s}_p"""
    for s in ("ack", "arrive", "resolve")
)


# SQLite has no percentile function, and a window function over a year's durations cost more than sorting
# them (``ROW_NUMBER`` buffers every row of its partition in a table of its own: ~50 ms of a year's ~70 ms
# per stage, measured alone). So SQLite computes a period's figures in a temporary table, all within one
# read transaction (one snapshot):
#
# 1. ``_SQLITE_ROWS``: the period's incidents (``_PERIOD_BASE``'s two parts) joined to their current lead
#    once, one narrow row each: the unit column(s), whether received (``r``) and accepted (``acc``), the
#    figures of the due ones as bits of ``df`` (1 due, 2 closed before the end, 4 on time, 8 still open at
#    the end, 16 extended), of the closed ones as bits of ``cf`` (1 closed, 2 reworked), and each stage's
#    duration in whole milliseconds where measured (received in the period, the stage ended before its
#    end; NULL otherwise). Each condition is evaluated once a row, not once per figure that uses it.
# 2. ``_SQLITE_FIGURES``: each kind's figures grouped from that table, with each unit's measured count per
#    stage (``COUNT({stage}_ms)``), so the nearest ranks are known before anything is sorted.
# 3. ``_SQLITE_SORTED``: for each kind and stage, the measured durations inserted into a second temporary
#    table in order of (unit, duration). Rows are numbered as they are inserted, so a duration's ``rowid``
#    is its position: the rows before its unit's (the counts of the units that sort before it: SQLite's
#    ``BINARY`` order of UTF-8 text is Python's order of ``str``; NULL first) plus its rank in its unit.
#    The rows at the wanted positions are then read by ``rowid``.
#
# Each duration is whole milliseconds, as ``julianday`` keeps them (``ROUND`` to an integer takes SQLite's
# fast path; to three decimals it formats and parses text): seconds are ``ms / 1000``, the value
# ``ROUND(…, 3)`` gave. The temporary tables live in the connection's own temporary database, which no
# other connection sees; they are created inside the read transaction, so its rollback when the connection
# goes back to the pool removes them (dropping them first cost ~10 ms more a year); any left over from a
# transaction that was committed instead is dropped before they are created.
_SQLITE_MEASURED = "".join(
    f""",
       CASE WHEN a.{at} < :end
            THEN CAST(ROUND((julianday(a.{at}) - julianday(a.dispatched_at)) * 86400000.0) AS INTEGER) END
         AS {stage}_ms"""
    for stage, at in (("ack", "acked_at"), ("arrive", "arrived_at"), ("resolve", "resolved_at"))
)
_SQLITE_NOT_MEASURED = ", NULL AS ack_ms, NULL AS arrive_ms, NULL AS resolve_ms"
# accepted (立案), of the period's own reports: a lead now or at some time (``had_lead``), no handover
_SQLITE_ACCEPTED = """CASE WHEN i.handover IS NOT NULL THEN 0 WHEN a.team IS NOT NULL THEN 1
            WHEN EXISTS (SELECT 1 FROM assignment x WHERE x.incident_id = i.id AND x.role = 'lead') THEN 1
            ELSE 0 END"""
_SQLITE_ROWS = """
SELECT {units}{received} AS r, {accepted} AS acc,
       CASE WHEN a.resolve_due_at >= :start AND a.resolve_due_at < :end AND i.status NOT IN ('cancelled', 'parked')
            THEN 1 + (CASE WHEN i.closed_at < :end THEN 2 ELSE 0 END)
                   + (CASE WHEN i.closed_at <= a.resolve_due_at THEN 4 ELSE 0 END)
                   + (CASE WHEN i.closed_at IS NULL OR i.closed_at >= :end THEN 8 ELSE 0 END)
                   + (CASE WHEN i.extensions > 0 THEN 16 ELSE 0 END)
            ELSE 0 END AS df,
       CASE WHEN i.closed_at >= :start AND i.closed_at < :end
            THEN 1 + (CASE WHEN i.reworks > 0 THEN 2 ELSE 0 END) ELSE 0 END AS cf{durations}
FROM incident i
LEFT JOIN assignment a
  ON a.incident_id = i.id AND a.role = 'lead' AND a.state NOT IN ('returned', 'cancelled')
WHERE NOT i.exercise AND i.merged_into IS NULL AND i.status <> 'merged'
  AND i.reported_at < :end{which}"""
_SQLITE_FIGURES = """
SELECT {g} AS g, {column} AS unit, SUM(r) AS received, SUM(acc) AS accepted, SUM(df & 1) AS due,
       SUM(cf & 1) AS closed, SUM((df >> 1) & 1) AS due_closed, SUM((df >> 2) & 1) AS on_time,
       SUM((df >> 3) & 1) AS overdue_open, SUM((df >> 4) & 1) AS extended, SUM((cf >> 1) & 1) AS reworked,
       COUNT(ack_ms) AS ack_n, COUNT(arrive_ms) AS arrive_n, COUNT(resolve_ms) AS resolve_n
FROM temp.briefing_rows
GROUP BY {column}"""
_SQLITE_SORTED = """
INSERT INTO temp.briefing_sorted (ms)
SELECT {stage}_ms FROM temp.briefing_rows WHERE {stage}_ms IS NOT NULL ORDER BY {order}{stage}_ms"""
_SQLITE_AT = sa.text(
    "SELECT rowid, ms FROM temp.briefing_sorted WHERE rowid IN (SELECT value FROM json_each(:positions))"
)
_SQLITE_DROP = ("DROP TABLE IF EXISTS temp.briefing_rows", "DROP TABLE IF EXISTS temp.briefing_sorted")

# The monthly trend's stage times are ranked the same way, the month (``rb``) as the unit (``_SQLITE_TREND_ROWS``);
# ``{stage}_m`` flags counted by the trend's figures give each month's measured counts.
_SQLITE_STAGE_COUNTS = ", SUM(ack_m) AS ack_n, SUM(arrive_m) AS arrive_n, SUM(resolve_m) AS resolve_n"


def _nearest_ranks(n: int) -> tuple[int, int]:
    """The nearest ranks of the median and the p90 among ``n``: ⌈0.5·n⌉ and ⌈0.9·n⌉ (PostgreSQL's
    ``percentile_disc``: the first value whose position reaches the fraction)."""
    return math.ceil(0.5 * n), math.ceil(0.9 * n)


# The period's return events by the partial index ``ix_event_returned_at`` (revision 0017), then each one's
# incident by its key. ``{fence}`` is ``OFFSET 0`` on PostgreSQL: without it the planner hashed every
# incident for the few thousand returns of a year (67 ms against 26 ms on the township-year).
_RETURNS = """
SELECT i.rule_id AS rule_id, COUNT(*) AS returns
FROM (SELECT incident_id FROM event
      WHERE type = 'AssignmentReturned' AND at >= :start AND at < :end {fence}) e
JOIN incident i ON i.id = e.incident_id
WHERE NOT i.exercise
GROUP BY i.rule_id
"""


def base_sql(unit: str, *, durations: str = "") -> str:
    """The incidents that count with their current lead, ``unit`` as the unit column (see ``_BASE``)."""
    return _BASE.format(unit=unit, durations=durations)


def period_base_sql(unit: str, *, durations: str = "", before: bool = True) -> str:
    """As :func:`base_sql` for the figures of ``[:start, :end)``, reading only the incidents that can add to
    them (see ``_PERIOD_BASE``): the units of the others come from ``_UNITS_BEFORE``. ``before=False``: no
    counted incident was reported before ``:start``, only the period's own are read."""
    reported = base_sql(unit, durations=durations) + "  AND i.reported_at >= :start"
    if not before:
        return reported
    return _PERIOD_BASE.format(reported=reported, before=base_sql(unit, durations=durations) + _BEFORE)


def _bound(sql: str) -> sa.TextClause:
    return sa.text(sql).bindparams(sa.bindparam("start", type_=UtcDateTime()), sa.bindparam("end", type_=UtcDateTime()))


async def compute(engine: AsyncEngine, *, start: datetime, end: datetime, by: Unit) -> Briefing:
    """The figures of every unit of kind ``by`` for the period ``[start, end)``.

    Raises ``ValueError`` when the period is empty or its times are naive. Runs its queries on one
    connection of the engine's pool (on SQLite in one read transaction, through temporary tables of that
    connection: see ``_SQLITE_ROWS``); safe beside the writer (it reads committed rows only).
    """
    return (await compute_many(engine, start=start, end=end, by=(by,)))[by]


# Several kinds of unit at once (the briefing document's five): one base with a column per kind (``u0``,
# ``u1``, …; the township needs none), read once. PostgreSQL groups it by ``GROUPING SETS`` (one set per
# kind, ``()`` for the township; ``GROUPING(u0, …)`` says which set a row is of: the bits of the columns
# not grouped, the first column the highest bit); SQLite writes it once into a temporary table, groups it
# once per kind and sorts each kind's stage times from it (``_SQLITE_ROWS``).
_FIGURES_BY_SET = (
    """
WITH b AS ({base})
SELECT GROUPING({columns}) AS g, {columns},"""
    + _AGGREGATES
    + """
FROM b
GROUP BY GROUPING SETS ({sets})
"""
)


async def compute_many(
    engine: AsyncEngine, *, start: datetime, end: datetime, by: Sequence[Unit]
) -> dict[Unit, Briefing]:
    """The figures of :func:`compute` for each kind of unit in ``by``, identical to one ``compute`` per
    kind, from one read of the period's incidents (see ``_FIGURES_BY_SET``)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("naive datetime refused: pass timezone-aware UTC times")
    if end <= start:
        raise ValueError("the period must end after it starts")
    kinds = list(dict.fromkeys(by))
    postgres = engine.dialect.name == "postgresql"
    params: dict[str, Any] = {"start": start, "end": end}
    # kind → its unit column in the base (``unit`` for one kind; ``u{k}``, or NULL for the township)
    named = [kind for kind in kinds if kind is not Unit.TOWNSHIP]
    if len(kinds) == 1:
        column = {kinds[0]: "unit"}
        extra = ""
    else:
        column = {kind: f"u{k}" for k, kind in enumerate(named)} | {Unit.TOWNSHIP: "NULL"}
        extra = "".join(f",\n       {_UNIT_COLUMN[kind]} AS {column[kind]}" for kind in named)
    unit_column = _UNIT_COLUMN[kinds[0]] if len(kinds) == 1 else "NULL"
    figure_rows: dict[Unit, list[Any]] = {kind: [] for kind in kinds}
    stage_rows: dict[Unit, list[tuple[Any, str, Any, Any, Any]]] = {kind: [] for kind in kinds}
    async with engine.connect() as conn:
        if postgres:
            # Queries over up to a year of rows: compiling them (JIT, chosen by the planner's cost estimate)
            # took longer than running them, and the percentiles' sorts spilled to disk at 4 MB.
            await conn.execute(sa.text("SET LOCAL jit = off"))
            await conn.execute(sa.text("SET LOCAL work_mem = '64MB'"))
        else:
            # One snapshot for every query: the stage times' ranks are taken from the figures' counts.
            await conn.exec_driver_sql("BEGIN")
        units_before: dict[Unit, Sequence[Any]] = {}
        # Nothing at all reported before the period (by the index on the report time): no unit can have a
        # counted incident before it. Each unit's search would otherwise read every lead of its units to
        # find none (131 ms of a township-year by team on SQLite).
        anything_before = (await conn.execute(_ANY_BEFORE, {"start": start})).first() is not None
        for kind in kinds if anything_before else ():
            units_sql = sa.text(units_before_sql(kind)).bindparams(sa.bindparam("start", type_=UtcDateTime()))
            units_before[kind] = (await conn.execute(units_sql, {"start": start})).scalars().all()
        before = any(units_before.values())  # none: nothing reported before the period can count in it
        if postgres and before:
            # The period's incidents and those before it due or closed in it are a part of the history: each
            # one's lead is found by its key. Left to its cost estimate, PostgreSQL hashed every lead of the
            # history and read every incident for them (a month by team: about 480 ms against 150 ms).
            await conn.execute(sa.text("SET LOCAL enable_hashjoin = off"))
            await conn.execute(sa.text("SET LOCAL enable_mergejoin = off"))
        if postgres:
            _postgres_figures(
                await _postgres_rows(conn, kinds, named, column, extra, unit_column, before, params),
                kinds,
                figure_rows,
                stage_rows,
            )
        else:
            await _sqlite_figures(conn, kinds, column, extra, before, params, figure_rows, stage_rows)
        returns_sql = _RETURNS.format(fence="OFFSET 0" if postgres else "")
        return_rows = (await conn.execute(_bound(returns_sql), params)).all()
    returns = sorted(
        (RuleReturns(rule_id=r.rule_id, returns=int(r.returns)) for r in return_rows),
        key=lambda r: (r.rule_id is None, r.rule_id or ""),
    )
    return {
        kind: _briefing(kind, start, end, figure_rows[kind], stage_rows[kind], units_before.get(kind, ()), returns)
        for kind in kinds
    }


async def _postgres_rows(
    conn: AsyncConnection,
    kinds: list[Unit],
    named: Sequence[Unit],
    column: dict[Unit, str],
    extra: str,
    unit_column: str,
    before: bool,
    params: dict[str, Any],
) -> dict[Unit, list[Any]]:
    """PostgreSQL: each kind's figure rows, the stage percentiles among their columns (one query)."""
    base = period_base_sql(unit_column, durations=extra + _STAGE_DURATIONS, before=before)
    aggregates = {"due": _DUE, "closed": _CLOSED, "stages": _STAGE_PERCENTILES}
    figure_rows: dict[Unit, list[Any]] = {kind: [] for kind in kinds}
    if len(kinds) == 1:
        sql = _FIGURES.format(base=base, **aggregates)
        figure_rows[kinds[0]] = list((await conn.execute(_bound(sql), params)).all())
        return figure_rows
    columns = ", ".join(column[kind] for kind in named)
    sets = ", ".join(f"({column[kind]})" if kind is not Unit.TOWNSHIP else "()" for kind in kinds)
    sql = _FIGURES_BY_SET.format(base=base, columns=columns, sets=sets, **aggregates)
    full = (1 << len(named)) - 1
    mask = {full & ~(1 << (len(named) - 1 - k)): kind for k, kind in enumerate(named)} | {full: Unit.TOWNSHIP}
    for r in (await conn.execute(_bound(sql), params)).all():
        kind = mask[int(r.g)]
        if kind in figure_rows:
            figure_rows[kind].append(_Tagged(r, getattr(r, column[kind]) if kind is not Unit.TOWNSHIP else None))
    return figure_rows


def _postgres_figures(
    rows: dict[Unit, list[Any]],
    kinds: list[Unit],
    figure_rows: dict[Unit, list[Any]],
    stage_rows: dict[Unit, list[tuple[Any, str, Any, Any, Any]]],
) -> None:
    """PostgreSQL: each kind's rows kept as its figure rows, their percentiles as its stage times."""
    for kind in kinds:
        figure_rows[kind] = rows[kind]
        for r in rows[kind]:
            for stage in Stage:
                n = getattr(r, f"{stage.value}_n")
                if n:
                    median_s, p90_s = getattr(r, f"{stage.value}_p")
                    stage_rows[kind].append((r.unit, stage.value, n, median_s, p90_s))


async def _sqlite_figures(
    conn: AsyncConnection,
    kinds: list[Unit],
    column: dict[Unit, str],
    extra: str,
    before: bool,
    params: dict[str, Any],
    figure_rows: dict[Unit, list[Any]],
    stage_rows: dict[Unit, list[tuple[Any, str, Any, Any, Any]]],
) -> None:
    """SQLite: each kind's figure rows and stage times (``(unit, stage, n, median_s, p90_s)``) through the
    temporary tables of ``_SQLITE_ROWS`` (see there); inside the caller's read transaction."""
    units = extra.lstrip(",") + ", " if extra else f"{_UNIT_COLUMN[kinds[0]]} AS unit, "
    parts = [
        _SQLITE_ROWS.format(
            units=units,
            received=1,
            accepted=_SQLITE_ACCEPTED,
            durations=_SQLITE_MEASURED,
            which="\n  AND i.reported_at >= :start",
        )
    ]
    if before:  # reported before the period, due or closed in it: neither received nor measured in it
        parts.append(
            _SQLITE_ROWS.format(units=units, received=0, accepted=0, durations=_SQLITE_NOT_MEASURED, which=_BEFORE)
        )
    for drop in _SQLITE_DROP:
        await conn.exec_driver_sql(drop)
    rows_sql = "CREATE TEMP TABLE briefing_rows AS" + "\nUNION ALL".join(parts)
    await conn.execute(_bound(rows_sql), params)
    figures_sql = "\nUNION ALL".join(_SQLITE_FIGURES.format(g=g, column=column[kind]) for g, kind in enumerate(kinds))
    for r in (await conn.exec_driver_sql(figures_sql)).all():
        figure_rows[kinds[int(r.g)]].append(r)
    blocks = []
    for kind in kinds:
        ordered = sorted(figure_rows[kind], key=lambda r: (r.unit is not None, r.unit or ""))
        blocks.append(("" if kind is Unit.TOWNSHIP else column[kind], [(r.unit, r) for r in ordered]))
    for g, unit, stage_name, n, median_s, p90_s in await _sqlite_ranks(conn, blocks):
        stage_rows[kinds[g]].append((unit, stage_name, n, median_s, p90_s))


async def _sqlite_ranks(
    conn: AsyncConnection, blocks: list[tuple[str, list[tuple[Any, Any]]]]
) -> list[tuple[int, Any, str, int, float, float]]:
    """SQLite: the nearest-rank median and p90 of each stage's durations in ``temp.briefing_rows``
    (``{stage}_ms``) per unit (see ``_SQLITE_SORTED``). Block ``g`` is the unit column (empty: one unit) and
    its units in that column's order, ``(unit, row)`` with ``row.{stage}_n`` the unit's measured count.
    Returns ``(g, unit, stage, n, median_s, p90_s)`` for every unit and stage measured at least once."""
    await conn.exec_driver_sql("CREATE TEMP TABLE briefing_sorted (ms INTEGER)")
    # (g, unit, stage, n, the positions of its median and p90) for every unit and stage measured
    wanted: list[tuple[int, Any, str, int, tuple[int, int]]] = []
    inserted = 0
    for g, (column, units) in enumerate(blocks):
        order = f"{column}, " if column else ""
        for stage in Stage:
            counts = [(unit, int(getattr(row, f"{stage.value}_n") or 0)) for unit, row in units]
            if not any(n for _, n in counts):
                continue
            await conn.exec_driver_sql(_SQLITE_SORTED.format(stage=stage.value, order=order))
            for unit, n in counts:
                if n:
                    median, p90 = _nearest_ranks(n)
                    wanted.append((g, unit, stage.value, n, (inserted + median, inserted + p90)))
                    inserted += n
    if not wanted:
        return []
    positions = json.dumps(sorted({p for *_, at in wanted for p in at}))
    statement = _SQLITE_AT.bindparams(sa.bindparam("positions", type_=sa.String()))
    found = {int(p): ms for p, ms in (await conn.execute(statement, {"positions": positions})).all()}
    return [(g, unit, stage, n, found[median] / 1000, found[p90] / 1000) for g, unit, stage, n, (median, p90) in wanted]


class _Tagged:
    """A row of the grouping sets with the unit of its set as ``unit``."""

    __slots__ = ("row", "unit")

    def __init__(self, row: Any, unit: Any) -> None:
        self.row = row
        self.unit = unit

    def __getattr__(self, name: str) -> Any:
        return getattr(self.row, name)


def _briefing(
    by: Unit,
    start: datetime,
    end: datetime,
    rows: Sequence[Any],
    stage_rows: Sequence[tuple[Any, str, Any, Any, Any]],
    units_before: Sequence[Any],
    returns: list[RuleReturns],
) -> Briefing:
    stages: dict[str | None, dict[Stage, StageTimes]] = {}
    for unit, stage_name, n, median_s, p90_s in stage_rows:
        stages.setdefault(unit, {})[Stage(stage_name)] = StageTimes(
            count=int(n), median_s=_seconds(median_s), p90_s=_seconds(p90_s)
        )
    units = [
        UnitFigures(
            unit=r.unit if by is not Unit.TOWNSHIP else "township",
            received=int(r.received or 0),
            accepted=int(r.accepted or 0),
            due=int(r.due or 0),
            closed=int(r.closed or 0),
            due_closed=int(r.due_closed or 0),
            on_time=int(r.on_time or 0),
            overdue_open=int(r.overdue_open or 0),
            extended=int(r.extended or 0),
            reworked=int(r.reworked or 0),
            stages=stages.get(r.unit, {}),
        )
        for r in rows
    ]
    seen = {r.unit for r in rows}
    units += [  # units whose incidents were all reported before the period and add nothing to it
        UnitFigures(
            unit=u if by is not Unit.TOWNSHIP else "township",
            received=0,
            accepted=0,
            due=0,
            closed=0,
            due_closed=0,
            on_time=0,
            overdue_open=0,
            stages={},
        )
        for u in dict.fromkeys(units_before)
        if u not in seen
    ]
    units.sort(key=lambda u: (u.unit is None, u.unit or ""))
    return Briefing(start=start, end=end, by=by, units=units, returns=list(returns))


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


# -- the briefing document (简报): the figures of a named period, put together for leaders ----------------

#: The offset periods are named in: the township's civil time (北京时间, no daylight saving).
CHINA = timezone(timedelta(hours=8))


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    """A named reporting period: a month (``2026-11``), a quarter (``2026-Q4``) or a year (``2026``),
    from the first instant of its first day in the township's time to the first of the next."""

    name: str
    start: datetime
    end: datetime
    months: tuple[tuple[str, datetime, datetime], ...]  # (``2026-10``, start, end) for the trend
    #: Cut at the instant it was read (:meth:`so_far`): the period had not ended then.
    running: bool = False

    def so_far(self, now: datetime) -> Period:
        """This period up to ``now`` while it runs, else itself (ended, or not begun).

        Every figure is defined by the period's end (an incident due in the period and not closed by its end is
        open past its deadline): read before the end, a period counts what was due up to ``now``, not what falls
        due later in it. Its trend's months end at ``now`` too; those not begun are left out.
        """
        if not self.start < now < self.end:
            return self
        months = tuple((name, start, min(end, now)) for name, start, end in self.months if start < now)
        return Period(name=self.name, start=self.start, end=now, months=months, running=True)

    @classmethod
    def parse(cls, text: str, *, tz: tzinfo = CHINA) -> Period:
        """Raises ``ValueError`` with what is wrong for anything else than the three forms above."""
        match = _PERIOD.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"period {text!r}: write a month 2026-11, a quarter 2026-Q4 or a year 2026")
        year = int(match["year"])
        if not 2000 <= year <= 2100:
            raise ValueError(f"period {text!r}: the year must be between 2000 and 2100")
        if match["month"]:
            first = int(match["month"])
            if not 1 <= first <= 12:
                raise ValueError(f"period {text!r}: the month must be 01 to 12")
            count, name = 1, f"{year}-{first:02d}"
        elif match["quarter"]:
            quarter = int(match["quarter"])
            if not 1 <= quarter <= 4:
                raise ValueError(f"period {text!r}: the quarter must be Q1 to Q4")
            first, count, name = 3 * quarter - 2, 3, f"{year}-Q{quarter}"
        else:
            first, count, name = 1, 12, f"{year}"
        index = [year * 12 + first - 1 + k for k in range(count + 1)]  # months since year 0
        starts = [datetime(m // 12, m % 12 + 1, 1, tzinfo=tz) for m in index]
        months = tuple((f"{s.year}-{s.month:02d}", s, e) for s, e in pairwise(starts))
        return cls(name=name, start=starts[0], end=starts[-1], months=months)


_PERIOD = re.compile(r"(?P<year>\d{4})(?:-(?:(?P<month>\d{2})|[Qq](?P<quarter>\d)))?")


@dataclass(frozen=True, slots=True, kw_only=True)
class Hotspot:
    """高发统计: how many incidents of a kind (category or zone) were received in the period."""

    key: str | None
    received: int


_HOTSPOTS = """
SELECT {column} AS key, COUNT(*) AS received
FROM incident i
WHERE NOT i.exercise AND i.merged_into IS NULL AND i.status <> 'merged'
  AND i.reported_at >= :start AND i.reported_at < :end
GROUP BY {column}
"""


async def hotspots(engine: AsyncEngine, *, start: datetime, end: datetime, by: str) -> list[Hotspot]:
    """Incidents received in ``[start, end)`` per ``category`` or ``zone``, the most frequent first (ties
    by name); drills and merged duplicates left out as in every figure."""
    column = {"category": "i.category", "zone": "i.zone"}[by]
    async with engine.connect() as conn:
        rows = (await conn.execute(_bound(_HOTSPOTS.format(column=column)), {"start": start, "end": end})).all()
    found = [Hotspot(key=r.key, received=int(r.received)) for r in rows]
    return sorted(found, key=lambda h: (-h.received, h.key is None, h.key or ""))


@dataclass(frozen=True, slots=True, kw_only=True)
class Ranked:
    """One unit's place by the composite score (综合指标值, see :func:`composite`)."""

    rank: int | None  # None: nothing was due, no score
    figures: UnitFigures
    score: float | None


def composite(u: UnitFigures) -> float | None:
    """综合指标值, 0–100: 60 × on-time rate + 40 × close rate, over the incidents due in the period
    (docs/reports.md). None when nothing was due."""
    if u.on_time_rate is None or u.close_rate is None:
        return None
    return round(60 * u.on_time_rate + 40 * u.close_rate, 1)


def ranking(units: list[UnitFigures]) -> list[Ranked]:
    """Units by composite score, best first (equal scores share a rank; ties listed by name); units
    with nothing due come last, unranked. The row of incidents without a unit is left out."""
    scored = sorted(
        ((composite(u), u) for u in units if u.unit is not None),
        key=lambda su: (su[0] is None, -(su[0] or 0.0), su[1].unit or ""),
    )
    out: list[Ranked] = []
    for position, (score, u) in enumerate(scored, start=1):
        if score is None:
            rank = None
        elif out and out[-1].score == score:
            rank = out[-1].rank
        else:
            rank = position
        out.append(Ranked(rank=rank, figures=u, score=score))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """Everything the briefing document shows, all read from the store (nothing typed by hand)."""

    township: str
    period: Period
    township_figures: UnitFigures | None
    by: dict[Unit, Briefing]  # module, team, officer, zone
    ranking: list[Ranked]  # of the teams
    trend: list[tuple[str, UnitFigures | None]]  # the township's figures month by month
    hotspots: dict[str, list[Hotspot]]  # "category", "zone"


async def document(engine: AsyncEngine, *, township: str, period: Period) -> Document:
    """The briefing document of ``period``: the figures per module, team, officer and zone, the teams
    ranked by composite score, the township month by month and the most frequent matters. Read-only."""
    kinds = (Unit.MODULE, Unit.TEAM, Unit.OFFICER, Unit.ZONE)
    computed = await compute_many(engine, start=period.start, end=period.end, by=(*kinds, Unit.TOWNSHIP))
    by = {unit: computed[unit] for unit in kinds}
    whole = computed[Unit.TOWNSHIP]
    return Document(
        township=township,
        period=period,
        township_figures=whole.units[0] if whole.units else None,
        by=by,
        ranking=ranking(by[Unit.TEAM].units),
        trend=await trend(engine, months=period.months),
        hotspots={
            kind: await hotspots(engine, start=period.start, end=period.end, by=kind) for kind in ("category", "zone")
        },
    )


# -- the trend: the township's figures month by month, in one pass ---------------------------------------
#
# Each month's figures are those ``compute`` gives for ``[start, end)`` of that month by the township; here
# every month at once. Each counted incident's times are put in their month by comparing them with the
# months' bounds (``:m0`` the first month's start, ``:m{k+1}`` month k's end, the same bound values and
# comparisons as month k's own ``:start`` and ``:end``): -1 before the first month, n after the last.
# Then for month k: received and accepted by the month of the report; due (and the figures of the due
# ones) by the month of the deadline, closed (and reworked) by the month of the close, each only for
# incidents reported before the month's end (``rb <= k``, as ``_BASE`` requires); "closed before the
# month's end" is ``cb <= k``. A month has a row when any counted incident was reported before its end.


def _month_of(column: str, n: int) -> str:
    """The month index of ``column`` among the ``n`` months bound as ``:m0`` … ``:m{n}`` (NULL stays NULL)."""
    steps = " ".join(f"WHEN {column} < :m{k + 1} THEN {k}" for k in range(n))
    return f"(CASE WHEN {column} IS NULL THEN NULL WHEN {column} < :m0 THEN -1 {steps} ELSE {n} END)"


def _trend_columns(n: int, *, postgres: bool) -> str:
    columns = f""",
       {_month_of("i.reported_at", n)} AS rb, {_month_of("a.resolve_due_at", n)} AS db,
       {_month_of("i.closed_at", n)} AS cb"""
    if postgres:  # the stage durations of month rb's incidents, those ending before that month's end
        columns += "".join(
            f""",
       CASE WHEN i.reported_at >= :m0 AND {_month_of(f"a.{at}", n)} <= {_month_of("i.reported_at", n)}
            THEN EXTRACT(EPOCH FROM (a.{at} - a.dispatched_at))::float8 END AS {stage}_s"""
            for stage, at in (("ack", "acked_at"), ("arrive", "arrived_at"), ("resolve", "resolved_at"))
        )
    else:  # whether each stage of month rb's incidents was measured: counted per month, ranked after
        columns += "".join(
            f""",
       CASE WHEN i.reported_at >= :m0 AND {_month_of(f"a.{at}", n)} <= {_month_of("i.reported_at", n)}
            THEN 1 END AS {stage}_m"""
            for stage, at in (("ack", "acked_at"), ("arrive", "arrived_at"), ("resolve", "resolved_at"))
        )
    return columns


# ``part``: 'r' rows by month of report, 'd' by month of deadline, 'c' by month of close; ``f1``…``f5``
# the figures of that part (see the column comments). ``{stages}``: the percentiles on PostgreSQL.
_TREND = """
WITH b AS MATERIALIZED ({base})
SELECT 'r' AS part, rb AS k,
  COUNT(*) AS f1,  -- received
  SUM(CASE WHEN had_lead = 1 AND handover IS NULL THEN 1 ELSE 0 END) AS f2,  -- accepted
  0 AS f3, 0 AS f4, 0 AS f5{stages}
FROM b WHERE rb < {n} GROUP BY rb
UNION ALL
SELECT 'd' AS part, db AS k,
  COUNT(*) AS f1,  -- due
  SUM(CASE WHEN cb <= db THEN 1 ELSE 0 END) AS f2,  -- due_closed
  SUM(CASE WHEN closed_at <= due_at THEN 1 ELSE 0 END) AS f3,  -- on_time
  SUM(CASE WHEN closed_at IS NULL OR cb > db THEN 1 ELSE 0 END) AS f4,  -- overdue_open
  SUM(CASE WHEN extensions > 0 THEN 1 ELSE 0 END) AS f5{no_stages}  -- extended
FROM b WHERE db >= 0 AND db < {n} AND rb <= db AND status NOT IN ('cancelled', 'parked') GROUP BY db
UNION ALL
SELECT 'c' AS part, cb AS k,
  COUNT(*) AS f1,  -- closed
  SUM(CASE WHEN reworks > 0 THEN 1 ELSE 0 END) AS f2,  -- reworked
  0 AS f3, 0 AS f4, 0 AS f5{no_stages}
FROM b WHERE cb >= 0 AND cb < {n} AND rb <= cb GROUP BY cb
"""
_TREND_NO_STAGES = "".join(f", 0 AS {s}_n, NULL::float8[] AS {s}_p" for s in ("ack", "arrive", "resolve"))

# SQLite: the stage times of each month's received incidents, ranked by window with the month as unit
# (measured when the stage ended before the end of the month of the report, counted by ``_TREND``).
_TREND_COUNTS_ONLY = ", 0 AS ack_n, 0 AS arrive_n, 0 AS resolve_n"
_SQLITE_TREND_ROWS = """
CREATE TEMP TABLE briefing_rows AS
SELECT rb AS unit,
  CASE WHEN {ack} <= rb THEN CAST(ROUND((julianday(acked_at) - d0) * 86400000.0) AS INTEGER) END AS ack_ms,
  CASE WHEN {arrive} <= rb THEN CAST(ROUND((julianday(arrived_at) - d0) * 86400000.0) AS INTEGER) END AS arrive_ms,
  CASE WHEN {resolve} <= rb THEN CAST(ROUND((julianday(resolved_at) - d0) * 86400000.0) AS INTEGER) END AS resolve_ms
FROM (
  SELECT {rb} AS rb, julianday(a.dispatched_at) AS d0, a.acked_at, a.arrived_at, a.resolved_at
  FROM incident i
  CROSS JOIN assignment a
    ON a.incident_id = i.id AND a.role = 'lead' AND a.state NOT IN ('returned', 'cancelled')
  WHERE NOT i.exercise AND i.merged_into IS NULL AND i.status <> 'merged'
    AND i.reported_at >= :m0 AND i.reported_at < :m{n}
)"""


async def trend(
    engine: AsyncEngine, *, months: tuple[tuple[str, datetime, datetime], ...]
) -> list[tuple[str, UnitFigures | None]]:
    """The township's figures of each of ``months`` (name, start, end; each starting where the one before
    ends, as ``Period.months``), equal to ``compute(start, end, Unit.TOWNSHIP)`` month by month (None where
    that has no row): one query on PostgreSQL; on SQLite the figures, then the period's leads read once more
    into a temporary table whose durations are ranked by sorted insertion (see ``_SQLITE_ROWS``)."""
    if not months:
        return []
    bounds = [months[0][1], *(end for _, _, end in months)]
    if any(b.tzinfo is None for b in bounds):
        raise ValueError("naive datetime refused: pass timezone-aware UTC times")
    if any(start != before for (_, start, _), before in zip(months, bounds, strict=False)) or any(
        e <= s for s, e in pairwise(bounds)
    ):
        raise ValueError("the months must follow one another, each ending after it starts")
    n = len(months)
    postgres = engine.dialect.name == "postgresql"
    sql = _TREND.format(
        base=_BASE.format(unit="NULL", durations=_trend_columns(n, postgres=postgres)).replace(":end", f":m{n}"),
        n=n,
        stages=_STAGE_PERCENTILES if postgres else _SQLITE_STAGE_COUNTS,
        no_stages=_TREND_NO_STAGES if postgres else _TREND_COUNTS_ONLY,
    ).replace(":start", ":m0")
    params = {f"m{k}": b for k, b in enumerate(bounds)}
    bind = [sa.bindparam(name, type_=UtcDateTime()) for name in params]
    async with engine.connect() as conn:
        if postgres:  # as in ``compute``
            await conn.execute(sa.text("SET LOCAL jit = off"))
            await conn.execute(sa.text("SET LOCAL work_mem = '64MB'"))
        else:  # as in ``compute``: the ranks are taken from the figures' counts
            await conn.exec_driver_sql("BEGIN")
        rows = (await conn.execute(sa.text(sql).bindparams(*bind), params)).all()
        stage_rows: list[tuple[Any, str, Any, Any, Any]] = []
        if not postgres:
            rows_sql = _SQLITE_TREND_ROWS.format(
                rb=_month_of("i.reported_at", n),
                n=n,
                ack=_month_of("acked_at", n),
                arrive=_month_of("arrived_at", n),
                resolve=_month_of("resolved_at", n),
            )
            for drop in _SQLITE_DROP:
                await conn.exec_driver_sql(drop)
            await conn.execute(sa.text(rows_sql).bindparams(*bind), params)
            months_received = sorted((int(row.k), row) for row in rows if row.part == "r" and int(row.k) >= 0)
            ranked = await _sqlite_ranks(conn, [("unit", months_received)])
            stage_rows = [
                (k, stage_name, count, median_s, p90_s) for _, k, stage_name, count, median_s, p90_s in ranked
            ]
    stages: dict[int, dict[Stage, StageTimes]] = {}
    parts: dict[tuple[str, int], Any] = {}
    for row in rows:
        parts[(row.part, int(row.k))] = row
        if postgres and row.part == "r":
            for stage in Stage:
                count = getattr(row, f"{stage.value}_n")
                if count:
                    median_s, p90_s = getattr(row, f"{stage.value}_p")
                    stages.setdefault(int(row.k), {})[stage] = StageTimes(
                        count=int(count), median_s=_seconds(median_s), p90_s=_seconds(p90_s)
                    )
    for k, stage_name, count, median_s, p90_s in stage_rows:
        stages.setdefault(int(k), {})[Stage(stage_name)] = StageTimes(
            count=int(count), median_s=_seconds(median_s), p90_s=_seconds(p90_s)
        )
    first = min((k for part, k in parts if part == "r"), default=n)  # the month of the first report counted
    out: list[tuple[str, UnitFigures | None]] = []
    for k, (name, _, _) in enumerate(months):
        if k < first:
            out.append((name, None))
            continue
        r, d, c = parts.get(("r", k)), parts.get(("d", k)), parts.get(("c", k))
        out.append(
            (
                name,
                UnitFigures(
                    unit="township",
                    received=int(r.f1) if r else 0,
                    accepted=int(r.f2 or 0) if r else 0,
                    due=int(d.f1) if d else 0,
                    closed=int(c.f1) if c else 0,
                    due_closed=int(d.f2 or 0) if d else 0,
                    on_time=int(d.f3 or 0) if d else 0,
                    overdue_open=int(d.f4 or 0) if d else 0,
                    extended=int(d.f5 or 0) if d else 0,
                    reworked=int(c.f2 or 0) if c else 0,
                    stages=stages.get(k, {}),
                ),
            )
        )
    return out


class Figure(StrEnum):
    """The figures whose incidents can be listed (a leader follows a number to the incidents behind it)."""

    RECEIVED = "received"
    ACCEPTED = "accepted"
    DUE = "due"
    CLOSED = "closed"
    ON_TIME = "on_time"
    LATE = "late"  # due, closed after the deadline
    OVERDUE_OPEN = "overdue_open"
    EXTENDED = "extended"  # due, with an extension approved
    REWORKED = "reworked"  # closed, after a failed verification


_BEHIND = {
    Figure.RECEIVED: "reported_at >= :start",
    Figure.ACCEPTED: "reported_at >= :start AND had_lead = 1 AND handover IS NULL",
    Figure.DUE: _DUE,
    Figure.CLOSED: _CLOSED,
    Figure.ON_TIME: f"{_DUE} AND closed_at <= due_at",
    Figure.LATE: f"{_DUE} AND closed_at > due_at AND closed_at < :end",
    Figure.OVERDUE_OPEN: f"{_DUE} AND (closed_at IS NULL OR closed_at >= :end)",
    Figure.EXTENDED: f"{_DUE} AND extensions > 0",
    Figure.REWORKED: f"{_CLOSED} AND reworks > 0",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentLine:
    """One incident behind a figure, with the times that put it there."""

    incident_id: int
    unit: str | None
    status: str
    reported_at: datetime
    due_at: datetime | None
    closed_at: datetime | None


#: At most this many incidents are listed behind one figure (the count itself is the figure).
BEHIND_LIMIT = 1000


async def incidents_behind(
    engine: AsyncEngine, *, start: datetime, end: datetime, by: Unit, unit: str | None, figure: Figure
) -> list[IncidentLine]:
    """The incidents counted in ``figure`` for the unit named ``unit`` (None: the row without a unit; for
    ``Unit.TOWNSHIP`` any name) in ``[start, end)``, by the same definitions as :func:`compute`; oldest
    first, at most :data:`BEHIND_LIMIT`. Read-only."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("naive datetime refused: pass timezone-aware UTC times")
    if end <= start:
        raise ValueError("the period must end after it starts")
    which = "1 = 1" if by is Unit.TOWNSHIP else "unit IS NULL" if unit is None else "unit = :unit"
    # Only the incidents that can count in the period (see ``_PERIOD_BASE``), not every one reported before
    # its end: each figure's condition holds for none of the others.
    sql = (
        f"WITH b AS ({period_base_sql(_UNIT_COLUMN[by])}) "
        "SELECT id, unit, status, reported_at, due_at, closed_at FROM b "
        f"WHERE {which} AND {_BEHIND[figure]} ORDER BY reported_at, id LIMIT {BEHIND_LIMIT}"
    )
    statement = _bound(sql).columns(
        sa.column("id"),
        sa.column("unit"),
        sa.column("status"),
        sa.column("reported_at", UtcDateTime()),
        sa.column("due_at", UtcDateTime()),
        sa.column("closed_at", UtcDateTime()),
    )
    params: dict[str, Any] = {"start": start, "end": end}
    if "unit = :unit" in which:
        params["unit"] = unit
    async with engine.connect() as conn:
        rows = (await conn.execute(statement, params)).all()
    return [
        IncidentLine(
            incident_id=int(r.id),
            unit=r.unit,
            status=r.status,
            reported_at=r.reported_at,
            due_at=r.due_at,
            closed_at=r.closed_at,
        )
        for r in rows
    ]
