"""Field devices over a real Mosquitto (the test's own, on a free port) and a real dispatcher process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import orjson
import pytest

from gateways.mqtt import Topics
from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess
from tests.mqtt_broker import Broker, Collector, client, unique

pytestmark = pytest.mark.e2e

FIVE_WAY = {"category": "traffic.congestion", "zone": "five-way", "description": "集市日五岔口拥堵"}


class Rig:
    """A dispatcher process wired to the broker under a prefix and client id no other test uses."""

    def __init__(self, broker: Broker, database_url: str, tmp_path: Path, **env: str) -> None:
        self.broker = broker
        self.topics = Topics(unique("township/t") + "/")
        self.env = {
            "DISPATCHER_MQTT_URL": broker.url,
            "DISPATCHER_MQTT_PREFIX": self.topics.prefix,
            "DISPATCHER_MQTT_CLIENT_ID": unique("dispatcher"),
            "DISPATCHER_GC_FREEZE": "false",
            **PLAIN,  # about transport: every report its own incident, teams sent whole, at any hour
            **env,
        }
        self.database_url = database_url
        self.tmp_path = tmp_path
        self.runs = 0
        self.server: ServerProcess | None = None

    def start(self) -> ServerProcess:
        self.runs += 1
        self.server = ServerProcess(self.database_url, self.tmp_path / f"server{self.runs}.log", env=self.env).start()
        return self.server

    def get(self, path: str) -> Any:
        assert self.server is not None
        answer = httpx.get(self.server.base_url + path, timeout=10, headers=self.server.headers)
        answer.raise_for_status()
        return answer.json()

    async def until(self, path: str, check: Any, timeout_s: float = 30.0) -> Any:
        """Poll an HTTP resource until ``check(body)`` holds (bounded); returns the last body."""
        async with asyncio.timeout(timeout_s):
            while True:
                body = self.get(path)
                if check(body):
                    return body
                await asyncio.sleep(0.05)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'dispatcher.db'}"


@contextlib.asynccontextmanager
async def watching(url: str, topic_filter: str) -> AsyncIterator[Collector]:
    collector = Collector()
    async with client(url) as watcher:
        await watcher.subscribe(topic_filter, qos=1)
        task = asyncio.create_task(collector.run(watcher))
        try:
            yield collector
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def publish(url: str, topic: str, *payloads: Any) -> None:
    async with client(url) as device:
        for payload in payloads:
            raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
            await device.publish(topic, raw, qos=1)


async def test_a_report_over_mqtt_is_dispatched_and_the_officer_moves_it(
    broker: Broker, database_url: str, tmp_path: Path
) -> None:
    rig = Rig(broker, database_url, tmp_path)
    server = rig.start()
    t = rig.topics
    try:
        assert rig.get("/readyz")["mqtt"] in {"connected", "down"}
        await rig.until("/readyz", lambda b: b["mqtt"] == "connected")
        async with watching(broker.url, t.prefix + "#") as seen:
            await publish(broker.url, t.reports, {"report_id": "mq-1", **FIVE_WAY})
            await seen.wait_for(lambda: len(seen.on(t.team_dispatch("police-station"))) == 1)
            lead = seen.on(t.team_dispatch("traffic-police"))[0]
            assert (lead["type"], lead["role"], lead["incident"]["report_id"]) == ("UnitsDispatched", "lead", "mq-1")
            assert {e["seq"] for e in seen.on(t.board_events)} >= {lead["seq"]}
            incident_id = lead["incident_id"]

            await publish(
                broker.url,
                t.officer_acks("officer-17"),
                {"incident_id": incident_id, "team": "traffic-police", "action": "acknowledge"},
            )
            await publish(
                broker.url, t.officer_status("officer-17"), {"status": "assigned", "lat": 28.848, "lon": 118.912}
            )
            await seen.wait_for(lambda: len(seen.on(t.team_dispatch("traffic-police"))) == 2)
            moved = seen.on(t.team_dispatch("traffic-police"))[1]
            assert (moved["type"], moved["to_state"], moved["actor"]) == ("UnitMoved", "acknowledged", "officer-17")

            # The same report again (a device's retry) makes no second incident.
            await publish(broker.url, t.reports, {"report_id": "mq-1", **FIVE_WAY})
            stats = await rig.until("/api/v1/mqtt/stats", lambda b: b["received"].get("reports_repeated") == 1)
        assert stats["received"]["reports_created"] == 1
        assert stats["officers_reporting"] == 1
        incident = rig.get(f"/api/v1/incidents/{incident_id}")
        assert incident["report_id"] == "mq-1"
        assert {a["team"]: a["state"] for a in incident["assignments"]}["traffic-police"] == "acknowledged"
        assert rig.get("/api/v1/incidents")["count"] == 1
    finally:
        server.stop()


async def test_each_bad_payload_lands_on_deadletter_and_is_acknowledged(
    broker: Broker, sqlite_url: str, tmp_path: Path
) -> None:
    rig = Rig(broker, sqlite_url, tmp_path, DISPATCHER_MQTT_MAX_PAYLOAD_BYTES="4096")
    rig.start()
    t = rig.topics
    bad: list[tuple[str, bytes, str]] = [
        (t.reports, b"{not json", "not_json"),
        (t.reports, orjson.dumps({"report_id": "b-1", "description": "no place"}), "schema"),
        (t.reports, orjson.dumps({"report_id": "b-2", **FIVE_WAY, "description": "x" * 5000}), "too_large"),
        (t.reports, orjson.dumps({"report_id": "b-3", **FIVE_WAY, "zone": "moon"}), "unknown_zone"),
        (
            t.officer_status("o-1"),
            orjson.dumps({"officer_id": "o-2", "status": "available", "lat": 1, "lon": 1}),
            "officer_mismatch",
        ),
        (
            t.officer_acks("o-1"),
            orjson.dumps({"officer_id": "o-2", "incident_id": 1, "team": "traffic-police", "action": "acknowledge"}),
            "officer_mismatch",
        ),
        (
            t.officer_acks("o-1"),
            orjson.dumps({"incident_id": 999, "team": "traffic-police", "action": "acknowledge"}),
            "refused",
        ),
    ]
    try:
        await rig.until("/readyz", lambda b: b["mqtt"] == "connected")
        base = rig.get("/api/v1/events")["last_seq"]  # the rule table put in force at first start
        async with watching(broker.url, t.deadletter) as seen:
            async with client(broker.url) as device:
                for topic, payload, _ in bad:
                    await device.publish(topic, payload, qos=1)
            await seen.wait_for(lambda: len(seen.messages) == len(bad))
        letters = [body for _, body in seen.messages]
        assert sorted((d["topic"], d["reason"]) for d in letters) == sorted((topic, reason) for topic, _, reason in bad)
        assert all(d["detail"] for d in letters)
        # The problem codes the HTTP API would answer: an unknown incident is not-found there too.
        codes = {"not_json": "invalid", "schema": "invalid", "too_large": "too-large", "unknown_zone": "invalid"}
        codes |= {"officer_mismatch": "forbidden", "refused": "not-found"}
        assert all(d["code"] == codes[d["reason"]] for d in letters), letters
        stats = rig.get("/api/v1/mqtt/stats")
        assert stats["dead_letters"] == {
            "not_json": 1,
            "schema": 1,
            "too_large": 1,
            "unknown_zone": 1,
            "officer_mismatch": 2,
            "refused": 1,
        }
        assert rig.get("/api/v1/incidents")["count"] == 0  # nothing half-created
        assert rig.get("/api/v1/events")["last_seq"] == base

        # They were acknowledged: a restarted dispatcher (same session) does not get them again.
        assert rig.server is not None
        rig.server.stop()
        rig.start()
        await publish(broker.url, t.reports, {"report_id": "good-1", **FIVE_WAY})
        after = await rig.until("/api/v1/mqtt/stats", lambda b: b["received"].get("reports_created") == 1)
        assert after["dead_letters"] == {}
    finally:
        assert rig.server is not None
        rig.server.stop()


async def test_a_report_the_store_cannot_hold_goes_to_deadletter_once_and_the_next_is_taken(
    broker: Broker, database_url: str, tmp_path: Path
) -> None:
    # On PostgreSQL a NUL in a report failed every commit it rode in: the gateway retried it for ever.
    rig = Rig(broker, database_url, tmp_path)
    rig.start()
    t = rig.topics
    try:
        await rig.until("/readyz", lambda b: b["mqtt"] == "connected")
        async with watching(broker.url, t.deadletter) as seen:
            await publish(
                broker.url,
                t.reports,
                {"report_id": "nul-1", **FIVE_WAY, "description": "拥堵\u0000"},
                {"report_id": "good-1", **FIVE_WAY},
            )
            await seen.wait_for(lambda: len(seen.messages) == 1)
            stats = await rig.until("/api/v1/mqtt/stats", lambda b: b["received"].get("reports_created") == 1)
        [(_, letter)] = seen.messages
        assert (letter["topic"], letter["reason"]) == (t.reports, "schema")
        assert "description" in letter["detail"] and "NUL" in letter["detail"], letter["detail"]
        assert stats["dead_letters"] == {"schema": 1}
        listed = rig.get("/api/v1/incidents")["data"]
        assert [i["report_id"] for i in listed] == ["good-1"]
    finally:
        assert rig.server is not None
        rig.server.stop()


async def test_reports_published_while_the_dispatcher_is_down_are_taken_when_it_returns(
    broker: Broker, sqlite_url: str, tmp_path: Path
) -> None:
    rig = Rig(broker, sqlite_url, tmp_path)
    first = rig.start()
    await rig.until("/readyz", lambda b: b["mqtt"] == "connected")  # the broker now holds its session
    first.stop()
    await publish(broker.url, rig.topics.reports, *({"report_id": f"down-{n}", **FIVE_WAY} for n in range(5)))
    rig.start()
    try:
        listing = await rig.until("/api/v1/incidents", lambda b: b["count"] == 5)
        assert sorted(i["report_id"] for i in listing["data"]) == [f"down-{n}" for n in range(5)]
    finally:
        assert rig.server is not None
        rig.server.stop()


async def _publish_surviving_restarts(
    url: str, topic: str, payloads: list[bytes], restart_at: int, restart: Any
) -> int:
    """Publish each payload at QoS 1 until the broker acknowledged it; restart the broker midway.

    Returns how many publishes had to be repeated (each repeat is a possible duplicate).
    """
    repeated = 0
    identifier = unique("publisher")
    n = 0
    async with asyncio.timeout(90):
        while n < len(payloads):
            try:
                async with client(url, identifier=identifier) as device:
                    while n < len(payloads):
                        if n == restart_at:
                            restart_at = -1
                            await asyncio.to_thread(restart)
                        await device.publish(topic, payloads[n], qos=1, timeout=5)
                        n += 1
            except aiomqtt.MqttError:
                repeated += 1
                await asyncio.sleep(0.1)
    return repeated


async def test_a_broker_restart_in_a_stream_of_1000_reports_loses_and_doubles_none(
    broker: Broker, sqlite_url: str, tmp_path: Path
) -> None:
    rig = Rig(broker, sqlite_url, tmp_path)
    rig.start()
    wanted = [f"stream-{n:04d}" for n in range(1000)]
    payloads = [orjson.dumps({"report_id": r, **FIVE_WAY}) for r in wanted]

    def restart() -> None:
        broker.stop()
        broker.start()

    try:
        await rig.until("/readyz", lambda b: b["mqtt"] == "connected")
        await _publish_surviving_restarts(broker.url, rig.topics.reports, payloads, 400, restart)
        await rig.until("/api/v1/incidents?limit=1", lambda b: b["count"] >= 1000, timeout_s=60)
        stored = [
            i["report_id"]
            for offset in (0, 500)
            for i in rig.get(f"/api/v1/incidents?limit=500&offset={offset}")["data"]
        ]
        assert rig.get("/api/v1/incidents?limit=1")["count"] == 1000
        assert sorted(stored) == wanted
        stats = rig.get("/api/v1/mqtt/stats")
        assert stats["received"]["connects"] >= 2  # it did lose the broker and come back
        assert stats["received"]["reports_created"] == 1000
    finally:
        assert rig.server is not None
        rig.server.stop()


async def test_the_outbox_resends_from_its_cursor_after_a_crash_without_gaps(
    broker: Broker, sqlite_url: str, tmp_path: Path
) -> None:
    rig = Rig(broker, sqlite_url, tmp_path)
    first = rig.start()
    seqs: list[int] = []
    try:
        ready = await rig.until("/readyz", lambda b: b["mqtt"] == "connected")
        # The rule table put in force at first start is logged before any incident (it may have gone
        # out before this watcher subscribed): the incidents' events are counted after it.
        base = ready["last_seq"]
        async with watching(broker.url, rig.topics.board_events) as seen:
            async with first.client() as http:
                for n in range(10):
                    (await http.post("/api/v1/incidents", json={"report_id": f"o-{n}", **FIVE_WAY})).raise_for_status()
            await seen.wait_for(lambda: {b["seq"] for _, b in seen.messages} >= set(range(base + 1, base + 21)))
            seqs += [body["seq"] for _, body in seen.messages]

        # The broker goes away: HTTP intake goes on, readiness holds, the notices wait in the log.
        broker.stop()
        await rig.until("/readyz", lambda b: b["mqtt"] == "down")
        async with first.client() as http:
            for n in range(10, 25):
                (await http.post("/api/v1/incidents", json={"report_id": f"o-{n}", **FIVE_WAY})).raise_for_status()
            ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        last_seq = ready.json()["last_seq"]
        assert last_seq == base + 50
        first.kill_hard()  # nothing after the commits ever reached the broker, and no clean shutdown

        broker.start()
        async with watching(broker.url, rig.topics.board_events) as seen:
            rig.start()
            await seen.wait_for(lambda: {b["seq"] for _, b in seen.messages} >= set(range(base + 21, last_seq + 1)))
            seqs += [body["seq"] for _, body in seen.messages]
        assert {s for s in seqs if s > base} == set(range(base + 1, last_seq + 1))  # every seq at least once, no gap
    finally:
        assert rig.server is not None
        rig.server.stop()
