"""The transition tables, walked step by step: every legal move and a refusal for every other."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from dispatcher.core.events import DeadlineKind, Event
from dispatcher.core.incidents import (
    DeadlineState,
    Incident,
    Report,
    add_team,
    finish_incident,
    miss_deadline,
    move_unit,
    open_incident,
    reassign_team,
)
from dispatcher.core.lifecycle import (
    ASSIGNMENT_MOVES,
    INCIDENT_MOVES,
    REQUEST_MOVES,
    STATUS_FROM_LEAD,
    AssignmentCommand,
    AssignmentState,
    IllegalTransition,
    IncidentAction,
    IncidentStatus,
    RequestAction,
    RequestState,
    UnitAction,
    next_assignment_state,
    next_incident_status,
    next_request_state,
)
from rules import RoutingInput, RuleBook

A, I = AssignmentState, IncidentStatus  # noqa: E741 - short aliases keep the step tables readable
AT = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)

ASSIGNMENT_STEPS = [
    (A.DISPATCHED, UnitAction.ACKNOWLEDGE, A.ACKNOWLEDGED),
    (A.ACKNOWLEDGED, UnitAction.DEPART, A.EN_ROUTE),
    (A.ACKNOWLEDGED, UnitAction.ARRIVE, A.ON_SCENE),
    (A.EN_ROUTE, UnitAction.ARRIVE, A.ON_SCENE),
    (A.ACKNOWLEDGED, UnitAction.RESOLVE, A.RESOLVED),
    (A.EN_ROUTE, UnitAction.RESOLVE, A.RESOLVED),
    (A.ON_SCENE, UnitAction.RESOLVE, A.RESOLVED),
    (A.DISPATCHED, UnitAction.RETURN, A.RETURNED),
    (A.ACKNOWLEDGED, UnitAction.RETURN, A.RETURNED),
    (A.EN_ROUTE, UnitAction.RETURN, A.RETURNED),
    (A.ON_SCENE, UnitAction.RETURN, A.RETURNED),
    (A.DISPATCHED, AssignmentCommand.CANCEL, A.CANCELLED),
    (A.ACKNOWLEDGED, AssignmentCommand.CANCEL, A.CANCELLED),
    (A.EN_ROUTE, AssignmentCommand.CANCEL, A.CANCELLED),
    (A.ON_SCENE, AssignmentCommand.CANCEL, A.CANCELLED),
    (A.RESOLVED, AssignmentCommand.REWORK, A.DISPATCHED),  # 返工 after a failed verification
]
ACTIONS = [*UnitAction, *AssignmentCommand]


@pytest.mark.parametrize(("state", "action", "expected"), ASSIGNMENT_STEPS)
def test_legal_assignment_moves(
    state: AssignmentState, action: UnitAction | AssignmentCommand, expected: AssignmentState
) -> None:
    assert next_assignment_state(state, action) is expected


@pytest.mark.parametrize(
    ("state", "action"),
    [(s, a) for s in AssignmentState for a in ACTIONS if (s, a) not in {(x, y) for x, y, _ in ASSIGNMENT_STEPS}],
)
def test_every_other_assignment_move_is_refused(state: AssignmentState, action: UnitAction | AssignmentCommand) -> None:
    with pytest.raises(IllegalTransition) as refused:
        next_assignment_state(state, action)
    assert refused.value.current == state.value


def test_the_table_is_exactly_the_steps() -> None:
    assert set(ASSIGNMENT_MOVES.items()) == {((s, a), e) for s, a, e in ASSIGNMENT_STEPS}


@pytest.mark.parametrize("status", list(IncidentStatus))
def test_incident_moves(status: IncidentStatus) -> None:
    if status is I.RESOLVED:
        assert next_incident_status(status, IncidentAction.CLOSE) is I.CLOSED
    else:
        with pytest.raises(IllegalTransition):
            next_incident_status(status, IncidentAction.CLOSE)
    if status in (I.CLOSED, I.CANCELLED, I.MERGED):
        with pytest.raises(IllegalTransition):
            next_incident_status(status, IncidentAction.CANCEL)
    else:
        assert next_incident_status(status, IncidentAction.CANCEL) is I.CANCELLED
    if status in (I.REPORTED, I.DISPATCHED, I.ACKNOWLEDGED, I.EN_ROUTE, I.ON_SCENE):
        assert next_incident_status(status, IncidentAction.MERGE) is I.MERGED
    else:  # a resolved matter is not merged away: its report stands
        with pytest.raises(IllegalTransition):
            next_incident_status(status, IncidentAction.MERGE)
    working = (I.DISPATCHED, I.ACKNOWLEDGED, I.EN_ROUTE, I.ON_SCENE)
    if status in (I.REPORTED, *working, I.RESOLVED):
        assert next_incident_status(status, IncidentAction.DISPATCH) is I.DISPATCHED
    else:
        with pytest.raises(IllegalTransition):
            next_incident_status(status, IncidentAction.DISPATCH)
    if status in working:  # only a working lead can send it back; a resolved one is checked, not returned
        assert next_incident_status(status, IncidentAction.RETURN) is I.REPORTED
    else:
        with pytest.raises(IllegalTransition):
            next_incident_status(status, IncidentAction.RETURN)
    assert len(INCIDENT_MOVES) == 1 + 6 + 5 + 6 + 4 + len(CLOSING_STEPS)


#: Closing the loop (核查, 挂账): every row, and every other (status, action) of these actions refused.
CLOSING_STEPS = [
    (I.RESOLVED, IncidentAction.AWAIT_VERIFICATION, I.VERIFYING),
    (I.VERIFYING, IncidentAction.PASS, I.CLOSED),
    (I.VERIFYING, IncidentAction.FAIL, I.DISPATCHED),
    (I.VERIFYING, IncidentAction.CANCEL, I.CANCELLED),
    (I.DISPATCHED, IncidentAction.PARK, I.PARKED),
    (I.ACKNOWLEDGED, IncidentAction.PARK, I.PARKED),
    (I.EN_ROUTE, IncidentAction.PARK, I.PARKED),
    (I.ON_SCENE, IncidentAction.PARK, I.PARKED),
    (I.PARKED, IncidentAction.RESUME, I.DISPATCHED),
    (I.PARKED, IncidentAction.CANCEL, I.CANCELLED),
]
CLOSING_ACTIONS = (
    IncidentAction.AWAIT_VERIFICATION,
    IncidentAction.PASS,
    IncidentAction.FAIL,
    IncidentAction.PARK,
    IncidentAction.RESUME,
)


@pytest.mark.parametrize(("status", "action", "expected"), CLOSING_STEPS)
def test_closing_the_loop_moves(status: IncidentStatus, action: IncidentAction, expected: IncidentStatus) -> None:
    assert next_incident_status(status, action) is expected


@pytest.mark.parametrize(
    ("status", "action"),
    [(s, a) for s in IncidentStatus for a in CLOSING_ACTIONS if (s, a) not in {(x, y) for x, y, _ in CLOSING_STEPS}],
)
def test_every_other_closing_move_is_refused_with_the_allowed_ones(
    status: IncidentStatus, action: IncidentAction
) -> None:
    with pytest.raises(IllegalTransition) as refused:
        next_incident_status(status, action)
    assert set(refused.value.allowed) == {a.value for (s, a) in INCIDENT_MOVES if s is status}
    # A verifying or parked incident can only be closed through its verification or cancelled.
    if status in (I.VERIFYING, I.PARKED):
        with pytest.raises(IllegalTransition):
            next_incident_status(status, IncidentAction.CLOSE)


REQUEST_STEPS = [
    (RequestState.REQUESTED, RequestAction.ENDORSE, RequestState.ENDORSED),
    (RequestState.REQUESTED, RequestAction.APPROVE, RequestState.APPROVED),
    (RequestState.ENDORSED, RequestAction.APPROVE, RequestState.APPROVED),
    (RequestState.REQUESTED, RequestAction.REFUSE, RequestState.REFUSED),
    (RequestState.ENDORSED, RequestAction.REFUSE, RequestState.REFUSED),
]


@pytest.mark.parametrize(("state", "action", "expected"), REQUEST_STEPS)
def test_request_moves(state: RequestState, action: RequestAction, expected: RequestState) -> None:
    assert next_request_state(state, action) is expected


@pytest.mark.parametrize(
    ("state", "action"),
    [(s, a) for s in RequestState for a in RequestAction if (s, a) not in {(x, y) for x, y, _ in REQUEST_STEPS}],
)
def test_every_other_request_move_is_refused(state: RequestState, action: RequestAction) -> None:
    with pytest.raises(IllegalTransition) as refused:
        next_request_state(state, action)
    assert refused.value.current == state.value


def test_the_request_table_is_exactly_the_steps() -> None:
    assert set(REQUEST_MOVES.items()) == {((s, a), e) for s, a, e in REQUEST_STEPS}


def _five_way(bundled_rules: RuleBook):  # type: ignore[no-untyped-def]
    report = Report(report_id="r", category="traffic.congestion", description="jam", zone="five-way")
    decision = bundled_rules.route(RoutingInput(category=report.category, zone=report.zone))
    return open_incident(1, report, decision, AT)


def test_opening_dispatches_the_lead_and_supports_with_deadlines(bundled_rules: RuleBook) -> None:
    incident, events = _five_way(bundled_rules)
    assert [type(e).__name__ for e in events] == ["IncidentReported", "UnitsDispatched"]
    assert incident.status is I.DISPATCHED
    due = {d.kind: d.due_at - AT for d in incident.assignments[0].deadlines}
    assert due == {
        DeadlineKind.ACK: timedelta(minutes=3),
        DeadlineKind.ARRIVE: timedelta(minutes=10),
        DeadlineKind.RESOLVE: timedelta(hours=2),
    }


def test_moves_keep_deadlines_and_a_kept_deadline_cannot_be_missed(bundled_rules: RuleBook) -> None:
    incident, _ = _five_way(bundled_rules)
    incident, _ = move_unit(incident, "traffic-police", UnitAction.ACKNOWLEDGE, AT + timedelta(minutes=1), None)
    incident, _ = move_unit(incident, "traffic-police", UnitAction.ARRIVE, AT + timedelta(minutes=2), None)
    states = {d.kind: d.state for d in incident.assignment("traffic-police").deadlines}
    assert states == {
        DeadlineKind.ACK: DeadlineState.MET,
        DeadlineKind.ARRIVE: DeadlineState.MET,
        DeadlineKind.RESOLVE: DeadlineState.PENDING,
    }

    later = AT + timedelta(minutes=11)
    unchanged, events = miss_deadline(incident, "traffic-police", DeadlineKind.ARRIVE, later)
    assert events == [] and unchanged is incident
    missed, events = miss_deadline(incident, "police-station", DeadlineKind.ARRIVE, later)
    assert [type(e).__name__ for e in events] == ["DeadlineMissed", "EscalationRaised"]
    again, events = miss_deadline(missed, "police-station", DeadlineKind.ARRIVE, later)
    assert events == [] and again is missed


def test_a_deadline_not_yet_due_is_not_missed(bundled_rules: RuleBook) -> None:
    incident, _ = _five_way(bundled_rules)
    _, events = miss_deadline(incident, "traffic-police", DeadlineKind.ACK, AT + timedelta(minutes=2))
    assert events == []


def test_a_finished_incident_refuses_unit_moves(bundled_rules: RuleBook) -> None:
    incident, _ = _five_way(bundled_rules)
    cancelled, _ = finish_incident(incident, IncidentAction.CANCEL, AT, "op", "false alarm")
    with pytest.raises(IllegalTransition):
        move_unit(cancelled, "traffic-police", UnitAction.ACKNOWLEDGE, AT, None)


def _moves_outside_the_tables(before: Incident, after: Incident) -> list[str]:
    """Every state change from ``before`` to ``after`` that no table row (nor the lead's mirror) explains."""
    found = []
    for was in before.assignments:
        now = after.assignment(was.team)
        if now.state is not was.state and was.state not in {
            s for (s, _), e in ASSIGNMENT_MOVES.items() if e is now.state
        }:
            found.append(f"{was.team}: {was.state} -> {now.state}")
    lead = next((a for a in after.assignments if a.role.value == "lead"), None)
    mirrored = lead is not None and STATUS_FROM_LEAD.get(lead.state) is after.status
    by_table = any(s is before.status and e is after.status for (s, _), e in INCIDENT_MOVES.items())
    if after.status is not before.status and not (mirrored or by_table):
        found.append(f"incident: {before.status} -> {after.status}")
    return found


def test_every_change_the_core_makes_is_a_row_of_a_table(bundled_rules: RuleBook) -> None:
    """Returning the lead, taking a part off a team and sending a new lead: no state is set around the tables."""
    opened, _ = _five_way(bundled_rules)
    t = AT
    steps: list[Callable[[Incident], tuple[Incident, list[Event]]]] = [
        lambda i: move_unit(i, "traffic-police", UnitAction.ACKNOWLEDGE, t, None),
        lambda i: move_unit(i, "police-station", UnitAction.ACKNOWLEDGE, t, None),
        lambda i: reassign_team(i, "police-station", "law-enforcement-2", t, officer=None, actor="op"),
        lambda i: move_unit(i, "traffic-police", UnitAction.RETURN, t, None, reason="not a traffic matter"),
        lambda i: reassign_team(i, "traffic-police", "market-supervision-2", t, officer=None, actor="op"),
        lambda i: move_unit(i, "market-supervision-2", UnitAction.ACKNOWLEDGE, t, None),
        lambda i: add_team(i, "county-water", t, officer=None, actor="op"),
        lambda i: move_unit(i, "market-supervision-2", UnitAction.RESOLVE, t, None),
        lambda i: finish_incident(i, IncidentAction.CLOSE, t, "op"),
    ]
    incident = opened
    statuses = [incident.status]
    for step in steps:
        after, _ = step(incident)
        assert _moves_outside_the_tables(incident, after) == []
        incident = after
        statuses.append(incident.status)
    assert statuses == [
        I.DISPATCHED, I.ACKNOWLEDGED, I.ACKNOWLEDGED, I.ACKNOWLEDGED, I.REPORTED,
        I.DISPATCHED, I.ACKNOWLEDGED, I.ACKNOWLEDGED, I.RESOLVED, I.CLOSED,
    ]  # fmt: skip
