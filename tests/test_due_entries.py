"""The deadline scheduler's marks: one per incident with something pending (the same for a batch's new incidents
as for each alone, read once for the assignments that incidents opened together share), and what the marks bring
up when the alarm rings: every pending deadline and step exactly once, in due order."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from dispatcher.alarm import ManualAlarm
from dispatcher.clock import VirtualClock
from dispatcher.core.deadlines import DueEntry, DueMark
from dispatcher.core.events import DeadlineKind
from dispatcher.core.incidents import (
    Deadline,
    DeadlineState,
    Escalation,
    Incident,
    Report,
    open_incident,
)
from dispatcher.core.lifecycle import FINAL_STATUSES
from dispatcher.deadline_scheduler import DeadlineScheduler, _marks, due_entries, earliest_due
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


def _scheduler(index: OpenIncidents) -> tuple[DeadlineScheduler, ManualAlarm]:
    alarm = ManualAlarm()
    scheduler = DeadlineScheduler(alarm, VirtualClock(AT), index, retry=timedelta(seconds=5))
    return scheduler, alarm


def _index(incidents: list[Incident]) -> OpenIncidents:
    index = OpenIncidents()
    for incident in incidents:
        index.follow(incident, None)
    return index


def _every_entry(incidents: list[Incident]) -> list[DueEntry]:
    return sorted(e for i in incidents for e in due_entries(i))


def test_a_batchs_new_incidents_get_the_mark_each_would_get_alone(bundled_rules: RuleBook) -> None:
    incidents = _batch(bundled_rules)
    assert incidents[0].assignments is incidents[6].assignments  # what reading once relies on
    marks = _marks(incidents)
    assert marks == [DueMark(due, i.id) for i in incidents if (due := earliest_due(i)) is not None]
    assert len(marks) == len(incidents)
    for incident, mark in zip(incidents, marks, strict=True):
        assert mark.due_at == min(e.due_at for e in due_entries(incident))
    assert any(e.step for e in due_entries(incidents[-2])) and any(not e.team for e in due_entries(incidents[-1]))


def test_following_a_batchs_new_incidents_at_once_watches_what_following_each_would(bundled_rules: RuleBook) -> None:
    incidents = _batch(bundled_rules)
    index = _index(incidents)
    one_by_one, _ = _scheduler(index)
    at_once, _ = _scheduler(index)
    for incident in incidents:
        one_by_one.follow(incident, None)
    at_once.follow_new(incidents)
    assert at_once.pending() == one_by_one.pending() == _every_entry(incidents)
    assert len(at_once) == len(one_by_one) == len(incidents)  # one mark an incident, not one an entry


def test_the_marks_bring_up_every_pending_entry_once_in_due_order(bundled_rules: RuleBook) -> None:
    incidents = _batch(bundled_rules)
    scheduler, _ = _scheduler(_index(incidents))
    scheduler.follow_new(incidents)
    everything = _every_entry(incidents)
    times = sorted({e.due_at for e in everything})
    assert len(times) > 3
    brought: list[DueEntry] = []
    # rings between the due times and on them; nothing is recorded in between, so nothing changes state
    for at in (times[0] - timedelta(seconds=1), times[0], times[1] + timedelta(seconds=1), *times[2:]):
        popped = scheduler.pop_due(at)
        assert popped == sorted(popped) and all(e.due_at <= at for e in popped)
        assert not brought or not popped or brought[-1] <= popped[0]
        brought.extend(popped)
    assert brought == everything
    assert scheduler.pop_due(times[-1] + timedelta(days=400)) == []


def test_a_kept_deadline_moves_the_alarm_to_the_incidents_next_due_time(bundled_rules: RuleBook) -> None:
    incidents = _batch(bundled_rules)[:1]
    index = _index(incidents)
    scheduler, alarm = _scheduler(index)
    scheduler.follow_new(incidents)
    scheduler.start(_never_fires)
    first = incidents[0]
    assert alarm.when == earliest_due(first)
    # every deadline due first is kept: the incident's earliest moves later
    kept = dataclasses.replace(
        first,
        assignments=tuple(
            dataclasses.replace(
                a,
                deadlines=tuple(
                    dataclasses.replace(d, state=DeadlineState.MET) if d.due_at == alarm.when else d
                    for d in a.deadlines
                ),
            )
            for a in first.assignments
        ),
    )
    later, was = earliest_due(kept), earliest_due(first)
    assert later is not None and was is not None and later > was
    index.follow(kept, first)
    scheduler.follow(kept, first)
    scheduler.rearm()
    assert alarm.when == later  # the stale mark was dropped, the new one armed
    assert scheduler.pop_due(later - timedelta(seconds=1)) == []
    assert scheduler.pop_due(later) == sorted(e for e in due_entries(kept) if e.due_at == later)


def test_a_batch_that_was_not_committed_gives_its_entries_back(bundled_rules: RuleBook) -> None:
    incidents = _batch(bundled_rules)
    scheduler, _ = _scheduler(_index(incidents))
    scheduler.follow_new(incidents)
    first = min(e.due_at for e in _every_entry(incidents))
    popped = scheduler.pop_due(first)
    assert popped
    assert scheduler.pop_due(first) == []
    scheduler.restore(popped)
    assert scheduler.pop_due(first) == popped


async def _never_fires(at: datetime) -> int:
    raise AssertionError(f"nothing should fire at {at}")


def test_the_marks_of_a_finished_incident_bring_nothing_up(bundled_rules: RuleBook) -> None:
    incidents = _batch(bundled_rules)
    index = _index(incidents)
    scheduler, _ = _scheduler(index)
    scheduler.follow_new(incidents)
    first = min(incidents, key=lambda i: (earliest_due(i), i.id))
    closed = dataclasses.replace(first, status=next(iter(FINAL_STATUSES)))
    index.follow(closed, first)  # it leaves the open index; its mark stays in the heap until it comes up
    due = earliest_due(first)
    assert due is not None
    assert [e for e in scheduler.pop_due(due) if e.incident_id == first.id] == []
    assert any(e.incident_id != first.id for e in _every_entry(incidents) if e.due_at == due)
