"""The incident aggregate and the pure decisions on it.

Each function takes the current incident, the input and ``at`` (the time the input entered),
and returns the next incident with the events that record the change. None does I/O or reads
a clock; an illegal move raises :class:`~dispatcher.core.lifecycle.IllegalTransition` before
anything is built, so a refused move leaves no trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from dispatcher.core.events import (
    AlarmAcknowledged,
    AlarmsResolved,
    AssignmentReassigned,
    AssignmentReturned,
    AssignmentWaiting,
    AssignReason,
    DeadlineKind,
    DeadlineMissed,
    DispatchedUnit,
    EscalationRaised,
    Event,
    HandoverAttempted,
    IncidentCancelled,
    IncidentClosed,
    IncidentMerged,
    IncidentReported,
    NoteAdded,
    OfficerAssigned,
    PriorityChanged,
    ReportAttached,
    ReportSplit,
    UnitMoved,
    UnitsDispatched,
)
from dispatcher.core.lifecycle import (
    FINAL_STATUSES,
    JOINABLE_STATUSES,
    LIVE_ASSIGNMENT_STATES,
    OPEN_REQUEST_STATES,
    STATUS_FROM_LEAD,
    AssignmentCommand,
    AssignmentState,
    IllegalTransition,
    IncidentAction,
    IncidentStatus,
    RequestState,
    Role,
    UnitAction,
    allowed_incident_actions,
    next_assignment_state,
    next_incident_status,
)
from dispatcher.core.records import quick_init, replace
from rules.matcher import Decision, EscalationTarget
from rules.workdays import BeyondCalendar, Window, WorkCalendar


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """What a field officer, device or citizen reported, as the gateway parsed it."""

    report_id: str
    category: str | None
    description: str
    zone: str | None = None
    lat: float | None = None
    lon: float | None = None
    severity: int | None = None
    reporter: str | None = None
    reporter_kind: str | None = None
    exercise: bool = False  # a drill (演练): marked everywhere, never forwarded, never in real figures
    occurred_at: datetime | None = None
    photos: tuple[str, ...] = ()  # content addresses (SHA-256 hex) of photos in the media store
    place: str | None = None  # a place code (龙游通) the report was made from
    accuracy_m: float | None = None  # the phone's GPS accuracy for lat/lon


class DeadlineState(StrEnum):
    PENDING = "pending"
    MET = "met"
    MISSED = "missed"
    VOID = "void"


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Deadline:
    """A promise with an absolute due time; stored with the incident, re-armed at start."""

    kind: DeadlineKind
    due_at: datetime
    state: DeadlineState = DeadlineState.PENDING
    settled_at: datetime | None = None


class EscalationState(StrEnum):
    PENDING = "pending"  # due at ``due_at`` unless the promise is kept first
    RAISED = "raised"
    VOID = "void"  # the promise was kept (or the incident finished) before it was due


MANUAL = "manual"  # the kind of an escalation an operator raised by hand


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Escalation:
    """One step of the incident's chain for one missed promise of one assignment: data, like a deadline.

    Keyed by (kind, step) within the assignment: a step once created is never created again, so a
    retry, a second miss of the same kind or a restart cannot raise it twice.
    """

    kind: str  # a DeadlineKind value, or MANUAL
    step: int  # 1-based position in the incident's escalation chain
    level: str
    due_at: datetime
    state: EscalationState = EscalationState.PENDING
    settled_at: datetime | None = None


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting to be forwarded, or between tries
    DELIVERED = "delivered"
    FAILED = "failed"  # every try failed: the command room must phone the department


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """How forwarding a county matter went: the delivery record shown with the incident."""

    department: str
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    last_error: str | None = None
    settled_at: datetime | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Promises:
    """The windows a routing decision promised; kept with the incident for teams added or re-sent later."""

    ack_within: timedelta | None = None
    arrive_within: timedelta | None = None
    resolve_within: Window | None = None  # may be working time (``5wd``, ``8wh``)

    def windows(self) -> tuple[tuple[DeadlineKind, Window | None], ...]:
        return (
            (DeadlineKind.ACK, self.ack_within),
            (DeadlineKind.ARRIVE, self.arrive_within),
            (DeadlineKind.RESOLVE, self.resolve_within),
        )

    def deadlines_from(self, at: datetime, calendar: WorkCalendar | None = None) -> tuple[Deadline, ...]:
        """The deadlines these windows promise when counted from ``at``.

        Working time is counted by ``calendar``; raises :class:`CalendarUnknown` (nothing changed)
        when there is none or when counting needs a year it does not know.
        """
        return tuple(
            Deadline(kind=kind, due_at=due_after(at, within, calendar))
            for kind, within in self.windows()
            if within is not None
        )


#: The assignment state that keeps each promise.
#: The moves that end each stage the briefing measures: any move past dispatched ends acknowledgement
#: (nothing skips it); arrival is the move on scene only (a team may resolve straight after acknowledging).
ACKED_BY = frozenset(
    {AssignmentState.ACKNOWLEDGED, AssignmentState.EN_ROUTE, AssignmentState.ON_SCENE, AssignmentState.RESOLVED}
)
ARRIVED_BY = frozenset({AssignmentState.ON_SCENE})
RESOLVED_BY = frozenset({AssignmentState.RESOLVED})

KEPT_BY: dict[DeadlineKind, frozenset[AssignmentState]] = {
    DeadlineKind.ACK: frozenset(
        {AssignmentState.ACKNOWLEDGED, AssignmentState.EN_ROUTE, AssignmentState.ON_SCENE, AssignmentState.RESOLVED}
    ),
    DeadlineKind.ARRIVE: frozenset({AssignmentState.ON_SCENE, AssignmentState.RESOLVED}),
    DeadlineKind.RESOLVE: frozenset({AssignmentState.RESOLVED}),
}

#: How many times an unacknowledged assignment is re-sent to the next officer before it escalates.
REDISPATCH_LIMIT = 1


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    """One team's part in an incident: a lead or a supporting team, each acknowledging on its own.

    ``officer`` is the unit sent, or ``None``: either the team is dispatched as a whole (it has no
    roster) or, when ``waiting``, nobody of the team can go yet. ``tried`` lists the officers it was
    sent to before and taken from.
    """

    team: str
    role: Role
    state: AssignmentState
    dispatched_at: datetime
    updated_at: datetime
    deadlines: tuple[Deadline, ...] = ()
    officer: str | None = None
    tried: tuple[str, ...] = ()
    escalations: tuple[Escalation, ...] = ()
    waiting: bool = False
    # When the team first ended each stage (the briefing's stage times): kept through rework and a new
    # dispatch of the same team, so they equal the first such move in the event log.
    acked_at: datetime | None = None
    arrived_at: datetime | None = None
    resolved_at: datetime | None = None

    def deadline(self, kind: DeadlineKind) -> Deadline | None:
        for deadline in self.deadlines:
            if deadline.kind is kind:
                return deadline
        return None

    def escalation(self, kind: str, step: int) -> Escalation | None:
        for escalation in self.escalations:
            if escalation.kind == kind and escalation.step == step:
                return escalation
        return None

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_ASSIGNMENT_STATES


class RequestKind(StrEnum):
    EXTENSION = "extension"  # 延期
    PARKING = "parking"  # 挂账


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    role: str  # module_lead | party_secretary
    actor: str | None
    at: datetime


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """An extension (延期: ``team``'s resolution deadline to ``until``) or a parking (挂账: review at ``until``)."""

    id: int  # 1, 2, ... within the incident
    kind: RequestKind
    team: str | None
    reason: str
    until: datetime
    state: RequestState
    requested_by: str | None
    requested_at: datetime
    needs: tuple[str, ...]  # the approvers' roles, all of which must approve
    approvals: tuple[Approval, ...] = ()
    decided_at: datetime | None = None
    refusal: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_REQUEST_STATES


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    """One check (核查) of a resolved incident, passed or failed, with its evidence."""

    at: datetime
    verifier: str
    passed: bool
    reason: str
    photos: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Loop:
    """Closing the loop: what the rule asked (verification, extensions) and what happened since.

    ``checks`` are the incident's own deadlines (no team): verification due (``verify``) and the
    parking review date (``review``), data like the teams' deadlines and armed the same way.
    """

    verify_within: Window | None = None  # None: the rule needs no verification; resolved is closed by hand
    max_extensions: int = 1
    extension_approver: str = "module_lead"
    requests: tuple[Request, ...] = ()
    checks: tuple[Deadline, ...] = ()
    verifications: tuple[Verification, ...] = ()

    @property
    def extensions(self) -> int:
        """Extensions approved."""
        return sum(1 for r in self.requests if r.kind is RequestKind.EXTENSION and r.state is RequestState.APPROVED)

    @property
    def reworks(self) -> int:
        """Verifications failed (返工)."""
        return sum(1 for v in self.verifications if not v.passed)

    def records(self) -> dict[str, list[dict[str, Any]]]:
        """The requests, checks and verifications as plain values (times stay ``datetime``): what the
        store keeps in its JSON column and the API answers, built in one place."""
        return {
            "requests": [
                {
                    "id": r.id,
                    "kind": r.kind.value,
                    "team": r.team,
                    "reason": r.reason,
                    "until": r.until,
                    "state": r.state.value,
                    "requested_by": r.requested_by,
                    "requested_at": r.requested_at,
                    "needs": list(r.needs),
                    "approvals": [{"role": a.role, "actor": a.actor, "at": a.at} for a in r.approvals],
                    "decided_at": r.decided_at,
                    "refusal": r.refusal,
                }
                for r in self.requests
            ],
            "checks": [
                {"kind": d.kind.value, "due_at": d.due_at, "state": d.state.value, "settled_at": d.settled_at}
                for d in self.checks
            ],
            "verifications": [
                {
                    "at": v.at,
                    "verifier": v.verifier,
                    "passed": v.passed,
                    "reason": v.reason,
                    "photos": list(v.photos),
                    "flags": list(v.flags),
                }
                for v in self.verifications
            ],
        }

    def check(self, kind: DeadlineKind) -> Deadline | None:
        return next((d for d in reversed(self.checks) if d.kind is kind), None)

    def request(self, request_id: int) -> Request:
        for request in self.requests:
            if request.id == request_id:
                return request
        raise UnknownRequest(request_id)


class UnknownRequest(LookupError):
    def __init__(self, request_id: int) -> None:
        super().__init__(f"no request {request_id} on this incident")
        self.request_id = request_id


#: The ``team`` of the incident's own deadlines in the deadline index (they belong to no team).
NO_TEAM = ""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class AttachedReport:
    """A further report of the same matter: who, what and where, and when it joined."""

    report: Report
    at: datetime
    merged_from: int | None = None


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Incident:
    id: int
    report: Report
    status: IncidentStatus
    module: str
    queue: str | None
    zones: tuple[str, ...]
    priority: int
    rule_id: str | None
    table_version: str
    category: str | None
    handover: str | None
    escalation: tuple[EscalationTarget, ...]
    reported_at: datetime
    updated_at: datetime
    assignments: tuple[Assignment, ...] = ()
    version: int = 1
    promises: Promises = Promises()
    reports: tuple[AttachedReport, ...] = ()
    merged_into: int | None = None
    delivery: Delivery | None = None  # county matters only; drills are never forwarded
    loop: Loop = Loop()
    closed_at: datetime | None = None  # the first close (结案), for the briefing

    @property
    def escalate_to_name(self) -> str:
        return self.escalation[0].name if self.escalation else ""

    @property
    def escalate_to_title(self) -> str:
        return self.escalation[0].title if self.escalation else ""

    @property
    def is_open(self) -> bool:
        return self.status not in FINAL_STATUSES

    @property
    def report_count(self) -> int:
        return 1 + len(self.reports)

    @property
    def last_reported_at(self) -> datetime:
        return self.reports[-1].at if self.reports else self.reported_at

    def assignment(self, team: str) -> Assignment:
        for assignment in self.assignments:
            if assignment.team == team:
                return assignment
        raise UnknownAssignment(self.id, team)

    def has_team(self, team: str) -> bool:
        return any(a.team == team for a in self.assignments)

    def pending_deadlines(self) -> list[tuple[str, Deadline]]:
        """Every running deadline: the teams' and the incident's own (team :data:`NO_TEAM`)."""
        pending = DeadlineState.PENDING
        found = [(a.team, d) for a in self.assignments for d in a.deadlines if d.state is pending]
        found.extend((NO_TEAM, d) for d in self.loop.checks if d.state is pending)
        return found

    def pending_escalations(self) -> list[tuple[str, Escalation]]:
        return [(a.team, e) for a in self.assignments for e in a.escalations if e.state is EscalationState.PENDING]

    def held_by(self) -> dict[str, int]:
        """Open tasks per officer in this incident (an officer may hold parts of several incidents)."""
        held: dict[str, int] = {}
        if self.is_open:
            for a in self.assignments:
                if a.officer is not None and a.is_live:
                    held[a.officer] = held.get(a.officer, 0) + 1
        return held


class UnknownAssignment(LookupError):
    def __init__(self, incident_id: int, team: str) -> None:
        super().__init__(f"incident {incident_id} has no assignment for team {team!r}")
        self.incident_id = incident_id
        self.team = team


class StaleVersion(Exception):
    """Optimistic concurrency: the caller acted on a version of the incident that is no longer current."""

    def __init__(self, incident_id: int, expected: int, current: int) -> None:
        super().__init__(f"incident {incident_id} is at version {current}, not {expected}: reload it and decide again")
        self.incident_id = incident_id
        self.expected = expected
        self.current = current


class Refused(Exception):
    """A well-formed command that makes no sense for this incident now (nothing was changed)."""


class CalendarUnknown(Refused):
    """A working-time deadline cannot be counted: the calendar does not know the year it falls in."""


def due_after(at: datetime, window: Window, calendar: WorkCalendar | None) -> datetime:
    """``at`` plus ``window``: clock time added, working time counted by ``calendar``."""
    if isinstance(window, timedelta):
        return at + window
    if calendar is None:
        raise CalendarUnknown(f"a deadline of {window} needs the working-day calendar")
    try:
        return calendar.due(at, window)
    except BeyondCalendar as exc:
        raise CalendarUnknown(str(exc)) from None


def check_version(incident: Incident, expected: int | None) -> None:
    if expected is not None and expected != incident.version:
        raise StaleVersion(incident.id, expected, incident.version)


# -- opening ------------------------------------------------------------------------------


def open_incident(
    incident_id: int,
    report: Report,
    decision: Decision,
    at: datetime,
    officers: Mapping[str, str | None] | None = None,
    *,
    calendar: WorkCalendar | None = None,
) -> tuple[Incident, list[Event]]:
    """A new incident routed by ``decision``: reported, and dispatched at once when it has an owner.

    ``calendar`` counts deadlines written in working time (raises :class:`CalendarUnknown` when it cannot).

    ``officers`` names the unit chosen for each team (see :mod:`dispatcher.core.roster`). A team
    mapped to ``None`` has a roster but nobody who can go: it waits, and its module lead is alerted.
    A team missing from it is dispatched as a whole (a team without a roster).
    """
    chosen = officers or {}
    opening = _opening_of(decision)
    # Every team of the decision is promised the same windows from the same instant: the deadlines are
    # counted once and the (immutable) tuple is shared by the assignments, and so are the due times of
    # their dispatch notices; the reports of one batch share the instant too, and so the tuple. The teams'
    # assignments and dispatch notices depend on nothing else but the officers chosen: made once for each
    # choice at that instant and shared (at saturation every report of a decision makes the same choice).
    assignments, units, waiting = opening.parts(at, chosen, opening.deadlines_from(at, calendar))
    status = IncidentStatus.DISPATCHED if assignments else IncidentStatus.REPORTED
    incident = Incident(
        id=incident_id,
        report=report,
        status=status,
        module=decision.module,
        queue=opening.queue,
        zones=decision.zones,
        priority=decision.priority,
        rule_id=decision.rule_id,
        table_version=decision.table_version,
        category=decision.category if decision.category is not None else report.category,
        handover=decision.handover,
        escalation=decision.escalation,
        reported_at=at,
        updated_at=at,
        assignments=assignments,
        promises=opening.promises,
        loop=opening.loop,
        delivery=opening.delivery if not report.exercise else None,
    )
    events: list[Event] = [
        IncidentReported(
            incident_id=incident_id,
            at=at,
            report_id=report.report_id,
            category=incident.category,
            reported_category=report.category,
            keywords=tuple(h.word for h in decision.classification.hits if h.category == decision.category)
            if decision.classification is not None
            else (),
            description=report.description,
            zones=decision.zones,
            lat=report.lat,
            lon=report.lon,
            severity=report.severity,
            reporter=report.reporter,
            reporter_kind=report.reporter_kind,
            exercise=report.exercise,
            occurred_at=report.occurred_at,
            module=decision.module,
            queue=incident.queue,
            handover=decision.handover,
            priority=decision.priority,
            rule_id=decision.rule_id,
            table_version=decision.table_version,
            photos=report.photos,
            place=report.place,
            accuracy_m=report.accuracy_m,
        )
    ]
    if assignments:
        events.append(UnitsDispatched(incident_id=incident_id, at=at, units=units, incident_status=status))
        if waiting:  # one fact for every team that waits, not one per team
            name, title = opening.alerted
            events.append(
                AssignmentWaiting(incident_id=incident_id, at=at, teams=waiting, alerted_name=name, alerted_title=title)
            )
    return incident, events


class _Opening:
    """What every incident opened by one decision shares, made once per decision rather than per report.

    Routing hands out the same :class:`Decision` object again for the same rule, category and zones, so
    the records it implies (promises, the loop's terms, the delivery record, the teams in order) are
    built once and shared: they are immutable, so an incident cannot tell. The deadlines depend on the
    instant too; the last instant's are kept (the reports of one batch share it).
    """

    __slots__ = ("_last", "_made", "alerted", "decision", "delivery", "loop", "promises", "queue", "teams")

    def __init__(self, decision: Decision) -> None:
        self.decision = decision  # held, so that its id cannot be taken by another object while cached
        lead = ((decision.lead, Role.LEAD),) if decision.lead else ()
        self.teams: tuple[tuple[str, Role], ...] = lead + tuple((team, Role.SUPPORT) for team in decision.support)
        self.queue = decision.queue.value if decision.queue else None
        self.promises = Promises(
            ack_within=decision.ack_within, arrive_within=decision.arrive_within, resolve_within=decision.resolve_within
        )
        self.loop = Loop(
            verify_within=decision.verify_within,
            max_extensions=decision.max_extensions,
            extension_approver=decision.extension_approver,
        )
        self.delivery = Delivery(department=decision.handover) if decision.handover is not None else None
        self.alerted = _alerted(decision.escalation)  # the incident's chain is the decision's
        self._last: tuple[datetime, WorkCalendar | None, _Dues] | None = None
        self._made: tuple[datetime, tuple[Deadline, ...], dict[tuple[tuple[str, str | None], ...], _Parts]] | None = (
            None
        )

    def deadlines_from(self, at: datetime, calendar: WorkCalendar | None) -> _Dues:
        """The teams' deadlines counted from ``at`` and the due time of each kind (``None``: not promised);
        no deadlines when the decision sends no team. Raises :class:`CalendarUnknown` as
        :meth:`Promises.deadlines_from` does."""
        last = self._last  # one read: the instant, the calendar and their answer always belong together
        if last is not None and last[0] is at and last[1] is calendar:
            return last[2]
        deadlines = self.promises.deadlines_from(at, calendar) if self.teams else ()
        due = {d.kind: d.due_at for d in deadlines}
        dues = (deadlines, due.get(DeadlineKind.ACK), due.get(DeadlineKind.ARRIVE), due.get(DeadlineKind.RESOLVE))
        self._last = (at, calendar, dues)
        return dues

    def parts(self, at: datetime, chosen: Mapping[str, str | None], dues: _Dues) -> _Parts:
        """The teams' assignments, their dispatch notices and the teams that wait, for the officers ``chosen``
        (as :func:`open_incident` takes them) and ``dues`` (:meth:`deadlines_from` of ``at``). Made once for
        each choice at the last instant and shared: they are immutable, so an incident cannot tell."""
        made = self._made  # one read, as in :meth:`deadlines_from`
        deadlines = dues[0]
        if made is None or made[0] is not at or made[1] is not deadlines:
            made = self._made = (at, deadlines, {})
        key = tuple(chosen.items())
        found = made[2].get(key)
        if found is None:
            found = self._make_parts(at, chosen, dues)
            if len(made[2]) < _PARTS_KEPT:
                made[2][key] = found
        return found

    def _make_parts(self, at: datetime, chosen: Mapping[str, str | None], dues: _Dues) -> _Parts:
        deadlines, ack_due, arrive_due, resolve_due = dues
        assignments: list[Assignment] = []
        units: list[DispatchedUnit] = []
        dispatched = AssignmentState.DISPATCHED
        for team, role in self.teams:
            officer = chosen.get(team)
            assignments.append(
                Assignment(
                    team=team,
                    role=role,
                    state=dispatched,
                    dispatched_at=at,
                    updated_at=at,
                    deadlines=deadlines,
                    officer=officer,
                    waiting=officer is None and team in chosen,
                )
            )
            units.append(
                DispatchedUnit(
                    team=team,
                    role=role,
                    ack_due=ack_due,
                    arrive_due=arrive_due,
                    resolve_due=resolve_due,
                    officer=officer,
                )
            )
        return tuple(assignments), tuple(units), tuple(a.team for a in assignments if a.waiting)


#: A decision's deadlines from one instant, then the due time of ack, arrive and resolve.
_Dues = tuple[tuple[Deadline, ...], datetime | None, datetime | None, datetime | None]
#: The teams' assignments, their dispatch notices, and the teams among them that wait.
_Parts = tuple[tuple[Assignment, ...], tuple[DispatchedUnit, ...], tuple[str, ...]]
#: The officers chosen (``open_incident``'s ``officers``) as a key.
_Choice = tuple[tuple[str, str | None], ...]
#: Choices of officers kept for one instant of one decision (the officers differ while some are free).
_PARTS_KEPT = 64

#: Each decision's shared parts, by the decision's ``id`` (the entry holds the decision). Bounded: a report
#: whose category was classified gets a decision of its own.
_OPENINGS: dict[int, _Opening] = {}
_OPENINGS_KEPT = 1024


def _opening_of(decision: Decision) -> _Opening:
    opening = _OPENINGS.get(id(decision))
    if opening is None or opening.decision is not decision:
        if len(_OPENINGS) >= _OPENINGS_KEPT:
            _OPENINGS.clear()
        opening = _OPENINGS[id(decision)] = _Opening(decision)
    return opening


def _unit(assignment: Assignment) -> DispatchedUnit:
    return DispatchedUnit(
        team=assignment.team,
        role=assignment.role,
        ack_due=_due(assignment, DeadlineKind.ACK),
        arrive_due=_due(assignment, DeadlineKind.ARRIVE),
        resolve_due=_due(assignment, DeadlineKind.RESOLVE),
        officer=assignment.officer,
    )


def _waiting(incident: Incident, teams: tuple[str, ...], at: datetime) -> AssignmentWaiting:
    name, title = _alerted(incident.escalation)
    return AssignmentWaiting(incident_id=incident.id, at=at, teams=teams, alerted_name=name, alerted_title=title)


def _alerted(escalation: tuple[EscalationTarget, ...]) -> tuple[str, str]:
    """Who is alerted when a team waits: the chain's module lead, else its first step (nobody: empty)."""
    lead = next((t for t in escalation if t.level == "module_lead"), None) or (escalation[0] if escalation else None)
    return (lead.name, lead.title) if lead else ("", "")


def _due(assignment: Assignment, kind: DeadlineKind) -> datetime | None:
    deadline = assignment.deadline(kind)
    return deadline.due_at if deadline else None


def _bump(incident: Incident, at: datetime, **changes: object) -> Incident:
    return replace(incident, updated_at=at, version=incident.version + 1, **changes)  # type: ignore[arg-type]


def _with_assignment(incident: Incident, moved: Assignment, at: datetime, **changes: object) -> Incident:
    assignments = tuple(moved if a.team == moved.team else a for a in incident.assignments)
    return _bump(incident, at, assignments=assignments, **changes)


def _require_open(incident: Incident, what: str) -> None:
    if not incident.is_open:
        raise IllegalTransition(what, incident.status.value, "a finished incident")


def _settle(assignment: Assignment, at: datetime) -> Assignment:
    """Keep the deadlines the assignment's state now satisfies, and stand down their escalations."""
    kept = {
        d.kind for d in assignment.deadlines if d.state == DeadlineState.PENDING and assignment.state in KEPT_BY[d.kind]
    }
    kept_kinds = {k.value for k in KEPT_BY if assignment.state in KEPT_BY[k]}
    deadlines = tuple(
        replace(d, state=DeadlineState.MET, settled_at=at) if d.kind in kept else d for d in assignment.deadlines
    )
    escalations = tuple(
        replace(e, state=EscalationState.VOID, settled_at=at)
        if e.state is EscalationState.PENDING and e.kind in kept_kinds
        else e
        for e in assignment.escalations
    )
    return replace(assignment, deadlines=deadlines, escalations=escalations)


def _void(assignment: Assignment, at: datetime) -> Assignment:
    """Void every running deadline and pending escalation of an assignment that owes nothing more."""
    return replace(
        assignment,
        deadlines=tuple(
            replace(d, state=DeadlineState.VOID, settled_at=at) if d.state == DeadlineState.PENDING else d
            for d in assignment.deadlines
        ),
        escalations=tuple(
            replace(e, state=EscalationState.VOID, settled_at=at) if e.state is EscalationState.PENDING else e
            for e in assignment.escalations
        ),
    )


# -- the teams' moves ---------------------------------------------------------------------


def move_unit(
    incident: Incident,
    team: str,
    action: UnitAction,
    at: datetime,
    actor: str | None,
    *,
    reason: str = "",
    note: str | None = None,
    photos: tuple[str, ...] = (),
) -> tuple[Incident, list[Event]]:
    """Advance one team's assignment; the incident's status follows its lead assignment.

    ``note`` and ``photos`` (content addresses) go with the step into its event (a resolution's evidence).

    ``RETURN`` (回退) needs a ``reason``: the assignment stops, and when it was the lead's the incident
    goes back to the command room (status ``reported``, queue ``returned``) for re-dispatch.
    """
    _require_open(incident, action.value)
    if incident.status is IncidentStatus.PARKED:
        raise IllegalTransition(
            action.value, incident.status.value, "the incident", allowed=allowed_incident_actions(incident.status)
        )
    current = incident.assignment(team)
    new_state = next_assignment_state(current.state, action)
    if action is UnitAction.RETURN:
        if not reason.strip():
            raise Refused("a return (回退) needs a reason")
        returned = _void(replace(current, state=new_state, updated_at=at), at)
        is_lead = current.role is Role.LEAD
        status = next_incident_status(incident.status, IncidentAction.RETURN) if is_lead else incident.status
        updated = _with_assignment(
            incident, returned, at, status=status, queue="returned" if is_lead else incident.queue
        )
        return updated, [
            AssignmentReturned(
                incident_id=incident.id,
                at=at,
                team=team,
                officer=current.officer,
                reason=reason.strip(),
                actor=actor,
                rule_id=incident.rule_id,
                incident_status=status,
            )
        ]
    moved = _settle(_stage_ended(replace(current, state=new_state, updated_at=at), at), at)
    status = STATUS_FROM_LEAD[new_state] if current.role is Role.LEAD else incident.status
    updated = _with_assignment(incident, moved, at, status=status)
    event = UnitMoved(
        incident_id=incident.id,
        at=at,
        team=team,
        from_state=current.state,
        to_state=new_state,
        actor=actor,
        incident_status=status,
        note=note,
        photos=photos,
    )
    late = _kept_late(current, new_state)
    if not late:
        return updated, [event]
    return updated, [event, AlarmsResolved(incident_id=incident.id, at=at, team=team, kinds=late, to_state=new_state)]


def _stage_ended(moved: Assignment, at: datetime) -> Assignment:
    """``moved`` with the stages its new state ends stamped ``at``, where not stamped before."""
    state = moved.state
    changes: dict[str, datetime] = {}
    if moved.acked_at is None and state in ACKED_BY:
        changes["acked_at"] = at
    if moved.arrived_at is None and state in ARRIVED_BY:
        changes["arrived_at"] = at
    if moved.resolved_at is None and state in RESOLVED_BY:
        changes["resolved_at"] = at
    return replace(moved, **changes) if changes else moved  # type: ignore[arg-type]


def _kept_late(before: Assignment, new_state: AssignmentState) -> tuple[str, ...]:
    """The promises a move to ``new_state`` keeps that had been missed before (their alarms clear).

    An acknowledgement re-sent to another officer after a miss is pending again but was missed all the
    same: its earlier officers (``tried``) tell.
    """
    kinds: list[str] = []
    for kind in KEPT_BY:  # the team promises (an incident's own verify and review deadlines are not kept by moves)
        if before.state in KEPT_BY[kind] or new_state not in KEPT_BY[kind]:
            continue  # kept before, or not kept by this move
        deadline = before.deadline(kind)
        missed = deadline is not None and deadline.state is DeadlineState.MISSED
        resent = kind is DeadlineKind.ACK and bool(before.tried)
        raised = any(e.kind == kind.value and e.state is EscalationState.RAISED for e in before.escalations)
        if missed or resent or raised:
            kinds.append(kind.value)
    return tuple(kinds)


def finish_incident(
    incident: Incident, action: IncidentAction, at: datetime, actor: str | None, reason: str = ""
) -> tuple[Incident, list[Event]]:
    """Close or cancel the incident; every deadline and escalation still running is voided."""
    if action is IncidentAction.MERGE:
        raise Refused("merging needs the incident to merge into: use merge_incidents")
    status = next_incident_status(incident.status, action)
    assignments = tuple(_void(a, at) for a in incident.assignments)
    checks = tuple(
        replace(d, state=DeadlineState.VOID, settled_at=at) if d.state is DeadlineState.PENDING else d
        for d in incident.loop.checks
    )
    loop = replace(incident.loop, checks=checks) if checks != incident.loop.checks else incident.loop
    closed_at = at if action is IncidentAction.CLOSE and incident.closed_at is None else incident.closed_at
    updated = _bump(incident, at, status=status, assignments=assignments, loop=loop, closed_at=closed_at)
    event: Event
    if action is IncidentAction.CLOSE:
        event = IncidentClosed(incident_id=incident.id, at=at, actor=actor)
    else:
        event = IncidentCancelled(incident_id=incident.id, at=at, actor=actor, reason=reason)
    return updated, [event]


def add_note(
    incident: Incident,
    text: str,
    author: str | None,
    at: datetime,
    *,
    photos: tuple[str, ...] = (),
    note_id: str | None = None,
    public: bool = False,
) -> tuple[Incident, list[Event]]:
    """A note may be added in any status, a closed incident included; ``note_id`` is the client's key;
    a ``public`` one is shown to the reporter (Open311 ``status_notes``)."""
    updated = _bump(incident, at)
    return updated, [
        NoteAdded(
            incident_id=incident.id, at=at, author=author, text=text, photos=photos, note_id=note_id, public=public
        )
    ]


# -- deadlines and the leadership chain ---------------------------------------------------


def miss_deadline(
    incident: Incident,
    team: str,
    kind: DeadlineKind,
    at: datetime,
    *,
    replacement: str | None = None,
    redispatch_limit: int = REDISPATCH_LIMIT,
) -> tuple[Incident, list[Event]]:
    """Record a missed deadline, then re-send or climb the chain.

    A missed acknowledgement goes first to ``replacement`` (the next officer the hub found), up to
    ``redispatch_limit`` times, with a fresh acknowledgement window. Otherwise every step of the
    incident's escalation chain is created for this (team, kind): a step due at once (``after: 0s``)
    is raised now, the later ones wait as data until they fall due or the promise is kept. Steps that
    already exist for this (team, kind) are not created again.

    Returns the incident unchanged with no events when the deadline is no longer pending (kept,
    voided or already missed) or not yet due: firing twice can never escalate twice.
    """
    if not incident.is_open:
        return incident, []
    assignment = incident.assignment(team)
    deadline = assignment.deadline(kind)
    if deadline is None or deadline.state != DeadlineState.PENDING or deadline.due_at > at or not assignment.is_live:
        return incident, []
    events: list[Event] = [
        DeadlineMissed(
            incident_id=incident.id, at=at, team=team, kind=kind, due_at=deadline.due_at, late_by=at - deadline.due_at
        )
    ]
    if (
        kind is DeadlineKind.ACK
        and replacement is not None
        and replacement != assignment.officer
        and len(assignment.tried) < redispatch_limit
    ):
        resent, assigned = _assign(incident, assignment, replacement, at, reason=AssignReason.REDISPATCH, actor=None)
        return _with_assignment(incident, resent, at), [*events, assigned]
    missed = replace(deadline, state=DeadlineState.MISSED, settled_at=at)
    marked = replace(assignment, deadlines=tuple(missed if d.kind is kind else d for d in assignment.deadlines))
    climbed, raised = _climb(incident, marked, kind.value, at, actor=None)
    return _with_assignment(incident, climbed, at), [*events, *raised]


def _climb(
    incident: Incident, assignment: Assignment, kind: str, at: datetime, actor: str | None
) -> tuple[Assignment, list[Event]]:
    escalations = list(assignment.escalations)
    raised: list[Event] = []
    for step, target in enumerate(incident.escalation, start=1):
        if assignment.escalation(kind, step) is not None:
            continue
        due = at + target.after
        if due <= at:
            escalations.append(
                Escalation(
                    kind=kind, step=step, level=target.level, due_at=due, state=EscalationState.RAISED, settled_at=at
                )
            )
            raised.append(_raised(incident, assignment.team, kind, step, at, actor))
        else:
            escalations.append(Escalation(kind=kind, step=step, level=target.level, due_at=due))
    return replace(assignment, escalations=tuple(escalations)), raised


def _raised(incident: Incident, team: str, kind: str, step: int, at: datetime, actor: str | None) -> EscalationRaised:
    target = incident.escalation[step - 1]
    return EscalationRaised(
        incident_id=incident.id,
        at=at,
        team=team,
        kind=kind,
        level=target.level,
        to_name=target.name,
        to_title=target.title,
        step=step,
        actor=actor,
    )


def raise_escalation(incident: Incident, team: str, kind: str, step: int, at: datetime) -> tuple[Incident, list[Event]]:
    """Raise a waiting step of the chain that fell due; a no-op when it is no longer pending."""
    if not incident.is_open:
        return incident, []
    assignment = incident.assignment(team)
    escalation = assignment.escalation(kind, step)
    if escalation is None or escalation.state is not EscalationState.PENDING or escalation.due_at > at:
        return incident, []
    done = replace(escalation, state=EscalationState.RAISED, settled_at=at)
    moved = replace(assignment, escalations=tuple(done if e is escalation else e for e in assignment.escalations))
    return _with_assignment(incident, moved, at), [_raised(incident, team, kind, step, at, None)]


def escalate_now(
    incident: Incident, at: datetime, actor: str | None, team: str | None = None
) -> tuple[Incident, list[Event]]:
    """An operator climbs the chain by hand: the next level not yet raised for the incident goes up now."""
    _require_open(incident, "escalate")
    if not incident.escalation:
        raise Refused("the incident has no escalation chain")
    assignment = incident.assignment(team) if team else _lead_or_first(incident)
    raised_steps = {e.step for a in incident.assignments for e in a.escalations if e.state is EscalationState.RAISED}
    step = next((n for n in range(1, len(incident.escalation) + 1) if n not in raised_steps), None)
    if step is None:
        raise Refused("the chain is already at its top (the party secretary)")
    existing = assignment.escalation(MANUAL, step)
    if existing is not None:
        raise Refused(f"step {step} was already raised by hand")
    target = incident.escalation[step - 1]
    done = Escalation(
        kind=MANUAL, step=step, level=target.level, due_at=at, state=EscalationState.RAISED, settled_at=at
    )
    moved = replace(assignment, escalations=(*assignment.escalations, done))
    return _with_assignment(incident, moved, at), [_raised(incident, assignment.team, MANUAL, step, at, actor)]


def _lead_or_first(incident: Incident) -> Assignment:
    if not incident.assignments:
        raise Refused("the incident has no team to escalate for: dispatch one first")
    return next((a for a in incident.assignments if a.role is Role.LEAD), incident.assignments[0])


# -- officers ------------------------------------------------------------------------------


def _assign(
    incident: Incident, assignment: Assignment, officer: str, at: datetime, *, reason: AssignReason, actor: str | None
) -> tuple[Assignment, OfficerAssigned]:
    """The assignment handed to ``officer``; an acknowledgement not yet given gets a fresh window."""
    tried = (*assignment.tried, assignment.officer) if assignment.officer is not None else assignment.tried
    deadlines = assignment.deadlines
    ack_due = None
    if assignment.state is AssignmentState.DISPATCHED and incident.promises.ack_within is not None:
        ack_due = at + incident.promises.ack_within
        fresh = Deadline(kind=DeadlineKind.ACK, due_at=ack_due)
        deadlines = tuple(fresh if d.kind is DeadlineKind.ACK else d for d in deadlines)
        if assignment.deadline(DeadlineKind.ACK) is None:
            deadlines = (fresh, *deadlines)
    moved = replace(assignment, officer=officer, tried=tried, deadlines=deadlines, updated_at=at, waiting=False)
    event = OfficerAssigned(
        incident_id=incident.id,
        at=at,
        team=assignment.team,
        officer=officer,
        previous=assignment.officer,
        reason=reason,
        actor=actor,
        ack_due=ack_due,
    )
    return moved, event


def assign_officer(
    incident: Incident, team: str, officer: str, at: datetime, *, reason: AssignReason, actor: str | None = None
) -> tuple[Incident, list[Event]]:
    """Give a live assignment to ``officer`` (a waiting one that found a unit, or an operator's choice)."""
    _require_open(incident, "assign")
    assignment = incident.assignment(team)
    if not assignment.is_live:
        raise IllegalTransition("assign an officer to", assignment.state.value, "the assignment")
    if assignment.officer == officer:
        raise Refused(f"{officer} already holds this assignment")
    moved, event = _assign(incident, assignment, officer, at, reason=reason, actor=actor)
    return _with_assignment(incident, moved, at), [event]


def add_team(
    incident: Incident,
    team: str,
    at: datetime,
    *,
    officer: str | None,
    actor: str | None,
    role: Role = Role.SUPPORT,
    waiting: bool = False,
    calendar: WorkCalendar | None = None,
) -> tuple[Incident, list[Event]]:
    """An operator sends one more team, with the incident's promised windows counted from now.

    ``waiting``: the team has a roster but nobody can go (``officer`` is then ``None``).
    """
    _require_open(incident, "add a team to")
    if incident.has_team(team) and incident.assignment(team).is_live:
        raise Refused(f"team {team} is already working on incident {incident.id}")
    before = incident.assignment(team) if incident.has_team(team) else None
    fresh = Assignment(
        team=team,
        role=role,
        state=AssignmentState.DISPATCHED,
        dispatched_at=at,
        updated_at=at,
        deadlines=incident.promises.deadlines_from(at, calendar),
        officer=officer,
        waiting=waiting and officer is None,
        # The briefing counts a team's first move of each stage, in whichever of its parts it was made.
        acked_at=before.acked_at if before else None,
        arrived_at=before.arrived_at if before else None,
        resolved_at=before.resolved_at if before else None,
    )
    others = tuple(a for a in incident.assignments if a.team != team)
    assignments = (fresh, *others) if role is Role.LEAD else (*others, fresh)
    status = (
        next_incident_status(incident.status, IncidentAction.DISPATCH)
        if role is Role.LEAD or incident.status is IncidentStatus.REPORTED
        else incident.status
    )
    queue = None if role is Role.LEAD else incident.queue
    updated = _bump(incident, at, assignments=assignments, status=status, queue=queue)
    events: list[Event] = [
        UnitsDispatched(incident_id=incident.id, at=at, units=(_unit(fresh),), incident_status=status, actor=actor)
    ]
    if fresh.waiting:
        events.append(_waiting(updated, (fresh.team,), at))
    return updated, events


def reassign_team(
    incident: Incident,
    from_team: str,
    to_team: str,
    at: datetime,
    *,
    officer: str | None,
    actor: str | None,
    waiting: bool = False,
    calendar: WorkCalendar | None = None,
) -> tuple[Incident, list[Event]]:
    """Move a team's part to another team: the old assignment is cancelled (or stays returned), a new one starts.

    A returned lead assignment is re-dispatched this way: the new team becomes the lead.
    """
    _require_open(incident, "reassign")
    current = incident.assignment(from_team)
    if current.state not in LIVE_ASSIGNMENT_STATES | {AssignmentState.RETURNED}:
        raise IllegalTransition("reassign", current.state.value, "the assignment")
    if from_team == to_team:
        raise Refused("reassigning to the same team: choose another officer instead")
    stopped = (
        current
        if current.state is AssignmentState.RETURNED
        else _void(
            replace(current, state=next_assignment_state(current.state, AssignmentCommand.CANCEL), updated_at=at), at
        )
    )
    demoted = replace(stopped, role=Role.SUPPORT) if current.role is Role.LEAD else stopped
    base = replace(incident, assignments=tuple(demoted if a.team == from_team else a for a in incident.assignments))
    moved, events = add_team(
        base, to_team, at, officer=officer, actor=actor, role=current.role, waiting=waiting, calendar=calendar
    )
    return moved, [
        AssignmentReassigned(incident_id=incident.id, at=at, from_team=from_team, to_team=to_team, actor=actor),
        *events,
    ]


def change_priority(incident: Incident, priority: int, at: datetime, actor: str | None) -> tuple[Incident, list[Event]]:
    _require_open(incident, "change the priority of")
    if not 1 <= priority <= 5:
        raise Refused("priority runs from 1 (highest) to 5")
    if priority == incident.priority:
        raise Refused(f"the priority is already {priority}")
    updated = _bump(incident, at, priority=priority)
    return updated, [
        PriorityChanged(
            incident_id=incident.id, at=at, from_priority=incident.priority, to_priority=priority, actor=actor
        )
    ]


# -- duplicates -----------------------------------------------------------------------------


def attach_report(
    incident: Incident, report: Report, at: datetime, *, merged_from: int | None = None, actor: str | None = None
) -> tuple[Incident, list[Event]]:
    """Another report of the same matter joins the incident (never a resolved or finished one)."""
    if incident.status not in JOINABLE_STATUSES:
        raise IllegalTransition("attach a report to", incident.status.value, "the incident")
    attached = AttachedReport(report=report, at=at, merged_from=merged_from)
    updated = _bump(incident, at, reports=(*incident.reports, attached))
    return updated, [
        ReportAttached(
            incident_id=incident.id,
            at=at,
            report_id=report.report_id,
            reporter=report.reporter,
            reporter_kind=report.reporter_kind,
            description=report.description,
            lat=report.lat,
            lon=report.lon,
            report_count=updated.report_count,
            merged_from=merged_from,
            actor=actor,
            photos=report.photos,
        )
    ]


def detach_report(
    incident: Incident, report_id: str, new_incident_id: int, at: datetime, actor: str | None
) -> tuple[Incident, Report, list[Event]]:
    """Split an attached report off; the caller opens ``new_incident_id`` from the returned report."""
    _require_open(incident, "split a report from")
    found = next((r for r in incident.reports if r.report.report_id == report_id), None)
    if found is None:
        if report_id == incident.report.report_id:
            raise Refused("the first report is the incident itself: split the others off instead")
        raise Refused(f"report {report_id!r} is not attached to incident {incident.id}")
    if found.merged_from is not None:
        raise Refused(f"report {report_id!r} came with the merge of incident {found.merged_from}: merges are not split")
    updated = _bump(incident, at, reports=tuple(r for r in incident.reports if r is not found))
    event = ReportSplit(
        incident_id=incident.id,
        at=at,
        report_id=report_id,
        new_incident_id=new_incident_id,
        report_count=updated.report_count,
        actor=actor,
    )
    return updated, found.report, [event]


def merge_incidents(
    source: Incident, target: Incident, at: datetime, actor: str | None
) -> tuple[Incident, Incident, list[Event]]:
    """Fold ``source`` into ``target``: its reports join the target, its own work stops."""
    if source.id == target.id:
        raise Refused("an incident cannot be merged into itself")
    if target.status not in JOINABLE_STATUSES:
        raise IllegalTransition("merge into", target.status.value, "the target incident")
    status = next_incident_status(source.status, IncidentAction.MERGE)
    events: list[Event] = []
    moved = target
    for report in (source.report, *(r.report for r in source.reports)):
        moved, attached = attach_report(moved, report, at, merged_from=source.id, actor=actor)
        events.extend(attached)
    folded = _bump(
        source, at, status=status, merged_into=target.id, assignments=tuple(_void(a, at) for a in source.assignments)
    )
    return (
        folded,
        moved,
        [IncidentMerged(incident_id=source.id, at=at, into_incident_id=target.id, actor=actor), *events],
    )


# -- county handover ---------------------------------------------------------------------------


def record_delivery(
    incident: Incident,
    at: datetime,
    *,
    ok: bool,
    status_code: int | None,
    error: str | None,
    max_attempts: int,
) -> tuple[Incident, list[Event]]:
    """Record one forwarding try; the last allowed failure marks the delivery failed."""
    delivery = incident.delivery
    if delivery is None or delivery.state is not DeliveryState.PENDING:
        raise Refused(f"incident {incident.id} has no county delivery waiting")
    attempt = delivery.attempts + 1
    final = ok or attempt >= max_attempts
    state = DeliveryState.DELIVERED if ok else DeliveryState.FAILED if final else DeliveryState.PENDING
    updated = _bump(
        incident,
        at,
        delivery=replace(delivery, state=state, attempts=attempt, last_error=error, settled_at=at if final else None),
    )
    return updated, [
        HandoverAttempted(
            incident_id=incident.id,
            at=at,
            department=delivery.department,
            attempt=attempt,
            ok=ok,
            status_code=status_code,
            error=error,
            final=final,
        )
    ]


def acknowledge_alarm(
    incident: Incident, alarm_seq: int, at: datetime, actor: str | None
) -> tuple[Incident, list[Event]]:
    """Record that an operator acknowledged the alarm raised by event ``alarm_seq``.

    Allowed in any status. Which alarms are open (and so whether ``alarm_seq`` may be
    acknowledged at all) is the caller's knowledge: the incident does not carry its alarms.
    """
    updated = replace(incident, updated_at=at, version=incident.version + 1)
    return updated, [AlarmAcknowledged(incident_id=incident.id, at=at, alarm_seq=alarm_seq, actor=actor)]
