"""The incident lifecycle: one transition table for assignments, one for incidents.

An incident is dispatched to several teams at once (the five-way intersection: a lead team and
supporting teams). Each team's *assignment* walks its own states; the incident's status follows
from its lead assignment until an operator closes or cancels it. Every legal move is a row in a
table below; anything else raises :class:`IllegalTransition` and changes nothing.
"""

from __future__ import annotations

from enum import StrEnum


class AssignmentState(StrEnum):
    DISPATCHED = "dispatched"
    ACKNOWLEDGED = "acknowledged"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"  # taken off the team by an operator (reassigned elsewhere)
    RETURNED = "returned"  # 回退: the team sent it back as "not ours"


class IncidentStatus(StrEnum):
    REPORTED = "reported"
    DISPATCHED = "dispatched"
    ACKNOWLEDGED = "acknowledged"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    MERGED = "merged"  # a duplicate folded into another incident
    VERIFYING = "verifying"  # 待核查: every team resolved; someone who handled none of it must check it
    PARKED = "parked"  # 挂账: cannot be solved for now (funds, a court); its deadlines stop until resumed


class UnitAction(StrEnum):
    """What a team (or an operator on its behalf) does to its own assignment."""

    ACKNOWLEDGE = "acknowledge"
    DEPART = "en-route"
    ARRIVE = "on-scene"
    RESOLVE = "resolve"
    RETURN = "return"  # 回退: "not ours", with a reason


class AssignmentCommand(StrEnum):
    """What the command room does to a team's assignment (the team's own moves are :class:`UnitAction`)."""

    CANCEL = "cancel"  # taken off the team: its part goes to another team
    REWORK = "rework"  # 返工: the verification failed; the team gets its part back with fresh deadlines


class IncidentAction(StrEnum):
    """What happens to the whole incident: an operator's close, cancel or merge, or a lead team's coming and going."""

    CLOSE = "close"
    CANCEL = "cancel"
    MERGE = "merge"
    DISPATCH = "dispatch"  # a team was sent: a lead (back to dispatched), or the first one of a reported matter
    RETURN = "return"  # the lead sent it back (回退): the command room must dispatch it again
    AWAIT_VERIFICATION = "await-verification"  # every team resolved and the rule asks for 核查
    PASS = "pass"  # 核查通过: the verifier found it done (结案)
    FAIL = "fail"  # 核查不通过: back to the same teams (返工)
    PARK = "park"  # 挂账 approved
    RESUME = "resume"  # taken out of the parked list: work (and its deadlines) start again


class RequestState(StrEnum):
    """A request for an extension (延期) or for parking (挂账), waiting for its approvers."""

    REQUESTED = "requested"
    ENDORSED = "endorsed"  # one of two approvals given (parking a priority 1–2 matter)
    APPROVED = "approved"
    REFUSED = "refused"


class RequestAction(StrEnum):
    ENDORSE = "endorse"  # an approval that still needs another approver's
    APPROVE = "approve"  # the last approval needed
    REFUSE = "refuse"


class Role(StrEnum):
    LEAD = "lead"
    SUPPORT = "support"


class IllegalTransition(Exception):
    """A move that the table does not allow from the current state. Nothing was changed."""

    def __init__(self, action: str, current: str, subject: str, *, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(f"cannot {action} {subject}: it is {current}")
        self.action = action
        self.current = current
        self.subject = subject
        #: The moves the table does allow from ``current`` (empty where no table decided the refusal).
        self.allowed = allowed


A = AssignmentState
I = IncidentStatus  # noqa: E741 - short alias keeps the tables readable

ASSIGNMENT_MOVES: dict[tuple[AssignmentState, UnitAction | AssignmentCommand], AssignmentState] = {
    (A.DISPATCHED, UnitAction.ACKNOWLEDGE): A.ACKNOWLEDGED,
    (A.ACKNOWLEDGED, UnitAction.DEPART): A.EN_ROUTE,
    (A.ACKNOWLEDGED, UnitAction.ARRIVE): A.ON_SCENE,
    (A.EN_ROUTE, UnitAction.ARRIVE): A.ON_SCENE,
    (A.ACKNOWLEDGED, UnitAction.RESOLVE): A.RESOLVED,
    (A.EN_ROUTE, UnitAction.RESOLVE): A.RESOLVED,
    (A.ON_SCENE, UnitAction.RESOLVE): A.RESOLVED,
    **{(state, UnitAction.RETURN): A.RETURNED for state in (A.DISPATCHED, A.ACKNOWLEDGED, A.EN_ROUTE, A.ON_SCENE)},
    **{
        (state, AssignmentCommand.CANCEL): A.CANCELLED
        for state in (A.DISPATCHED, A.ACKNOWLEDGED, A.EN_ROUTE, A.ON_SCENE)
    },
    (A.RESOLVED, AssignmentCommand.REWORK): A.DISPATCHED,
}

#: Assignments still owed work: they hold their officer and their deadlines run.
LIVE_ASSIGNMENT_STATES = frozenset({A.DISPATCHED, A.ACKNOWLEDGED, A.EN_ROUTE, A.ON_SCENE})

INCIDENT_MOVES: dict[tuple[IncidentStatus, IncidentAction], IncidentStatus] = {
    (I.RESOLVED, IncidentAction.CLOSE): I.CLOSED,
    **{
        (status, IncidentAction.CANCEL): I.CANCELLED
        for status in (I.REPORTED, I.DISPATCHED, I.ACKNOWLEDGED, I.EN_ROUTE, I.ON_SCENE, I.RESOLVED)
    },
    **{
        (status, IncidentAction.MERGE): I.MERGED
        for status in (I.REPORTED, I.DISPATCHED, I.ACKNOWLEDGED, I.EN_ROUTE, I.ON_SCENE)
    },
    **{
        (status, IncidentAction.DISPATCH): I.DISPATCHED
        for status in (I.REPORTED, I.DISPATCHED, I.ACKNOWLEDGED, I.EN_ROUTE, I.ON_SCENE, I.RESOLVED)
    },
    **{
        (status, IncidentAction.RETURN): I.REPORTED for status in (I.DISPATCHED, I.ACKNOWLEDGED, I.EN_ROUTE, I.ON_SCENE)
    },
    (I.RESOLVED, IncidentAction.AWAIT_VERIFICATION): I.VERIFYING,
    (I.VERIFYING, IncidentAction.PASS): I.CLOSED,
    (I.VERIFYING, IncidentAction.FAIL): I.DISPATCHED,
    (I.VERIFYING, IncidentAction.CANCEL): I.CANCELLED,
    **{(status, IncidentAction.PARK): I.PARKED for status in (I.DISPATCHED, I.ACKNOWLEDGED, I.EN_ROUTE, I.ON_SCENE)},
    # Resumed as dispatched; the lead's state is then mirrored again (STATUS_FROM_LEAD).
    (I.PARKED, IncidentAction.RESUME): I.DISPATCHED,
    (I.PARKED, IncidentAction.CANCEL): I.CANCELLED,
}

REQUEST_MOVES: dict[tuple[RequestState, RequestAction], RequestState] = {
    (RequestState.REQUESTED, RequestAction.ENDORSE): RequestState.ENDORSED,
    (RequestState.REQUESTED, RequestAction.APPROVE): RequestState.APPROVED,
    (RequestState.ENDORSED, RequestAction.APPROVE): RequestState.APPROVED,
    (RequestState.REQUESTED, RequestAction.REFUSE): RequestState.REFUSED,
    (RequestState.ENDORSED, RequestAction.REFUSE): RequestState.REFUSED,
}
#: Requests still waiting for a decision.
OPEN_REQUEST_STATES = frozenset({RequestState.REQUESTED, RequestState.ENDORSED})

#: The incident status that mirrors the lead assignment's state.
STATUS_FROM_LEAD: dict[AssignmentState, IncidentStatus] = {
    A.DISPATCHED: I.DISPATCHED,
    A.ACKNOWLEDGED: I.ACKNOWLEDGED,
    A.EN_ROUTE: I.EN_ROUTE,
    A.ON_SCENE: I.ON_SCENE,
    A.RESOLVED: I.RESOLVED,
}

#: Statuses in which units may still move and deadlines still run.
ACTIVE_STATUSES = frozenset({I.DISPATCHED, I.ACKNOWLEDGED, I.EN_ROUTE, I.ON_SCENE, I.RESOLVED})
#: Statuses in which the teams still work and may ask for an extension (延期).
WORKING_STATUSES = frozenset({I.DISPATCHED, I.ACKNOWLEDGED, I.EN_ROUTE, I.ON_SCENE})
#: Statuses after which nothing but a note may happen.
FINAL_STATUSES = frozenset({I.CLOSED, I.CANCELLED, I.MERGED})
#: Statuses in which a new report of the same matter joins the incident instead of opening another.
JOINABLE_STATUSES = frozenset({I.REPORTED, I.DISPATCHED, I.ACKNOWLEDGED, I.EN_ROUTE, I.ON_SCENE})


def next_assignment_state(current: AssignmentState, action: UnitAction | AssignmentCommand) -> AssignmentState:
    """The state after ``action``; raises :class:`IllegalTransition` when the table has no such row."""
    try:
        return ASSIGNMENT_MOVES[(current, action)]
    except KeyError:
        allowed = tuple(a.value for (state, a) in ASSIGNMENT_MOVES if state is current)
        raise IllegalTransition(action.value, current.value, "the assignment", allowed=allowed) from None


def next_incident_status(current: IncidentStatus, action: IncidentAction) -> IncidentStatus:
    """The status after ``action``; raises :class:`IllegalTransition` when the table has no such row."""
    try:
        return INCIDENT_MOVES[(current, action)]
    except KeyError:
        raise IllegalTransition(
            action.value, current.value, "the incident", allowed=allowed_incident_actions(current)
        ) from None


def next_request_state(current: RequestState, action: RequestAction) -> RequestState:
    """The request's state after ``action``; raises :class:`IllegalTransition` when the table has no such row."""
    try:
        return REQUEST_MOVES[(current, action)]
    except KeyError:
        allowed = tuple(a.value for (state, a) in REQUEST_MOVES if state is current)
        raise IllegalTransition(action.value, current.value, "the request", allowed=allowed) from None


def allowed_incident_actions(current: IncidentStatus) -> tuple[str, ...]:
    """The actions the table allows from ``current`` (for a 409's ``allowed``)."""
    return tuple(action.value for (status, action) in INCIDENT_MOVES if status is current)
