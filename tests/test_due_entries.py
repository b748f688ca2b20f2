"""The deadline scheduler's entries of the incidents a batch created: the same as each incident's own, read once
for the assignments that incidents opened together share."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from dispatcher.alarm import ManualAlarm
from dispatcher.clock import VirtualClock
from dispatcher.core.events import DeadlineKind
from dispatcher.core.incidents import (
    Deadline,
    DeadlineState,
    Escalation,
    Incident,
    Report,
    open_incident,
)
from dispatcher.deadline_scheduler import DeadlineScheduler, _all_due_entries, _new_due_entries
from dispatcher.open_incidents import OpenIncidents
from rules import RoutingInput, RuleBook

AT = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)
MIX = (
    ("traffic.congestion", "five-way"),
    ("market.unlicensed_vendor", "market"),
    ("labour.wage_arrears", "town-centre"),
)


def _batch(book: RuleBook) -> list[Incident]:
    """Incidents as one batch opens them (shared assignments), and a few with escalations, met deadlines, checks."""
    opened: list[Incident] = []
    for n in range(12):
        category, zone = MIX[n % len(MIX)]
        decision = book.route(RoutingInput(category=category, zone=zone, at=AT))
        chosen = {team: None for team in (decision.lead, *decision.support) if team and n % 2}
        report = Report(report_id=f"r-{n}", category=category, description="x", zone=zone)
        opened.append(open_incident(n + 1, report, decision, AT, chosen, calendar=book.work_calendar)[0])
    first = opened[0].assignments[0]
    climbing = dataclasses.replace(
        first,
        deadlines=(dataclasses.replace(first.deadlines[0], state=DeadlineState.MISSED), *first.deadlines[1:]),
        escalations=(
            Escalation(kind="ack", step=1, level="module_lead", due_at=AT + timedelta(minutes=9)),
            Escalation(kind="manual", step=2, level="party_secretary", due_at=AT + timedelta(minutes=9)),
        ),
    )
    checked = dataclasses.replace(
        opened[1].loop, checks=(Deadline(kind=DeadlineKind.VERIFY, due_at=AT + timedelta(hours=2)),)
    )
    opened.append(dataclasses.replace(opened[0], id=50, assignments=(climbing, *opened[0].assignments[1:])))
    opened.append(dataclasses.replace(opened[1], id=51, loop=checked))
    return opened


def test_a_batchs_new_incidents_give_the_entries_each_would_give_alone(bundled_rules: RuleBook) -> None:
    incidents = _batch(bundled_rules)
    assert incidents[0].assignments is incidents[6].assignments  # what reading once relies on
    assert _new_due_entries(incidents) == [e for i in incidents for e in _all_due_entries((i,))]
    assert any(e.step for e in _new_due_entries(incidents)) and any(not e.team for e in _new_due_entries(incidents))


def test_following_a_batchs_new_incidents_at_once_watches_what_following_each_would(bundled_rules: RuleBook) -> None:
    incidents = _batch(bundled_rules)
    index = OpenIncidents()
    for incident in incidents:
        index.follow(incident, None)
    one_by_one = DeadlineScheduler(ManualAlarm(), VirtualClock(AT), index, retry=timedelta(seconds=5))
    at_once = DeadlineScheduler(ManualAlarm(), VirtualClock(AT), index, retry=timedelta(seconds=5))
    for incident in incidents:
        one_by_one.follow(incident, None)
    at_once.follow_new(incidents)
    assert at_once.pending() == one_by_one.pending()
    assert len(at_once) == len(one_by_one) > len(incidents)
