"""The device simulator against a real Mosquitto and a real dispatcher: phones work their tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dispatcher.roster_file import BUNDLED_ROSTER, read_roster
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
            roster=(),  # the dispatcher runs without a roster (PLAIN): made-up ids, one phone per team and incident
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


async def test_by_default_the_phones_are_the_roster_s_officers_and_reach_the_map(
    broker: Broker,
    sqlite_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    rig = Rig(broker, sqlite_url, tmp_path, DISPATCHER_NO_ROSTER="false")  # the bundled roster, as `serve` runs
    rig.start()
    try:
        await rig.until("/readyz", lambda b: b["mqtt"] == "connected")
        roster = {o.id for o in read_roster(BUNDLED_ROSTER).officers}
        config = DeviceConfig(
            mqtt_url=broker.url,
            prefix=rig.topics.prefix,
            duration_s=3.0,  # every phone sends a position within its first 0.2 s, then every 0.2 s
            position_every_s=0.2,
            reports=2,
            report_kinds=(("traffic.congestion", "five-way"),),
            report_within_s=0.5,
            ack_median_s=0.05,
            step_s=0.02,
            seed=3,
        )
        summary = await run_devices(config)
        assert summary.officers == len(roster) and summary.reports == 2
        stats = await rig.until("/api/v1/mqtt/stats", lambda b: b.get("officers_reporting") == len(roster))
        assert stats["dead_letters"] == {}  # no move refused: each phone worked only what named its officer
        units = rig.get("/api/v1/units")["data"]
        assert {u["id"] for u in units} == roster and all(u["location"] is not None for u in units)

        def settled(body: dict[str, Any]) -> bool:  # the moves the phones published are committed
            placed = [a for i in body["data"] for a in i["assignments"] if a["officer"] is not None]
            return body["count"] == 2 and all(a["state"] == "resolved" for a in placed)

        listing = (await rig.until("/api/v1/incidents", settled))["data"]
        assert sorted(i["report_id"] for i in listing) == sorted(summary.report_ids)
        for incident in listing:
            # Traffic police are on duty round the clock: the lead always has an officer, who has a phone.
            held = {a["team"]: a["officer"] for a in incident["assignments"] if a["officer"] is not None}
            assert "traffic-police" in held
            moves = [e for e in rig.get(f"/api/v1/incidents/{incident['id']}")["timeline"] if e["type"] == "UnitMoved"]
            assert {(m["data"]["team"], m["data"]["actor"]) for m in moves} == set(held.items())
            assert all(a["state"] == "resolved" for a in incident["assignments"] if a["officer"] is not None)
    finally:
        assert rig.server is not None
        rig.server.stop()
    log = (tmp_path / "server1.log").read_text(encoding="utf-8")
    assert "not on roster" not in log
