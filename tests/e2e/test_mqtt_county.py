"""Two dispatcher processes in one MQTT 5 shared subscription group on a real Mosquitto: each report taken once.

Each process has its own database here (both host the township, the single-process default): what is tested is
the wiring of ``DISPATCHER_MQTT_SHARED_GROUP`` through real processes and the broker's split of the messages.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess
from tests.mqtt_broker import Broker, client, unique

pytestmark = pytest.mark.e2e

FIVE_WAY = {"category": "traffic.congestion", "zone": "five-way", "description": "集市日五岔口拥堵"}


def _stats(server: ServerProcess) -> dict[str, Any]:
    answer = httpx.get(server.base_url + "/api/v1/mqtt/stats", timeout=10, headers=server.headers)
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


async def _until(servers: list[ServerProcess], check: Any, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Poll the servers' MQTT stats until ``check(stats)`` holds (bounded); returns the last stats."""
    async with asyncio.timeout(timeout_s):
        while True:
            stats = [await asyncio.to_thread(_stats, s) for s in servers]
            if check(stats):
                return stats
            await asyncio.sleep(0.1)


async def test_two_processes_in_a_shared_group_take_each_report_once(broker: Broker, tmp_path: Path) -> None:
    prefix, group = unique("township/t") + "/", unique("dispatchers")
    servers = []
    try:
        for name in ("a", "b"):
            env = {
                "DISPATCHER_MQTT_URL": broker.url,
                "DISPATCHER_MQTT_PREFIX": prefix,
                "DISPATCHER_MQTT_CLIENT_ID": unique(f"dispatcher-{name}"),
                "DISPATCHER_MQTT_SHARED_GROUP": group,
                "DISPATCHER_GC_FREEZE": "false",
                **PLAIN,
            }
            url = f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}"
            server = ServerProcess(url, tmp_path / f"{name}.log", env=env)
            await asyncio.to_thread(server.start, 120.0)  # a shared machine may take long to start a server
            servers.append(server)
        await _until(servers, lambda stats: all(s["state"] == "connected" for s in stats))
        async with client(broker.url) as device:
            for n in range(40):
                body = {**FIVE_WAY, "report_id": f"shared-{n}"}
                await device.publish(f"{prefix}reports", orjson.dumps(body), qos=1)
        stats = await _until(servers, lambda stats: sum(s["received"].get("reports_created", 0) for s in stats) >= 40)
        taken = [s["received"].get("reports", 0) for s in stats]
        assert sum(taken) == 40 and all(taken), taken  # each report taken by one process, both took some
        assert [s["received"].get("reports_repeated", 0) for s in stats] == [0, 0]
        # The broker's filters are the shared ones: a plain subscription would have given each process all 40.
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)
