"""Dispatch end to end: a real server process on each backend, real time, real sockets.

The quick township (tests/fixtures/quick-township.yaml) promises an acknowledgement within 2 s
and climbs to the party secretary 4 s after a miss, so deadlines pass while the test watches;
its roster has two patrol officers on duty around the clock.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.e2e.server import ServerProcess, free_port

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
QUICK = {
    "DISPATCHER_RULES_PATH": str(FIXTURES / "quick-township.yaml"),
    "DISPATCHER_ROSTER_PATH": str(FIXTURES / "quick-roster.yaml"),
}
NOISE = {"category": "order.noise", "description": "广场舞音响太吵", "location": {"lat": 28.8, "lon": 118.9}}
SMOKE = {"category": "environment.smoke", "description": "砖厂烟囱冒黑烟", "zone": "square"}


def quick_server(database_url: str, log: Path, **env: str) -> ServerProcess:
    return ServerProcess(database_url, log, env={**QUICK, **env})


@pytest.fixture
def quick(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """The quick township with an hour to acknowledge: no deadline passes while this test acts."""
    patient = tmp_path / "patient-township.yaml"
    text = (FIXTURES / "quick-township.yaml").read_text(encoding="utf-8")
    patient.write_text(text.replace("ack_within: 2s", "ack_within: 1h"), encoding="utf-8")
    process = quick_server(database_url, tmp_path / "server.log", DISPATCHER_RULES_PATH=str(patient)).start()
    try:
        yield process
    finally:
        process.stop()


async def timeline(http: httpx.AsyncClient, incident_id: int) -> list[dict[str, Any]]:
    answer = await http.get(f"/api/v1/incidents/{incident_id}")
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["timeline"]
    return events


async def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


async def test_deadlines_that_pass_while_killed_fire_once_with_their_lateness(
    database_url: str, tmp_path: Path
) -> None:
    first = quick_server(database_url, tmp_path / "1.log").start()
    try:
        async with first.client() as http:
            made = (await http.post("/api/v1/incidents", json={**NOISE, "report_id": "k-1"})).json()
    finally:
        first.kill_hard()
    assert made["assignments"][0]["officer"] == "p-1"
    await asyncio.sleep(3)  # the 2 s acknowledgement passes while nothing runs

    second = quick_server(database_url, tmp_path / "2.log").start()
    try:
        async with second.client() as http:

            async def climbed() -> list[dict[str, Any]]:
                events = await timeline(http, made["id"])
                return [e for e in events if e["type"] == "EscalationRaised"]

            # Re-sent to p-2 at start; p-2 lets 2 s pass too: the module lead hears of it.
            await wait_for(climbed, 10, "the first escalation")
    finally:
        second.kill_hard()
    await asyncio.sleep(5)  # the party secretary's step (4 s later) falls due while killed

    third = quick_server(database_url, tmp_path / "3.log").start()
    try:
        async with third.client() as http:

            async def at_the_top() -> bool:
                events = await timeline(http, made["id"])
                return any(e["type"] == "EscalationRaised" and e["data"]["step"] == 2 for e in events)

            await wait_for(at_the_top, 10, "the second escalation")
            await asyncio.sleep(0.5)
            events = await timeline(http, made["id"])
    finally:
        third.stop()

    ack = [e["data"] for e in events if e["data"].get("kind") == "ack"]
    missed = [e for e in ack if "late_by" in e]
    assert len(missed) == 2
    assert missed[0]["late_by"] >= 1.0  # it fell due while the process was dead: fired on start, late
    assigned = [e["data"] for e in events if e["type"] == "OfficerAssigned"]
    assert [(a["officer"], a["previous"], a["reason"]) for a in assigned] == [("p-2", "p-1", "redispatch")]
    raised = [(e["data"]["step"], e["data"]["level"]) for e in events if e["type"] == "EscalationRaised"]
    assert raised == [(1, "module_lead"), (2, "party_secretary")]  # each once, across two kill -9s


async def test_duplicates_returns_overrides_and_the_roster_over_http(quick: ServerProcess) -> None:
    async with quick.client() as http:
        first = await http.post("/api/v1/incidents", json={**NOISE, "report_id": "d-1", "reporter": "张三"})
        second = await http.post(
            "/api/v1/incidents",
            json={**NOISE, "report_id": "d-2", "reporter": "李四", "location": {"lat": 28.8004, "lon": 118.9}},
        )
        assert (first.status_code, second.status_code) == (201, 200)
        assert second.headers["X-Report-Outcome"] == "joined"
        joined = second.json()
        assert joined["id"] == first.json()["id"] and joined["report_count"] == 2
        assert [r["reporter"] for r in joined["reports"]] == ["李四"]
        incident_id = joined["id"]

        no_reason = await http.post(f"/api/v1/incidents/{incident_id}/assignments/patrol/return", json={})
        assert no_reason.status_code == 422 and "reason" in no_reason.text

        stale = await http.post(
            f"/api/v1/incidents/{incident_id}/priority", json={"priority": 1, "actor": "op", "version": 1}
        )
        assert stale.status_code == 409
        version = (await http.get(f"/api/v1/incidents/{incident_id}")).json()["version"]
        moved = await http.post(
            f"/api/v1/incidents/{incident_id}/assignments/patrol/officer",
            json={"officer": "p-2", "actor": "operator:王芳", "version": version},
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["assignments"][0]["officer"] == "p-2"
        units = {u["id"]: u for u in (await http.get("/api/v1/units")).json()["data"]}
        assert (units["p-1"]["tasks"], units["p-2"]["tasks"]) == (0, 1)

        returned = await http.post(
            f"/api/v1/incidents/{incident_id}/assignments/patrol/return",
            json={"actor": "p-2", "reason": "不是巡逻队的事"},
        )
        assert returned.status_code == 200
        assert (returned.json()["status"], returned.json()["routing"]["queue"]) == ("reported", "returned")
        counted = (await http.get("/api/v1/dispatch/returns")).json()
        assert counted["data"] == [{"rule_id": "noise", "returns": 1, "by_team": {"patrol": 1}}]

        # Everyone off duty: the next noise report waits, visibly.
        for officer in ("p-1", "p-2"):
            off = await http.post(f"/api/v1/units/{officer}/status", json={"status": "off_duty"})
            assert off.status_code == 200 and off.json()["on_duty"] is False
        waiting = await http.post(
            "/api/v1/incidents", json={**NOISE, "report_id": "w-1", "location": {"lat": 28.9, "lon": 118.9}}
        )
        assert waiting.json()["assignments"][0]["waiting"] is True
        queue = (await http.get("/api/v1/dispatch/waiting")).json()["data"]
        assert [(q["incident_id"], q["team"]) for q in queue] == [(waiting.json()["id"], "patrol")]
        back = await http.post(
            "/api/v1/units/p-1/status", json={"status": "available", "location": {"lat": 28.9, "lon": 118.9}}
        )
        assert back.json()["tasks"] == 1 and (await http.get("/api/v1/dispatch/waiting")).json()["data"] == []

        bad = await http.put(
            "/api/v1/roster",
            json={
                "roster": 1,
                "version": "x",
                "officers": [{"id": "z-1", "name": "z", "team": "no-such-team", "post": "p"}],
            },
        )
        assert bad.status_code == 422 and "no-such-team" in bad.text
        assert (await http.get("/api/v1/roster")).json()["version"] == "quick-1"  # the old one stands
        added = await http.put(
            "/api/v1/roster/officers/p-3", json={"id": "p-3", "name": "丙", "team": "patrol", "post": "队员"}
        )
        assert added.status_code == 200 and added.json()["version"] == "quick-1+edit.1"
        assert "p-3" in {u["id"] for u in (await http.get("/api/v1/units")).json()["data"]}
        unknown = await http.post("/api/v1/units/nobody/status", json={"status": "available"})
        assert unknown.status_code == 404


class Receiver:
    """A county department's endpoint on 127.0.0.1: answers each POST from a script of status codes."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[str, bytes]] = []
        self.headers: list[dict[str, str]] = []
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line)
        lowered = {k.lower(): v for k, v in headers.items()}
        body = await reader.readexactly(int(lowered.get("content-length", "0")))
        self.requests.append((lowered.get("idempotency-key", ""), body))
        self.headers.append(lowered)
        status = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()


COUNTY_SECRET = "whsec_" + base64.b64encode(b"county-ecology-shared-secret-32b").decode()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver([503, 500, 200]) as found:
        yield found


async def test_county_matters_are_forwarded_with_retries_and_a_delivery_record(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    server = quick_server(
        database_url,
        tmp_path / "server.log",
        DISPATCHER_COUNTY_WEBHOOK_URL=f"http://127.0.0.1:{receiver.port}/handover",
        DISPATCHER_COUNTY_WEBHOOK_SECRET=COUNTY_SECRET,
        DISPATCHER_WEBHOOK_FIRST_BACKOFF_S="0.2",
        DISPATCHER_COUNTY_WEBHOOK_ATTEMPTS="5",
    ).start()
    try:
        async with server.client() as http:
            drill = (await http.post("/api/v1/incidents", json={**SMOKE, "report_id": "s-0", "exercise": True})).json()
            made = (await http.post("/api/v1/incidents", json={**SMOKE, "report_id": "s-1"})).json()
            assert made["routing"]["handover"] == "county-ecology" and made["delivery"]["state"] == "pending"
            assert drill["delivery"] is None  # drills are never forwarded

            async def delivered() -> dict[str, Any] | None:
                found: dict[str, Any] = (await http.get(f"/api/v1/incidents/{made['id']}")).json()
                return found if found["delivery"]["state"] == "delivered" else None

            done = await wait_for(delivered, 15, "the delivery")
            # The hand-over is one webhook subscription: listed, and its delivery log has the three tries.
            (county,) = (await http.get("/api/v1/webhooks")).json()["data"]
            assert county["event_types"] == ["CountyHandover"] and county["url"].endswith("/handover")
            log = (await http.get(f"/api/v1/webhooks/{county['id']}/deliveries")).json()["data"]
            assert [(a["attempt"], a["ok"], a["status_code"]) for a in log] == [
                (3, True, 200),
                (2, False, 500),
                (1, False, 503),
            ]
    finally:
        server.stop()
    assert (done["delivery"]["attempts"], done["delivery"]["last_error"]) == (3, None)
    # Signed per Standard Webhooks with the secret both sides were given; one webhook-id for every try.
    hook = Webhook(COUNTY_SECRET)
    for (_, body), headers in zip(receiver.requests, receiver.headers, strict=True):
        assert hook.verify(body, headers)["data"]["incident_id"] == made["id"]
    assert len({h["webhook-id"] for h in receiver.headers}) == 1
    tries = [e["data"] for e in done["timeline"] if e["type"] == "HandoverAttempted"]
    assert [(t["attempt"], t["ok"], t["status_code"], t["final"]) for t in tries] == [
        (1, False, 503, False),
        (2, False, 500, False),
        (3, True, 200, True),
    ]
    assert [key for key, _ in receiver.requests] == [f"quick-{made['id']}"] * 3
    assert b'"department":"county-ecology"' in receiver.requests[0][1]
    assert b'"type":"CountyHandover"' in receiver.requests[0][1] and b'"gbt_code":null' in receiver.requests[0][1]


async def test_a_delivery_nobody_answers_is_marked_failed_after_the_last_try(database_url: str, tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    server = quick_server(
        database_url,
        tmp_path / "server.log",
        DISPATCHER_COUNTY_WEBHOOK_URL=f"http://127.0.0.1:{closed}/handover",
        DISPATCHER_WEBHOOK_FIRST_BACKOFF_S="0.1",
        DISPATCHER_COUNTY_WEBHOOK_ATTEMPTS="2",
    ).start()
    try:
        async with server.client() as http:
            made = (await http.post("/api/v1/incidents", json={**SMOKE, "report_id": "f-1"})).json()

            async def failed() -> dict[str, Any] | None:
                found: dict[str, Any] = (await http.get(f"/api/v1/incidents/{made['id']}")).json()
                return found if found["delivery"]["state"] == "failed" else None

            done = await wait_for(failed, 15, "the failure")
    finally:
        server.stop()
    assert done["delivery"]["attempts"] == 2 and "ConnectError" in done["delivery"]["last_error"]
