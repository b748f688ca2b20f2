"""The assessment (考核) of a period: post points (岗位赋分), team points (组团积分) and module scores (模块评分)
by the supervision office's scoring table (:mod:`rules.scoring`), each score with the lines that made it and
every line with the incidents behind it.

The incidents are read by SQL with the briefing's definitions (:mod:`dispatcher.briefing`): the incidents due
in the period (their lead's resolve deadline falls in it; drills and merged duplicates left out), and each
one's outcome: closed on time, closed late, or still open past its deadline at the period's end. Only the
period's due incidents and its missed acknowledgements are read, never the whole history. Read-only.

Special bonus points (专项加分) are township events (BonusEntered, then BonusApproved by a second person);
:func:`with_bonuses` adds the approved ones of the period as lines of their units' scores.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatcher.briefing import _DUE, Period, _bound, base_sql
from dispatcher.core import events as ev
from dispatcher.tables import ScoringTextRow, UtcDateTime
from rules.scoring import ModuleMethod, ScoringTable

if TYPE_CHECKING:
    from dispatcher.store import StoredEvent  # the store's port imports this module

OUTCOMES = ("on_time_close", "late_close", "open_past_deadline")


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One rule of the scoring table applied to a unit: ``count`` incidents at ``points_each``."""

    rule: str  # e.g. "post_points.late_close.p2"
    count: int
    points_each: float
    incidents: tuple[int, ...]

    @property
    def points(self) -> float:
        return round(self.count * self.points_each, 3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Score:
    unit: str
    base: float
    lines: tuple[Line, ...]

    @property
    def score(self) -> float:
        return round(self.base + sum(line.points for line in self.lines), 3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    period: Period
    table_version: str
    posts: list[Score]
    teams: list[Score]
    modules: list[Score]
    not_counted: dict[str, str] = field(default_factory=dict)  # what is left out, and why
    bonuses: list[Bonus] = field(default_factory=list)  # the period's special bonuses, approved or waiting


@dataclass(frozen=True, slots=True)
class _Due:
    incident_id: int
    officer: str | None
    team: str | None
    module: str
    priority: int
    outcome: str


_DUE_LINES = """
WITH b AS MATERIALIZED ({base}),
d AS (SELECT id, unit, team, due_at, closed_at FROM b WHERE {due})
SELECT d.id AS id, d.unit AS officer, d.team AS team, i.module AS module, i.priority AS priority,
       d.due_at AS due_at, d.closed_at AS closed_at
FROM d JOIN incident i ON i.id = d.id
ORDER BY d.id
"""

_MISSED = """
SELECT e.incident_id AS id, {team} AS team, i.module AS module, i.priority AS priority, {kind} AS kind
FROM event e JOIN incident i ON i.id = e.incident_id
WHERE e.type IN ('DeadlineMissed', 'AssignmentReturned') AND e.at >= :start AND e.at < :end
  AND NOT i.exercise AND i.merged_into IS NULL AND i.status <> 'merged'
ORDER BY e.seq
"""


def _json(dialect: str, key: str) -> str:
    if dialect == "sqlite":
        return f"json_extract(e.payload, '$.{key}')"
    return f"(e.payload::json ->> '{key}')"


async def assess(engine: AsyncEngine, *, period: Period, table: ScoringTable) -> Assessment:
    """Every post, team and module score of ``period`` by ``table``, with its lines. Read-only."""
    params: dict[str, Any] = {"start": period.start, "end": period.end}
    due_sql = _bound(_DUE_LINES.format(base=base_sql("a.officer"), due=_DUE)).columns(
        sa.column("id"),
        sa.column("officer"),
        sa.column("team"),
        sa.column("module"),
        sa.column("priority"),
        sa.column("due_at", UtcDateTime()),
        sa.column("closed_at", UtcDateTime()),
    )
    dialect = engine.dialect.name
    missed_sql = _bound(_MISSED.format(team=_json(dialect, "team"), kind=_json(dialect, "kind")))
    async with engine.connect() as conn:
        due_rows = (await conn.execute(due_sql, params)).all()
        missed_rows = (await conn.execute(missed_sql, params)).all()
    due = [
        _Due(
            incident_id=int(r.id),
            officer=r.officer,
            team=r.team,
            module=r.module,
            priority=int(r.priority),
            outcome=_outcome(r.due_at, r.closed_at, period.end),
        )
        for r in due_rows
    ]
    # (incident, team, module, priority) per missed acknowledgement and per return
    missed = [(int(r.id), r.team, r.module, int(r.priority)) for r in missed_rows if r.kind == "ack"]
    returned = [(int(r.id), r.team, r.module, int(r.priority)) for r in missed_rows if r.kind is None and r.team]
    return _score(period, table, due, missed, returned)


def _outcome(due_at: datetime, closed_at: datetime | None, end: datetime) -> str:
    if closed_at is not None and closed_at <= due_at:
        return "on_time_close"
    if closed_at is not None and closed_at < end:
        return "late_close"
    return "open_past_deadline"


def _lines(rule_of: Iterable[tuple[str, float, int]]) -> tuple[Line, ...]:
    """Group (rule, points each, incident) into lines, in rule order."""
    grouped: dict[tuple[str, float], list[int]] = defaultdict(list)
    for rule, each, incident in rule_of:
        grouped[(rule, each)].append(incident)
    return tuple(
        Line(rule=rule, count=len(ids), points_each=each, incidents=tuple(ids))
        for (rule, each), ids in sorted(grouped.items())
    )


def _score(
    period: Period,
    table: ScoringTable,
    due: list[_Due],
    missed: list[tuple[int, str | None, str, int]],
    returned: list[tuple[int, str | None, str, int]],
) -> Assessment:
    posts_rules = table.post_points

    def post_rule(d: _Due) -> tuple[str, float, int]:
        each = getattr(posts_rules, d.outcome).of(d.priority)
        return f"post_points.{d.outcome}.p{d.priority}", each, d.incident_id

    by_officer: dict[str, list[_Due]] = defaultdict(list)
    for d in due:
        if d.officer is not None:
            by_officer[d.officer].append(d)
    posts = [
        Score(unit=officer, base=posts_rules.base, lines=_lines(post_rule(d) for d in items))
        for officer, items in sorted(by_officer.items())
    ]

    # team points per (module, team): the post points of its led incidents, its missed acknowledgements, returns
    team_items: dict[tuple[str, str], list[tuple[str, float, int]]] = defaultdict(list)
    for d in due:
        if d.team is not None:
            team_items[(d.module, d.team)].append(post_rule(d))
    for incident, team, module, priority in missed:
        if team is not None:
            each = table.team_points.missed_acknowledgement.of(priority)
            team_items[(module, team)].append((f"team_points.missed_acknowledgement.p{priority}", each, incident))
    for incident, team, module, _ in returned:
        if team is not None:
            team_items[(module, team)].append(("team_points.returned", table.team_points.returned, incident))
    per_team: dict[str, list[tuple[str, float, int]]] = defaultdict(list)
    for (_, team), items in team_items.items():
        per_team[team].extend(items)
    teams = [Score(unit=team, base=0.0, lines=_lines(items)) for team, items in sorted(per_team.items())]

    by_module: dict[str, list[tuple[str, Score]]] = defaultdict(list)
    for (module, team), items in sorted(team_items.items()):
        by_module[module].append((team, Score(unit=team, base=0.0, lines=_lines(items))))
    modules = []
    method = table.module_score.from_teams
    for module, scored in sorted(by_module.items()):
        weight = 1 / len(scored) if method is ModuleMethod.MEAN else 1.0
        lines = tuple(
            Line(
                rule=f"module_score.{method.value}.{team}",
                count=1,
                points_each=round(weight * s.score, 3),
                incidents=tuple(sorted({i for line in s.lines for i in line.incidents})),
            )
            for team, s in scored
        )
        modules.append(Score(unit=module, base=table.module_score.base, lines=lines))
    return Assessment(
        period=period,
        table_version=table.version,
        posts=posts,
        teams=teams,
        modules=modules,
        not_counted={
            "special_bonus": "no special bonus was read for this assessment",
            "extension_and_rework": "延期率 and 返工率 wait for deadline extensions and verification (issue 15)",
        },
    )


# -- special bonus points (专项加分): entered with a reason, counted once a second person approves ----------

UNIT_KINDS = ("post", "team", "module")


@dataclass(frozen=True, slots=True, kw_only=True)
class Bonus:
    """A special bonus as logged: ``bonus`` is the seq of its BonusEntered event."""

    bonus: int
    entered: ev.BonusEntered
    approved: ev.BonusApproved | None


class BonusRefused(ValueError):
    """An approval that cannot be recorded; the message says why. Nothing was written."""


def approval_refusal(bonus: Bonus | None, bonus_id: int, actor: str) -> str | None:
    """Why ``actor`` may not approve ``bonus`` (None: they may): it must exist, not be approved yet, and the
    approver must be a different person from the one who entered it."""
    if bonus is None:
        return f"no special bonus {bonus_id}"
    if bonus.approved is not None:
        return f"special bonus {bonus_id} was already approved by {bonus.approved.approved_by}"
    if bonus.entered.entered_by == actor:
        return f"special bonus {bonus_id} was entered by {actor}: a second person must approve it"
    return None


def bonuses_from(events: Iterable[StoredEvent]) -> dict[int, Bonus]:
    """The bonuses of the township log (BonusEntered and BonusApproved events), by id."""
    entered: dict[int, ev.BonusEntered] = {}
    approved: dict[int, ev.BonusApproved] = {}
    for e in sorted(events, key=lambda e: e.seq):
        fact = ev.decode_township(e.type, orjson.loads(e.payload))
        if isinstance(fact, ev.BonusEntered):
            entered[e.seq] = fact
        elif isinstance(fact, ev.BonusApproved) and fact.bonus not in approved:
            approved[fact.bonus] = fact
    return {seq: Bonus(bonus=seq, entered=fact, approved=approved.get(seq)) for seq, fact in entered.items()}


def with_bonuses(result: Assessment, table: ScoringTable, bonuses: Iterable[Bonus]) -> Assessment:
    """``result`` with the period's approved bonuses as lines (``special_bonus.<id>``) of their units' scores
    (a unit without a score yet gets one at its base), and the ones still waiting for approval listed."""
    mine = [b for b in bonuses if b.entered.period == result.period.name]
    approved = [b for b in mine if b.approved is not None]
    groups = {"post": result.posts, "team": result.teams, "module": result.modules}
    bases = {"post": table.post_points.base, "team": 0.0, "module": table.module_score.base}
    out: dict[str, list[Score]] = {}
    for kind, scores in groups.items():
        by_unit = {s.unit: s for s in scores}
        for b in approved:
            if b.entered.unit_kind != kind:
                continue
            line = Line(rule=f"special_bonus.{b.bonus}", count=1, points_each=b.entered.points, incidents=())
            have = by_unit.get(b.entered.unit) or Score(unit=b.entered.unit, base=bases[kind], lines=())
            by_unit[b.entered.unit] = Score(unit=have.unit, base=have.base, lines=(*have.lines, line))
        out[kind] = sorted(by_unit.values(), key=lambda s: s.unit)
    return replace(
        result,
        posts=out["post"],
        teams=out["team"],
        modules=out["module"],
        bonuses=mine,
        not_counted={k: v for k, v in result.not_counted.items() if k != "special_bonus"},
    )


def table_of_period(
    stored: Iterable[tuple[int, ev.ScoringPutInForce]], period: Period
) -> tuple[int, ev.ScoringPutInForce] | None:
    """The scoring table of ``period``: of the tables logged (with their seq), the last put in force before
    the period's end (so a table put in force during a month scores that month; a running period, read up to
    now, takes every table put in force so far). None: none was."""
    before = [(seq, t) for seq, t in stored if t.at < period.end or (period.running and t.at == period.end)]
    return max(before, key=lambda pair: pair[0]) if before else None


async def logged_bonuses(engine: AsyncEngine) -> dict[int, Bonus]:
    """The special bonuses of the township log read straight from the event table (for the command line)."""
    from dispatcher.store import StoredEvent

    query = sa.text(
        "SELECT seq, type, at, payload FROM event WHERE type IN ('BonusEntered', 'BonusApproved') ORDER BY seq"
    ).columns(sa.column("seq"), sa.column("type"), sa.column("at", UtcDateTime()), sa.column("payload"))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return bonuses_from(StoredEvent(seq=r.seq, incident_id=None, type=r.type, at=r.at, payload=r.payload) for r in rows)


# -- scoring tables put in force: the events name their text, stored apart under its digest -------------


def scoring_digest(body: str) -> str:
    """The name of a scoring table's text: the SHA-256 of its UTF-8 bytes, hex."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


async def store_scoring_text(engine: AsyncEngine, *, body: str, version: str, at: datetime) -> str:
    """Keep ``body`` under its digest (once: the same text put in force again is not stored twice) and
    return the digest. Called before the ``ScoringPutInForce`` that names it is logged."""
    digest = scoring_digest(body)
    table = ScoringTextRow.__table__  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        found = await conn.execute(sa.select(table.c.digest).where(table.c.digest == digest))
        if found.first() is None:
            await conn.execute(sa.insert(table).values(digest=digest, version=version, body=body, stored_at=at))
    return digest


def scoring_text(fact: ev.ScoringPutInForce) -> str:
    """The YAML of a scoring table as read by :func:`stored_scoring_tables` (which fills ``body``)."""
    if fact.body is None:
        raise LookupError(f"scoring table {fact.version} ({fact.digest}) was read without its text")
    return fact.body


async def stored_scoring_tables(engine: AsyncEngine, *, limit: int = 10_000) -> list[tuple[int, ev.ScoringPutInForce]]:
    """Every scoring table put in force, oldest first, with its seq (its id) and its text in ``body``
    (read from ``scoring_text`` by digest; an event logged before kept it in the log)."""
    query = (
        sa.text("SELECT seq, payload FROM event WHERE type = 'ScoringPutInForce' ORDER BY seq LIMIT :limit")
        .bindparams(limit=limit)
        .columns(sa.column("seq"), sa.column("payload"))
    )
    table = ScoringTextRow.__table__  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        logged = []
        for r in (await conn.execute(query)).all():
            fact = ev.decode_township("ScoringPutInForce", orjson.loads(r.payload))
            assert isinstance(fact, ev.ScoringPutInForce)
            logged.append((int(r.seq), fact))
        wanted = {fact.digest for _, fact in logged if fact.body is None}
        texts: dict[str, str] = {}
        if wanted:
            rows = await conn.execute(sa.select(table.c.digest, table.c.body).where(table.c.digest.in_(wanted)))
            texts = {row.digest: row.body for row in rows.all()}
    out = []
    for seq, fact in logged:
        if fact.body is None:
            body = texts.get(fact.digest)
            if body is None:
                raise LookupError(f"scoring table #{seq} names text {fact.digest}, which is not stored")
            fact = replace(fact, body=body)
        out.append((seq, fact))
    return out
