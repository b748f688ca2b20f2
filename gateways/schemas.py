"""API models, named by role (``IncidentCreate``, ``IncidentPublic``...), kept apart from the tables.

Responses are built as plain dicts by :func:`incident_json` and serialised once with orjson (the
intake path is hot); the models below document them in the OpenAPI schema, and the tests check
that every response validates against its model.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel, SkipValidation, model_validator

from dispatcher.briefing import Briefing
from dispatcher.core.incidents import Deadline, Incident, Report
from dispatcher.store import StoredEvent
from dispatcher.values import IncidentId, Latitude, Longitude, Text, VersionNumber
from rules.matcher import EscalationTarget
from rules.workdays import format_window


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: A photo's id in the media store (``POST /api/v1/media``): the SHA-256 of its bytes, lowercase hex.
MediaId = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="a photo's id from POST /api/v1/media")]
MAX_PHOTOS = 6
Photos: Any = Field(
    default_factory=list, max_length=MAX_PHOTOS, description="up to 6 photo ids, each stored first (POST /api/v1/media)"
)
PlaceCode = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class Location(_In):
    lat: Latitude
    lon: Longitude


class IncidentCreate(_In):
    """A report from a field officer, a device or a citizen."""

    report_id: str = Field(
        min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$", description="client-chosen idempotency key"
    )
    category: Text | None = Field(
        default=None,
        min_length=1,
        max_length=96,
        description="catalogue id, e.g. traffic.congestion; leave it out to classify the description by keywords",
    )
    description: Text = Field(min_length=1, max_length=4000)
    location: Location | None = None
    zone: Text | None = Field(default=None, min_length=1, max_length=64)
    severity: int | None = Field(default=None, ge=1, le=5)
    reporter: Text | None = Field(default=None, max_length=256)
    reporter_kind: Literal["officer", "device", "citizen", "hotline"] | None = None
    exercise: bool = Field(default=False, description="a drill (演练): marked on the board, kept out of real figures")
    occurred_at: AwareDatetime | None = None
    photos: list[MediaId] = Photos
    accuracy_m: float | None = Field(
        default=None, ge=0, le=100_000, allow_inf_nan=False, description="the GPS accuracy of location, metres"
    )
    place: PlaceCode | None = Field(default=None, description="the place code (龙游通) it is reported from")

    @model_validator(mode="after")
    def _placed(self) -> IncidentCreate:
        if self.location is None and self.zone is None:
            raise ValueError("give a location, a zone, or both")
        return self

    def to_report(self) -> Report:
        return Report(
            report_id=self.report_id,
            category=self.category,
            description=self.description,
            zone=self.zone,
            lat=self.location.lat if self.location else None,
            lon=self.location.lon if self.location else None,
            severity=self.severity,
            reporter=self.reporter,
            reporter_kind=self.reporter_kind,
            exercise=self.exercise,
            occurred_at=self.occurred_at,
            photos=tuple(self.photos),
            place=self.place,
            accuracy_m=self.accuracy_m,
        )


Actor = Field(default=None, max_length=128, description="who acted: an officer id, or an operator (acting for a unit)")
Version = Field(
    default=None,
    ge=1,
    description="the incident version the caller saw; when given and no longer current the answer is 409",
)


class UnitActionIn(_In):
    actor: Text | None = Actor
    reason: Text | None = Field(default=None, max_length=1000, description="required for return (回退): why not ours")
    version: VersionNumber | None = Version
    note: Text | None = Field(default=None, max_length=4000, description="what was done (mainly with resolve)")
    photos: list[MediaId] = Photos


class CloseIn(_In):
    actor: Text | None = Actor
    version: VersionNumber | None = Version


class CancelIn(_In):
    reason: Text = Field(min_length=1, max_length=1000)
    actor: Text | None = Actor
    version: VersionNumber | None = Version


class OfficerChoiceIn(_In):
    officer: Text | None = Field(default=None, max_length=64, description="leave out: the best free officer now")
    actor: Text | None = Actor
    version: VersionNumber | None = Version


class TeamIn(_In):
    team: Text = Field(min_length=1, max_length=64)
    actor: Text | None = Actor
    version: VersionNumber | None = Version


class ReassignIn(_In):
    to_team: Text = Field(min_length=1, max_length=64)
    actor: Text | None = Actor
    version: VersionNumber | None = Version


class EscalateIn(_In):
    team: Text | None = Field(default=None, max_length=64, description="default: the lead team")
    actor: Text | None = Actor
    version: VersionNumber | None = Version


class PriorityIn(_In):
    priority: int = Field(ge=1, le=5)
    actor: Text | None = Actor
    version: VersionNumber | None = Version


class MergeIn(_In):
    into: IncidentId = Field(description="the incident that stays")
    actor: Text | None = Actor
    version: VersionNumber | None = Version
    into_version: VersionNumber | None = Field(
        default=None,
        description="the version of the incident that stays, as the caller saw it; when no longer current: 409",
    )


class SplitIn(_In):
    report_id: Text = Field(min_length=1, max_length=128)
    actor: Text | None = Actor


class UnitReportIn(_In):
    """What an officer's device reports: status, position, or both."""

    status: Literal["available", "assigned", "en_route", "on_scene", "off_duty"] | None = None
    location: Location | None = None
    accuracy_m: float | None = Field(
        default=None,
        ge=0,
        le=100_000,
        allow_inf_nan=False,
        description="the phone's GPS accuracy of location, metres (accepted and echoed; not stored)",
    )

    @model_validator(mode="after")
    def _something(self) -> UnitReportIn:
        if self.status is None and self.location is None:
            raise ValueError("give a status, a location, or both")
        return self


class HandoverAckIn(_In):
    actor: Text = Field(min_length=1, max_length=128, description="the incoming duty lead")


class NoteIn(_In):
    text: Text = Field(min_length=1, max_length=4000)
    author: Text | None = Field(default=None, max_length=128)
    photos: list[MediaId] = Photos
    note_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="client-chosen key: a retry with the same key on the same incident adds nothing (200)",
    )
    public: bool = Field(default=False, description="shown to the reporter (Open311 status_notes); internal otherwise")


class DeadlinePublic(BaseModel):
    kind: str
    due_at: datetime
    state: str
    settled_at: datetime | None


class EscalationPublic(BaseModel):
    kind: str = Field(description="the missed deadline's kind, or manual")
    step: int
    level: str
    due_at: datetime
    state: str = Field(description="pending, raised or void")
    settled_at: datetime | None


class AssignmentPublic(BaseModel):
    team: str
    role: str
    state: str
    officer: str | None = Field(description="the unit sent; null: the whole team, or waiting when `waiting`")
    waiting: bool = Field(description="the team has a roster but nobody could go yet")
    tried: list[str] = Field(description="officers it was sent to before")
    dispatched_at: datetime
    updated_at: datetime
    deadlines: list[DeadlinePublic]
    escalations: list[EscalationPublic]


class DeliveryPublic(BaseModel):
    department: str
    state: str = Field(description="pending, delivered or failed (phone the department)")
    attempts: int
    last_error: str | None
    settled_at: datetime | None


class AttachedReportPublic(BaseModel):
    report_id: str
    description: str
    reporter: str | None
    reporter_kind: str | None
    location: Location | None
    attached_at: datetime
    merged_from: int | None
    photos: list[str] = Field(default_factory=list, description="the report's photo ids")


class RoutingPublic(BaseModel):
    table_version: str
    rule_id: str | None = Field(description="the rule that routed it; null when it went to a queue")
    queue: str | None = Field(
        description="triage (no or unknown category), admission (no owner in the table) "
        "or handover (a county department)"
    )
    handover: str | None = Field(description="the county department the boundary list gives it to")


class LeaderPublic(BaseModel):
    name: str
    title: str


class EscalationStepPublic(LeaderPublic):
    after_s: float = Field(description="seconds after a missed deadline")
    level: str


class ReportReceipt(BaseModel):
    """The answer to a report whose incident the reporter may not read (by the policy's ``GET`` entry).

    A report that repeats a known ``report_id`` or joins an open incident close by is answered with the
    incident; a reporter outside that incident (another team's officer, another module's lead) learns only
    that the report was taken, and where it went, not what others reported.
    """

    id: int = Field(description="the incident the report created, repeated or joined")
    report_id: str = Field(description="the report_id sent")
    status: str
    outcome: Literal["created", "known", "joined"]


class CheckPublic(BaseModel):
    kind: Literal["verify", "review"]
    due_at: datetime
    state: str
    settled_at: datetime | None


class ApprovalPublic(BaseModel):
    role: str
    actor: str | None
    at: datetime


class RequestPublic(BaseModel):
    id: int
    kind: Literal["extension", "parking"]
    team: str | None
    reason: str
    until: datetime = Field(description="extension: the new resolution due time; parking: the review date")
    state: Literal["requested", "endorsed", "approved", "refused"]
    requested_by: str | None
    requested_at: datetime
    needs: list[str] = Field(description="the approvers' roles: module_lead, party_secretary")
    approvals: list[ApprovalPublic]
    decided_at: datetime | None
    refusal: str | None


class VerificationPublic(BaseModel):
    at: datetime
    verifier: str
    passed: bool
    reason: str
    photos: list[str]
    flags: list[str] = Field(description="why the evidence looks doubtful (shown, not refused)")


class ClosingPublic(BaseModel):
    """Closing the loop: verification (核查), extensions (延期), parking (挂账)."""

    verify_within: str | None = Field(description="the rule's verification window (e.g. 2h, 1wd); null: none needed")
    max_extensions: int
    extensions: int = Field(description="extensions approved")
    reworks: int = Field(description="verifications failed (返工)")
    checks: list[CheckPublic] = Field(description="the incident's own deadlines: verification due, parking review")
    requests: list[RequestPublic]
    verifications: list[VerificationPublic]


class IncidentPublic(BaseModel):
    id: int
    report_id: str
    status: str
    category: str | None = Field(description="as routed: the reported category, or the one the keywords chose")
    reported_category: str | None
    description: str
    zone: str | None
    zones: list[str]
    location: Location | None
    severity: int | None
    reporter: str | None
    reporter_kind: str | None
    exercise: bool
    occurred_at: datetime | None
    module: str
    priority: int
    routing: RoutingPublic
    escalate_to: LeaderPublic
    escalation: list[EscalationStepPublic]
    assignments: list[AssignmentPublic]
    reported_at: datetime
    updated_at: datetime
    version: int
    report_count: int = Field(description="the first report and every one that joined it")
    reports: list[AttachedReportPublic] = Field(description="the reports that joined after the first")
    merged_into: int | None
    delivery: DeliveryPublic | None = Field(description="forwarding to the county department, for county matters")
    photos: list[str] = Field(
        default_factory=list,
        description="the first report's photo ids (GET /api/v1/media/{id}); notes' and steps' photos are in the "
        "timeline (NoteAdded, UnitMoved), joined reports' in reports",
    )
    place: str | None = Field(default=None, description="the place code (龙游通) it was reported from")
    accuracy_m: float | None = Field(default=None, description="the GPS accuracy of location, metres")
    closing: ClosingPublic


class EventPublic(BaseModel):
    seq: int
    type: str
    data: dict[str, Any]


class IncidentDetail(IncidentPublic):
    timeline: list[EventPublic]


class IncidentsPublic(BaseModel):
    data: list[IncidentPublic]
    count: int


#: The most reports one ``POST /api/v1/incidents/batch`` takes (a writer batch holds 512 commands by default).
BATCH_MAX = 500


class IncidentsBatchCreate(RootModel[list[SkipValidation[IncidentCreate]]]):
    """The body of ``POST /api/v1/incidents/batch``: up to 500 reports, each an ``IncidentCreate``.

    Only the list is validated as a whole (a JSON array of at most :data:`BATCH_MAX` items); each item is
    validated on its own, so that one bad report is refused alone (see :class:`BatchOutcome`).
    """

    # The schema says what each item must be; the items are left as they came (whatever JSON value), and
    # the route validates each with IncidentCreate itself.
    root: list[SkipValidation[IncidentCreate]] = Field(max_length=BATCH_MAX)


class ItemProblem(BaseModel):
    """One validation problem of a batch item, as a ``422`` problem's ``errors`` name them."""

    field: str = Field(description="the field of the report, dotted (`location.lat`); `body`: the item itself")
    message: str
    type: str | None = Field(default=None, description="the kind of problem (`missing`, `text_nul`...)")


class BatchOutcome(BaseModel):
    """What became of one report of a batch, at its ``index`` in the request.

    ``created``, ``known`` (a retry of a stored ``report_id``, earlier in the same batch included) and
    ``joined`` (it joined an open incident close by) carry the incident's ``id`` and ``status``, and the
    ``incident`` itself only when the reporter may read it (as ``POST /api/v1/incidents`` answers a
    :class:`ReportReceipt` otherwise). ``refused`` carries the ``problem``, and ``errors`` when the report
    was not valid; nothing of it was stored.
    """

    index: int = Field(description="the report's position in the request, from 0")
    report_id: str | None = Field(description="the report_id sent (null when the item had no valid one)")
    outcome: Literal["created", "known", "joined", "refused"]
    id: int | None = Field(default=None, description="the incident the report created, repeated or joined")
    status: str | None = None
    incident: IncidentPublic | None = Field(default=None, description="the incident, when the reporter may read it")
    code: str | None = Field(default=None, description="refused: the problem code, as the HTTP API's (docs/api.md)")
    problem: str | None = Field(default=None, description="refused: why, in one line")
    errors: list[ItemProblem] | None = Field(default=None, description="refused as invalid: each problem")


class IncidentsBatchPublic(BaseModel):
    """The answer to ``POST /api/v1/incidents/batch``: one outcome per report, in the request's order."""

    data: list[BatchOutcome]
    count: int = Field(description="reports in the request")
    created: int
    known: int
    joined: int
    refused: int


class EventsPublic(BaseModel):
    data: list[EventPublic]
    last_seq: int


def _deadlines_json(deadlines: tuple[Deadline, ...], built: dict[int, Any], encoded: bool = False) -> Any:
    """``deadlines`` as DeadlinePublic data; ``built``: the lists made for this incident so far, by tuple (the
    incident holds every tuple while its answer is built, so their ids stay theirs). ``encoded``: the list as an
    ``orjson.Fragment``, encoded once for every assignment that shares the tuple."""
    found = built.get(id(deadlines))
    if found is None:
        found = [
            {"kind": d.kind._value_, "due_at": d.due_at, "state": d.state._value_, "settled_at": d.settled_at}
            for d in deadlines
        ]
        if encoded:
            found = orjson.Fragment(orjson.dumps(found))
        built[id(deadlines)] = found
    return found


#: The escalation chains' data, by chain (a tuple the rule book compiled once and every incident of the rule
#: shares), each with the chain itself so that its id stays its own while it is kept. Bounded: a chain read back
#: from the store is a tuple of its own.
_escalations: dict[int, tuple[tuple[EscalationTarget, ...], list[dict[str, Any]], orjson.Fragment]] = {}
_ESCALATIONS_KEPT = 1024


def _escalation_json(chain: tuple[EscalationTarget, ...], encoded: bool = False) -> Any:
    """``chain`` as EscalationStepPublic data, built once per chain (a batch of one rule's reports shares it);
    ``encoded``: as an ``orjson.Fragment`` of that data, encoded once per chain too.

    The list is shared by every answer that holds the chain: callers serialise it, never change it.
    """
    kept = _escalations.get(id(chain))
    if kept is None or kept[0] is not chain:
        data = [{"after_s": t.after.total_seconds(), "level": t.level, "name": t.name, "title": t.title} for t in chain]
        if len(_escalations) >= _ESCALATIONS_KEPT:
            _escalations.clear()
        kept = _escalations[id(chain)] = (chain, data, orjson.Fragment(orjson.dumps(data)))
    return kept[2] if encoded else kept[1]


def incident_json(incident: Incident, *, encoded: bool = False) -> dict[str, Any]:
    """The :class:`IncidentPublic` shape as plain data (datetimes left for orjson).

    Enum members are read by ``_value_`` (the member's own attribute), not ``.value`` (a Python-level descriptor
    call each time): an answer holds some forty of them.

    ``encoded``: for data that ``orjson.dumps`` writes at once and nobody reads (the single door's answer): the
    escalation chain and each assignment's deadlines are ``orjson.Fragment``s, their JSON encoded once (the chain
    once per chain, the deadlines once for every assignment that shares them), the same bytes in the end.
    """
    report = incident.report
    # A new incident's assignments share one tuple of deadlines (the same windows from the same instant): its
    # list is built once and written for each (orjson writes a shared list as often as it appears).
    deadlines: dict[int, Any] = {}
    return {
        "id": incident.id,
        "report_id": report.report_id,
        "status": incident.status._value_,
        "category": incident.category,
        "reported_category": report.category,
        "description": report.description,
        "zone": report.zone,
        "zones": list(incident.zones),
        "location": {"lat": report.lat, "lon": report.lon} if report.lat is not None else None,
        "severity": report.severity,
        "reporter": report.reporter,
        "reporter_kind": report.reporter_kind,
        "exercise": report.exercise,
        "occurred_at": report.occurred_at,
        "module": incident.module,
        "priority": incident.priority,
        "routing": {
            "table_version": incident.table_version,
            "rule_id": incident.rule_id,
            "queue": incident.queue,
            "handover": incident.handover,
        },
        "escalate_to": {"name": incident.escalate_to_name, "title": incident.escalate_to_title},
        "escalation": _escalation_json(incident.escalation, encoded),
        "assignments": [
            {
                "team": a.team,
                "role": a.role._value_,
                "state": a.state._value_,
                "officer": a.officer,
                "waiting": a.waiting,
                "tried": list(a.tried),
                "dispatched_at": a.dispatched_at,
                "updated_at": a.updated_at,
                "deadlines": _deadlines_json(a.deadlines, deadlines, encoded),
                "escalations": [
                    {
                        "kind": e.kind,
                        "step": e.step,
                        "level": e.level,
                        "due_at": e.due_at,
                        "state": e.state._value_,
                        "settled_at": e.settled_at,
                    }
                    for e in a.escalations
                ],
            }
            for a in incident.assignments
        ],
        "reported_at": incident.reported_at,
        "updated_at": incident.updated_at,
        "version": incident.version,
        "report_count": incident.report_count,
        "reports": [
            {
                "report_id": r.report.report_id,
                "description": r.report.description,
                "reporter": r.report.reporter,
                "reporter_kind": r.report.reporter_kind,
                "location": {"lat": r.report.lat, "lon": r.report.lon} if r.report.lat is not None else None,
                "attached_at": r.at,
                "merged_from": r.merged_from,
                "photos": list(r.report.photos),
            }
            for r in incident.reports
        ],
        "merged_into": incident.merged_into,
        "delivery": {
            "department": incident.delivery.department,
            "state": incident.delivery.state.value,
            "attempts": incident.delivery.attempts,
            "last_error": incident.delivery.last_error,
            "settled_at": incident.delivery.settled_at,
        }
        if incident.delivery is not None
        else None,
        "photos": list(report.photos),
        "place": report.place,
        "accuracy_m": report.accuracy_m,
        "closing": closing_json(incident),
    }


#: A window's text, by window: the rule table's few windows (immutable values), each formatted once, not per answer.
_window_text = lru_cache(maxsize=256)(format_window)


def closing_json(incident: Incident) -> dict[str, Any]:
    loop = incident.loop
    if not (loop.requests or loop.checks or loop.verifications):
        # A new incident's loop (most answers of the intake doors): what records() gives for nothing recorded,
        # without its three empty walks and the two counts' generators.
        return {
            "verify_within": _window_text(loop.verify_within) if loop.verify_within is not None else None,
            "max_extensions": loop.max_extensions,
            "extensions": 0,
            "reworks": 0,
            "requests": [],
            "checks": [],
            "verifications": [],
        }
    return {
        "verify_within": _window_text(loop.verify_within) if loop.verify_within is not None else None,
        "max_extensions": loop.max_extensions,
        "extensions": loop.extensions,
        "reworks": loop.reworks,
        **loop.records(),
    }


def event_json(event: StoredEvent) -> str:
    """One stored event as the JSON text of :class:`EventPublic` (the payload is spliced in as stored)."""
    return f'{{"seq":{event.seq},"type":"{event.type}","data":{event.payload}}}'


# -- closing the loop ------------------------------------------------------------------------------

#: A photo id in the photo store: the SHA-256 of its bytes, in lower-case hex.
PhotoId = Field(pattern=r"^[0-9a-f]{64}$")


class ExtensionIn(_In):
    """延期: a team asks for its resolution deadline to move to ``due_at``."""

    team: Text = Field(min_length=1, max_length=64)
    reason: Text = Field(min_length=1, max_length=1000)
    due_at: AwareDatetime
    actor: Text | None = Actor


class ParkingIn(_In):
    """挂账: park the incident until ``review_at`` (approval by the module lead, and the party secretary for 1–2)."""

    reason: Text = Field(min_length=1, max_length=1000)
    review_at: AwareDatetime
    actor: Text | None = Actor


class DecisionIn(_In):
    """An approver's decision; a refusal needs a ``reason``."""

    reason: Text | None = Field(default=None, max_length=1000)
    actor: Text | None = Actor


class ResumeIn(_In):
    actor: Text | None = Actor


class VerificationIn(_In):
    """核查: pass (closes the incident) or fail (返工, with a reason) with the evidence photos' ids."""

    passed: bool
    reason: Text | None = Field(default=None, max_length=1000, description="required when it failed")
    photos: list[Annotated[str, PhotoId]] = Field(default_factory=list, max_length=20)
    actor: Text | None = Actor
    version: VersionNumber | None = Version


class LaneItemPublic(BaseModel):
    incident: IncidentPublic
    request_id: int | None = Field(default=None, description="the waiting request (extension requests lane)")


class LanesPublic(BaseModel):
    """The board's closing-the-loop lanes: waiting for verification, extension requests, parked."""

    verifying: list[LaneItemPublic]
    extension_requests: list[LaneItemPublic]
    parked: list[LaneItemPublic]


class AlarmAckIn(_In):
    """An operator acknowledging an alarm on the board (``POST .../alarms/{seq}/ack``)."""

    actor: Text | None = Field(default=None, max_length=128, description="the operator, e.g. operator:王芳")


class StageTimesPublic(BaseModel):
    """Nearest-rank median and p90 of one stage's durations, in seconds."""

    count: int
    median_s: float | None
    p90_s: float | None


class UnitFiguresPublic(BaseModel):
    """One unit's row of the briefing (简报); docs/reports.md defines each figure."""

    unit: str | None = Field(description="null: incidents with no such unit (no lead team, officer or zone)")
    received: int = Field(description="受理")
    accepted: int = Field(description="立案")
    due: int = Field(description="应结案")
    closed: int = Field(description="结案")
    due_closed: int
    on_time: int
    overdue_open: int
    close_rate: float | None = Field(description="结案率: due_closed / due")
    on_time_rate: float | None = Field(description="按期结案率: on_time / due")
    extended: int = Field(description="of the due ones, with an extension (延期) approved")
    reworked: int = Field(description="of the closed ones, sent back by a failed verification (返工)")
    extension_rate: float | None = Field(description="延期率: extended / due")
    rework_rate: float | None = Field(description="返工率: reworked / closed")
    stages: dict[str, StageTimesPublic] = Field(description="ack, arrive, resolve")


class RuleReturnsPublic(BaseModel):
    rule_id: str | None
    returns: int = Field(description="回退 in the period, counted against the rule that routed the incident")


class BriefingPublic(BaseModel):
    start: datetime
    end: datetime
    by: str
    units: list[UnitFiguresPublic]
    returns: list[RuleReturnsPublic]


def briefing_public(briefing: Briefing) -> BriefingPublic:
    return BriefingPublic(
        start=briefing.start,
        end=briefing.end,
        by=briefing.by.value,
        units=[
            UnitFiguresPublic(
                unit=u.unit,
                received=u.received,
                accepted=u.accepted,
                due=u.due,
                closed=u.closed,
                due_closed=u.due_closed,
                on_time=u.on_time,
                overdue_open=u.overdue_open,
                close_rate=u.close_rate,
                on_time_rate=u.on_time_rate,
                extended=u.extended,
                reworked=u.reworked,
                extension_rate=u.extension_rate,
                rework_rate=u.rework_rate,
                stages={
                    s.value: StageTimesPublic(count=t.count, median_s=t.median_s, p90_s=t.p90_s)
                    for s, t in u.stages.items()
                },
            )
            for u in briefing.units
        ],
        returns=[RuleReturnsPublic(rule_id=r.rule_id, returns=r.returns) for r in briefing.returns],
    )
