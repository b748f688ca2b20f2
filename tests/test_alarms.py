"""Alarms on the board: which are open (pure fold), acknowledging one through the hub and the API
(on SQLite and PostgreSQL), and the zones the board's map draws."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from dispatcher.alarms import OpenAlarms
from dispatcher.core.events import AlarmAcknowledged, decode, encode
from dispatcher.core.lifecycle import IncidentAction, UnitAction
from dispatcher.hub import UnknownAlarm
from dispatcher.settings import Settings
from server.app import create_app
from tests.conftest import START, HubRig, api_client
from tests.test_hub import FIVE_WAY_TEAMS, five_way

MISS = {"team": "traffic-police", "kind": "ack", "due_at": "2026-06-12T08:03:00+00:00", "late_by": 1.0}
ESCALATION = {"team": "traffic-police", "kind": "ack", "level": "module_lead", "to_name": "周", "to_title": "副镇长"}


def test_an_escalation_after_a_miss_joins_its_alarm_and_an_ack_clears_it() -> None:
    alarms = OpenAlarms()
    alarms.fold(10, "DeadlineMissed", 1, {"incident_id": 1, **MISS})
    alarms.fold(11, "EscalationRaised", 1, {"incident_id": 1, **ESCALATION})
    [alarm] = alarms.snapshot()
    assert (alarm["seq"], alarm["type"], alarm["team"], alarm["to_title"]) == (
        10,
        "DeadlineMissed",
        "traffic-police",
        "副镇长",
    )

    alarms.fold(12, "AlarmAcknowledged", 1, {"incident_id": 1, "alarm_seq": 10, "actor": "operator:王芳"})
    assert alarms.snapshot() == []
    assert alarms.was_acknowledged(1, 10) and not alarms.is_open(1, 10)


def test_an_escalation_without_a_miss_is_its_own_alarm_and_finishing_clears_all() -> None:
    alarms = OpenAlarms()
    alarms.fold(5, "EscalationRaised", 2, {"incident_id": 2, **ESCALATION})
    alarms.fold(6, "DeadlineMissed", 3, {"incident_id": 3, **MISS})
    assert [(a["seq"], a["type"]) for a in alarms.snapshot()] == [(5, "EscalationRaised"), (6, "DeadlineMissed")]
    alarms.fold(7, "IncidentCancelled", 2, {"incident_id": 2, "reason": "x", "actor": None})
    alarms.fold(8, "IncidentClosed", 3, {"incident_id": 3, "actor": None})
    assert alarms.snapshot() == [] and len(alarms) == 0


def test_alarm_acknowledged_round_trips_through_the_log_format() -> None:
    event = AlarmAcknowledged(incident_id=4, at=START, alarm_seq=9, actor="operator:王芳")
    assert decode("AlarmAcknowledged", orjson.loads(orjson.dumps(encode(event)))) == event


async def _missed_five_way(rig: HubRig) -> tuple[int, list[int]]:
    """A five-way incident whose four supporting teams and lead all missed their acknowledgement."""
    incident = (await rig.hub.report(five_way(), rig.clock.now())).incident
    rig.clock.advance(timedelta(minutes=3, seconds=1))
    assert await rig.hub.fire_due(rig.clock.now()) == len(FIVE_WAY_TEAMS)
    return incident.id, [a["seq"] for a in rig.hub.alarms.snapshot()]


async def test_acknowledging_an_alarm_records_it_once_and_survives_a_restart(rig: HubRig) -> None:
    incident_id, seqs = await _missed_five_way(rig)
    assert len(seqs) == len(FIVE_WAY_TEAMS)  # one alarm per missed promise, escalation joined to it
    timeline = await rig.hub.timeline(incident_id)
    assert {e.seq for e in timeline if e.type == "DeadlineMissed"} == set(seqs)

    await rig.hub.acknowledge_alarm(incident_id, seqs[0], rig.clock.now(), "operator:王芳")
    again = await rig.hub.acknowledge_alarm(incident_id, seqs[0], rig.clock.now(), "operator:李明")
    acks = [orjson.loads(e.payload) for e in await rig.hub.timeline(incident_id) if e.type == "AlarmAcknowledged"]
    assert acks == [
        {"incident_id": incident_id, "at": rig.clock.now().isoformat(), "alarm_seq": seqs[0], "actor": "operator:王芳"}
    ]
    assert again.id == incident_id
    with pytest.raises(UnknownAlarm):
        await rig.hub.acknowledge_alarm(incident_id, 1, rig.clock.now(), None)  # seq 1 reported, raised nothing

    hub = await rig.restart()
    assert [a["seq"] for a in hub.alarms.snapshot()] == seqs[1:]
    assert hub.alarms.was_acknowledged(incident_id, seqs[0])


async def test_two_acknowledgements_in_one_batch_record_one_event(rig: HubRig) -> None:
    incident_id, seqs = await _missed_five_way(rig)
    await asyncio.gather(
        *(rig.hub.acknowledge_alarm(incident_id, seqs[1], rig.clock.now(), f"op{i}") for i in range(3))
    )
    acks = [e for e in await rig.hub.timeline(incident_id) if e.type == "AlarmAcknowledged"]
    assert len(acks) == 1


async def test_finishing_an_incident_clears_its_alarms(rig: HubRig) -> None:
    incident_id, seqs = await _missed_five_way(rig)
    await rig.hub.finish(incident_id, IncidentAction.CANCEL, rig.clock.now(), "operator:王芳", "duplicate")
    assert rig.hub.alarms.snapshot() == []
    with pytest.raises(UnknownAlarm):
        await rig.hub.acknowledge_alarm(incident_id, seqs[0], rig.clock.now(), None)


@pytest.fixture
async def client(rig: HubRig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=rig.url), hub=rig.hub)
    async with api_client(app) as http:
        yield http


async def test_the_ack_endpoint_records_the_operator_and_refuses_unknown_alarms(
    rig: HubRig, client: httpx.AsyncClient
) -> None:
    incident_id, seqs = await _missed_five_way(rig)
    url = f"/api/v1/incidents/{incident_id}/alarms/{seqs[2]}/ack"
    answer = await client.post(url, json={"actor": "operator:王芳"})
    assert answer.status_code == 200 and answer.json()["id"] == incident_id
    assert (await client.post(url, json={"actor": "operator:王芳"})).status_code == 200  # idempotent

    detail = (await client.get(f"/api/v1/incidents/{incident_id}")).json()
    acks = [e["data"] for e in detail["timeline"] if e["type"] == "AlarmAcknowledged"]
    # The signed-in account acts; the name typed on the board says for whom.
    assert [a["alarm_seq"] for a in acks] == [seqs[2]] and acks[0]["actor"].endswith(" for operator:王芳")

    assert (await client.post(f"/api/v1/incidents/{incident_id}/alarms/1/ack", json={})).status_code == 404
    assert (await client.post("/api/v1/incidents/999/alarms/1/ack")).status_code == 404
    assert (await client.post(url, json={"actor": "x" * 200})).status_code == 422


async def test_a_team_keeping_its_promise_late_resolves_its_alarm_by_itself(rig: HubRig) -> None:
    incident_id, seqs = await _missed_five_way(rig)
    police = [a["seq"] for a in rig.hub.alarms.snapshot() if a["team"] == "traffic-police"]
    assert len(police) == 1
    await rig.hub.move_unit(incident_id, "traffic-police", UnitAction.ACKNOWLEDGE, rig.clock.now(), "operator:王芳")
    # Only the team that acknowledged: the four others still owe theirs.
    assert sorted(a["seq"] for a in rig.hub.alarms.snapshot()) == sorted(set(seqs) - set(police))
    resolved = [orjson.loads(e.payload) for e in await rig.hub.timeline(incident_id) if e.type == "AlarmsResolved"]
    assert [(r["team"], r["kinds"], r["to_state"]) for r in resolved] == [("traffic-police", ["ack"], "acknowledged")]
    # Resolved, not acknowledged: nobody acknowledged it, and a restart does not bring it back.
    assert not rig.hub.alarms.was_acknowledged(incident_id, police[0])
    hub = await rig.restart()
    assert sorted(a["seq"] for a in hub.alarms.snapshot()) == sorted(set(seqs) - set(police))


async def test_a_promise_kept_in_time_records_no_resolution(rig: HubRig) -> None:
    incident = (await rig.hub.report(five_way(), rig.clock.now())).incident
    await rig.hub.move_unit(incident.id, "traffic-police", UnitAction.ACKNOWLEDGE, rig.clock.now(), None)
    assert [e.type for e in await rig.hub.timeline(incident.id) if e.type == "AlarmsResolved"] == []


def test_a_resolution_clears_its_teams_alarms_of_those_kinds_and_leaves_a_manual_escalation() -> None:
    alarms = OpenAlarms()
    alarms.fold(10, "DeadlineMissed", 1, {"incident_id": 1, **MISS})
    alarms.fold(11, "EscalationRaised", 1, {"incident_id": 1, **ESCALATION, "kind": "ack", "level": "secretary"})
    alarms.fold(12, "DeadlineMissed", 1, {"incident_id": 1, **MISS, "team": "police-station"})
    alarms.fold(13, "EscalationRaised", 1, {"incident_id": 1, **ESCALATION, "kind": "manual"})
    alarms.fold(14, "DeadlineMissed", 1, {"incident_id": 1, **MISS, "kind": "arrive"})
    resolved = {"incident_id": 1, "team": "traffic-police", "kinds": ["ack"], "to_state": "acknowledged"}
    alarms.fold(15, "AlarmsResolved", 1, resolved)
    assert [a["seq"] for a in alarms.snapshot()] == [12, 13, 14]
    assert not alarms.was_acknowledged(1, 10)


async def test_zones_come_as_geojson_with_labels(client: httpx.AsyncClient) -> None:
    answer = (await client.get("/api/v1/rules/zones")).json()
    assert answer["type"] == "FeatureCollection"
    zones: dict[str, Any] = {f["id"]: f for f in answer["features"]}
    assert set(zones) == {"five-way", "market", "town-centre"}
    five = zones["five-way"]
    assert five["geometry"] == {"type": "Point", "coordinates": [118.912, 28.848]}
    assert five["properties"]["name"] == "五岔口" and five["properties"]["radius_m"] == 120
    assert zones["town-centre"]["geometry"]["type"] == "Polygon"
    assert zones["town-centre"]["properties"]["name_en"] == "Town centre"
    west, south, east, north = answer["bbox"]
    assert (west, south, east, north) == (118.9, 28.84, 118.925, 28.856)
