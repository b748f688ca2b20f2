"""The briefing's figures (简报) per unit for a period, computed by SQL over the stored tables.

Read-only: nothing here writes. Every figure is one aggregate query on the engine's pool (SQLite or
PostgreSQL); no incident is loaded into Python. The definitions are written out in docs/reports.md
and repeated, briefly, at the column that computes each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

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

    @property
    def close_rate(self) -> float | None:
        """结案率: due_closed / due (None when nothing was due)."""
        return self.due_closed / self.due if self.due else None

    @property
    def on_time_rate(self) -> float | None:
        """按期结案率: on_time / due (None when nothing was due)."""
        return self.on_time / self.due if self.due else None


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

# The moves that end each stage: nothing skips acknowledgement, so any move of the lead team ends it;
# a team may resolve straight after acknowledging, so arriving is measured only when it went on scene.
_STAGE_STATES = {
    Stage.ACK: ("acknowledged", "en_route", "on_scene", "resolved"),
    Stage.ARRIVE: ("on_scene",),
    Stage.RESOLVE: ("resolved",),
}

# The incidents that count: no drill, and no incident merged into another (its reports count there, once).
# The lead is the current one: not a part handed back (回退) or given to another team (cancelled).
_BASE = """
SELECT i.id AS id, {unit} AS unit, i.reported_at AS reported_at, i.status AS status,
       i.handover AS handover, a.team AS team, a.dispatched_at AS dispatched_at,
       a.resolve_due_at AS due_at,
       EXISTS (SELECT 1 FROM assignment x WHERE x.incident_id = i.id AND x.role = 'lead') AS had_lead,
       (SELECT min(c.at) FROM event c WHERE c.incident_id = i.id AND c.type = 'IncidentClosed') AS closed_at
FROM incident i
LEFT JOIN assignment a
  ON a.incident_id = i.id AND a.role = 'lead' AND a.state NOT IN ('returned', 'cancelled')
WHERE NOT i.exercise AND i.merged_into IS NULL AND i.status <> 'merged'
  AND (i.reported_at < :end)
"""

_FIGURES = """
WITH b AS ({base})
SELECT unit,
  SUM(CASE WHEN reported_at >= :start THEN 1 ELSE 0 END) AS received,
  SUM(CASE WHEN reported_at >= :start AND had_lead AND handover IS NULL THEN 1 ELSE 0 END) AS accepted,
  SUM(CASE WHEN {due} THEN 1 ELSE 0 END) AS due,
  SUM(CASE WHEN closed_at >= :start AND closed_at < :end THEN 1 ELSE 0 END) AS closed,
  SUM(CASE WHEN {due} AND closed_at < :end THEN 1 ELSE 0 END) AS due_closed,
  SUM(CASE WHEN {due} AND closed_at <= due_at THEN 1 ELSE 0 END) AS on_time,
  SUM(CASE WHEN {due} AND (closed_at IS NULL OR closed_at >= :end) THEN 1 ELSE 0 END) AS overdue_open
FROM b
GROUP BY unit
"""
_DUE = "(due_at >= :start AND due_at < :end AND status NOT IN ('cancelled', 'parked'))"

_STAGES = """
WITH b AS ({base}),
moves AS (
  SELECT b.id AS id, b.unit AS unit, b.dispatched_at AS dispatched_at, e.at AS at, {to_state} AS to_state
  FROM b JOIN event e ON e.incident_id = b.id AND e.type = 'UnitMoved'
  WHERE b.reported_at >= :start AND e.at < :end AND {team} = b.team
),
ends AS (
  SELECT unit, 'ack' AS stage, {duration} AS secs FROM moves WHERE to_state IN ({ack}) GROUP BY id, unit, dispatched_at
  UNION ALL
  SELECT unit, 'arrive', {duration} FROM moves WHERE to_state IN ({arrive}) GROUP BY id, unit, dispatched_at
  UNION ALL
  SELECT unit, 'resolve', {duration} FROM moves WHERE to_state IN ({resolve}) GROUP BY id, unit, dispatched_at
),
ranked AS (
  SELECT unit, stage, secs,
    ROW_NUMBER() OVER (PARTITION BY unit, stage ORDER BY secs) AS rn,
    COUNT(*) OVER (PARTITION BY unit, stage) AS n
  FROM ends
)
SELECT unit, stage, MAX(n) AS n,
  MIN(CASE WHEN rn >= 0.5 * n THEN secs END) AS median_s,
  MIN(CASE WHEN rn >= 0.9 * n THEN secs END) AS p90_s
FROM ranked GROUP BY unit, stage
"""

_RETURNS = """
SELECT i.rule_id AS rule_id, COUNT(*) AS returns
FROM event e JOIN incident i ON i.id = e.incident_id
WHERE e.type = 'AssignmentReturned' AND e.at >= :start AND e.at < :end AND NOT i.exercise
GROUP BY i.rule_id
"""


def _dialect_parts(dialect: str) -> dict[str, str]:
    """The few expressions the two backends spell differently: JSON fields and a duration in seconds.

    ``GROUP BY id, unit, dispatched_at`` above is per lead assignment; the duration takes its first move."""
    if dialect == "sqlite":
        return {
            "to_state": "json_extract(e.payload, '$.to_state')",
            "team": "json_extract(e.payload, '$.team')",
            "duration": "ROUND((julianday(MIN(at)) - julianday(dispatched_at)) * 86400.0, 3)",
        }
    return {
        "to_state": "(e.payload::json ->> 'to_state')",
        "team": "(e.payload::json ->> 'team')",
        "duration": "EXTRACT(EPOCH FROM (MIN(at) - dispatched_at))::float8",
    }


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)  # fixed words of this module, never input


def _bound(sql: str) -> sa.TextClause:
    return sa.text(sql).bindparams(sa.bindparam("start", type_=UtcDateTime()), sa.bindparam("end", type_=UtcDateTime()))


async def compute(engine: AsyncEngine, *, start: datetime, end: datetime, by: Unit) -> Briefing:
    """The figures of every unit of kind ``by`` for the period ``[start, end)``.

    Raises ``ValueError`` when the period is empty or its times are naive. Runs three read queries on
    the engine's pool; safe beside the writer (it reads committed rows only).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("naive datetime refused: pass timezone-aware UTC times")
    if end <= start:
        raise ValueError("the period must end after it starts")
    parts = _dialect_parts(engine.dialect.name)
    base = _BASE.format(unit=_UNIT_COLUMN[by])
    figures_sql = _FIGURES.format(base=base, due=_DUE)
    stages_sql = _STAGES.format(
        base=base,
        ack=_in(_STAGE_STATES[Stage.ACK]),
        arrive=_in(_STAGE_STATES[Stage.ARRIVE]),
        resolve=_in(_STAGE_STATES[Stage.RESOLVE]),
        **parts,
    )
    params: dict[str, Any] = {"start": start, "end": end}
    async with engine.connect() as conn:
        rows = (await conn.execute(_bound(figures_sql), params)).all()
        stage_rows = (await conn.execute(_bound(stages_sql), params)).all()
        return_rows = (await conn.execute(_bound(_RETURNS), params)).all()
    stages: dict[str | None, dict[Stage, StageTimes]] = {}
    for unit, stage, n, median_s, p90_s in stage_rows:
        stages.setdefault(unit, {})[Stage(stage)] = StageTimes(
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
            stages=stages.get(r.unit, {}),
        )
        for r in rows
    ]
    units.sort(key=lambda u: (u.unit is None, u.unit or ""))
    returns = sorted(
        (RuleReturns(rule_id=r.rule_id, returns=int(r.returns)) for r in return_rows),
        key=lambda r: (r.rule_id is None, r.rule_id or ""),
    )
    return Briefing(start=start, end=end, by=by, units=units, returns=returns)


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)
