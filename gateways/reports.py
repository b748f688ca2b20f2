"""What leaders read in a browser: the ``/reports`` page and the briefing document behind it.

The page (``/reports``, like ``/board``) holds no data: it signs in and fetches, with its bearer token,

- ``GET /api/v1/reports/briefing?period=2026-11`` (``&format=html``, the default: the document as an HTML
  fragment, the same rendering as ``dispatcher report --html``; ``&format=xlsx``: the workbook, as a download);
- ``GET /api/v1/reports/incidents?period=…&by=team&unit=traffic&figure=due``: the incidents behind one
  figure of one unit, so a leader follows a number to the incidents that make it;
- ``GET /api/v1/assessment?period=2026-11``: post points, team points and module scores by the scoring
  table of the period (the last put in force before its end; none: the bundled
  rules/tables/ershili-scoring.yaml), every score with its lines and their incidents;
- ``PUT /api/v1/assessment/scoring`` (the supervision office, YAML body): put a scoring table in force,
  checked like the rule table (422 with file:line); ``GET /api/v1/assessment/scoring`` lists them;
- ``POST /api/v1/assessment/bonuses`` (the supervision office) and ``…/bonuses/{id}/approve`` (a second
  person: approving one's own entry is refused with 409); both are in the audit trail like every change.

Who may read them is the policy table's (leaders and the supervision office); docs/reports.md defines
every figure.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from dispatcher.assessment import Assessment, Bonus, BonusRefused, Score, scoring_text, table_of_period
from dispatcher.briefing import BEHIND_LIMIT, Figure, Period, Unit
from dispatcher.hub import Hub
from dispatcher.values import RowId, Text
from gateways.api import HubDep
from gateways.auth import acting
from gateways.board import STATIC_DIR
from gateways.briefing_document import STYLE, Lang, Names, names_of, render_html, render_xlsx
from gateways.problems import problem_response
from rules import RuleTableError
from rules.scoring import BUNDLED_SCORING, ScoringTable, check_scoring, load_scoring, load_scoring_text

router = APIRouter(tags=["reports"])

PeriodQuery = Annotated[str, Query(max_length=16, description="a month 2026-11, a quarter 2026-Q4 or a year 2026")]


def _period(text: str) -> Period:
    try:
        return Period.parse(text)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


def _read(text: str, hub: Hub) -> Period:
    """The period ``text`` as it can be read now: a running one up to the hub's now (:meth:`Period.so_far`)."""
    return _period(text).so_far(hub.clock.now())


@router.get("/reports", response_class=HTMLResponse, include_in_schema=False)
async def reports_page() -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "reports.html").read_text(encoding="utf-8"))


@router.get("/api/v1/reports/briefing", summary="The briefing document (简报) of a period, as HTML or XLSX")
async def get_briefing_document(
    hub: HubDep, period: PeriodQuery, format: Literal["html", "xlsx"] = "html", lang: Lang = "zh-CN"
) -> Response:
    named = _read(period, hub)
    doc = await hub.briefing_document(period=named)
    if format == "xlsx":
        return Response(
            render_xlsx(doc, _names(hub, "zh-CN")),  # the workbook is filed and forwarded: Chinese, with ids
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="briefing-{named.name}.xlsx"'},
        )
    fragment = render_html(doc, fragment=True, names=_names(hub, lang))
    return HTMLResponse(f"<style>{STYLE}</style><div class='briefing'>{fragment}</div>")


def _names(hub: Hub, lang: Lang) -> Names:
    """The names of the rule table and the roster in force: the units as a reader knows them."""
    return names_of(hub.rules.table, hub.roster.officers.values(), lang=lang)


class IncidentLinePublic(BaseModel):
    incident_id: int
    unit: str | None
    unit_name: str | None = Field(description="the unit's name in the language asked (its id when it has none)")
    status: str
    reported_at: datetime
    due_at: datetime | None
    closed_at: datetime | None


class IncidentsBehindPublic(BaseModel):
    period: str
    by: str
    unit: str | None
    unit_name: str | None
    figure: str
    incidents: list[IncidentLinePublic]
    limit: int


@router.get(
    "/api/v1/reports/incidents",
    response_model=IncidentsBehindPublic,
    summary="The incidents counted in one figure of one unit for a period",
)
async def get_incidents_behind(
    hub: HubDep,
    period: PeriodQuery,
    figure: Figure,
    by: Unit = Unit.TEAM,
    unit: Annotated[str | None, Query(max_length=64, description="omit: the row without a unit")] = None,
    lang: Lang = "zh-CN",
) -> IncidentsBehindPublic:
    named = _read(period, hub)
    lines = await hub.incidents_behind(start=named.start, end=named.end, by=by, unit=unit, figure=figure)
    names = _names(hub, lang)
    kind = by.value

    def name(key: str | None) -> str | None:
        return None if key is None or by is Unit.TOWNSHIP else names.of(kind, key)

    return IncidentsBehindPublic(
        period=named.name,
        by=by.value,
        unit=unit,
        unit_name=name(unit),
        figure=figure.value,
        incidents=[
            IncidentLinePublic(
                incident_id=line.incident_id,
                unit=line.unit,
                unit_name=name(line.unit),
                status=line.status,
                reported_at=line.reported_at,
                due_at=line.due_at,
                closed_at=line.closed_at,
            )
            for line in lines
        ],
        limit=BEHIND_LIMIT,
    )


class LinePublic(BaseModel):
    rule: str
    count: int
    points_each: float
    points: float
    incidents: list[int]


class ScorePublic(BaseModel):
    unit: str
    name: str | None = Field(
        default=None, description="the unit's name in the language asked (its id when it has none)"
    )
    base: float
    score: float
    lines: list[LinePublic]


class AssessmentPublic(BaseModel):
    period: str
    table_version: str
    posts: list[ScorePublic]
    teams: list[ScorePublic]
    modules: list[ScorePublic]
    not_counted: dict[str, str]
    bonuses: list[BonusPublic]  # the period's special bonuses, approved (in the scores) or waiting


def score_public(s: Score, name: str | None = None) -> ScorePublic:
    return ScorePublic(
        unit=s.unit,
        name=name,
        base=s.base,
        score=s.score,
        lines=[
            LinePublic(
                rule=x.rule, count=x.count, points_each=x.points_each, points=x.points, incidents=list(x.incidents)
            )
            for x in s.lines
        ],
    )


def assessment_public(a: Assessment, names: Names | None = None) -> AssessmentPublic:
    """The assessment as the API answers it; with ``names``, each score carries its unit's name."""

    def scores(kind: str, found: list[Score]) -> list[ScorePublic]:
        return [score_public(s, None if names is None else names.of(kind, s.unit)) for s in found]

    return AssessmentPublic(
        period=a.period.name,
        table_version=a.table_version,
        posts=scores("officer", a.posts),
        teams=scores("team", a.teams),
        modules=scores("module", a.modules),
        not_counted=a.not_counted,
        bonuses=[bonus_public(b) for b in a.bonuses],
    )


@lru_cache(maxsize=1)
def _bundled_scoring() -> ScoringTable:
    return load_scoring(BUNDLED_SCORING).table


@router.get(
    "/api/v1/assessment",
    response_model=AssessmentPublic,
    summary="Post points, team points and module scores of a period, each with the lines and incidents behind it",
)
async def get_assessment(hub: HubDep, period: PeriodQuery, lang: Lang = "zh-CN") -> AssessmentPublic:
    named = _read(period, hub)
    stored = table_of_period(await hub.scoring_tables(), named)
    # A stored table was checked when it was put in force; loading it again only rebuilds the model.
    if stored is None:
        table = _bundled_scoring()
    else:
        table = load_scoring_text(scoring_text(stored[1]), source=f"scoring#{stored[0]}").table
    return assessment_public(await hub.assessment(period=named, table=table), _names(hub, lang))


#: A scoring table is a page of YAML; the rule table's bound is far above what one needs.
_MAX_SCORING_BYTES = 64 * 1024


class ScoringVersionPublic(BaseModel):
    id: int = Field(description="its seq in the township's log")
    version: str
    put_at: datetime
    put_by: str | None


@router.put(
    "/api/v1/assessment/scoring",
    response_model=ScoringVersionPublic,
    summary="Put a scoring table in force (YAML body): it scores the periods that end after now",
    openapi_extra={"requestBody": {"content": {"application/yaml": {"schema": {"type": "string"}}}, "required": True}},
)
async def put_scoring(request: Request, hub: HubDep) -> Response | ScoringVersionPublic:
    body = await request.body()
    if len(body) > _MAX_SCORING_BYTES:
        raise HTTPException(413, detail=f"a scoring table may have at most {_MAX_SCORING_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(422, detail="the table must be UTF-8 text") from None
    try:
        loaded = load_scoring_text(text, source="<uploaded scoring table>")
    except RuleTableError as exc:
        found = [asdict(p) for p in exc.problems]
        return problem_response(422, "invalid", "the scoring table is not valid", problems=found)
    problems = check_scoring(loaded, hub.rules)
    if problems:
        found = [asdict(p) for p in problems]
        return problem_response(422, "invalid", "the scoring table contradicts the rule table", problems=found)
    at = hub.clock.now()
    actor = acting(request, None)
    seq = await hub.put_scoring_in_force(version=loaded.table.version, body=text, at=at, actor=actor)
    return ScoringVersionPublic(id=seq, version=loaded.table.version, put_at=at, put_by=actor)


@router.get(
    "/api/v1/assessment/scoring",
    response_model=list[ScoringVersionPublic],
    summary="Every scoring table put in force, newest first (the bundled one scores periods before the first)",
)
async def list_scoring(hub: HubDep) -> list[ScoringVersionPublic]:
    return [
        ScoringVersionPublic(id=seq, version=t.version, put_at=t.at, put_by=t.actor)
        for seq, t in reversed(await hub.scoring_tables())
    ]


# -- special bonus points (专项加分): entered by the supervision office, approved by a second person --------


class BonusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: Annotated[str, Field(max_length=16, description="the period it counts in: 2026-11, 2026-Q4, 2026")]
    unit_kind: Literal["post", "team", "module"]
    unit: Annotated[Text, Field(min_length=1, max_length=64, description="the officer, team or module")]
    points: Annotated[float, Field(ge=-50, le=50, allow_inf_nan=False)]
    reason: Annotated[Text, Field(min_length=2, max_length=500, description="why: kept with the bonus and shown")]


class BonusPublic(BaseModel):
    bonus: int
    period: str
    unit_kind: str
    unit: str
    points: float
    reason: str
    entered_by: str
    entered_at: datetime
    approved_by: str | None
    approved_at: datetime | None


def bonus_public(b: Bonus) -> BonusPublic:
    e, a = b.entered, b.approved
    return BonusPublic(
        bonus=b.bonus,
        period=e.period,
        unit_kind=e.unit_kind,
        unit=e.unit,
        points=e.points,
        reason=e.reason,
        entered_by=e.entered_by,
        entered_at=e.at,
        approved_by=a.approved_by if a else None,
        approved_at=a.at if a else None,
    )


@router.post(
    "/api/v1/assessment/bonuses",
    status_code=201,
    response_model=BonusPublic,
    summary="Enter a special bonus (专项加分) with its reason; it counts once a second person approves it",
)
async def enter_bonus(request: Request, hub: HubDep, body: BonusIn) -> BonusPublic:
    named = _period(body.period)
    bonus_id = await hub.enter_bonus(
        period=named,
        unit_kind=body.unit_kind,
        unit=body.unit,
        points=body.points,
        reason=body.reason,
        at=hub.clock.now(),
        actor=acting(request, None),
    )
    return bonus_public((await hub.bonuses())[bonus_id])


@router.post(
    "/api/v1/assessment/bonuses/{bonus_id}/approve",
    response_model=BonusPublic,
    summary="Approve a special bonus: refused (409) to the person who entered it",
)
async def approve_bonus(request: Request, hub: HubDep, bonus_id: RowId) -> BonusPublic:
    try:
        await hub.approve_bonus(bonus_id, at=hub.clock.now(), actor=acting(request, None))
    except BonusRefused as exc:
        raise HTTPException(404 if str(exc).startswith("no special bonus") else 409, str(exc)) from None
    return bonus_public((await hub.bonuses())[bonus_id])
