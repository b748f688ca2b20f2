"""The gateway's intake on a real Mosquitto: reports that arrive together reach the writer together."""

from __future__ import annotations

import asyncio

from dispatcher.hub import Hub
from gateways.mqtt import GatewayConfig, MqttGateway, Topics
from tests.conftest import HubRig
from tests.mqtt_broker import Broker, client, unique
from tests.test_mqtt_replicas import MemoryCursor, _noop_status, _report, _reported


def _gateway(hub: Hub, url: str, prefix: str, client_id: str) -> MqttGateway:
    config = GatewayConfig(url=url, topics=Topics(prefix), client_id=client_id)
    return MqttGateway(hub, config, cursor=MemoryCursor(), on_officer_status=_noop_status)


async def test_reports_waiting_in_the_session_are_committed_several_at_a_time_not_one_per_commit(
    broker: Broker, rig: HubRig
) -> None:
    """Each message is handed to the hub at once, without waiting for the one before it to be committed, so the
    writer takes whatever queued meanwhile into one transaction; each is still acknowledged after its commit."""
    prefix, client_id = unique("together") + "/", unique("dispatcher")
    first = _gateway(rig.hub, broker.url, prefix, client_id)
    await first.start()
    await asyncio.wait_for(first.subscribed.wait(), timeout=20)
    await first.stop()  # the broker keeps its session: what is published now waits there
    async with client(broker.url) as device:
        for n in range(100):
            await device.publish(f"{prefix}reports", _report(n), qos=1)
    commits_before = rig.hub.stats.batch_size.count
    returned = _gateway(rig.hub, broker.url, prefix, client_id)
    reported = asyncio.create_task(_reported(rig.hub.feed, 100))
    await asyncio.sleep(0)  # it subscribes before the first report can arrive
    try:
        await returned.start()
        await reported
    finally:
        await returned.stop()
    commits = rig.hub.stats.batch_size.count - commits_before
    assert returned.counters["reports_created"] == 100
    assert commits < 100, "one commit per report: the gateway waited for each report before taking the next"
    assert {await rig.hub.find_report(f"r-{n}") for n in range(100)} == set(range(1, 101))
