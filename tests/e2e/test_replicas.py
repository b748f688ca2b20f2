"""Replicas on one PostgreSQL: real ``dispatcher serve`` processes sharing a county's townships by leases.

Reports go to every replica by HTTP (a township served elsewhere is carried to its owner); the owner of
``ershili`` dies (kill -9) or is paused (SIGSTOP) mid-stream. Every report answered 201/200 is stored exactly
once, the acknowledgement deadline that passes during the switch fires once, and a paused owner that wakes
after losing its lease writes nothing. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import _asyncpg_dsn
from tests.e2e.county import County, owner_of, serves, settled, until
from tests.e2e.server import ServerProcess, free_port
from tests.e2e.test_webhooks_e2e import FAST_RETRIES, receiver
from tests.mqtt_broker import Broker, Collector, client, unique

# Three processes started one after the other, a failover of a few seconds, then a stop: more than the default.
pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(600)]


def _report(report_id: str) -> dict[str, str]:
    return {"report_id": report_id, "category": "order.noise", "zone": "square", "description": "广场噪音"}


@pytest.fixture
async def county(tmp_path: Path) -> AsyncIterator[County]:
    made = County(tmp_path, 4)
    try:
        yield await made.create()
    finally:
        await made.drop()


async def _replicas(
    stack: AsyncExitStack, county: County, ids: list[str], env: dict[str, str] | None = None
) -> list[ServerProcess]:
    """Started one after the other (the first one creates the county's tables), each settled."""
    started: list[ServerProcess] = []
    stack.callback(_stop_all, started)
    for replica_id in ids:
        replica = county.replica(replica_id, env=env)
        await asyncio.to_thread(replica.start, 180.0)
        started.append(replica)
    await until(lambda: all(settled(r) for r in started), "every replica settled", 60)
    return started


def _mqtt_ready(replica: ServerProcess) -> bool:
    """Every MQTT gateway of the replica connected and subscribed (by its /readyz)."""
    try:
        return bool(httpx.get(f"{replica.base_url}/readyz", timeout=2).json().get("mqtt") == "connected")
    except (httpx.HTTPError, ValueError):
        return False


async def _all_stored(county: County, report_ids: dict[str, list[str]], timeout_s: float = 60.0) -> None:
    """Wait (bounded) until every report of ``report_ids`` is in its township's database."""
    deadline = time.monotonic() + timeout_s
    for township, wanted in report_ids.items():
        while True:
            rows = await _rows(county.urls[township], "SELECT report_id FROM incident")
            missing = set(wanted) - {r["report_id"] for r in rows}
            if not missing:
                break
            assert time.monotonic() < deadline, f"{township}: never stored {sorted(missing)}"
            await asyncio.sleep(0.2)


async def _send(
    http: httpx.AsyncClient, replicas: list[ServerProcess], first: int, township: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Post until answered 201/200, starting at ``replicas[first]`` and moving on after a 503 or no answer."""
    deadline = time.monotonic() + 60
    turn = first
    while time.monotonic() < deadline:
        replica = replicas[turn % len(replicas)]
        turn += 1
        try:
            answer = await http.post(
                f"{replica.base_url}/api/v1/incidents", params={"township": township}, json=body, timeout=10
            )
        except httpx.TransportError:
            continue
        if answer.status_code in (200, 201):
            return answer.status_code, answer.json()
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"]
        await asyncio.sleep(0.2)
    raise AssertionError(f"report {body['report_id']} not taken within 60 s")


async def _rows(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def _deadline_misses(url: str, incident_id: int) -> Counter[str]:
    rows = await _rows(url, "SELECT payload FROM event WHERE type = 'DeadlineMissed' AND incident_id = $1", incident_id)
    return Counter(str(r["payload"]) for r in rows)


async def _missed_once_per_team(county: County, incident: dict[str, Any]) -> None:
    teams = len(incident["assignments"])
    url = county.urls["ershili"]

    async def fired() -> bool:
        return len(await _deadline_misses(url, incident["id"])) >= teams

    deadline = time.monotonic() + 30
    while not await fired():
        assert time.monotonic() < deadline, "the missed acknowledgement deadline never fired"
        await asyncio.sleep(0.2)
    misses = await _deadline_misses(url, incident["id"])
    assert len(misses) == teams and set(misses.values()) == {1}, misses


async def _stored_once(county: County, answered: dict[str, list[str]]) -> None:
    for township, report_ids in answered.items():
        rows = await _rows(county.urls[township], "SELECT report_id, count(*) AS n FROM incident GROUP BY report_id")
        stored = {r["report_id"]: r["n"] for r in rows}
        assert {r: stored.get(r) for r in report_ids} == dict.fromkeys(report_ids, 1), township
        assert set(stored) == set(report_ids), f"{township}: stored without an answer"
        seqs = [r["seq"] for r in await _rows(county.urls[township], "SELECT seq FROM event ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1)), f"{township}: a gap or a repeat in the log"


async def test_kill_9_of_the_owner_of_ershili_loses_no_report_and_fires_its_deadline_once(
    county: County, broker: Broker
) -> None:
    """Reports by HTTP (answered 201/200) and by MQTT (QoS 1, acknowledged by the broker: PUBACK) spread over three
    replicas on one Mosquitto of the test's own; the owner of ershili is killed mid-stream. Every acknowledged report
    is stored once, and the township's notices on ``board/events`` go on from where the dead owner left them."""
    async with AsyncExitStack() as stack:
        env = {"DISPATCHER_MQTT_URL": broker.url, "DISPATCHER_MQTT_CLIENT_ID": unique("d"), **FAST_RETRIES}
        replicas = await _replicas(stack, county, ["a", "b", "c"], env)
        await until(lambda: all(_mqtt_ready(r) for r in replicas), "every replica's MQTT gateways subscribed", 60)
        assert sorted(t for r in replicas for t in serves(r) or []) == county.ids  # spread, each once
        assert all(serves(r) for r in replicas)
        owner = owner_of("ershili", replicas)
        assert owner is not None
        headers = replicas[0].headers  # the county administrator: signed in on a, used on every replica
        hook = await _webhook(stack, county, next(r for r in replicas if r is not owner))
        board = await _Board.open(stack, next(r for r in replicas if r is not owner), "ershili")
        answered: dict[str, list[str]] = {t: [] for t in county.ids}
        acked: dict[str, list[str]] = {t: [] for t in county.ids}  # published over MQTT, PUBACK received
        killed = asyncio.Event()
        late: dict[str, Any] = {}
        notices = Collector()
        listener = await stack.enter_async_context(client(broker.url))
        await listener.subscribe("township/+/board/events", qos=1)
        collecting = asyncio.create_task(notices.run(listener))
        stack.callback(collecting.cancel)
        device = await stack.enter_async_context(client(broker.url))

        async def publish() -> None:
            """QoS 1 reports of every township, before, across and after the kill (bounded: 60 of them)."""
            for n in range(60):
                township = county.ids[n % len(county.ids)]
                body = {**_report(f"m-{n}"), "reporter": "officer-1", "reporter_kind": "officer"}
                await device.publish(f"township/{township}/reports", orjson.dumps(body), qos=1)  # returns on PUBACK
                acked[township].append(f"m-{n}")
                await asyncio.sleep(0.05)  # a pace, not a synchronisation: spreads them over the switch

        async with httpx.AsyncClient(headers=headers) as http:
            publishing = asyncio.create_task(publish())

            async def stream(worker: int) -> None:
                for n in range(25):
                    township = county.ids[(worker + n) % len(county.ids)]
                    report_id = f"w{worker}-{n}"
                    await _send(http, replicas, worker + n, township, _report(report_id))
                    answered[township].append(report_id)
                    if worker == 0 and n == 6:
                        # Its acknowledgement deadline (2 s) passes while nobody serves ershili.
                        survivor = next(r for r in replicas if r is not owner)
                        # Retried after a 503: on a loaded machine a late heartbeat may move a lease meanwhile.
                        status, body = await _send(http, [survivor], 0, "ershili", _report("late"))
                        assert status == 201, body
                        late.update(body)
                        answered["ershili"].append("late")
                        assert owner is not None
                        await asyncio.to_thread(owner.kill_hard)
                        killed.set()

            await asyncio.wait_for(asyncio.gather(*(stream(w) for w in range(4)), publishing), 180)
        assert killed.is_set()
        survivors = [r for r in replicas if r is not owner]
        await until(lambda: owner_of("ershili", survivors) is not None, "ershili served again", 30)
        await until(lambda: all(settled(r) for r in survivors), "the survivors settled", 30)
        assert sorted(t for r in survivors for t in serves(r) or []) == county.ids
        await _missed_once_per_team(county, late)
        await _all_stored(county, acked)  # the dead replica's share too: a survivor adopted its broker sessions
        await _stored_once(county, {t: answered[t] + acked[t] for t in county.ids})
        await _notices_without_gap(county, notices, "ershili")
        await _every_report_delivered(county, hook, "ershili")
        await board.saw_once_in_order(answered["ershili"] + acked["ershili"])


class _Board:
    """A board's websocket on a replica, read all along (a task keeps every frame)."""

    def __init__(self, socket: Any, snapshot_seq: int) -> None:
        self.snapshot_seq = snapshot_seq
        self.events: list[dict[str, Any]] = []
        self.closed: str | None = None
        self._socket = socket

    @classmethod
    async def open(cls, stack: AsyncExitStack, replica: ServerProcess, township: str) -> _Board:
        import websockets

        socket = await stack.enter_async_context(
            websockets.connect(f"{replica.ws_url}?township={township}", additional_headers=replica.headers)
        )
        frame = orjson.loads(await asyncio.wait_for(socket.recv(), 30))
        assert frame["kind"] == "snapshot", frame
        board = cls(socket, int(frame["seq"]))  # pages of it may follow; then the live events after this seq
        reading = asyncio.create_task(board._read())
        stack.callback(reading.cancel)
        return board

    async def _read(self) -> None:
        try:
            async for raw in self._socket:
                frame = orjson.loads(raw)
                if frame.get("kind") == "event":
                    self.events.append(frame)
        except Exception as exc:  # noqa: BLE001 - kept for the assertion: the board must not be dropped
            self.closed = repr(exc)
        else:
            self.closed = "closed"

    def reported(self) -> list[str]:
        return [e["data"]["report_id"] for e in self.events if e["type"] == "IncidentReported"]

    async def saw_once_in_order(self, report_ids: list[str]) -> None:
        """Every report reached the board once, and every event after the snapshot once, in ``seq`` order."""
        deadline = time.monotonic() + 30
        while not set(self.reported()) >= set(report_ids):
            assert self.closed is None, f"the board was closed: {self.closed}"
            assert time.monotonic() < deadline, f"the board saw {len(self.reported())} of {len(report_ids)} reports"
            await asyncio.sleep(0.1)
        assert sorted(self.reported()) == sorted(report_ids)
        seen = [int(e["seq"]) for e in self.events]
        assert seen == list(range(self.snapshot_seq + 1, self.snapshot_seq + 1 + len(seen)))  # in order, once


async def _webhook(stack: AsyncExitStack, county: County, replica: ServerProcess) -> str:
    """A subscription to ershili's reports from seq 0, made on ``replica`` (carried to the owner), and its receiver
    (a process of its own, verifying signatures and keeping each webhook-id once): the receiver's URL."""
    port = free_port()
    async with httpx.AsyncClient(headers=replica.headers, timeout=10) as http:
        made = await http.post(
            f"{replica.base_url}/api/v1/webhooks",
            params={"township": "ershili"},
            json={"url": f"http://127.0.0.1:{port}/hook", "event_types": ["IncidentReported"], "from_seq": 0},
        )
    assert made.status_code == 201, made.text
    return stack.enter_context(receiver(port, made.json()["secret"], county.folder / "receiver.log"))


async def _every_report_delivered(county: County, hook: str, township: str) -> None:
    """Every IncidentReported of the township's log reached the receiver (whichever replica held the lease; a copy
    sent again after the switch is counted as a duplicate by the receiver, never refused)."""
    rows = await _rows(county.urls[township], "SELECT seq FROM event WHERE type = 'IncidentReported'")
    expected = {f"evt_{township}_{r['seq']}" for r in rows}

    def kept() -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(f"{hook}/received", timeout=5).json()
        return answer

    await until(lambda: set(kept()["ids"]) >= expected, "every report delivered to the webhook", 60)
    final = kept()
    assert set(final["ids"]) == expected and final["refused"] == 0, final


async def _notices_without_gap(county: County, notices: Collector, township: str) -> None:
    """Every event of ``township`` after the first notice seen reached ``board/events`` (some twice at most, after
    the switch: at least once), whichever replica's outbox published it."""
    last = (await _rows(county.urls[township], "SELECT max(seq) AS last FROM event"))[0]["last"]
    topic = f"township/{township}/board/events"

    def seqs() -> set[int]:
        return {int(body["seq"]) for body in notices.on(topic)}

    await notices.wait_for(lambda: bool(seqs()) and max(seqs()) >= last, 30)
    seen = seqs()
    assert seen >= set(range(min(seen), last + 1)), sorted(set(range(min(seen), last + 1)) - seen)


async def test_a_paused_owner_that_wakes_after_losing_its_lease_writes_nothing(county: County) -> None:
    async with AsyncExitStack() as stack:
        replicas = await _replicas(stack, county, ["a", "b"])
        owner = owner_of("ershili", replicas)
        assert owner is not None and owner.process is not None
        other = next(r for r in replicas if r is not owner)
        async with httpx.AsyncClient(headers=replicas[0].headers) as http:
            answer = await http.post(
                f"{owner.base_url}/api/v1/incidents", params={"township": "ershili"}, json=_report("late"), timeout=10
            )
            assert answer.status_code == 201, answer.text
            late = answer.json()
            owner.process.send_signal(signal.SIGSTOP)
            stack.callback(_wake, owner)
            # A report sent to the paused owner on a new connection waits in its listening socket; it is read
            # when the owner wakes. (A kept-alive connection would be closed by its idle timeout at the wake.)
            fresh = await stack.enter_async_context(httpx.AsyncClient(headers=replicas[0].headers))
            to_paused = asyncio.create_task(
                fresh.post(
                    f"{owner.base_url}/api/v1/incidents",
                    params={"township": "ershili"},
                    json=_report("to-the-paused"),
                    timeout=60,
                )
            )
            await until(lambda: "ershili" in (serves(other) or []), "the other replica took ershili", 30)
            status, _ = await _send(http, [other], 0, "ershili", _report("after"))
            assert status == 201
            await _missed_once_per_team(county, late)  # fired by the new owner, at its start
            owner.process.send_signal(signal.SIGCONT)
            woken = await asyncio.wait_for(to_paused, 60)
            await until(lambda: "ershili" not in (serves(owner) or ["ershili"]), "the woken owner gave up", 30)
        assert woken.status_code in (201, 503), woken.text  # carried to the new owner, or refused: never both
        answered = {"ershili": ["late", "after"] + (["to-the-paused"] if woken.status_code == 201 else [])}
        answered |= {t: [] for t in county.ids[1:]}
        await _missed_once_per_team(county, late)
        await _stored_once(county, answered)
        log = owner.log_path.read_text(encoding="utf-8")
        assert "township ershili: lease epoch" in log and "lost" in log


def _stop_all(replicas: list[ServerProcess]) -> None:
    """All at once: stopped one by one, each would hand its townships to the next one to stop."""
    for replica in replicas:
        if replica.process is not None and replica.process.poll() is None:
            replica.process.send_signal(signal.SIGCONT)
            replica.process.terminate()
    for replica in replicas:
        replica.stop()


def _wake(replica: ServerProcess) -> None:
    if replica.process is not None and replica.process.poll() is None:
        replica.process.send_signal(signal.SIGCONT)


async def test_a_board_on_a_replica_not_serving_the_township_sees_its_events_once_in_order(county: County) -> None:
    """The board's replica does not hold ershili's lease: it follows ershili's event log (NOTIFY + table)."""
    import orjson
    import websockets

    async with AsyncExitStack() as stack:
        replicas = await _replicas(stack, county, ["a", "b"])
        owner = owner_of("ershili", replicas)
        assert owner is not None
        other = next(r for r in replicas if r is not owner)
        headers = replicas[0].headers
        async with (
            httpx.AsyncClient(headers=headers) as http,
            websockets.connect(f"{other.ws_url}?township=ershili", additional_headers=headers) as board,
        ):
            frame = orjson.loads(await asyncio.wait_for(board.recv(), 30))
            assert frame["kind"] == "snapshot", frame
            snapshot_seq = int(frame["seq"])  # pages of it may follow; then the live events after this seq
            sent = [f"board-{n}" for n in range(8)]
            for n, report_id in enumerate(sent):  # to either replica: the other one carries it to the owner
                status, _ = await _send(http, replicas, n, "ershili", _report(report_id))
                assert status == 201
            seen: list[int] = []
            reported: list[str] = []
            deadline = time.monotonic() + 30
            while len(reported) < len(sent):
                assert time.monotonic() < deadline, f"the board saw {reported} of {sent}"
                frame = orjson.loads(await asyncio.wait_for(board.recv(), 30))
                if frame.get("kind") != "event":
                    continue
                seen.append(int(frame["seq"]))
                if frame["type"] == "IncidentReported":
                    reported.append(frame["data"]["report_id"])
            assert sorted(reported) == sorted(sent)
            assert seen == list(range(snapshot_seq + 1, snapshot_seq + 1 + len(seen)))  # in order, once, no gap


async def test_open311_and_cap_requests_for_another_replicas_township_are_carried_to_it(county: County) -> None:
    """A citizen app's Open311 report (form fields, its key among them), the services list, a CAP notice issued and
    its public feed: all sent to the replica that does not serve ershili, answered by the one that does."""
    from tests.e2e.test_cap_e2e import ROAD_CLOSED

    async with AsyncExitStack() as stack:
        replicas = await _replicas(stack, county, ["a", "b"])
        owner = owner_of("ershili", replicas)
        assert owner is not None
        other = next(r for r in replicas if r is not owner)
        async with httpx.AsyncClient(headers=replicas[0].headers, timeout=10) as admin:
            made = await admin.post(
                f"{other.base_url}/api/v1/accounts", json={"name": "app", "role": "citizen_app", "township": "ershili"}
            )
            assert made.status_code == 201, made.text
            issued = await admin.post(f"{other.base_url}/api/v1/accounts/app/tokens", json={"label": "open311 key"})
            assert issued.status_code == 201, issued.text
            key = issued.json()["token"]
            fields = {"api_key": key, "service_code": "order.noise", "address_string": "square", "description": "吵"}
            async with httpx.AsyncClient(timeout=10) as app:
                report = await app.post(f"{other.base_url}/open311/v2/requests.json", data=fields)
                assert report.status_code == 201, report.text
                services = await app.get(f"{other.base_url}/open311/v2/services.json?jurisdiction_id=ershili")
                assert services.status_code == 200, services.text
                assert services.json() == (await app.get(f"{owner.base_url}/open311/v2/services.json")).json()
            area = {"zone": "square"}  # the quick table's only zone
            notice = await admin.post(
                f"{other.base_url}/api/v1/alerts", params={"township": "ershili"}, json={**ROAD_CLOSED, "area": area}
            )
            assert notice.status_code == 201, notice.text
            async with httpx.AsyncClient(timeout=10) as anybody:
                feed = await anybody.get(f"{other.base_url}/cap/feed.xml", params={"township": "ershili"})
            assert feed.status_code == 200 and notice.json()["identifier"] in feed.text, feed.text
        stored = await _rows(county.urls["ershili"], "SELECT reporter_kind, category FROM incident")
        assert [(r["reporter_kind"], r["category"]) for r in stored] == [("citizen", "order.noise")]
        alerts = await _rows(county.urls["ershili"], "SELECT count(*) AS n FROM event WHERE type = 'AlertIssued'")
        assert alerts[0]["n"] == 1


async def test_a_board_on_the_hub_of_a_township_handed_over_is_told_to_resume_from_the_log(county: County) -> None:
    """A third replica joins and takes a township from the replica its boards were on: those boards are closed with
    4008 and the seq to resume from, not left on a hub that stopped."""
    import websockets

    async with AsyncExitStack() as stack:
        replicas = await _replicas(stack, county, ["a", "b"])
        moving = "q04"  # 4 townships on 2, then on 3: the last one of the second replica goes to the newcomer
        holder = owner_of(moving, replicas)
        assert holder is not None
        async with websockets.connect(
            f"{holder.ws_url}?township={moving}", additional_headers=holder.headers
        ) as socket:
            frame = orjson.loads(await asyncio.wait_for(socket.recv(), 30))
            assert frame["kind"] == "snapshot", frame
            replicas += await _replicas(stack, county, ["c"])
            await until(lambda: owner_of(moving, replicas) not in (None, holder), f"{moving} moved", 60)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(30):
                    while True:
                        await socket.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008, closed.value
        assert "since" in closed.value.rcvd.reason, closed.value.rcvd.reason
