"""Dispatch with a roster, on the virtual clock, through the real hub and store (SQLite and PostgreSQL).

The bundled roster (rules/tables/ershili-roster.yaml) and table; START is Friday 2026-06-12,
16:00 in Asia/Shanghai, a market day: the day shifts run, and each of the five teams of the
five-way intersection has one officer posted at the joint duty station.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import orjson
import pytest

from dispatcher.core.events import DeadlineKind
from dispatcher.core.incidents import EscalationState, Incident, Refused, Report, StaleVersion
from dispatcher.core.lifecycle import AssignmentState, IllegalTransition, IncidentAction, IncidentStatus, UnitAction
from dispatcher.core.roster import UnitStatus
from tests.conftest import START, HubRig

FIVE_WAY = (28.8480, 118.9120)
FIVE_WAY_TEAMS = ["traffic-police", "police-station", "market-supervision", "law-enforcement", "market-town-office"]


def jam(report_id: str, *, lat: float = FIVE_WAY[0], lon: float = FIVE_WAY[1], **kw: object) -> Report:
    fields: dict[str, object] = {
        "report_id": report_id,
        "category": "traffic.congestion",
        "description": "集日五岔口拥堵",
        "lat": lat,
        "lon": lon,
        "reporter": f"citizen {report_id}",
    }
    fields.update(kw)
    return Report(**fields)  # type: ignore[arg-type]


async def types_of(rig: HubRig, incident_id: int) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, orjson.loads(e.payload)) for e in await rig.hub.timeline(incident_id)]


async def test_each_team_gets_the_officer_posted_at_the_joint_duty_station(crew: HubRig) -> None:
    incident = (await crew.hub.report(jam("r1"), START)).incident

    assert [a.officer for a in incident.assignments] == ["tp-02", "ps-02", "ms-02", "le-02", "mt-02"]
    assert not any(a.waiting for a in incident.assignments)
    assert crew.hub.units["tp-02"].tasks == 1 and crew.hub.units["tp-02"].status is UnitStatus.ASSIGNED
    dispatched = (await types_of(crew, incident.id))[1][1]
    assert [u["officer"] for u in dispatched["units"]] == ["tp-02", "ps-02", "ms-02", "le-02", "mt-02"]
    assert await crew.hub.store.get(incident.id) == incident


async def test_unacknowledged_goes_to_the_next_officer_then_climbs_the_chain_at_exact_times(crew: HubRig) -> None:
    hub = crew.hub
    incident = (await hub.report(jam("r1"), START)).incident
    for team in FIVE_WAY_TEAMS[1:]:  # every supporting team acknowledges; the lead does not
        await hub.move_unit(incident.id, team, UnitAction.ACKNOWLEDGE, START + timedelta(minutes=1))

    await crew.advance(timedelta(minutes=3))  # ack window 3 min: re-sent to the next officer
    lead = (await hub.get(incident.id)).assignment("traffic-police")
    assert (lead.officer, lead.tried) == ("tp-01", ("tp-02",))
    ack = lead.deadline(DeadlineKind.ACK)
    assert ack is not None and ack.due_at == START + timedelta(minutes=6)
    assert hub.units["tp-02"].tasks == 0 and hub.units["tp-02"].status is UnitStatus.AVAILABLE

    await crew.advance(timedelta(minutes=3))  # missed again: the module lead at once, the secretary in 30 min
    lead = (await hub.get(incident.id)).assignment("traffic-police")
    assert [(e.step, e.level, e.state, e.due_at) for e in lead.escalations] == [
        (1, "module_lead", EscalationState.RAISED, START + timedelta(minutes=6)),
        (2, "party_secretary", EscalationState.PENDING, START + timedelta(minutes=36)),
    ]
    await crew.advance(timedelta(minutes=29, seconds=59))
    assert (await hub.get(incident.id)).assignment("traffic-police").escalations[1].state is EscalationState.PENDING
    await crew.advance(timedelta(seconds=1))

    timeline = await types_of(crew, incident.id)
    climbed = [
        (t, d["team"], d.get("officer") or d.get("level"), d["at"])
        for t, d in timeline
        if t in {"DeadlineMissed", "OfficerAssigned", "EscalationRaised"}
        and d["team"] == "traffic-police"
        and d.get("kind", "ack") == "ack"  # the arrive deadline (10 min) climbs its own chain
    ]

    def at(minutes: int) -> str:
        return (START + timedelta(minutes=minutes)).isoformat()

    assert climbed == [
        ("DeadlineMissed", "traffic-police", None, at(3)),
        ("OfficerAssigned", "traffic-police", "tp-01", at(3)),
        ("DeadlineMissed", "traffic-police", None, at(6)),
        ("EscalationRaised", "traffic-police", "module_lead", at(6)),
        ("EscalationRaised", "traffic-police", "party_secretary", at(36)),
    ]
    raised = [
        d for t, d in timeline if t == "EscalationRaised" and d["team"] == "traffic-police" and d["kind"] == "ack"
    ]
    assert [r["to_name"] for r in raised] == ["执法模块牵头人", "镇党委书记"]


async def test_an_acknowledgement_after_the_first_step_stands_the_rest_of_the_chain_down(crew: HubRig) -> None:
    hub = crew.hub
    incident = (await hub.report(jam("r1"), START)).incident
    await crew.advance(timedelta(minutes=3))  # re-sent to the next officer
    await crew.advance(timedelta(minutes=3))  # missed twice: module lead raised, secretary pending
    await hub.move_unit(incident.id, "traffic-police", UnitAction.ACKNOWLEDGE, START + timedelta(minutes=20))
    await crew.advance(timedelta(minutes=40))

    lead = (await hub.get(incident.id)).assignment("traffic-police")
    assert [e.state for e in lead.escalations if e.kind == "ack"] == [EscalationState.RAISED, EscalationState.VOID]
    raised = [
        d
        for t, d in await types_of(crew, incident.id)
        if t == "EscalationRaised" and d["team"] == "traffic-police" and d["kind"] == "ack"
    ]
    assert [r["level"] for r in raised] == ["module_lead"]


async def test_a_pending_step_survives_a_restart_and_fires_once(crew: HubRig) -> None:
    incident = (await crew.hub.report(jam("r1"), START)).incident
    await crew.advance(timedelta(minutes=3))
    await crew.advance(timedelta(minutes=3))
    hub = await crew.restart()
    crew.clock.advance(timedelta(minutes=45))  # the step fell due while the process was down
    await hub.fire_due(crew.clock.now())
    await hub.fire_due(crew.clock.now())
    hub = await crew.restart()
    await hub.fire_due(crew.clock.now())

    steps = [
        (d["team"], d["step"])
        for t, d in await types_of(crew, incident.id)
        if t == "EscalationRaised" and d["team"] == "traffic-police" and d["kind"] == "ack"
    ]
    assert steps == [("traffic-police", 1), ("traffic-police", 2)]


async def test_with_nobody_free_the_assignment_waits_and_the_module_lead_is_alerted(crew: HubRig) -> None:
    hub = crew.hub
    for n in range(1, 5):
        await hub.report_unit(f"ms-0{n}", START, status=UnitStatus.OFF_DUTY)
    incident = (await hub.report(jam("r1"), START)).incident

    market = incident.assignment("market-supervision")
    assert market.officer is None and market.waiting
    waiting = [d for t, d in await types_of(crew, incident.id) if t == "AssignmentWaiting"]
    assert waiting == [
        {
            "incident_id": incident.id,
            "at": START.isoformat(),
            "teams": ["market-supervision"],
            "alerted_name": "执法模块牵头人",
            "alerted_title": "副镇长",
        }
    ]
    assert [(i.id, team) for i, team in hub.waiting()] == [(incident.id, "market-supervision")]

    later = crew.clock.advance(timedelta(minutes=2))
    await hub.report_unit("ms-03", later, status=UnitStatus.AVAILABLE, lat=28.849, lon=118.9125)
    market = (await hub.get(incident.id)).assignment("market-supervision")
    assert (market.officer, market.waiting) == ("ms-03", False)
    ack = market.deadline(DeadlineKind.ACK)
    assert ack is not None and ack.due_at == later + timedelta(minutes=3)  # a fresh window for the new officer
    assert hub.waiting() == []
    assigned = [d for t, d in await types_of(crew, incident.id) if t == "OfficerAssigned"]
    assert [(d["officer"], d["reason"]) for d in assigned] == [("ms-03", "available")]
    stored = await crew.restart()
    assert stored.units["ms-03"].lat == 28.849 and stored.units["ms-03"].tasks == 1


async def test_when_every_team_waits_one_event_names_them_all(crew: HubRig) -> None:
    hub = crew.hub
    for officer in sorted(hub.roster.officers):
        await hub.report_unit(officer, START, status=UnitStatus.OFF_DUTY)
    incident = (await hub.report(jam("r1"), START)).incident

    assert all(a.waiting and a.officer is None for a in incident.assignments)
    assert [t for t, _ in await types_of(crew, incident.id)] == [
        "IncidentReported",
        "UnitsDispatched",
        "AssignmentWaiting",
    ]
    waiting = [d for t, d in await types_of(crew, incident.id) if t == "AssignmentWaiting"]
    assert [d["teams"] for d in waiting] == [FIVE_WAY_TEAMS]
    assert sorted(team for _, team in hub.waiting()) == sorted(FIVE_WAY_TEAMS)
    restarted = await crew.restart()
    assert all(a.waiting for a in (await restarted.get(incident.id)).assignments)
    assert sorted(team for _, team in restarted.waiting()) == sorted(FIVE_WAY_TEAMS)


async def test_a_report_close_by_joins_the_open_incident_instead_of_dispatching_again(crew: HubRig) -> None:
    hub = crew.hub
    first = (await hub.report(jam("r1"), START)).incident
    near = await hub.report(jam("r2", lat=FIVE_WAY[0] + 0.0005), START + timedelta(minutes=5))  # ~55 m
    far = await hub.report(jam("r3", lat=FIVE_WAY[0] + 0.01), START + timedelta(minutes=5))  # ~1.1 km
    drill = await hub.report(jam("r4", exercise=True), START + timedelta(minutes=5))
    other = await hub.report(jam("r5", category="traffic.accident"), START + timedelta(minutes=5))

    assert near.joined and not near.created and near.incident.id == first.id
    assert near.incident.report_count == 2 and [r.report.reporter for r in near.incident.reports] == ["citizen r2"]
    assert far.created and drill.created and other.created  # too far, a drill, another category
    again = await hub.report(jam("r2", lat=FIVE_WAY[0] + 0.0005), START + timedelta(minutes=6))
    assert again.incident.id == first.id and not again.joined and not again.created  # a retry
    assert await hub.store.get(first.id) == await hub.get(first.id) == near.incident


async def test_a_resolved_incident_is_never_joined(crew: HubRig) -> None:
    hub = crew.hub
    first = (await hub.report(jam("r1"), START)).incident
    for action in (UnitAction.ACKNOWLEDGE, UnitAction.RESOLVE):
        await hub.move_unit(first.id, "traffic-police", action, START + timedelta(minutes=1))
    later = await hub.report(jam("r2"), START + timedelta(minutes=2))
    assert later.created and later.incident.id != first.id


async def test_merge_and_split(crew: HubRig) -> None:
    hub = crew.hub
    a = (await hub.report(jam("a", lat=FIVE_WAY[0] + 0.01), START)).incident
    b = (await hub.report(jam("b"), START)).incident
    target = await hub.merge(a.id, b.id, START + timedelta(minutes=1), actor="operator:王芳")

    assert target.id == b.id and target.report_count == 2
    folded = await hub.get(a.id)
    assert folded.status is IncidentStatus.MERGED and folded.merged_into == b.id
    assert folded.pending_deadlines() == [] and folded.pending_escalations() == []
    assert (await hub.report(jam("a"), START + timedelta(minutes=2))).incident.id == b.id  # a retry lands on b
    assert hub.units["tp-01"].tasks == 0  # a's lead officer is free again
    with pytest.raises(IllegalTransition):
        await hub.merge(a.id, b.id, START + timedelta(minutes=2))

    with pytest.raises(Refused):  # a merge is not undone by splitting
        await hub.split(b.id, "a", START + timedelta(minutes=3), actor="operator:王芳")
    joined = await hub.report(jam("c", lat=FIVE_WAY[0] + 0.0003), START + timedelta(minutes=3))
    assert joined.joined and joined.incident.report_count == 3
    split = await hub.split(b.id, "c", START + timedelta(minutes=4), actor="operator:王芳")
    assert split.report.report_id == "c" and split.status is IncidentStatus.DISPATCHED and split.id != b.id
    assert (await hub.get(b.id)).report_count == 2
    assert (await hub.report(jam("c"), START + timedelta(minutes=5))).incident.id == split.id
    with pytest.raises(Refused):
        await hub.split(b.id, "b", START + timedelta(minutes=5))  # the first report is the incident itself
    restarted = await crew.restart()
    assert (await restarted.get(b.id)).report_count == 2
    assert [r.report.report_id for r in (await restarted.get(b.id)).reports] == ["a"]


async def test_a_return_goes_back_to_the_command_room_and_counts_against_its_rule(crew: HubRig) -> None:
    hub = crew.hub
    incident = (await hub.report(jam("r1"), START)).incident
    with pytest.raises(Refused):
        await hub.move_unit(incident.id, "police-station", UnitAction.RETURN, START, "ps-02", reason=" ")
    support = await hub.move_unit(incident.id, "police-station", UnitAction.RETURN, START, "ps-02", reason="不属于治安")
    assert support.assignment("police-station").state is AssignmentState.RETURNED
    assert support.status is IncidentStatus.DISPATCHED and hub.units["ps-02"].tasks == 0

    lead = await hub.move_unit(incident.id, "traffic-police", UnitAction.RETURN, START, "tp-02", reason="非交通事项")
    assert (lead.status, lead.queue) == (IncidentStatus.REPORTED, "returned")
    redispatched = await hub.reassign_team(incident.id, "traffic-police", "grid-workers", START, "operator:王芳")
    assert redispatched.status is IncidentStatus.DISPATCHED and redispatched.queue is None
    assert redispatched.assignments[0].team == "grid-workers" and redispatched.assignments[0].officer is not None
    returned = await hub.store.events_of_type("AssignmentReturned", limit=10)
    assert [orjson.loads(e.payload)["rule_id"] for e in returned] == ["five-way-joint-enforcement"] * 2


async def test_operator_overrides_name_the_operator(crew: HubRig) -> None:
    hub = crew.hub
    incident = (await hub.report(jam("r1"), START)).incident
    who = "operator:王芳"
    await hub.assign(incident.id, "traffic-police", "tp-03", START, who)
    await hub.add_team(incident.id, "grid-workers", START, who)
    await hub.set_priority(incident.id, 2, START, who)
    escalated = await hub.escalate(incident.id, START, who)
    with pytest.raises(Refused):
        await hub.assign(incident.id, "traffic-police", "ps-01", START, who)  # not of that team
    with pytest.raises(Refused):
        await hub.add_team(incident.id, "grid-workers", START, who)  # already working

    assert escalated.assignment("traffic-police").officer == "tp-03"
    assert escalated.priority == 2 and escalated.has_team("grid-workers")
    timeline = await types_of(crew, incident.id)
    acted = [(t, d["actor"]) for t, d in timeline if "actor" in d and d["actor"] is not None]
    assert acted == [
        ("OfficerAssigned", who),
        ("UnitsDispatched", who),
        ("PriorityChanged", who),
        ("EscalationRaised", who),
    ]
    assert await hub.store.get(incident.id) == escalated


async def test_acknowledging_while_the_deadline_fires_ends_in_one_consistent_state(crew: HubRig) -> None:
    hub = crew.hub
    for n in range(2):
        incident = (await hub.report(jam(f"r{n}", lat=FIVE_WAY[0] + n * 0.01), START)).incident
        due = START + timedelta(minutes=3)
        crew.clock.advance_to(due)
        ack = hub.move_unit(incident.id, "traffic-police", UnitAction.ACKNOWLEDGE, due, "tp")
        fire = hub.fire_due(due)
        await asyncio.gather(*((ack, fire) if n == 0 else (fire, ack)))
        after = await hub.get(incident.id)
        lead = after.assignment("traffic-police")
        assert lead.state is AssignmentState.ACKNOWLEDGED
        assert not [e for e in lead.escalations if e.state is EscalationState.PENDING]
        assert await hub.store.get(incident.id) == after


async def test_resolving_while_acknowledging_and_two_operators_at_once(crew: HubRig) -> None:
    hub = crew.hub
    incident = (await hub.report(jam("r1"), START)).incident
    results = await asyncio.gather(
        hub.move_unit(incident.id, "traffic-police", UnitAction.RESOLVE, START, "a"),
        hub.move_unit(incident.id, "traffic-police", UnitAction.ACKNOWLEDGE, START, "b"),
        return_exceptions=True,
    )
    assert isinstance(results[0], IllegalTransition)  # queued first: not acknowledged yet
    assert isinstance(results[1], Incident) and results[1].status is IncidentStatus.ACKNOWLEDGED

    seen = (await hub.get(incident.id)).version
    both = await asyncio.gather(
        hub.set_priority(incident.id, 1 if incident.priority != 1 else 2, START, "operator:甲", expected_version=seen),
        hub.escalate(incident.id, START, "operator:乙", expected_version=seen),
        return_exceptions=True,
    )
    assert isinstance(both[0], Incident) and isinstance(both[1], StaleVersion)
    assert both[1].current == seen + 1
    assert await hub.store.get(incident.id) == await hub.get(incident.id)


@pytest.mark.parametrize("cancel_first", [True, False], ids=["cancel-first", "merge-first"])
async def test_a_merge_and_a_cancel_of_its_target_submitted_together_exactly_one_wins(
    crew: HubRig, cancel_first: bool
) -> None:
    hub = crew.hub
    a = (await hub.report(jam("a", lat=FIVE_WAY[0] + 0.01), START)).incident
    b = (await hub.report(jam("b"), START)).incident
    at = START + timedelta(minutes=1)
    merge = hub.merge(a.id, b.id, at, "operator:王芳", expected_version=a.version, expected_target_version=b.version)
    cancel = hub.finish(b.id, IncidentAction.CANCEL, at, "operator:李强", "a drill", expected_version=b.version)
    # The writer takes commands first in, first out: they are decided in this order, in one batch.
    first, second = (cancel, merge) if cancel_first else (merge, cancel)
    outcomes = await asyncio.gather(first, second, return_exceptions=True)

    won = [o for o in outcomes if isinstance(o, Incident)]
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], StaleVersion)
    source, target = await hub.get(a.id), await hub.get(b.id)
    if cancel_first:
        assert target.status is IncidentStatus.CANCELLED and target.report_count == 1
        assert source.status is IncidentStatus.DISPATCHED and source.merged_into is None
    else:
        assert target.status is IncidentStatus.DISPATCHED and target.report_count == 2
        assert source.status is IncidentStatus.MERGED and source.merged_into == b.id


async def test_a_merge_refuses_a_stale_version_of_its_source(crew: HubRig) -> None:
    hub = crew.hub
    a = (await hub.report(jam("a", lat=FIVE_WAY[0] + 0.01), START)).incident
    b = (await hub.report(jam("b"), START)).incident
    await hub.set_priority(a.id, 5, START + timedelta(seconds=30), "operator:李强", expected_version=a.version)

    with pytest.raises(StaleVersion):
        await hub.merge(a.id, b.id, START + timedelta(minutes=1), expected_version=a.version)
    assert (await hub.get(a.id)).merged_into is None and (await hub.get(b.id)).report_count == 1


async def test_an_acknowledgement_re_sent_after_a_miss_resolves_the_misses_alarm_when_kept(crew: HubRig) -> None:
    hub = crew.hub
    incident = (await hub.report(jam("r1"), START)).incident
    for team in FIVE_WAY_TEAMS[1:]:
        await hub.move_unit(incident.id, team, UnitAction.ACKNOWLEDGE, START + timedelta(minutes=1))
    await crew.advance(timedelta(minutes=3))  # missed: re-sent to the next officer, whose window is fresh
    assert [a["team"] for a in hub.alarms.snapshot()] == ["traffic-police"]
    # The new officer acknowledges in time: the first officer's miss resolves by itself.
    await hub.move_unit(incident.id, "traffic-police", UnitAction.ACKNOWLEDGE, START + timedelta(minutes=4))
    assert hub.alarms.snapshot() == []
    resolved = [d for t, d in await types_of(crew, incident.id) if t == "AlarmsResolved"]
    assert [(d["team"], d["kinds"]) for d in resolved] == [("traffic-police", ["ack"])]
    # The supporting teams acknowledged in time: nothing of theirs was resolved.
    assert all(d["team"] == "traffic-police" for d in resolved)
