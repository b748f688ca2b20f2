"""The MQTT door keeps the HTTP door's policy: an officer moves only an assignment it holds.

In process: the real gateway on the hub with the bundled roster, against the test's own Mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest

from dispatcher.accounts import Account
from dispatcher.core.incidents import Report
from dispatcher.outbox import SqlOutboxCursor
from gateways.mqtt import Topics
from gateways.mqtt.codec import OfficerStatus
from gateways.mqtt.gateway import GatewayConfig, MqttGateway
from gateways.policy import DEVICE_ROLE, MOVE_ASSIGNMENT, grant_for, scope_refusal
from tests.conftest import HubRig
from tests.mqtt_broker import Broker, Collector, client, unique


async def _ignore(_: OfficerStatus) -> None:
    return None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_officer_of_another_team_cannot_acknowledge_over_mqtt(crew: HubRig, broker: Broker) -> None:
    topics = Topics(unique("township/p") + "/")
    config = GatewayConfig(url=broker.url, topics=topics, client_id=unique("dispatcher"))
    gateway = MqttGateway(
        crew.hub, config, cursor=SqlOutboxCursor(crew.url, config.client_id), on_officer_status=_ignore
    )
    collector = Collector()
    await gateway.start()
    try:
        async with client(broker.url) as watcher, client(broker.url) as phone:
            await watcher.subscribe(topics.prefix + "#", qos=1)
            watching = asyncio.create_task(collector.run(watcher))
            report = Report(report_id="m-1", category="traffic.congestion", zone="five-way", description="堵")
            incident = (await crew.hub.report(report, crew.clock.now())).incident
            lead = next(a for a in incident.assignments if a.team == "traffic-police")
            stranger = next(a.officer for a in incident.assignments if a.team != lead.team and a.officer)
            assert lead.officer and stranger
            dispatch = topics.team_dispatch(lead.team)
            # The notice went out from the outbox, which starts once the gateway has subscribed.
            await collector.wait_for(lambda: len(collector.on(dispatch)) == 1)

            # The same move over HTTP: refused by the policy's entry for a field officer.
            scope = (grant_for(*MOVE_ASSIGNMENT) or {})[DEVICE_ROLE]
            as_stranger = Account("x", DEVICE_ROLE, "ershili", officer_id=stranger)
            assert scope_refusal(as_stranger, scope, incident, team=lead.team) is not None

            ack = {"incident_id": incident.id, "team": lead.team, "action": "acknowledge"}
            await phone.publish(topics.officer_acks(stranger), orjson.dumps(ack), qos=1)
            await phone.publish(topics.officer_acks(lead.officer), orjson.dumps(ack), qos=1)
            await collector.wait_for(
                lambda: len(collector.on(topics.deadletter)) == 1 and len(collector.on(dispatch)) == 2
            )
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
    finally:
        await gateway.stop()
    letter = collector.on(topics.deadletter)[0]
    assert (letter["reason"], letter["topic"]) == ("forbidden", topics.officer_acks(stranger))
    assert f"officer {stranger}" in letter["detail"]
    moved = collector.on(dispatch)[1]
    assert (moved["type"], moved["to_state"], moved["actor"]) == ("UnitMoved", "acknowledged", lead.officer)
    timeline = await crew.hub.timeline(incident.id)
    assert [orjson.loads(e.payload)["actor"] for e in timeline if e.type == "UnitMoved"] == [lead.officer]
    assert gateway.dead_letters == {"forbidden": 1}
