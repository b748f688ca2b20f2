"""Closing the loop through the real hub and store on the virtual clock (SQLite and PostgreSQL):
verification (核查) and rework (返工), extensions (延期), parking (挂账), and their deadlines across restarts.

The bundled table and roster; START is Friday 2026-06-12, 16:00 in Asia/Shanghai, a market day. The
five-way rule (priority 1) asks for verification within 2 h; labour disputes (priority 2) within 2 days.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from dispatcher.core.closing import PhotoFacts, photo_flags
from dispatcher.core.events import DeadlineKind
from dispatcher.core.incidents import NO_TEAM, DeadlineState, Incident, Refused, Report, open_incident
from dispatcher.core.lifecycle import AssignmentState, IllegalTransition, IncidentAction, IncidentStatus, UnitAction
from dispatcher.store import IncidentFilter
from rules import RoutingInput, RuleBook
from tests.conftest import START, HubRig
from tests.test_dispatch import FIVE_WAY_TEAMS, jam


async def payloads(rig: HubRig, incident_id: int, type_name: str) -> list[dict[str, Any]]:
    return [orjson.loads(e.payload) for e in await rig.hub.timeline(incident_id) if e.type == type_name]


async def resolve_all(rig: HubRig, incident: Incident, teams: list[str]) -> Incident:
    current = incident
    for team in teams:
        for action in (UnitAction.ACKNOWLEDGE, UnitAction.RESOLVE):
            current = await rig.hub.move_unit(current.id, team, action, rig.clock.now(), actor=f"{team}-duty")
    return current


def wages(report_id: str) -> Report:
    return Report(report_id=report_id, category="labour.wage_arrears", description="欠薪", zone="town-centre")


LABOUR_TEAMS = ["labour-office", "court", "judicial-office"]


async def test_resolve_verify_fail_rework_resolve_verify_pass(crew: HubRig) -> None:
    hub = crew.hub
    incident = (await hub.report(jam("v1"), START)).incident
    crew.clock.advance(timedelta(minutes=5))
    lead_only = await resolve_all(crew, incident, FIVE_WAY_TEAMS[:1])
    assert lead_only.status is IncidentStatus.RESOLVED  # the supporting teams are still at work
    waiting = await resolve_all(crew, lead_only, FIVE_WAY_TEAMS[1:])
    assert waiting.status is IncidentStatus.VERIFYING
    due = START + timedelta(minutes=5, hours=2)
    check = waiting.loop.check(DeadlineKind.VERIFY)
    assert check is not None and check.due_at == due and check.state is DeadlineState.PENDING
    assert [p["due_at"] for p in await payloads(crew, incident.id, "VerificationAwaited")] == [due.isoformat()]

    # Only the verification closes it; a handler may not verify.
    with pytest.raises(IllegalTransition) as refused:
        await hub.finish(incident.id, IncidentAction.CLOSE, crew.clock.now())
    assert set(refused.value.allowed) == {"pass", "fail", "cancel"}
    with pytest.raises(Refused, match="tp-02 handled this incident"):
        await hub.verify(incident.id, True, crew.clock.now(), verifier="王队长", verifier_ids=["tp-02"])
    with pytest.raises(Refused, match="needs a reason"):
        await hub.verify(incident.id, False, crew.clock.now(), verifier="grid-01")

    crew.clock.advance(timedelta(minutes=30))
    failed = await hub.verify(
        incident.id, False, crew.clock.now(), verifier="grid-01", reason="摊位仍占道", photos=["a" * 64]
    )
    assert failed.status is IncidentStatus.DISPATCHED and failed.loop.reworks == 1
    # The same teams (and officers) get it back, with fresh deadlines counted from the failure.
    assert [a.team for a in failed.assignments] == FIVE_WAY_TEAMS
    assert [a.officer for a in failed.assignments] == [a.officer for a in waiting.assignments]
    assert all(a.state is AssignmentState.DISPATCHED for a in failed.assignments)
    ack = failed.assignments[0].deadline(DeadlineKind.ACK)
    assert ack is not None and ack.due_at == crew.clock.now() + timedelta(minutes=3)
    assert failed.loop.check(DeadlineKind.VERIFY).state is DeadlineState.MET  # type: ignore[union-attr]
    assert crew.hub.units["tp-02"].tasks == 1  # busy again
    (verified,) = await payloads(crew, incident.id, "IncidentVerified")
    assert verified["passed"] is False and verified["teams"] == FIVE_WAY_TEAMS and verified["rework"] == 1
    assert verified["photos"] == ["a" * 64] and verified["verifier"] == "grid-01"

    hub = await crew.restart()  # the loop's state is stored with the incident
    assert (await hub.get(incident.id)).loop == failed.loop

    again = await resolve_all(crew, failed, FIVE_WAY_TEAMS)
    assert again.status is IncidentStatus.VERIFYING
    closed = await hub.verify(incident.id, True, crew.clock.now(), verifier="指挥室值班员", photos=["b" * 64])
    assert closed.status is IncidentStatus.CLOSED and closed.loop.reworks == 1
    assert [v.passed for v in closed.loop.verifications] == [False, True]
    types = [e.type for e in await hub.timeline(incident.id)]
    assert types[-2:] == ["IncidentVerified", "IncidentClosed"]
    assert crew.hub.units["tp-02"].tasks == 0
    with pytest.raises(IllegalTransition):
        await hub.verify(incident.id, True, crew.clock.now(), verifier="someone")


async def test_a_missed_verification_raises_one_alarm_even_across_a_restart(crew: HubRig) -> None:
    incident = (await crew.hub.report(jam("v2"), START)).incident
    waiting = await resolve_all(crew, incident, FIVE_WAY_TEAMS)
    due = waiting.loop.check(DeadlineKind.VERIFY).due_at  # type: ignore[union-attr]
    crew.clock.advance(timedelta(hours=1))
    await crew.hub.fire_due(crew.clock.now())
    hub = await crew.restart()  # re-armed from the database
    assert any(e.team == NO_TEAM and e.kind is DeadlineKind.VERIFY for e in hub.deadlines.pending())
    crew.clock.advance_to(due - timedelta(seconds=1))
    await hub.fire_due(crew.clock.now())
    assert await payloads(crew, incident.id, "DeadlineMissed") == []
    crew.clock.advance_to(due)
    await hub.fire_due(crew.clock.now())
    await hub.fire_due(crew.clock.now())
    (missed,) = await payloads(crew, incident.id, "DeadlineMissed")
    assert missed["kind"] == "verify" and missed["team"] == "" and missed["due_at"] == due.isoformat()
    assert [a["type"] for a in hub.alarms.snapshot() if a["incident_id"] == incident.id] == ["DeadlineMissed"]
    # Still waiting: a late verification passes it.
    closed = await hub.verify(incident.id, True, crew.clock.now(), verifier="grid-01")
    assert closed.status is IncidentStatus.CLOSED and hub.alarms.snapshot() == []


async def test_an_extension_is_approved_by_the_module_lead_and_moves_the_deadline(crew: HubRig) -> None:
    hub = crew.hub
    incident = (await hub.report(wages("e1"), START)).incident
    old_due = incident.assignment("labour-office").deadline(DeadlineKind.RESOLVE).due_at  # type: ignore[union-attr]
    new_due = old_due + timedelta(days=3)
    with pytest.raises(Refused, match="needs a reason"):
        await hub.request_extension(incident.id, "labour-office", " ", new_due, START, actor="lo-01")
    with pytest.raises(Refused, match="after the current one"):
        await hub.request_extension(incident.id, "labour-office", "等法院排期", old_due, START, actor="lo-01")
    asked = await hub.request_extension(incident.id, "labour-office", "等法院排期", new_due, START, actor="lo-01")
    (request,) = asked.loop.requests
    assert request.state.value == "requested" and request.needs == ("module_lead",)
    with pytest.raises(Refused, match="decided by module_lead, not operator"):
        await hub.decide_request(incident.id, request.id, True, START, role="operator", actor="op")
    approved = await hub.decide_request(
        incident.id, request.id, True, START, role="module_lead", actor="服务模块牵头人"
    )
    assert approved.assignment("labour-office").deadline(DeadlineKind.RESOLVE).due_at == new_due  # type: ignore[union-attr]
    assert approved.assignment("court").deadline(DeadlineKind.RESOLVE).due_at == old_due  # type: ignore[union-attr]
    assert approved.loop.extensions == 1
    with pytest.raises(IllegalTransition) as twice:
        await hub.decide_request(incident.id, request.id, False, START, role="module_lead", reason="no")
    assert twice.value.current == "approved" and twice.value.allowed == ()
    with pytest.raises(Refused, match="at most 1 extension"):
        await hub.request_extension(incident.id, "court", "再等等", new_due, START, actor="court-01")
    decided = await payloads(crew, incident.id, "RequestDecided")
    assert decided == [
        {
            "incident_id": incident.id,
            "at": START.isoformat(),
            "request_id": 1,
            "kind": "extension",
            "team": "labour-office",
            "state": "approved",
            "role": "module_lead",
            "reason": "",
            "actor": "服务模块牵头人",
            "due_at": new_due.isoformat(),
        }
    ]
    # The old due time passes without a miss for the labour office; the new one is missed.
    hub = await crew.restart()
    crew.clock.advance_to(old_due)
    await hub.fire_due(crew.clock.now())
    resolve_misses = [p["team"] for p in await payloads(crew, incident.id, "DeadlineMissed") if p["kind"] == "resolve"]
    assert sorted(resolve_misses) == ["court", "judicial-office"]
    crew.clock.advance_to(new_due)
    await hub.fire_due(crew.clock.now())
    resolve_misses = [p["team"] for p in await payloads(crew, incident.id, "DeadlineMissed") if p["kind"] == "resolve"]
    assert sorted(resolve_misses) == ["court", "judicial-office", "labour-office"]


async def test_a_refused_extension_changes_no_deadline(crew: HubRig) -> None:
    hub = crew.hub
    incident = (await hub.report(wages("e2"), START)).incident
    asked = await hub.request_extension(incident.id, "court", "材料未齐", START + timedelta(days=30), START, actor="c")
    with pytest.raises(Refused, match="refusal needs a reason"):
        await hub.decide_request(incident.id, 1, False, START, role="module_lead")
    refused = await hub.decide_request(incident.id, 1, False, START, role="party_secretary", reason="按期办结")
    assert refused.loop.requests[0].state.value == "refused" and refused.loop.extensions == 0
    assert refused.assignments == asked.assignments
    # A refused request does not count: another may be asked.
    await hub.request_extension(incident.id, "court", "材料未齐", START + timedelta(days=9), START, actor="c")


async def test_parking_a_priority_1_matter_needs_both_leaders_and_stops_its_deadlines(crew: HubRig) -> None:
    hub = crew.hub
    incident = (await hub.report(jam("p1"), START)).incident
    await hub.move_unit(incident.id, "police-station", UnitAction.ACKNOWLEDGE, START, actor="ps-02")
    review_at = START + timedelta(days=14)
    with pytest.raises(Refused, match="review date must be in the future"):
        await hub.request_parking(incident.id, "等资金", START, START, actor="op")
    asked = await hub.request_parking(incident.id, "道路改造等待资金", review_at, START, actor="op")
    assert asked.loop.requests[0].needs == ("module_lead", "party_secretary")
    endorsed = await hub.decide_request(incident.id, 1, True, START, role="module_lead", actor="执法模块牵头人")
    assert endorsed.status is IncidentStatus.DISPATCHED and endorsed.loop.requests[0].state.value == "endorsed"
    with pytest.raises(Refused, match="approved this request already"):
        await hub.decide_request(incident.id, 1, True, START, role="module_lead", actor="执法模块牵头人")
    parked = await hub.decide_request(incident.id, 1, True, START, role="party_secretary", actor="党委书记")
    assert parked.status is IncidentStatus.PARKED
    assert all(d.state is not DeadlineState.PENDING for a in parked.assignments for d in a.deadlines)
    assert {d.state for a in parked.assignments for d in a.deadlines} == {DeadlineState.VOID, DeadlineState.MET}
    assert [t for t, _ in parked.pending_deadlines()] == [NO_TEAM]
    with pytest.raises(IllegalTransition) as moving:
        await hub.move_unit(incident.id, "traffic-police", UnitAction.ACKNOWLEDGE, START)
    assert set(moving.value.allowed) == {"resume", "cancel"}
    listed, count = await hub.list_incidents(IncidentFilter(status=(IncidentStatus.PARKED,)), limit=10, offset=0)
    assert count == 1 and listed[0].id == incident.id

    # Nothing is missed while parked (the acknowledgement was due 3 minutes in); the review date is.
    hub = await crew.restart()
    crew.clock.advance_to(review_at - timedelta(seconds=1))
    await hub.fire_due(crew.clock.now())
    assert await payloads(crew, incident.id, "DeadlineMissed") == []
    crew.clock.advance_to(review_at)
    await hub.fire_due(crew.clock.now())
    (missed,) = await payloads(crew, incident.id, "DeadlineMissed")
    assert missed["kind"] == "review" and missed["team"] == ""
    assert any(a["incident_id"] == incident.id for a in hub.alarms.snapshot())

    resumed = await hub.resume(incident.id, crew.clock.now(), actor="op")
    assert resumed.status is IncidentStatus.DISPATCHED
    police = {d.kind: d for d in resumed.assignment("police-station").deadlines}
    assert police[DeadlineKind.ACK].state is DeadlineState.MET and police[DeadlineKind.ACK].settled_at == START
    assert police[DeadlineKind.ARRIVE].state is DeadlineState.PENDING
    assert police[DeadlineKind.ARRIVE].due_at == review_at + timedelta(minutes=10)
    assert [d.kind for d in resumed.assignment("traffic-police").deadlines] == [
        DeadlineKind.ACK,
        DeadlineKind.ARRIVE,
        DeadlineKind.RESOLVE,
    ]
    ack = resumed.assignment("traffic-police").deadline(DeadlineKind.ACK)
    assert ack is not None and ack.due_at == review_at + timedelta(minutes=3) and ack.state is DeadlineState.PENDING
    assert [e.type for e in await hub.timeline(incident.id)][-1] == "IncidentResumed"


async def test_parking_a_priority_3_matter_needs_the_module_lead_only(crew: HubRig) -> None:
    vendor = Report(report_id="p3", category="market.stall_encroachment", description="占道经营", zone="town-centre")
    incident = (await crew.hub.report(vendor, START)).incident
    assert incident.priority == 3
    await crew.hub.request_parking(incident.id, "等整治方案", START + timedelta(days=7), START, actor="op")
    with pytest.raises(Refused, match="decided by module_lead, not party_secretary"):
        await crew.hub.decide_request(incident.id, 1, True, START, role="party_secretary")
    parked = await crew.hub.decide_request(incident.id, 1, True, START, role="module_lead", actor="执法模块牵头人")
    assert parked.status is IncidentStatus.PARKED
    (decided,) = await payloads(crew, incident.id, "RequestDecided")
    assert decided["state"] == "approved"
    assert [e.type for e in await crew.hub.timeline(incident.id)][-1] == "IncidentParked"


async def test_a_parked_incident_leaves_the_on_time_figures_until_it_is_resumed(crew: HubRig) -> None:
    from dispatcher.briefing import Unit

    hub = crew.hub
    incident = (await hub.report(wages("b1"), START)).incident
    period = {"start": START - timedelta(days=1), "end": START + timedelta(days=30), "by": Unit.TOWNSHIP}
    (row,) = (await hub.briefing(**period)).units  # type: ignore[arg-type]
    assert (row.due, row.overdue_open) == (1, 1)
    await hub.request_parking(incident.id, "等法院判决", START + timedelta(days=10), START, actor="op")
    await hub.decide_request(incident.id, 1, True, START, role="module_lead", actor="服务模块牵头人")
    await hub.decide_request(incident.id, 1, True, START, role="party_secretary", actor="党委书记")
    (row,) = (await hub.briefing(**period)).units  # type: ignore[arg-type]
    assert (row.received, row.due, row.overdue_open) == (1, 0, 0)
    await hub.resume(incident.id, START + timedelta(days=1), actor="op")
    (row,) = (await hub.briefing(**period)).units  # type: ignore[arg-type]
    assert (row.due, row.overdue_open) == (1, 1)


def test_photo_flags_name_far_early_stale_and_unknown_photos(bundled_rules: RuleBook) -> None:
    report = jam("f1")  # at the five-way junction, 28.8480 N 118.9120 E
    decision = bundled_rules.route(RoutingInput(category=report.category, lat=report.lat, lon=report.lon))
    incident, _ = open_incident(1, report, decision, START)
    at = START + timedelta(hours=30)
    photos = [
        PhotoFacts(id="a" * 64, taken_at=at - timedelta(minutes=5), lat=28.8482, lon=118.9121),  # there, now
        PhotoFacts(id="b" * 64, taken_at=at - timedelta(minutes=5), lat=28.8580, lon=118.9120),  # 1.1 km north
        PhotoFacts(id="c" * 64, taken_at=START - timedelta(days=3), lat=28.8480, lon=118.9120),  # before the report
        PhotoFacts(id="d" * 64, taken_at=START + timedelta(hours=1), lat=28.8480, lon=118.9120),  # 29 h old
        PhotoFacts(id="e" * 64, taken_at=None, lat=None, lon=None),
    ]
    assert photo_flags(incident, photos, at) == (
        "photo bbbbbbbbbbbb: taken 1,112 m from the incident",
        "photo cccccccccccc: taken before the incident was reported",
        "photo dddddddddddd: taken 29 h before the verification",
        "photo eeeeeeeeeeee: no place recorded",
        "photo eeeeeeeeeeee: no time recorded",
    )
    assert photo_flags(incident, photos[:1], at) == ()


async def test_the_briefing_counts_extensions_and_reworks(rig: HubRig) -> None:
    """Four incidents in June: two wage disputes, one extended (延期); two jams closed, one after a
    failed verification (返工). The same counts come back when the counters are filled from the log.
    (No duplicate joining: the two jams stay two incidents.)"""
    from dispatcher.briefing import Unit
    from dispatcher.sql_store import build_engine
    from tests.test_briefing import _refill_from_the_log

    hub = rig.hub
    extended = (await hub.report(wages("x1"), START)).incident
    await hub.report(wages("x2"), START)
    due = extended.assignment("labour-office").deadline(DeadlineKind.RESOLVE).due_at  # type: ignore[union-attr]
    await hub.request_extension(extended.id, "labour-office", "等法院排期", due + timedelta(days=3), START, actor="lo")
    await hub.decide_request(extended.id, 1, True, START, role="module_lead", actor="服务模块牵头人")
    reworked = (await hub.report(jam("x3"), START)).incident
    plain = (await hub.report(jam("x4"), START)).incident
    rig.clock.advance(timedelta(minutes=5))
    await resolve_all(rig, reworked, FIVE_WAY_TEAMS)
    await hub.verify(reworked.id, False, rig.clock.now(), verifier="grid-01", reason="摊位仍占道")
    await resolve_all(rig, reworked, FIVE_WAY_TEAMS)
    await hub.verify(reworked.id, True, rig.clock.now(), verifier="grid-01")
    await resolve_all(rig, plain, FIVE_WAY_TEAMS)
    await hub.verify(plain.id, True, rig.clock.now(), verifier="grid-01")

    period = {"start": START - timedelta(days=1), "end": START + timedelta(days=30), "by": Unit.TOWNSHIP}
    (row,) = (await hub.briefing(**period)).units  # type: ignore[arg-type]
    assert (row.due, row.extended, row.closed, row.reworked) == (4, 1, 2, 1)
    assert (row.extension_rate, row.rework_rate) == (0.25, 0.5)
    engine = build_engine(rig.url, durable=False)
    try:
        await _refill_from_the_log(engine)
    finally:
        await engine.dispose()
    (again,) = (await hub.briefing(**period)).units  # type: ignore[arg-type]
    assert again == row
