"""Events: immutable facts, named in the past tense, recorded in an append-only log.

Every change to an incident is one or more of these, written in the same transaction as the
change itself and given a global, strictly increasing sequence number by the store. The board,
replays and (later) the supervision office's scoring all read this log.

Serialisation to and from plain JSON lives here too (:func:`encode` / :func:`decode`), so the
store and the gateways never invent their own shapes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, get_type_hints

import orjson

from dispatcher.core.lifecycle import AssignmentState, IncidentStatus, Role
from dispatcher.core.records import quick_init


class DeadlineKind(StrEnum):
    ACK = "ack"
    ARRIVE = "arrive"
    RESOLVE = "resolve"
    # The incident's own deadlines (no team): closing the loop.
    VERIFY = "verify"  # 核查 due: the incident waits for a verifier
    REVIEW = "review"  # 挂账 review date: a parked incident must be looked at again


#: The kinds an assignment carries (the others are the incident's own).
TEAM_DEADLINE_KINDS = (DeadlineKind.ACK, DeadlineKind.ARRIVE, DeadlineKind.RESOLVE)


class AssignReason(StrEnum):
    """Why an officer was given a team's assignment (see :class:`OfficerAssigned`)."""

    AVAILABLE = "available"  # someone became free for a waiting assignment
    REDISPATCH = "redispatch"  # the previous officer let the acknowledgement deadline pass
    REASSIGN = "reassign"  # an operator chose


# Facts are frozen dataclasses *without* slots, unlike the incident's records: each is serialised once when
# it is logged, and orjson reads a dataclass's ``__dict__`` in one pass but a slotted one field by field
# (a five-team report's two events took 15 µs slotted, 5 µs without). They live no longer than their batch
# and the board's frames, so the dicts cost no lasting memory. Built by :mod:`dispatcher.core.records`.
@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every fact: which incident, and when it happened (the injected clock's time)."""

    incident_id: int
    at: datetime


@dataclass(frozen=True, kw_only=True)
class DispatchedUnit:
    team: str
    role: Role
    ack_due: datetime | None
    arrive_due: datetime | None
    resolve_due: datetime | None
    officer: str | None = None  # None: nobody of the team could go; the assignment waits


@dataclass(frozen=True, kw_only=True)
class IncidentReported(Event):
    report_id: str
    category: str | None
    reported_category: str | None
    keywords: tuple[str, ...]
    description: str
    zones: tuple[str, ...]
    lat: float | None
    lon: float | None
    severity: int | None
    reporter: str | None
    reporter_kind: str | None
    exercise: bool
    occurred_at: datetime | None
    module: str
    queue: str | None
    handover: str | None
    priority: int
    rule_id: str | None
    table_version: str
    photos: tuple[str, ...] = ()  # content addresses in the media store (the report's evidence)
    place: str | None = None  # the place code (龙游通) it was reported from
    accuracy_m: float | None = None  # the phone's GPS accuracy for lat/lon


@dataclass(frozen=True, kw_only=True)
class UnitsDispatched(Event):
    """All teams of a routing decision, dispatched together in one step (or a team an operator added)."""

    units: tuple[DispatchedUnit, ...]
    incident_status: IncidentStatus
    actor: str | None = None


@dataclass(frozen=True, kw_only=True)
class UnitMoved(Event):
    """A team's assignment changed state (acknowledged, en route, on scene, resolved)."""

    team: str
    from_state: AssignmentState
    to_state: AssignmentState
    actor: str | None
    incident_status: IncidentStatus
    note: str | None = None  # what the officer wrote with the step (a resolution's account)
    photos: tuple[str, ...] = ()  # evidence taken with the step (content addresses)


@dataclass(frozen=True, kw_only=True)
class IncidentClosed(Event):
    actor: str | None
    incident_status: IncidentStatus = IncidentStatus.CLOSED


@dataclass(frozen=True, kw_only=True)
class IncidentCancelled(Event):
    actor: str | None
    reason: str
    incident_status: IncidentStatus = IncidentStatus.CANCELLED


@dataclass(frozen=True, kw_only=True)
class NoteAdded(Event):
    author: str | None
    text: str
    public: bool = False  # shown to the reporter (Open311 ``status_notes``); internal otherwise
    photos: tuple[str, ...] = ()
    note_id: str | None = None  # the client's key: a retried note with the same key is not added again


@dataclass(frozen=True, kw_only=True)
class DeadlineMissed(Event):
    team: str
    kind: DeadlineKind
    due_at: datetime
    late_by: timedelta


@dataclass(frozen=True, kw_only=True)
class EscalationRaised(Event):
    """A missed promise climbed the chain (team → module lead → party secretary).

    ``kind`` is the missed deadline's kind, or ``manual`` when an operator escalated; ``step`` is the
    1-based position in the incident's chain. Each (team, kind, step) is raised at most once.
    """

    team: str
    kind: str
    level: str
    to_name: str
    to_title: str
    step: int = 1
    actor: str | None = None


@dataclass(frozen=True, kw_only=True)
class OfficerAssigned(Event):
    """An officer was given (or took over) a team's assignment.

    ``reason`` is one of :class:`AssignReason`.
    """

    team: str
    officer: str
    previous: str | None
    reason: str
    actor: str | None
    ack_due: datetime | None


@dataclass(frozen=True, kw_only=True)
class AssignmentWaiting(Event):
    """Nobody of ``teams`` can go now: their assignments wait in the queue and the module lead is alerted.

    One fact for every team of a step that waits (a report whose five teams all wait makes one, not
    five). Logs written before it named one ``team`` per event; :func:`decode` reads those as
    ``teams=(team,)`` (the stored payload is never rewritten, so readers of raw payloads see both shapes).
    """

    teams: tuple[str, ...]
    alerted_name: str
    alerted_title: str


@dataclass(frozen=True, kw_only=True)
class AssignmentReturned(Event):
    """回退: a team sent its assignment back as not theirs; counted against ``rule_id``."""

    team: str
    officer: str | None
    reason: str
    actor: str | None
    rule_id: str | None
    incident_status: IncidentStatus


@dataclass(frozen=True, kw_only=True)
class AssignmentReassigned(Event):
    """An operator moved a team's part to another team; the old assignment is cancelled."""

    from_team: str
    to_team: str
    actor: str | None


@dataclass(frozen=True, kw_only=True)
class PriorityChanged(Event):
    from_priority: int
    to_priority: int
    actor: str | None


@dataclass(frozen=True, kw_only=True)
class ReportAttached(Event):
    """Another report of the same matter joined the incident instead of dispatching again."""

    report_id: str
    reporter: str | None
    reporter_kind: str | None
    description: str
    lat: float | None
    lon: float | None
    report_count: int
    merged_from: int | None = None
    actor: str | None = None
    photos: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ReportSplit(Event):
    """An operator split an attached report off into an incident of its own."""

    report_id: str
    new_incident_id: int
    report_count: int
    actor: str | None


@dataclass(frozen=True, kw_only=True)
class IncidentMerged(Event):
    """The incident was folded into ``into_incident_id`` (its reports now count there)."""

    into_incident_id: int
    actor: str | None
    incident_status: IncidentStatus = IncidentStatus.MERGED


@dataclass(frozen=True, kw_only=True)
class HandoverAttempted(Event):
    """One try at forwarding a county matter through the outbound webhook, and how it went.

    ``final``: no more tries follow (delivered, or given up after the last attempt).
    """

    department: str
    attempt: int
    ok: bool
    status_code: int | None
    error: str | None
    final: bool


#: Every event type by its stored name (the class name).
EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        IncidentReported,
        UnitsDispatched,
        UnitMoved,
        IncidentClosed,
        IncidentCancelled,
        NoteAdded,
        DeadlineMissed,
        EscalationRaised,
        OfficerAssigned,
        AssignmentWaiting,
        AssignmentReturned,
        AssignmentReassigned,
        PriorityChanged,
        ReportAttached,
        ReportSplit,
        IncidentMerged,
        HandoverAttempted,
    )
}


def encode(event: Event) -> dict[str, Any]:
    """The event as plain JSON-ready data, without its type name (the store keeps that apart)."""
    return {f.name: _plain(getattr(event, f.name)) for f in dataclasses.fields(event)}


def to_json(event: Event | TownshipEvent) -> str:
    """The same data as :func:`encode`, serialised straight to JSON text (the writer's hot path)."""
    return orjson.dumps(event, default=_json_default).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def decode(type_name: str, data: dict[str, Any]) -> Event:
    """The inverse of :func:`encode`, and of every earlier shape a stored log may hold; raises ``KeyError``
    for an unknown type name."""
    upgrade = _EARLIER_SHAPES.get(type_name)
    if upgrade is not None:
        data = upgrade(data)
    event: Event = _build(EVENT_TYPES[type_name], data)
    return event


def _one_team_waiting(data: dict[str, Any]) -> dict[str, Any]:
    if "teams" in data or "team" not in data:
        return data
    upgraded = {k: v for k, v in data.items() if k != "team"}
    upgraded["teams"] = [data["team"]]
    return upgraded


def waiting_teams(payload: str | bytes) -> tuple[str, ...]:
    """The teams a stored ``AssignmentWaiting`` payload names, in either shape."""
    data = _one_team_waiting(orjson.loads(payload))
    return tuple(data.get("teams") or ())


#: Payload shapes of a type that earlier versions stored, read into today's class (the log is never rewritten).
_EARLIER_SHAPES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"AssignmentWaiting": _one_team_waiting}


_HINTS: dict[type, dict[str, Any]] = {}


def _build(cls: type[Any], data: dict[str, Any]) -> Any:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    kwargs = {f.name: _typed(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name in data}
    return cls(**kwargs)


def _typed(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    text = str(hint)
    if hint is datetime or text.startswith("datetime.datetime"):
        return datetime.fromisoformat(value)
    if hint is timedelta:
        return timedelta(seconds=value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if text == "tuple[dispatcher.core.events.DispatchedUnit, ...]":
        return tuple(_build(DispatchedUnit, v) for v in value)
    if text.startswith("tuple["):
        return tuple(value)
    return value


# -- alarms (the board's shared acknowledgement) ------------------------------------------------
# Kept apart at the end of the module so it merges cleanly with other new event types.


@dataclass(frozen=True, kw_only=True)
class AlarmAcknowledged(Event):
    """An operator acknowledged an alarm on the board: every board stops sounding it.

    ``alarm_seq`` is the ``seq`` of the event that raised the alarm (a ``DeadlineMissed``, or an
    ``EscalationRaised`` that no miss preceded).
    """

    alarm_seq: int
    actor: str | None


EVENT_TYPES[AlarmAcknowledged.__name__] = AlarmAcknowledged


@dataclass(frozen=True, kw_only=True)
class AlarmsResolved(Event):
    """A team kept, late, a promise it had missed: the alarms raised for it clear by themselves.

    ``kinds`` are the promises (``ack``, ``arrive``, ``resolve``) the team's move to ``to_state`` kept
    after one of them was missed (or, for ``ack``, after its officer let the window pass and it was
    re-sent). Every open alarm of this incident for ``team`` and one of ``kinds`` (the miss and the
    escalations that followed it) is resolved; nobody has to acknowledge it. Alarms that still need a
    person (an operator's manual escalation) are not touched.
    """

    team: str
    kinds: tuple[str, ...]
    to_state: AssignmentState


EVENT_TYPES[AlarmsResolved.__name__] = AlarmsResolved
# -- closing the loop: extensions (延期), parking (挂账), verification (核查) ------------------------


@dataclass(frozen=True, kw_only=True)
class ExtensionRequested(Event):
    """延期: a team asked for its resolution deadline to move to ``due_at``."""

    request_id: int
    team: str
    reason: str
    previous_due: datetime | None
    due_at: datetime
    actor: str | None


@dataclass(frozen=True, kw_only=True)
class ParkingRequested(Event):
    """挂账: the incident cannot be solved for now; ``review_at`` is when it must be looked at again."""

    request_id: int
    reason: str
    review_at: datetime
    needs: tuple[str, ...]  # the approvers' roles: module_lead, and party_secretary for priority 1–2
    actor: str | None


@dataclass(frozen=True, kw_only=True)
class RequestDecided(Event):
    """An approver decided on a request: ``state`` is ``endorsed`` (another approval is needed),
    ``approved`` or ``refused``. An approved extension moved ``team``'s resolution deadline to ``due_at``."""

    request_id: int
    kind: str  # extension | parking
    team: str | None
    state: str
    role: str
    reason: str
    actor: str | None
    due_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class IncidentParked(Event):
    """The parking was approved: every running deadline stopped; ``review_at`` raises an alarm when it comes."""

    request_id: int
    review_at: datetime
    actor: str | None
    teams: tuple[str, ...] = ()  # the live teams whose deadlines stopped


@dataclass(frozen=True, kw_only=True)
class IncidentResumed(Event):
    """Taken out of the parked list: the live teams' promises start again from now."""

    actor: str | None
    incident_status: IncidentStatus
    teams: tuple[str, ...] = ()  # the live teams whose deadlines start again


@dataclass(frozen=True, kw_only=True)
class VerificationAwaited(Event):
    """待核查: every team resolved; a verifier who handled none of it must check it by ``due_at``."""

    due_at: datetime


@dataclass(frozen=True, kw_only=True)
class IncidentVerified(Event):
    """核查: ``passed`` closed the incident (结案); a failure sent it back to ``teams`` (返工 number ``rework``).

    ``flags``: why the evidence looks doubtful (photos far from the place or long before): shown, not refused.
    """

    verifier: str
    passed: bool
    reason: str
    photos: tuple[str, ...]
    flags: tuple[str, ...]
    teams: tuple[str, ...]
    rework: int
    incident_status: IncidentStatus


EVENT_TYPES.update(
    (cls.__name__, cls)
    for cls in (
        ExtensionRequested,
        ParkingRequested,
        RequestDecided,
        IncidentParked,
        IncidentResumed,
        VerificationAwaited,
        IncidentVerified,
    )
)


# -- the township's log: facts about the command room, not about one incident -------------------
# Stored in the same log with the same global ``seq``, with no incident (``incident_id`` NULL in the
# event table, absent from the payload), so a replay, a board or a second replica sees them in order.


@dataclass(frozen=True, kw_only=True)
class TownshipEvent:
    """Base of a fact about the township's command room (its roster, rule table, shifts): when it happened."""

    at: datetime


@dataclass(frozen=True, kw_only=True)
class HandoverRecorded(TownshipEvent):
    """交接班: a shift began and its team's handover summary was recorded for the incoming duty lead.

    ``open_incidents``: the incidents the summary lists; ``about_to_breach``: how many of their
    running deadlines fall due within the summary's window (or have passed).
    """

    handover_id: int
    team: str
    shift_id: str
    incoming_lead: str | None
    open_incidents: tuple[int, ...]
    running_deadlines: int
    about_to_breach: int


@dataclass(frozen=True, kw_only=True)
class HandoverAcknowledged(TownshipEvent):
    """The incoming duty lead took the handover over (recorded once: a second click records nothing)."""

    handover_id: int
    team: str
    actor: str


@dataclass(frozen=True, kw_only=True)
class RosterLoaded(TownshipEvent):
    """A roster was put in force (over HTTP, or from the roster file when none was stored)."""

    version: str
    previous: str
    officers: int
    shifts: int
    actor: str | None


@dataclass(frozen=True, kw_only=True)
class RulesPutInForce(TownshipEvent):
    """A rule table (the boundary list) was put in force; ``table_id`` names its stored text.

    ``previous``: the version it replaced; ``None`` when the table stored was already in force in
    memory: the table of ``DISPATCHER_RULES_PATH`` stored at start (the first, or forced from the file).
    """

    table_id: int
    version: str
    previous: str | None
    actor: str | None


@dataclass(frozen=True, kw_only=True)
class AlertIssued(TownshipEvent):
    """The command room issued a public notice as a CAP 1.2 message (an alert, an update or a cancel).

    ``document`` is the CAP XML exactly as issued: served as it is, never changed (an update or a cancel is a
    new message whose ``references`` name earlier ones, ``referenced``: their ``seq``). ``at`` is its ``sent``.
    ``status`` is ``Exercise`` for a drill's notice, else ``Actual``.
    """

    identifier: str
    sender: str
    status: str
    msg_type: str
    referenced: tuple[int, ...]
    incident_id: int | None
    headline: str
    actor: str | None
    document: str


@dataclass(frozen=True, kw_only=True)
class WebhookDisabled(TownshipEvent):
    """A webhook subscription was disabled after a long run of failed deliveries: someone must look at it."""

    subscription_id: int
    url: str
    reason: str
    delivered_seq: int


@dataclass(frozen=True, kw_only=True)
class BonusEntered(TownshipEvent):
    """专项加分: the supervision office entered ``points`` for a post, team or module (``unit_kind``,
    ``unit``) in ``period`` (``2026-11``, ``2026-Q4``), with its reason. It counts once another person
    approves it (:class:`BonusApproved`); its ``seq`` in the log is its id."""

    period: str
    unit_kind: str  # post, team or module
    unit: str
    points: float
    reason: str
    entered_by: str


@dataclass(frozen=True, kw_only=True)
class BonusApproved(TownshipEvent):
    """A second person approved the special bonus logged at ``bonus`` (the seq of its BonusEntered)."""

    bonus: int
    approved_by: str


@dataclass(frozen=True, kw_only=True)
class ScoringPutInForce(TownshipEvent):
    """考核: a scoring table was put in force from ``at`` on, so that the assessment of any period is made
    with the table of that period. ``digest`` (SHA-256 of its UTF-8 YAML, hex) names its text, stored
    apart (``scoring_text``) so that the log and the board's feed carry a line, not the table.

    ``body``: the YAML itself, in the events logged before the text was stored apart (read as they are);
    ``None`` in the ones logged since (and ``digest`` empty in the old ones)."""

    version: str
    actor: str | None
    digest: str = ""
    size: int = 0  # bytes of the YAML
    body: str | None = None


#: Every township event type by its stored name (the class name).
TOWNSHIP_EVENT_TYPES: dict[str, type[TownshipEvent]] = {
    cls.__name__: cls
    for cls in (
        HandoverRecorded,
        HandoverAcknowledged,
        RosterLoaded,
        RulesPutInForce,
        WebhookDisabled,
        AlertIssued,
        BonusEntered,
        ScoringPutInForce,
        BonusApproved,
    )
}


def decode_township(type_name: str, data: dict[str, Any]) -> TownshipEvent:
    """The inverse of :func:`to_json` for a township event (via plain data); raises ``KeyError`` for an unknown name."""
    event: TownshipEvent = _build(TOWNSHIP_EVENT_TYPES[type_name], data)
    return event


# Facts are built on the hot path (a five-team report's IncidentReported alone has 27 fields): each class
# takes the quicker constructor of :mod:`dispatcher.core.records` (same signature, same immutability).
for _cls in (Event, DispatchedUnit, *EVENT_TYPES.values(), TownshipEvent, *TOWNSHIP_EVENT_TYPES.values()):
    quick_init(_cls)
del _cls
