"""The incident aggregate and the pure decisions on it.

Each function takes the current incident, the input and ``at`` (the time the input entered),
and returns the next incident with the events that record the change. None does I/O or reads
a clock; an illegal move raises :class:`~dispatcher.core.lifecycle.IllegalTransition` before
anything is built, so a refused move leaves no trace.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from dispatcher.core.events import (
    AlarmAcknowledged,
    DeadlineKind,
    DeadlineMissed,
    DispatchedUnit,
    EscalationRaised,
    Event,
    IncidentCancelled,
    IncidentClosed,
    IncidentReported,
    NoteAdded,
    UnitMoved,
    UnitsDispatched,
)
from dispatcher.core.lifecycle import (
    FINAL_STATUSES,
    STATUS_FROM_LEAD,
    AssignmentState,
    IllegalTransition,
    IncidentAction,
    IncidentStatus,
    Role,
    UnitAction,
    next_assignment_state,
    next_incident_status,
)
from rules.matcher import Decision, EscalationTarget


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


class DeadlineState(StrEnum):
    PENDING = "pending"
    MET = "met"
    MISSED = "missed"
    VOID = "void"


@dataclass(frozen=True, slots=True, kw_only=True)
class Deadline:
    """A promise with an absolute due time; stored with the incident, re-armed at start."""

    kind: DeadlineKind
    due_at: datetime
    state: DeadlineState = DeadlineState.PENDING
    settled_at: datetime | None = None


#: The assignment state that keeps each promise.
KEPT_BY: dict[DeadlineKind, frozenset[AssignmentState]] = {
    DeadlineKind.ACK: frozenset(
        {AssignmentState.ACKNOWLEDGED, AssignmentState.EN_ROUTE, AssignmentState.ON_SCENE, AssignmentState.RESOLVED}
    ),
    DeadlineKind.ARRIVE: frozenset({AssignmentState.ON_SCENE, AssignmentState.RESOLVED}),
    DeadlineKind.RESOLVE: frozenset({AssignmentState.RESOLVED}),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    """One team's part in an incident: a lead or a supporting team, each acknowledging on its own."""

    team: str
    role: Role
    state: AssignmentState
    dispatched_at: datetime
    updated_at: datetime
    deadlines: tuple[Deadline, ...] = ()

    def deadline(self, kind: DeadlineKind) -> Deadline | None:
        for deadline in self.deadlines:
            if deadline.kind is kind:
                return deadline
        return None


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

    @property
    def escalate_to_name(self) -> str:
        return self.escalation[0].name if self.escalation else ""

    @property
    def escalate_to_title(self) -> str:
        return self.escalation[0].title if self.escalation else ""

    @property
    def is_open(self) -> bool:
        return self.status not in FINAL_STATUSES

    def assignment(self, team: str) -> Assignment:
        for assignment in self.assignments:
            if assignment.team == team:
                return assignment
        raise UnknownAssignment(self.id, team)

    def pending_deadlines(self) -> list[tuple[str, Deadline]]:
        return [(a.team, d) for a in self.assignments for d in a.deadlines if d.state == DeadlineState.PENDING]


class UnknownAssignment(LookupError):
    def __init__(self, incident_id: int, team: str) -> None:
        super().__init__(f"incident {incident_id} has no assignment for team {team!r}")
        self.incident_id = incident_id
        self.team = team


def open_incident(incident_id: int, report: Report, decision: Decision, at: datetime) -> tuple[Incident, list[Event]]:
    """A new incident routed by ``decision``: reported, and dispatched at once when it has an owner."""
    assignments: list[Assignment] = []
    teams = [(decision.lead, Role.LEAD)] if decision.lead else []
    teams += [(team, Role.SUPPORT) for team in decision.support]
    for team, role in teams:
        deadlines = tuple(
            Deadline(kind=kind, due_at=at + within)
            for kind, within in (
                (DeadlineKind.ACK, decision.ack_within),
                (DeadlineKind.ARRIVE, decision.arrive_within),
                (DeadlineKind.RESOLVE, decision.resolve_within),
            )
            if within is not None
        )
        assignments.append(
            Assignment(
                team=team,
                role=role,
                state=AssignmentState.DISPATCHED,
                dispatched_at=at,
                updated_at=at,
                deadlines=deadlines,
            )
        )
    status = IncidentStatus.DISPATCHED if assignments else IncidentStatus.REPORTED
    incident = Incident(
        id=incident_id,
        report=report,
        status=status,
        module=decision.module,
        queue=decision.queue.value if decision.queue else None,
        zones=decision.zones,
        priority=decision.priority,
        rule_id=decision.rule_id,
        table_version=decision.table_version,
        category=decision.category if decision.category is not None else report.category,
        handover=decision.handover,
        escalation=decision.escalation,
        reported_at=at,
        updated_at=at,
        assignments=tuple(assignments),
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
        )
    ]
    if assignments:
        events.append(
            UnitsDispatched(
                incident_id=incident_id,
                at=at,
                units=tuple(
                    DispatchedUnit(
                        team=a.team,
                        role=a.role,
                        ack_due=_due(a, DeadlineKind.ACK),
                        arrive_due=_due(a, DeadlineKind.ARRIVE),
                        resolve_due=_due(a, DeadlineKind.RESOLVE),
                    )
                    for a in assignments
                ),
                incident_status=status,
            )
        )
    return incident, events


def _due(assignment: Assignment, kind: DeadlineKind) -> datetime | None:
    deadline = assignment.deadline(kind)
    return deadline.due_at if deadline else None


def move_unit(
    incident: Incident, team: str, action: UnitAction, at: datetime, actor: str | None
) -> tuple[Incident, list[Event]]:
    """Advance one team's assignment; the incident's status follows its lead assignment."""
    if not incident.is_open:
        raise IllegalTransition(action.value, incident.status.value, "an assignment of a finished incident")
    current = incident.assignment(team)
    new_state = next_assignment_state(current.state, action)
    deadlines = tuple(
        replace(d, state=DeadlineState.MET, settled_at=at)
        if d.state == DeadlineState.PENDING and new_state in KEPT_BY[d.kind]
        else d
        for d in current.deadlines
    )
    moved = replace(current, state=new_state, updated_at=at, deadlines=deadlines)
    assignments = tuple(moved if a.team == team else a for a in incident.assignments)
    status = STATUS_FROM_LEAD[new_state] if current.role is Role.LEAD else incident.status
    updated = replace(incident, assignments=assignments, status=status, updated_at=at, version=incident.version + 1)
    event = UnitMoved(
        incident_id=incident.id,
        at=at,
        team=team,
        from_state=current.state,
        to_state=new_state,
        actor=actor,
        incident_status=status,
    )
    return updated, [event]


def finish_incident(
    incident: Incident, action: IncidentAction, at: datetime, actor: str | None, reason: str = ""
) -> tuple[Incident, list[Event]]:
    """Close or cancel the incident; every deadline still running is voided."""
    status = next_incident_status(incident.status, action)
    assignments = tuple(
        replace(
            a,
            deadlines=tuple(
                replace(d, state=DeadlineState.VOID, settled_at=at) if d.state == DeadlineState.PENDING else d
                for d in a.deadlines
            ),
        )
        for a in incident.assignments
    )
    updated = replace(incident, status=status, assignments=assignments, updated_at=at, version=incident.version + 1)
    event: Event
    if action is IncidentAction.CLOSE:
        event = IncidentClosed(incident_id=incident.id, at=at, actor=actor)
    else:
        event = IncidentCancelled(incident_id=incident.id, at=at, actor=actor, reason=reason)
    return updated, [event]


def add_note(incident: Incident, text: str, author: str | None, at: datetime) -> tuple[Incident, list[Event]]:
    """A note may be added in any status, a closed incident included."""
    updated = replace(incident, updated_at=at, version=incident.version + 1)
    return updated, [NoteAdded(incident_id=incident.id, at=at, author=author, text=text)]


def miss_deadline(incident: Incident, team: str, kind: DeadlineKind, at: datetime) -> tuple[Incident, list[Event]]:
    """Record a missed deadline and escalate it to the module lead.

    Returns the incident unchanged with no events when the deadline is no longer pending
    (kept, voided or already missed): firing twice can never escalate twice.
    """
    if not incident.is_open:
        return incident, []
    assignment = incident.assignment(team)
    deadline = assignment.deadline(kind)
    if deadline is None or deadline.state != DeadlineState.PENDING or deadline.due_at > at:
        return incident, []
    missed = replace(deadline, state=DeadlineState.MISSED, settled_at=at)
    moved = replace(assignment, deadlines=tuple(missed if d.kind is kind else d for d in assignment.deadlines))
    assignments = tuple(moved if a.team == team else a for a in incident.assignments)
    updated = replace(incident, assignments=assignments, updated_at=at, version=incident.version + 1)
    events: list[Event] = [
        DeadlineMissed(
            incident_id=incident.id, at=at, team=team, kind=kind, due_at=deadline.due_at, late_by=at - deadline.due_at
        ),
        EscalationRaised(
            incident_id=incident.id,
            at=at,
            team=team,
            kind=kind,
            level="module_lead",
            to_name=incident.escalate_to_name,
            to_title=incident.escalate_to_title,
        ),
    ]
    return updated, events


def acknowledge_alarm(
    incident: Incident, alarm_seq: int, at: datetime, actor: str | None
) -> tuple[Incident, list[Event]]:
    """Record that an operator acknowledged the alarm raised by event ``alarm_seq``.

    Allowed in any status. Which alarms are open (and so whether ``alarm_seq`` may be
    acknowledged at all) is the caller's knowledge: the incident does not carry its alarms.
    """
    updated = replace(incident, updated_at=at, version=incident.version + 1)
    return updated, [AlarmAcknowledged(incident_id=incident.id, at=at, alarm_seq=alarm_seq, actor=actor)]
