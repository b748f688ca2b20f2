"""Closing the loop: extensions (延期), parking (挂账) and verification (核查), pure like the rest of the core.

Each function takes the incident, the input and ``at`` and returns the next incident with the events
that record the change; an illegal move raises (:class:`IllegalTransition`, :class:`Refused`) before
anything is built. The moves are rows of the tables in :mod:`dispatcher.core.lifecycle`.

* **Extension**: a team with a live assignment asks for its resolution deadline to move (reason, new
  due time); the approver the table names (``defaults.extension_approver``, by default the module
  lead; the party secretary may always decide) approves or refuses. An approval moves that deadline;
  at most ``max_extensions`` are approved per incident.
* **Parking**: requested with a reason and a review date; approved by the module lead, and also by the
  party secretary for priority 1–2 (the first of the two *endorses*). Approved, every running deadline
  stops (void) and the review date becomes the incident's own deadline, missed as an alarm. Resuming
  gives the live teams fresh deadlines for what they still owe.
* **Verification**: when the rule asks for it (``verify_within``), an incident whose every team has
  resolved waits for verification with a due time; a verifier who is none of its handlers passes it
  (closed) or fails it with a reason (返工: the resolved teams get their parts back with fresh deadlines).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from dispatcher.core.events import (
    TEAM_DEADLINE_KINDS,
    DeadlineKind,
    DeadlineMissed,
    Event,
    ExtensionRequested,
    IncidentClosed,
    IncidentParked,
    IncidentResumed,
    IncidentVerified,
    ParkingRequested,
    RequestDecided,
    VerificationAwaited,
)
from dispatcher.core.incidents import (
    NO_TEAM,
    Approval,
    Assignment,
    Deadline,
    DeadlineState,
    EscalationState,
    Incident,
    Refused,
    Request,
    RequestKind,
    Verification,
    _bump,
    _require_open,
    _void,
    _with_assignment,
    due_after,
)
from dispatcher.core.lifecycle import (
    STATUS_FROM_LEAD,
    WORKING_STATUSES,
    AssignmentCommand,
    AssignmentState,
    IllegalTransition,
    IncidentAction,
    IncidentStatus,
    RequestAction,
    RequestState,
    Role,
    allowed_incident_actions,
    next_assignment_state,
    next_incident_status,
    next_request_state,
)
from dispatcher.core.records import replace
from rules.geo import distance_m
from rules.workdays import WorkCalendar

MODULE_LEAD = "module_lead"
PARTY_SECRETARY = "party_secretary"
APPROVER_ROLES = (MODULE_LEAD, PARTY_SECRETARY)


def _working(incident: Incident, what: str) -> None:
    _require_open(incident, what)
    if incident.status not in WORKING_STATUSES:
        raise IllegalTransition(
            what, incident.status.value, "the incident", allowed=allowed_incident_actions(incident.status)
        )


def _next_id(incident: Incident) -> int:
    return max((r.id for r in incident.loop.requests), default=0) + 1


def _with_request(incident: Incident, request: Request, at: datetime, **changes: object) -> Incident:
    requests = tuple(request if r.id == request.id else r for r in incident.loop.requests)
    if all(r.id != request.id for r in incident.loop.requests):
        requests = (*requests, request)
    loop = replace(incident.loop, requests=requests, **changes)  # type: ignore[arg-type]
    return _bump(incident, at, loop=loop)


# -- extension (延期) -----------------------------------------------------------------------------


def request_extension(
    incident: Incident, team: str, reason: str, due_at: datetime, at: datetime, actor: str | None
) -> tuple[Incident, list[Event]]:
    """A team asks for its resolution deadline to move to ``due_at``."""
    _working(incident, "ask for an extension of")
    assignment = incident.assignment(team)
    if not assignment.is_live:
        raise IllegalTransition("ask for an extension of", assignment.state.value, "the assignment")
    if not reason.strip():
        raise Refused("an extension (延期) needs a reason")
    if due_at <= at:
        raise Refused("the new due time must be in the future")
    current = assignment.deadline(DeadlineKind.RESOLVE)
    if current is not None and current.state is DeadlineState.PENDING and due_at <= current.due_at:
        raise Refused(f"the new due time must be after the current one ({current.due_at.isoformat()})")
    loop = incident.loop
    if loop.extensions >= loop.max_extensions:
        raise Refused(f"at most {loop.max_extensions} extension(s) per incident: {loop.extensions} approved already")
    if any(r.is_open and r.kind is RequestKind.EXTENSION and r.team == team for r in loop.requests):
        raise Refused(f"team {team} already has an extension request waiting for a decision")
    request = Request(
        id=_next_id(incident),
        kind=RequestKind.EXTENSION,
        team=team,
        reason=reason.strip(),
        until=due_at,
        state=RequestState.REQUESTED,
        requested_by=actor,
        requested_at=at,
        needs=(loop.extension_approver,),
    )
    return _with_request(incident, request, at), [
        ExtensionRequested(
            incident_id=incident.id,
            at=at,
            request_id=request.id,
            team=team,
            reason=request.reason,
            previous_due=current.due_at if current is not None else None,
            due_at=due_at,
            actor=actor,
        )
    ]


# -- parking (挂账) -------------------------------------------------------------------------------


def request_parking(
    incident: Incident, reason: str, review_at: datetime, at: datetime, actor: str | None
) -> tuple[Incident, list[Event]]:
    """Ask to park the incident until ``review_at``; priority 1–2 needs the party secretary's approval too."""
    _working(incident, "park")
    if not reason.strip():
        raise Refused("parking (挂账) needs a reason: what is the matter waiting for")
    if review_at <= at:
        raise Refused("the review date must be in the future")
    if any(r.is_open and r.kind is RequestKind.PARKING for r in incident.loop.requests):
        raise Refused("a parking request is already waiting for a decision")
    needs = (MODULE_LEAD, PARTY_SECRETARY) if incident.priority <= 2 else (MODULE_LEAD,)
    request = Request(
        id=_next_id(incident),
        kind=RequestKind.PARKING,
        team=None,
        reason=reason.strip(),
        until=review_at,
        state=RequestState.REQUESTED,
        requested_by=actor,
        requested_at=at,
        needs=needs,
    )
    return _with_request(incident, request, at), [
        ParkingRequested(
            incident_id=incident.id,
            at=at,
            request_id=request.id,
            reason=request.reason,
            review_at=review_at,
            needs=needs,
            actor=actor,
        )
    ]


# -- deciding a request ---------------------------------------------------------------------------


def decide_request(
    incident: Incident,
    request_id: int,
    approve: bool,
    at: datetime,
    *,
    role: str,
    actor: str | None,
    reason: str = "",
) -> tuple[Incident, list[Event]]:
    """An approver in ``role`` approves or refuses a request.

    The role must be one the request needs and has not yet had (the party secretary may decide an
    extension whoever the table names). A refusal needs a reason. An approval that completes the
    request applies it: the extension moves the deadline, the parking parks the incident.
    """
    _require_open(incident, "decide on a request of")
    request = incident.loop.request(request_id)
    given = {a.role for a in request.approvals}
    may = set(request.needs) | ({PARTY_SECRETARY} if request.kind is RequestKind.EXTENSION else set())
    if role not in may:
        raise Refused(f"this {request.kind.value} request is decided by {' and '.join(request.needs)}, not {role}")
    if not approve:
        if not reason.strip():
            raise Refused("a refusal needs a reason")
        state = next_request_state(request.state, RequestAction.REFUSE)
        decided = replace(request, state=state, decided_at=at, refusal=reason.strip())
        return _with_request(incident, decided, at), [_decided(incident, decided, role, reason, actor, at)]
    if role in given:
        raise Refused(f"{role} has approved this request already")
    approvals = (*request.approvals, Approval(role=role, actor=actor, at=at))
    complete = request.kind is RequestKind.EXTENSION or set(request.needs) <= {a.role for a in approvals}
    state = next_request_state(request.state, RequestAction.APPROVE if complete else RequestAction.ENDORSE)
    decided = replace(request, state=state, approvals=approvals, decided_at=at if complete else None)
    if not complete:
        return _with_request(incident, decided, at), [_decided(incident, decided, role, reason, actor, at)]
    if request.kind is RequestKind.EXTENSION:
        return _extend(incident, decided, role, reason, actor, at)
    return _park(incident, decided, role, reason, actor, at)


def _decided(
    incident: Incident, request: Request, role: str, reason: str, actor: str | None, at: datetime
) -> RequestDecided:
    return RequestDecided(
        incident_id=incident.id,
        at=at,
        request_id=request.id,
        kind=request.kind.value,
        team=request.team,
        state=request.state.value,
        role=role,
        reason=reason.strip(),
        actor=actor,
        due_at=request.until if request.state is RequestState.APPROVED else None,
    )


def _extend(
    incident: Incident, request: Request, role: str, reason: str, actor: str | None, at: datetime
) -> tuple[Incident, list[Event]]:
    assert request.team is not None
    if incident.status not in WORKING_STATUSES:
        raise IllegalTransition("extend", incident.status.value, "the incident")
    assignment = incident.assignment(request.team)
    if not assignment.is_live:
        raise IllegalTransition("extend", assignment.state.value, "the assignment")
    if incident.loop.extensions >= incident.loop.max_extensions:
        raise Refused(f"at most {incident.loop.max_extensions} extension(s) per incident")
    fresh = Deadline(kind=DeadlineKind.RESOLVE, due_at=request.until)
    deadlines = tuple(fresh if d.kind is DeadlineKind.RESOLVE else d for d in assignment.deadlines)
    if assignment.deadline(DeadlineKind.RESOLVE) is None:
        deadlines = (*deadlines, fresh)
    # The chain waiting on the old resolution deadline stands down: the promise was moved, not broken.
    escalations = tuple(
        replace(e, state=EscalationState.VOID, settled_at=at)
        if e.state is EscalationState.PENDING and e.kind == DeadlineKind.RESOLVE.value
        else e
        for e in assignment.escalations
    )
    moved = replace(assignment, deadlines=deadlines, escalations=escalations, updated_at=at)
    updated = _with_request(_with_assignment(incident, moved, at), request, at)
    return updated, [_decided(incident, request, role, reason, actor, at)]


def _park(
    incident: Incident, request: Request, role: str, reason: str, actor: str | None, at: datetime
) -> tuple[Incident, list[Event]]:
    status = next_incident_status(incident.status, IncidentAction.PARK)
    stopped = tuple(_void(a, at) if a.is_live else a for a in incident.assignments)
    review = Deadline(kind=DeadlineKind.REVIEW, due_at=request.until)
    base = replace(incident, assignments=stopped)
    updated = _with_request(base, request, at, checks=(*_settled_checks(incident, at), review))
    updated = replace(updated, status=status)
    return updated, [
        _decided(incident, request, role, reason, actor, at),
        IncidentParked(
            incident_id=incident.id,
            at=at,
            request_id=request.id,
            review_at=request.until,
            actor=actor,
            teams=tuple(a.team for a in incident.assignments if a.is_live),
        ),
    ]


def _settled_checks(incident: Incident, at: datetime) -> tuple[Deadline, ...]:
    """The incident's own deadlines with the running ones settled (met: the step they waited for came)."""
    return tuple(
        replace(d, state=DeadlineState.MET, settled_at=at) if d.state is DeadlineState.PENDING else d
        for d in incident.loop.checks
    )


def resume(
    incident: Incident, at: datetime, actor: str | None, *, calendar: WorkCalendar | None = None
) -> tuple[Incident, list[Event]]:
    """Take a parked incident out of the parked list: the live teams owe again what they owed, from now."""
    _require_open(incident, IncidentAction.RESUME.value)
    next_incident_status(incident.status, IncidentAction.RESUME)
    assignments = tuple(_fresh(incident, a, at, calendar) if a.is_live else a for a in incident.assignments)
    lead = next((a for a in assignments if a.role is Role.LEAD and a.is_live), None)
    status = STATUS_FROM_LEAD[lead.state] if lead is not None else IncidentStatus.DISPATCHED
    loop = replace(incident.loop, checks=_settled_checks(incident, at))
    updated = _bump(incident, at, assignments=assignments, status=status, loop=loop)
    teams = tuple(a.team for a in assignments if a.is_live)
    return updated, [IncidentResumed(incident_id=incident.id, at=at, actor=actor, incident_status=status, teams=teams)]


def _fresh(incident: Incident, assignment: Assignment, at: datetime, calendar: WorkCalendar | None) -> Assignment:
    """Fresh deadlines, counted from ``at``, for the promises the assignment's state has not kept yet."""
    from dispatcher.core.incidents import KEPT_BY

    fresh = {
        kind: Deadline(kind=kind, due_at=due_after(at, window, calendar))
        for kind, window in incident.promises.windows()
        if window is not None and assignment.state not in KEPT_BY[kind]
    }
    # The promises already kept stay on the record; the others start again, in the usual order.
    kept = {d.kind: d for d in assignment.deadlines if d.kind not in fresh}
    merged = {**kept, **fresh}
    deadlines = tuple(merged[kind] for kind in TEAM_DEADLINE_KINDS if kind in merged)
    return replace(assignment, deadlines=deadlines, updated_at=at)


# -- verification (核查) --------------------------------------------------------------------------


def await_verification(
    incident: Incident, at: datetime, *, calendar: WorkCalendar | None = None
) -> tuple[Incident, list[Event]]:
    """When the rule asks for verification and every team still on the incident has resolved, the
    incident waits for verification with its due time; otherwise nothing changes (no events)."""
    window = incident.loop.verify_within
    if window is None or incident.status is not IncidentStatus.RESOLVED:
        return incident, []
    working = [a for a in incident.assignments if a.state not in (AssignmentState.CANCELLED, AssignmentState.RETURNED)]
    if not working or any(a.state is not AssignmentState.RESOLVED for a in working):
        return incident, []
    status = next_incident_status(incident.status, IncidentAction.AWAIT_VERIFICATION)
    due = due_after(at, window, calendar)  # raises CalendarUnknown (nothing changed) beyond the calendar
    check = Deadline(kind=DeadlineKind.VERIFY, due_at=due)
    loop = replace(incident.loop, checks=(*_settled_checks(incident, at), check))
    updated = _bump(incident, at, status=status, loop=loop)
    return updated, [VerificationAwaited(incident_id=incident.id, at=at, due_at=due)]


def handlers(incident: Incident) -> frozenset[str]:
    """Everyone who handled the incident: each assignment's officer, those it was sent to before, and its team."""
    found: set[str] = set()
    for a in incident.assignments:
        found.update(a.tried)
        if a.officer is not None:
            found.add(a.officer)
    return frozenset(found)


def verify(
    incident: Incident,
    passed: bool,
    at: datetime,
    *,
    verifier: str,
    verifier_ids: Sequence[str] = (),
    reason: str = "",
    photos: Sequence[str] = (),
    flags: Sequence[str] = (),
    calendar: WorkCalendar | None = None,
) -> tuple[Incident, list[Event]]:
    """The verifier passes (closes) or fails (返工) an incident waiting for verification.

    ``verifier_ids``: the verifier's names and officer id; none may be a handler of the incident. A
    failure needs a reason and gives every resolved team its part back with fresh deadlines from now.
    """
    _require_open(incident, "verify")
    action = IncidentAction.PASS if passed else IncidentAction.FAIL
    status = next_incident_status(incident.status, action)
    involved = handlers(incident) & {verifier, *verifier_ids}
    if involved:
        raise Refused(f"{', '.join(sorted(involved))} handled this incident: the verifier must be someone else")
    if not passed and not reason.strip():
        raise Refused("a failed verification needs a reason: what is not done")
    record = Verification(
        at=at, verifier=verifier, passed=passed, reason=reason.strip(), photos=tuple(photos), flags=tuple(flags)
    )
    checks = _settled_checks(incident, at)
    if passed:
        assignments = tuple(_void(a, at) for a in incident.assignments)
        teams: tuple[str, ...] = ()
    else:
        reworked = []
        for a in incident.assignments:
            if a.state is AssignmentState.RESOLVED:
                state = next_assignment_state(a.state, AssignmentCommand.REWORK)
                reworked.append(_fresh(incident, replace(a, state=state), at, calendar))
            else:
                reworked.append(a)
        assignments = tuple(reworked)
        teams = tuple(a.team for a in incident.assignments if a.state is AssignmentState.RESOLVED)
    loop = replace(incident.loop, checks=checks, verifications=(*incident.loop.verifications, record))
    closed_at = at if passed and incident.closed_at is None else incident.closed_at
    updated = _bump(incident, at, status=status, assignments=assignments, loop=loop, closed_at=closed_at)
    # A pass closes the incident (结案) like an operator's close: boards, alarms and figures see IncidentClosed.
    closed: list[Event] = [IncidentClosed(incident_id=incident.id, at=at, actor=verifier)] if passed else []
    return updated, [
        IncidentVerified(
            incident_id=incident.id,
            at=at,
            verifier=verifier,
            passed=passed,
            reason=record.reason,
            photos=record.photos,
            flags=record.flags,
            teams=teams,
            rework=updated.loop.reworks,
            incident_status=status,
        ),
        *closed,
    ]


# -- evidence ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PhotoFacts:
    """Where and when a photo was taken, as the photo store knows it (the phone's own fix, else the EXIF)."""

    id: str
    taken_at: datetime | None
    lat: float | None
    lon: float | None


#: A verification photo farther than this from the incident's position is flagged.
FAR_M = 500.0
#: A verification photo taken this long before the verification (or before the report) is flagged.
STALE = timedelta(hours=24)


def photo_flags(
    incident: Incident, photos: Sequence[PhotoFacts], at: datetime, *, far_m: float = FAR_M, stale: timedelta = STALE
) -> tuple[str, ...]:
    """Why the evidence looks doubtful: each photo taken far from the incident, before it was reported or long
    before the verification, or without a time or place to tell. Flags are shown with the verification; they
    never refuse it (the verifier may have a good reason the board should see)."""
    flags: list[str] = []
    here = (incident.report.lat, incident.report.lon)
    for photo in photos:
        short = photo.id[:12]
        if photo.lat is None or photo.lon is None:
            flags.append(f"photo {short}: no place recorded")
        elif here[0] is not None and here[1] is not None:
            metres = distance_m(here[0], here[1], photo.lat, photo.lon)
            if metres > far_m:
                flags.append(f"photo {short}: taken {metres:,.0f} m from the incident")
        if photo.taken_at is None:
            flags.append(f"photo {short}: no time recorded")
        elif photo.taken_at < incident.reported_at:
            flags.append(f"photo {short}: taken before the incident was reported")
        elif at - photo.taken_at > stale:
            hours = (at - photo.taken_at).total_seconds() / 3600
            flags.append(f"photo {short}: taken {hours:.0f} h before the verification")
    return tuple(flags)


# -- the incident's own deadlines ------------------------------------------------------------------


def miss_check(incident: Incident, kind: DeadlineKind, at: datetime) -> tuple[Incident, list[Event]]:
    """The verification due time or the parking review date passed: recorded as missed (an alarm on the
    board). A no-op when that deadline is no longer pending or not yet due, so firing twice records once."""
    if not incident.is_open:
        return incident, []
    check = incident.loop.check(kind)
    if check is None or check.state is not DeadlineState.PENDING or check.due_at > at:
        return incident, []
    missed = replace(check, state=DeadlineState.MISSED, settled_at=at)
    loop = replace(incident.loop, checks=tuple(missed if d is check else d for d in incident.loop.checks))
    updated = _bump(incident, at, loop=loop)
    return updated, [
        DeadlineMissed(
            incident_id=incident.id, at=at, team=NO_TEAM, kind=kind, due_at=check.due_at, late_by=at - check.due_at
        )
    ]
