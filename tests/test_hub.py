"""The hub and its store, as one contract run on SQLite and on PostgreSQL, on a virtual clock."""

from __future__ import annotations

import asyncio
import gc
import weakref
from datetime import timedelta

import orjson
import pytest

from dispatcher.core.events import DeadlineKind
from dispatcher.core.incidents import DeadlineState, Report, UnknownAssignment
from dispatcher.core.lifecycle import (
    AssignmentState,
    IllegalTransition,
    IncidentAction,
    IncidentStatus,
    Role,
    UnitAction,
)
from dispatcher.feed import FeedRecord
from dispatcher.hub import IncidentNotFound
from dispatcher.store import IncidentFilter, StoreUnavailable
from tests.conftest import HubRig

FIVE_WAY_TEAMS = ["traffic-police", "police-station", "market-supervision", "law-enforcement", "market-town-office"]


def five_way(report_id: str = "r-1") -> Report:
    return Report(
        report_id=report_id,
        category="traffic.congestion",
        description="market-day congestion at the five-way intersection",
        zone="five-way",
    )


async def test_five_way_report_dispatches_every_team_at_once(rig: HubRig) -> None:
    outcome = await rig.hub.report(five_way(), rig.clock.now())

    incident = outcome.incident
    assert outcome.created
    assert incident.status is IncidentStatus.DISPATCHED
    assert incident.module == "enforcement"
    assert incident.rule_id == "five-way-joint-enforcement"
    assert [a.team for a in incident.assignments] == FIVE_WAY_TEAMS
    assert [a.role for a in incident.assignments] == [Role.LEAD] + [Role.SUPPORT] * 4
    ack = incident.assignments[0].deadline(DeadlineKind.ACK)
    assert ack is not None and ack.due_at == rig.clock.now() + timedelta(minutes=3)

    stored = await rig.hub.store.get(incident.id)
    assert stored == incident


async def test_same_report_id_returns_the_same_incident_and_creates_nothing(rig: HubRig) -> None:
    first = await rig.hub.report(five_way("dup"), rig.clock.now())
    again = await rig.hub.report(five_way("dup"), rig.clock.now())

    assert not again.created
    assert again.incident.id == first.incident.id
    _, count = await rig.hub.list_incidents(IncidentFilter(), limit=10, offset=0)
    assert count == 1
    assert rig.hub.last_seq == 2  # IncidentReported + UnitsDispatched, once


async def test_duplicates_inside_one_batch_make_one_incident(rig: HubRig) -> None:
    outcomes = await asyncio.gather(*(rig.hub.report(five_way("same"), rig.clock.now()) for _ in range(20)))

    assert len({o.incident.id for o in outcomes}) == 1
    assert sum(o.created for o in outcomes) == 1


async def test_duplicate_of_a_closed_incident_answers_with_it(rig: HubRig) -> None:
    incident = (await rig.hub.report(five_way("old"), rig.clock.now())).incident
    for action in (UnitAction.ACKNOWLEDGE, UnitAction.RESOLVE):
        await rig.hub.move_unit(incident.id, "traffic-police", action, rig.clock.now())
    await rig.hub.finish(incident.id, IncidentAction.CLOSE, rig.clock.now())

    again = await rig.hub.report(five_way("old"), rig.clock.now())

    assert not again.created
    assert again.incident.status is IncidentStatus.CLOSED


async def test_incident_status_follows_the_lead_assignment(rig: HubRig) -> None:
    incident = (await rig.hub.report(five_way(), rig.clock.now())).incident

    after_support = await rig.hub.move_unit(incident.id, "police-station", UnitAction.ACKNOWLEDGE, rig.clock.now())
    assert after_support.status is IncidentStatus.DISPATCHED
    steps = [
        (UnitAction.ACKNOWLEDGE, IncidentStatus.ACKNOWLEDGED),
        (UnitAction.DEPART, IncidentStatus.EN_ROUTE),
        (UnitAction.ARRIVE, IncidentStatus.ON_SCENE),
        (UnitAction.RESOLVE, IncidentStatus.RESOLVED),
    ]
    for action, expected in steps:
        current = await rig.hub.move_unit(incident.id, "traffic-police", action, rig.clock.now(), actor="王警官")
        assert current.status is expected
    closed = await rig.hub.finish(incident.id, IncidentAction.CLOSE, rig.clock.now(), actor="operator-1")
    assert closed.status is IncidentStatus.CLOSED
    assert await rig.hub.store.get(incident.id) == closed


async def test_illegal_move_raises_and_changes_nothing(rig: HubRig) -> None:
    incident = (await rig.hub.report(five_way(), rig.clock.now())).incident
    seq_before = rig.hub.last_seq

    with pytest.raises(IllegalTransition) as refused:
        await rig.hub.move_unit(incident.id, "traffic-police", UnitAction.RESOLVE, rig.clock.now())
    assert refused.value.current == "dispatched"
    with pytest.raises(IllegalTransition):
        await rig.hub.finish(incident.id, IncidentAction.CLOSE, rig.clock.now())
    with pytest.raises(UnknownAssignment):
        await rig.hub.move_unit(incident.id, "court", UnitAction.ACKNOWLEDGE, rig.clock.now())
    with pytest.raises(IncidentNotFound):
        await rig.hub.move_unit(999, "traffic-police", UnitAction.ACKNOWLEDGE, rig.clock.now())

    assert rig.hub.last_seq == seq_before
    assert await rig.hub.store.get(incident.id) == incident


async def test_a_refusal_is_freed_without_the_garbage_collector(rig: HubRig) -> None:
    """A refused command's exception is in no reference cycle (with its traceback's frames, its future, its
    batch): reference counting frees it once the writer has moved on, with the collector off."""
    incident = (await rig.hub.report(five_way(), rig.clock.now())).incident
    collecting = gc.isenabled()
    gc.disable()
    try:
        try:
            await rig.hub.move_unit(incident.id, "traffic-police", UnitAction.RESOLVE, rig.clock.now())
        except IllegalTransition as exc:
            refused = weakref.ref(exc)
        else:
            pytest.fail("resolving before acknowledging was not refused")
        await rig.hub.settle()  # the writer's next batch: it no longer holds the refused command
        assert refused() is None
    finally:
        if collecting:
            gc.enable()


async def test_a_refused_command_does_not_spoil_its_batch(rig: HubRig) -> None:
    incident = (await rig.hub.report(five_way(), rig.clock.now())).incident
    good, bad = await asyncio.gather(
        rig.hub.move_unit(incident.id, "traffic-police", UnitAction.ACKNOWLEDGE, rig.clock.now()),
        rig.hub.move_unit(incident.id, "police-station", UnitAction.RESOLVE, rig.clock.now()),
        return_exceptions=True,
    )
    assert not isinstance(good, BaseException)
    assert good.status is IncidentStatus.ACKNOWLEDGED
    assert isinstance(bad, IllegalTransition)
    stored = await rig.hub.store.get(incident.id)
    assert stored is not None
    assert stored.assignment("traffic-police").state is AssignmentState.ACKNOWLEDGED
    assert stored.assignment("police-station").state is AssignmentState.DISPATCHED


async def test_unknown_category_goes_to_triage_and_county_matters_are_handed_over(rig: HubRig) -> None:
    unknown = Report(report_id="u", category="ufo.sighting", description="lights", zone="market")
    county = Report(report_id="c", category="environment.pollution", description="smoke", zone="market")

    triage = (await rig.hub.report(unknown, rig.clock.now())).incident
    handover = (await rig.hub.report(county, rig.clock.now())).incident

    for incident, queue in ((triage, "triage"), (handover, "handover")):
        assert incident.module == "command-room"
        assert incident.queue == queue
        assert incident.assignments == ()
        assert incident.status is IncidentStatus.REPORTED
    assert handover.handover == "county-ecology" and handover.rule_id == "environment-to-county"
    assert [t.level for t in handover.escalation] == ["module_lead", "party_secretary"]
    stored = await rig.hub.store.get(handover.id)
    assert stored == handover


async def test_every_change_is_an_event_with_strictly_increasing_seq(rig: HubRig) -> None:
    incident = (await rig.hub.report(five_way(), rig.clock.now())).incident
    for team in FIVE_WAY_TEAMS:
        await rig.hub.move_unit(incident.id, team, UnitAction.ACKNOWLEDGE, rig.clock.now())
    await rig.hub.note(incident.id, "crowd dispersing", rig.clock.now(), author="operator-1")

    timeline = await rig.hub.timeline(incident.id)

    assert [e.seq for e in timeline] == list(range(1, 9))
    assert [e.type for e in timeline] == ["IncidentReported", "UnitsDispatched"] + ["UnitMoved"] * 5 + ["NoteAdded"]
    assert orjson.loads(timeline[-1].payload)["text"] == "crowd dispersing"


async def test_events_are_published_only_after_commit_and_in_order(rig: HubRig) -> None:
    subscription = rig.hub.feed.subscribe()
    await asyncio.gather(*(rig.hub.report(five_way(f"r-{n}"), rig.clock.now()) for n in range(50)))

    seen: list[int] = []
    while (record := subscription.get_nowait()) is not None:
        assert isinstance(record, FeedRecord)
        seen.append(record.seq)
    assert seen == list(range(1, 101))
    stored = await rig.hub.events_since(0, limit=1000)
    assert [e.seq for e in stored] == seen


async def test_missed_ack_escalates_to_the_module_lead_once(rig: HubRig) -> None:
    incident = (await rig.hub.report(five_way(), rig.clock.now())).incident
    await rig.hub.move_unit(incident.id, "police-station", UnitAction.ACKNOWLEDGE, rig.clock.now())
    assert rig.alarm.when == rig.clock.now() + timedelta(minutes=3)

    rig.clock.advance(timedelta(minutes=3, seconds=1))
    await rig.alarm.ring()
    await rig.hub.fire_due(rig.clock.now())  # a second ring must not escalate again

    timeline = await rig.hub.timeline(incident.id)
    missed = [orjson.loads(e.payload) for e in timeline if e.type == "DeadlineMissed"]
    escalations = [orjson.loads(e.payload) for e in timeline if e.type == "EscalationRaised"]
    # Four teams had not acknowledged; the police station had.
    assert sorted(m["team"] for m in missed) == sorted(set(FIVE_WAY_TEAMS) - {"police-station"})
    assert all(m["kind"] == "ack" and m["late_by"] == 1.0 for m in missed)
    assert len(escalations) == 4
    assert {e["to_title"] for e in escalations} == {"副镇长"}
    stored = await rig.hub.store.get(incident.id)
    assert stored is not None
    lead_ack = stored.assignment("traffic-police").deadline(DeadlineKind.ACK)
    assert lead_ack is not None and lead_ack.state is DeadlineState.MISSED
    # The alarm now waits for the next promise: arrival, 10 minutes after the report.
    assert rig.alarm.when == incident.reported_at + timedelta(minutes=10)


async def test_deadline_kept_in_time_never_fires(rig: HubRig) -> None:
    incident = (await rig.hub.report(five_way(), rig.clock.now())).incident
    for team in FIVE_WAY_TEAMS:
        await rig.hub.move_unit(incident.id, team, UnitAction.ACKNOWLEDGE, rig.clock.now())

    rig.clock.advance(timedelta(minutes=5))
    assert await rig.hub.fire_due(rig.clock.now()) == 0
    assert not [e for e in await rig.hub.timeline(incident.id) if e.type == "DeadlineMissed"]


async def test_closing_voids_running_deadlines(rig: HubRig) -> None:
    incident = (await rig.hub.report(five_way(), rig.clock.now())).incident
    await rig.hub.finish(incident.id, IncidentAction.CANCEL, rig.clock.now(), reason="duplicate of a phone call")

    rig.clock.advance(timedelta(days=1))
    assert await rig.hub.fire_due(rig.clock.now()) == 0
    stored = await rig.hub.store.get(incident.id)
    assert stored is not None
    assert {d.state for a in stored.assignments for d in a.deadlines} == {DeadlineState.VOID}


async def test_restart_rearms_deadlines_and_a_passed_one_fires_once(rig: HubRig) -> None:
    incident = (await rig.hub.report(five_way(), rig.clock.now())).incident
    await rig.hub.stop()

    # The process is down while the acknowledgement deadline passes.
    rig.clock.advance(timedelta(minutes=4))
    hub = await rig.restart()
    assert rig.alarm.when == incident.reported_at + timedelta(minutes=3)
    await rig.alarm.ring()
    hub = await rig.restart()
    await hub.fire_due(rig.clock.now())

    timeline = await hub.timeline(incident.id)
    missed = [orjson.loads(e.payload) for e in timeline if e.type == "DeadlineMissed"]
    assert len(missed) == 5
    assert all(m["late_by"] == 60.0 for m in missed)
    assert hub.last_seq == 2 + 10
    # After the second restart the next alarm is the arrival deadline, not the missed one again.
    assert rig.alarm.when == incident.reported_at + timedelta(minutes=10)


async def test_failed_commit_changes_nothing_and_the_hub_keeps_serving(
    rig: HubRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    incident = (await rig.hub.report(five_way(), rig.clock.now())).incident
    real_commit = rig.hub.store.commit

    async def broken(changes: object) -> None:
        raise StoreUnavailable("disk unplugged")

    monkeypatch.setattr(rig.hub.store, "commit", broken)
    with pytest.raises(StoreUnavailable):
        await rig.hub.move_unit(incident.id, "traffic-police", UnitAction.ACKNOWLEDGE, rig.clock.now())
    assert rig.hub.last_seq == 2
    assert (await rig.hub.get(incident.id)).status is IncidentStatus.DISPATCHED

    monkeypatch.setattr(rig.hub.store, "commit", real_commit)
    moved = await rig.hub.move_unit(incident.id, "traffic-police", UnitAction.ACKNOWLEDGE, rig.clock.now())
    assert moved.status is IncidentStatus.ACKNOWLEDGED
    assert [e.seq for e in await rig.hub.timeline(incident.id)] == [1, 2, 3]


async def test_list_filters_by_status_team_and_module(rig: HubRig) -> None:
    five = (await rig.hub.report(five_way("a"), rig.clock.now())).incident
    labour = Report(report_id="b", category="labour.wage_arrears", description="工资拖欠三个月", zone="town-centre")
    await rig.hub.report(labour, rig.clock.now())
    await rig.hub.move_unit(five.id, "traffic-police", UnitAction.ACKNOWLEDGE, rig.clock.now())

    by_team, _ = await rig.hub.list_incidents(IncidentFilter(team="court"), limit=10, offset=0)
    by_module, _ = await rig.hub.list_incidents(IncidentFilter(module="enforcement"), limit=10, offset=0)
    by_status, _ = await rig.hub.list_incidents(
        IncidentFilter(status=(IncidentStatus.ACKNOWLEDGED,)), limit=10, offset=0
    )
    page, total = await rig.hub.list_incidents(IncidentFilter(), limit=1, offset=1)

    assert [i.report.report_id for i in by_team] == ["b"]
    assert [i.report.report_id for i in by_module] == ["a"]
    assert [i.report.report_id for i in by_status] == ["a"]
    assert total == 2 and [i.report.report_id for i in page] == ["a"]
    labour_incident = by_team[0]
    resolve = labour_incident.assignment("labour-office").deadline(DeadlineKind.RESOLVE)
    assert resolve is not None and resolve.due_at - labour_incident.reported_at == timedelta(days=7)


async def test_an_old_report_id_after_a_restart_is_still_recognised(rig: HubRig) -> None:
    first = (await rig.hub.report(five_way("before-restart"), rig.clock.now())).incident
    hub = await rig.restart()  # the in-memory window of recent report ids is empty now

    outcomes = await asyncio.gather(
        hub.report(five_way("before-restart"), rig.clock.now()),
        *(hub.report(five_way(f"new-{n}"), rig.clock.now()) for n in range(5)),
    )

    assert not outcomes[0].created and outcomes[0].incident.id == first.id
    assert all(o.created for o in outcomes[1:])
    assert sorted(o.incident.id for o in outcomes[1:]) == list(range(first.id + 1, first.id + 6))
    _, count = await hub.list_incidents(IncidentFilter(), limit=10, offset=0)
    assert count == 6
    assert [e.seq for e in await hub.events_since(0, limit=100)] == list(range(1, 13))


async def test_a_report_without_category_is_classified_by_its_keywords(rig: HubRig) -> None:
    citizen = Report(
        report_id="hotline-1",
        category=None,
        description="我在镇上工地干活，老板拖欠工资三个月了，一直不给",
        zone="town-centre",
        reporter_kind="hotline",
    )
    nothing = Report(report_id="hotline-2", category=None, description="你好", zone="town-centre")

    classified = (await rig.hub.report(citizen, rig.clock.now())).incident
    unclassified = (await rig.hub.report(nothing, rig.clock.now())).incident

    assert (classified.category, classified.report.category) == ("labour.wage_arrears", None)
    assert classified.rule_id == "labour-one-stop" and classified.module == "service"
    reported = orjson.loads((await rig.hub.timeline(classified.id))[0].payload)
    assert "工资" in reported["keywords"] and reported["reporter_kind"] == "hotline"
    assert (unclassified.category, unclassified.queue, unclassified.module) == (None, "triage", "command-room")
    assert await rig.hub.store.get(classified.id) == classified


async def test_a_team_moving_after_the_close_is_refused_from_memory_as_the_store_would(
    rig: HubRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A supporting team still moving once the lead's incident is closed (a simulated month has hundreds) is
    refused from the recently finished incidents, without reading the store; after a restart, from the store."""
    incident = (await rig.hub.report(five_way(), rig.clock.now())).incident
    for action in (UnitAction.ACKNOWLEDGE, UnitAction.DEPART, UnitAction.ARRIVE, UnitAction.RESOLVE):
        await rig.hub.move_unit(incident.id, "traffic-police", action, rig.clock.now())
    closed = await rig.hub.finish(incident.id, IncidentAction.CLOSE, rig.clock.now())
    loads: list[list[int]] = []

    def counting(store: object) -> None:
        loads.clear()
        real = store.load  # type: ignore[attr-defined]

        async def load(ids: list[int]) -> object:
            loads.append(list(ids))
            return await real(ids)

        monkeypatch.setattr(store, "load", load)

    counting(rig.hub.store)
    with pytest.raises(IllegalTransition) as refused:
        await rig.hub.move_unit(incident.id, "police-station", UnitAction.ACKNOWLEDGE, rig.clock.now())
    assert loads == []
    assert await rig.hub.store.get(closed.id) == closed  # what memory held is what the store holds

    await rig.restart()
    counting(rig.hub.store)
    with pytest.raises(IllegalTransition) as again:
        await rig.hub.move_unit(incident.id, "police-station", UnitAction.ACKNOWLEDGE, rig.clock.now())
    assert loads == [[incident.id]]
    assert str(again.value) == str(refused.value)
