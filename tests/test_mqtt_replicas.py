"""MQTT in a county: every township served, and replicas sharing the intake through an MQTT 5 shared subscription.

A real Mosquitto of the test's own (tests/mqtt_broker.py); each test uses its own topic prefix or broker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from dispatcher.alarm import ManualAlarm
from dispatcher.feed import EventFeed, FeedRecord
from dispatcher.hub import Hub
from dispatcher.ownership import SettableOwnership
from dispatcher.settings import Settings
from dispatcher.sql_store import SqlIncidentStore
from gateways.mqtt import GatewayConfig, LastKnownStatus, MqttGateway, Topics
from gateways.mqtt.gateway import CarriedMessage
from rules import compile_table, load_table
from server.app import build_mqtt
from tests.conftest import HubRig
from tests.mqtt_broker import Broker, client, unique

QUICK_TABLE = Path(__file__).parent / "fixtures" / "quick-township.yaml"


class MemoryCursor:
    def __init__(self) -> None:
        self.saved: int | None = None

    async def load(self) -> int | None:
        return self.saved

    async def save(self, last_seq: int, at: Any) -> None:
        self.saved = last_seq

    async def close(self) -> None:
        return None


async def _noop_status(_: Any) -> None:
    return None


def _gateway(hub: Hub, url: str, prefix: str, client_id: str, group: str, ownership: Any = None) -> MqttGateway:
    config = GatewayConfig(url=url, topics=Topics(prefix), client_id=client_id, shared_group=group)
    return MqttGateway(hub, config, cursor=MemoryCursor(), on_officer_status=_noop_status, ownership=ownership)


def _report(n: int, zone: str = "market", category: str = "noise.x") -> bytes:
    return orjson.dumps({"report_id": f"r-{n}", "category": category, "zone": zone, "description": "d"})


async def _reported(feed: EventFeed, count: int, timeout_s: float = 30.0) -> None:
    """Wait (bounded) until ``count`` incidents were reported on ``feed`` after this call."""
    subscription = feed.subscribe()
    try:
        async with asyncio.timeout(timeout_s):
            while count > 0:
                record = await subscription.get()
                assert isinstance(record, FeedRecord)
                count -= '"type":"IncidentReported"' in record.message
    finally:
        subscription.close()


async def test_two_replicas_in_a_shared_group_take_each_report_once_carrying_it_to_the_owner(
    broker: Broker, rig: HubRig
) -> None:
    prefix, group = unique("county") + "/", unique("dispatchers")
    carried: list[str] = []

    async def carry(township: str, message: Any) -> Any:
        assert isinstance(message, CarriedMessage) and township == rig.hub.rules.township_id
        carried.append(orjson.loads(message.payload)["report_id"])
        return await owner.take_carried(message)  # as the owner's carry route does

    owner = _gateway(rig.hub, broker.url, prefix, unique("replica-a"), group)
    other = _gateway(rig.hub, broker.url, prefix, unique("replica-b"), group, SettableOwnership(set(), carry))
    for gateway in (owner, other):
        await gateway.start()
    try:
        await asyncio.wait_for(asyncio.gather(owner.subscribed.wait(), other.subscribed.wait()), timeout=20)
        reported = asyncio.create_task(_reported(rig.hub.feed, 40))
        await asyncio.sleep(0)  # it subscribes before the first report can arrive
        async with client(broker.url) as device:
            for n in range(40):
                await device.publish(f"{prefix}reports", _report(n), qos=1)
        await reported
        for gateway in (owner, other):
            await gateway.stop()  # lets the messages in hand finish: their counters are final
        applied_by_owner = owner.counters["reports"]  # the owner's own share and what was carried to it
        assert applied_by_owner == 40 and owner.counters["reports_created"] == 40  # each report stored once
        assert applied_by_owner - other.counters["carried"] > 0 and carried  # both replicas took some
        assert other.counters["reports"] == 0  # the other replica never wrote itself
        assert len(set(carried)) == len(carried) == other.counters["carried"]
        assert {await rig.hub.find_report(f"r-{n}") for n in range(40)} == set(range(1, 41))
    finally:
        for gateway in (owner, other):
            await gateway.stop()


async def test_a_replica_down_keeps_its_share_in_its_broker_session_and_takes_it_when_it_returns(
    broker: Broker, rig: HubRig
) -> None:
    """Mosquitto (2.0) goes on handing a shared group's messages round-robin to a member whose persistent session
    is kept while it is offline: they wait there (none is lost), and the member takes them when it returns."""
    prefix, group = unique("county") + "/", unique("dispatchers")
    returning_id = unique("replica-b")

    async def carry(township: str, message: Any) -> Any:
        return await owner.take_carried(message)

    owner = _gateway(rig.hub, broker.url, prefix, unique("replica-a"), group)
    other = _gateway(rig.hub, broker.url, prefix, returning_id, group, SettableOwnership(set(), carry))
    returned = _gateway(rig.hub, broker.url, prefix, returning_id, group, SettableOwnership(set(), carry))
    for gateway in (owner, other):
        await gateway.start()
    try:
        await asyncio.wait_for(asyncio.gather(owner.subscribed.wait(), other.subscribed.wait()), timeout=20)
        await other.stop()  # its session stays with the broker (7 days)
        reported = asyncio.create_task(_reported(rig.hub.feed, 20))
        await asyncio.sleep(0)  # it subscribes before the first report can arrive
        async with client(broker.url) as device:
            for n in range(20):
                await device.publish(f"{prefix}reports", _report(n), qos=1)
        await returned.start()  # the same client id: the replica restarted
        await reported
        for gateway in (owner, returned):
            await gateway.stop()
        assert owner.counters["reports"] == 20 and owner.counters["reports_created"] == 20
        assert returned.counters["carried"] > 0  # its share had waited for it
        assert {await rig.hub.find_report(f"r-{n}") for n in range(20)} == set(range(1, 21))
    finally:
        for gateway in (owner, other, returned):
            await gateway.stop()


async def test_every_township_served_takes_its_own_reports(broker: Broker, rig: HubRig, tmp_path: Path) -> None:
    quick_rules = compile_table(load_table(QUICK_TABLE))
    quick = Hub(
        store=SqlIncidentStore(f"sqlite+aiosqlite:///{tmp_path / 'quick.db'}"),
        rules=quick_rules,
        clock=rig.clock,
        alarm=ManualAlarm(),
        feed=EventFeed(),
    )
    await quick.start()
    settings = Settings(database_url=rig.url, mqtt_url=broker.url, mqtt_client_id=unique("county"))
    gateways = build_mqtt(settings, [rig.hub, quick], LastKnownStatus())
    assert [g.topics.prefix for g in gateways] == ["township/ershili/", "township/quick/"]
    assert len({g.config.client_id for g in gateways}) == 2
    try:
        for gateway in gateways:
            await gateway.start()
        await asyncio.wait_for(asyncio.gather(*(g.subscribed.wait() for g in gateways)), timeout=20)
        reported = [asyncio.create_task(_reported(hub.feed, 1)) for hub in (rig.hub, quick)]
        await asyncio.sleep(0)  # they subscribe before the first report can arrive
        async with client(broker.url) as device:
            await device.publish("township/ershili/reports", _report(1), qos=1)
            await device.publish("township/quick/reports", _report(2, "square", "order.noise"), qos=1)
        await asyncio.gather(*reported)
        assert (await rig.hub.find_report("r-1"), await quick.find_report("r-2")) == (1, 1)
        assert (await rig.hub.find_report("r-2"), await quick.find_report("r-1")) == (None, None)
    finally:
        for gateway in gateways:
            await gateway.stop()
        await quick.stop()


@pytest.mark.parametrize("group", ["a/b", "a+", "#", "$share", "two words", ""])
def test_a_shared_group_name_that_would_change_the_topic_filter_is_refused(group: str) -> None:
    with pytest.raises(ValidationError, match="mqtt_shared_group"):
        Settings(mqtt_shared_group=group)


def test_a_topic_prefix_is_refused_when_several_townships_are_served(rig: HubRig) -> None:
    settings = Settings(database_url=rig.url, mqtt_url="mqtt://127.0.0.1:1883", mqtt_prefix="county/")
    with pytest.raises(ValueError, match="DISPATCHER_MQTT_PREFIX serves one township"):
        build_mqtt(settings, [rig.hub, rig.hub], LastKnownStatus())


async def test_the_outbox_follows_the_lease_and_resumes_from_the_cursor_the_other_owner_saved(
    broker: Broker, rig: HubRig
) -> None:
    """Hosted: the township's notices go out. Lease lost: the outbox stops (what the next owner publishes is not
    published here). Lease taken again: it starts from the cursor as the other owner left it, not from its own."""
    from dispatcher.core.incidents import Report
    from tests.mqtt_broker import Collector

    prefix, township = unique("county") + "/", rig.hub.rules.township_id
    ownership = SettableOwnership({township})
    cursor = MemoryCursor()
    config = GatewayConfig(url=broker.url, topics=Topics(prefix), client_id=unique("replica"))
    gateway = MqttGateway(rig.hub, config, cursor=cursor, on_officer_status=_noop_status, ownership=ownership)
    notices = Collector()

    def seqs() -> list[int]:
        return [int(body["seq"]) for body in notices.on(f"{prefix}board/events")]

    async def report(n: int) -> None:
        await rig.hub.report(
            Report(report_id=f"r-{n}", category="noise.x", description="d", zone="market"), rig.clock.now()
        )

    async with client(broker.url) as listener:
        await listener.subscribe(f"{prefix}board/events", qos=1)
        collecting = asyncio.create_task(notices.run(listener))
        await gateway.start()
        try:
            await asyncio.wait_for(gateway.subscribed.wait(), timeout=20)
            for n in range(2):
                await report(n)
            await notices.wait_for(lambda: bool(seqs()) and max(seqs()) == rig.hub.last_seq)
            before = max(seqs())
            ownership.set(township, False)  # another replica took the township
            for n in range(2, 5):
                await report(n)  # (written here only for the test: the other owner's hub would)
            published_by_the_other = rig.hub.last_seq - 1  # its outbox got this far and saved it
            cursor.saved = published_by_the_other
            for n in range(5, 7):
                await report(n)
            ownership.set(township, True)  # taken back
            await notices.wait_for(lambda: max(seqs()) == rig.hub.last_seq)
            after = [s for s in seqs() if s > before]
            assert after == list(range(published_by_the_other + 1, rig.hub.last_seq + 1)), seqs()
        finally:
            await gateway.stop()
            collecting.cancel()
