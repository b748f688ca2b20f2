"""``open_incident`` shares what one decision implies between the incidents it opens: the answers stay those of
a decision seen for the first time, whatever was opened before with it. And the open index's waiting teams."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

from dispatcher.core.events import Event, UnitsDispatched
from dispatcher.core.incidents import Incident, Report, open_incident
from dispatcher.core.lifecycle import IncidentStatus
from dispatcher.open_incidents import OpenIncidents
from rules import RoutingInput, RuleBook
from rules.matcher import Decision

AT = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)
SHANGHAI = timezone(timedelta(hours=8))


def _decision(book: RuleBook, category: str, zone: str) -> Decision:
    return book.route(RoutingInput(category=category, zone=zone, at=AT))


def _fresh(
    decision: Decision, report: Report, at: datetime, officers: dict[str, str | None], book: RuleBook
) -> tuple[Incident, list[Event]]:
    """What a decision never seen before opens (an equal copy is another object, so nothing is shared)."""
    return open_incident(7, report, dataclasses.replace(decision), at, officers, calendar=book.work_calendar)


def test_one_decision_opens_each_incident_as_a_fresh_one_would(bundled_rules: RuleBook) -> None:
    decision = _decision(bundled_rules, "traffic.congestion", "five-way")
    assert _decision(bundled_rules, "traffic.congestion", "five-way") is decision  # what makes sharing pay
    report = Report(report_id="r", category="traffic.congestion", description="jam", zone="five-way")
    later = AT + timedelta(minutes=1)
    equal_elsewhere = AT.astimezone(SHANGHAI)  # the same instant, another zone: its deadlines keep that zone
    assert equal_elsewhere == AT
    officers: list[dict[str, str | None]] = [{}, {decision.lead or "": None}, {decision.support[0]: "someone"}]
    for at in (AT, AT, later, equal_elsewhere, AT, later):
        for chosen in officers:
            opened = open_incident(7, report, decision, at, chosen, calendar=bundled_rules.work_calendar)
            assert opened == _fresh(decision, report, at, chosen, bundled_rules)
            incident = opened[0]
            assert all(d.due_at.tzinfo is at.tzinfo for a in incident.assignments for d in a.deadlines)
            assert incident.assignments[0].deadlines[0].due_at == at + decision.ack_within  # type: ignore[operator]


def test_a_drill_of_a_county_matter_is_never_forwarded_after_a_real_one(bundled_rules: RuleBook) -> None:
    decision = _decision(bundled_rules, "environment.pollution", "town-centre")
    assert decision.handover is not None
    real = Report(report_id="a", category="environment.pollution", description="smoke")
    drill = dataclasses.replace(real, report_id="b", exercise=True)
    first, _ = open_incident(1, real, decision, AT, calendar=bundled_rules.work_calendar)
    second, _ = open_incident(2, drill, decision, AT, calendar=bundled_rules.work_calendar)
    third, _ = open_incident(3, real, decision, AT, calendar=bundled_rules.work_calendar)
    assert first.delivery is not None and first.delivery.department == decision.handover
    assert second.delivery is None
    assert third.delivery == first.delivery


def test_the_waiting_index_follows_each_team_of_an_incident(bundled_rules: RuleBook) -> None:
    decision = _decision(bundled_rules, "traffic.congestion", "five-way")
    lead, other = decision.lead or "", decision.support[0]
    report = Report(report_id="r", category="traffic.congestion", description="jam", zone="five-way")
    waiting, _ = open_incident(5, report, decision, AT, {lead: None, other: None}, calendar=bundled_rules.work_calendar)
    index = OpenIncidents()
    index.follow(waiting, None)
    assert index.waiting_in(lead) == index.waiting_in(other) == {5}
    # The lead's officer found, and the other team's part handed to a third team (its waiting part gone).
    moved = tuple(
        dataclasses.replace(a, officer="someone", waiting=False)
        if a.team == lead
        else dataclasses.replace(a, team="a-third-team")
        if a.team == other
        else a
        for a in waiting.assignments
    )
    later = dataclasses.replace(waiting, assignments=moved)
    index.follow(later, waiting)
    assert index.indexes()[1] == {"a-third-team": {5}}
    index.follow(dataclasses.replace(later, status=IncidentStatus.CLOSED), later)
    assert index.indexes()[1] == {}


def test_the_reports_of_one_instant_share_the_teams_parts_when_the_same_officers_are_chosen(
    bundled_rules: RuleBook,
) -> None:
    decision = _decision(bundled_rules, "traffic.congestion", "five-way")
    lead = decision.lead or ""
    report = Report(report_id="r", category="traffic.congestion", description="jam", zone="five-way")
    calendar = bundled_rules.work_calendar
    first, first_events = open_incident(1, report, decision, AT, {lead: None}, calendar=calendar)
    second, second_events = open_incident(2, report, decision, AT, {lead: None}, calendar=calendar)
    other, _ = open_incident(3, report, decision, AT, {lead: "someone"}, calendar=calendar)
    later, _ = open_incident(4, report, decision, AT + timedelta(minutes=1), {lead: None}, calendar=calendar)
    assert second.assignments is first.assignments  # made once, shared (immutable)
    assert second_events[1] == dataclasses.replace(first_events[1], incident_id=2)
    dispatched, dispatched_again = first_events[1], second_events[1]
    assert isinstance(dispatched, UnitsDispatched) and isinstance(dispatched_again, UnitsDispatched)
    assert dispatched_again.units is dispatched.units
    assert other.assignments is not first.assignments and other.assignments[0].officer == "someone"
    assert later.assignments is not first.assignments
    assert later.assignments[0].dispatched_at == AT + timedelta(minutes=1)


def test_following_a_batchs_new_incidents_at_once_indexes_them_as_following_each_would(bundled_rules: RuleBook) -> None:
    calendar = bundled_rules.work_calendar
    opened: list[Incident] = []
    for n, (category, zone) in enumerate(
        [
            ("traffic.congestion", "five-way"),
            ("market.unlicensed_vendor", "market"),
            ("labour.wage_arrears", "town-centre"),
        ]
        * 4
    ):
        decision = _decision(bundled_rules, category, zone)
        teams = [team for team in (decision.lead, *decision.support) if team]
        chosen: dict[str, str | None] = {team: (None if (n + i) % 3 else f"o-{i}") for i, team in enumerate(teams)}
        report = Report(report_id=f"r-{n}", category=category, description="x", zone=zone)
        opened.append(open_incident(n + 1, report, decision, AT, chosen if n % 4 else {}, calendar=calendar)[0])
    opened.append(dataclasses.replace(opened[0], id=40, status=IncidentStatus.CANCELLED))  # finished at once
    assert opened[2].assignments is opened[5].assignments  # shared: read once
    one_by_one, at_once = OpenIncidents(), OpenIncidents()
    for index in (one_by_one, at_once):  # an earlier incident already waiting in some teams
        index.follow(opened[1], None)
    for incident in opened[2:]:
        one_by_one.follow(incident, None)
    at_once.follow_new(opened[2:])
    assert at_once.indexes() == one_by_one.indexes()
    assert at_once.incidents == one_by_one.incidents
    assert at_once.finished(40) == one_by_one.finished(40) is not None
    assert at_once.indexes()[1]  # some teams wait
