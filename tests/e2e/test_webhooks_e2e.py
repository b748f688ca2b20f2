"""Webhooks through real sockets: a receiver that is down while reports arrive and the dispatcher is killed.

The dispatcher is a real ``dispatcher serve`` process; the receiver is a real HTTP server process
(``tests/e2e/webhook_receiver.py``) that verifies every signature with the Standard Webhooks package
and deduplicates by ``webhook-id``. Nothing is lost and nothing is doubled: the receiver ends with
exactly the subscribed events of the log, in ``seq`` order.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess, free_port

pytestmark = pytest.mark.e2e

#: Quick retries so the test's outage is short; the delivery code is the same as with the defaults.
FAST_RETRIES = {**PLAIN, "DISPATCHER_WEBHOOK_FIRST_BACKOFF_S": "0.05", "DISPATCHER_WEBHOOK_MAX_BACKOFF_S": "0.4"}
TYPES = ["IncidentReported", "UnitMoved"]


@contextmanager
def receiver(port: int, secret: str, log_path: Path) -> Iterator[str]:
    command = [sys.executable, "-m", "tests.e2e.webhook_receiver", str(port), secret]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/received", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the receiver did not start:\n{log_path.read_text()}") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _until(condition: Any, what: str, timeout_s: float = 60.0) -> Any:
    """Ask ``condition`` until it answers something true (bounded): the thing itself, asked again."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = condition()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout_s} s: {what}")
        time.sleep(0.05)


def _report(n: int) -> dict[str, Any]:
    return {
        "report_id": f"hook-{n:03d}",
        "category": "market.unlicensed_vendor",
        "zone": "market",
        "description": f"占道经营 {n}",
        "reporter": "13800001234",
    }


def test_a_receiver_down_while_the_dispatcher_is_killed_gets_every_event_once_in_order(
    database_url: str, tmp_path: Path
) -> None:
    server = ServerProcess(database_url, tmp_path / "server.log", env=FAST_RETRIES).start()
    hook_port = free_port()
    while hook_port == server.port:  # two free ports asked one after the other may be the same
        hook_port = free_port()
    try:
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=10) as http:
            made = http.post(
                "/api/v1/webhooks",
                json={"url": f"http://127.0.0.1:{hook_port}/hook", "event_types": TYPES, "description": "county"},
            )
            assert made.status_code == 201, made.text
            subscription = made.json()
            secret = subscription["secret"]
            assert secret.startswith("whsec_")
            assert "secret" not in http.get(f"/api/v1/webhooks/{subscription['id']}").json()  # shown once

            for n in range(12):
                answer = http.post("/api/v1/incidents", json=_report(n))
                assert answer.status_code == 201, answer.text
                if n % 3 == 0:
                    incident = answer.json()
                    team = incident["assignments"][0]["team"]
                    moved = http.post(f"/api/v1/incidents/{incident['id']}/assignments/{team}/acknowledge")
                    assert moved.status_code == 200, moved.text

            failed = _until(
                lambda: [
                    a
                    for a in http.get(f"/api/v1/webhooks/{subscription['id']}/deliveries").json()["data"]
                    if not a["ok"]
                ],
                "a failed attempt while the receiver is down",
            )
            assert "ConnectError" in failed[0]["error"]

        server.kill_hard()  # the receiver is still down: the cursor must survive
        server.start()
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=10) as http:
            http.post("/api/v1/incidents", json=_report(99)).raise_for_status()  # one more after the restart
            events = http.get("/api/v1/events", params={"limit": 5000}).json()["data"]
            expected = [f"evt_ershili_{e['seq']}" for e in events if e["type"] in TYPES]
            assert len(expected) == 13 + 4

            with receiver(hook_port, secret, tmp_path / "receiver.log") as url:
                kept = _until(
                    lambda: (
                        (k := httpx.get(f"{url}/received", timeout=5).json()) and len(k["ids"]) >= len(expected) and k
                    ),
                    f"{len(expected)} events at the receiver",
                )
                # The receiver answers before the dispatcher records the delivery: wait for the record too.
                state = _until(
                    lambda: (
                        (st := http.get(f"/api/v1/webhooks/{subscription['id']}").json())["delivered_seq"]
                        >= max(e["seq"] for e in events if e["type"] in TYPES)
                        and st
                    ),
                    "the last delivery recorded",
                )
                log = http.get(f"/api/v1/webhooks/{subscription['id']}/deliveries", params={"limit": 1000}).json()
    finally:
        server.stop()

    assert kept["ids"] == expected  # every subscribed event, in seq order, nothing else
    assert kept["refused"] == 0  # every signature verified
    assert kept["duplicates"] == 0
    assert {b["type"] for b in kept["bodies"]} == set(TYPES)
    assert all(b["data"]["event"].get("reporter") in (None, "***") for b in kept["bodies"])  # masked by default
    assert state["delivered_seq"] >= max(e["seq"] for e in events if e["type"] in TYPES)
    assert state["failing_since"] is None and state["enabled"]
    delivered = [a for a in log["data"] if a["ok"]]
    assert sorted(a["webhook_id"] for a in delivered) == sorted(expected)
