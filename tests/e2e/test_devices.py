"""The device simulator against a real Mosquitto and a real dispatcher: phones work their tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulations.devices import DeviceConfig, run_devices
from tests.e2e.test_mqtt import Rig, sqlite_url  # noqa: F401 - fixtures
from tests.mqtt_broker import Broker

pytestmark = pytest.mark.e2e


async def test_simulated_phones_acknowledge_and_resolve_what_they_are_sent(
    broker: Broker,
    sqlite_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    rig = Rig(broker, sqlite_url, tmp_path)
    rig.start()
    try:
        await rig.until("/readyz", lambda b: b["mqtt"] == "connected")
        config = DeviceConfig(
            mqtt_url=broker.url,
            prefix=rig.topics.prefix,
            officers=5,  # one for each of the five teams the five-way rule sends
            duration_s=60,
            reports=3,
            report_kinds=(("traffic.congestion", "five-way"),),
            report_within_s=1.0,
            ack_median_s=0.05,
            step_s=0.02,
            position_every_s=0.5,
            stop_after_resolved=15,
            seed=7,
        )
        summary = await run_devices(config)
        assert (summary.reports, summary.tasks_taken, summary.resolved) == (3, 15, 15)
        # Every team resolved: the five-way rule asks for verification (核查), so each waits for its verifier.
        listing = await rig.until("/api/v1/incidents?status=verifying", lambda b: b["count"] == 3)
        assert sorted(i["report_id"] for i in listing["data"]) == sorted(summary.report_ids)
        for incident in listing["data"]:
            assert {a["state"] for a in incident["assignments"]} == {"resolved"}
            moves = [e for e in rig.get(f"/api/v1/incidents/{incident['id']}")["timeline"] if e["type"] == "UnitMoved"]
            assert len(moves) == 20 and all(m["data"]["actor"].startswith("officer-") for m in moves)
        stats = await rig.until("/api/v1/mqtt/stats", lambda b: b.get("officers_reporting") == 5)
        assert stats["dead_letters"] == {}
    finally:
        assert rig.server is not None
        rig.server.stop()
