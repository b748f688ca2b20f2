"""The dispatch routes in process (the hub with the bundled roster on a virtual clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from dispatcher.settings import Settings
from dispatcher.shifts import ShiftWatch
from server.app import create_app
from tests.conftest import START, HubRig, api_client


@pytest.fixture
async def client(crew: HubRig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=crew.url), hub=crew.hub)
    async with api_client(app) as http:
        yield http


async def test_handovers_are_listed_and_taken_over_once(crew: HubRig, client: httpx.AsyncClient) -> None:
    shift = next(s for s in crew.hub.roster.shifts if s.id == "tp-night")
    record = await ShiftWatch(crew.hub).shift_began(shift, START + timedelta(hours=4))

    listed = (await client.get("/api/v1/handovers", params={"team": "traffic-police"})).json()["data"]
    assert [(h["id"], h["shift_id"], h["incoming_lead"]) for h in listed] == [(record.id, "tp-night", "tp-05")]
    assert listed[0]["summary"]["team"] == "traffic-police"
    taken = await client.post(f"/api/v1/handovers/{record.id}/ack", json={"actor": "tp-05"})
    # The signed-in account is recorded; the name the client gave is kept as "for ...".
    assert taken.status_code == 200
    assert taken.json()["acknowledged_by"].startswith("admin-")
    assert taken.json()["acknowledged_by"].endswith(" for tp-05")
    missing = await client.post("/api/v1/handovers/999/ack", json={"actor": "tp-05"})
    assert missing.status_code == 404
    nameless = await client.post(f"/api/v1/handovers/{record.id}/ack", json={})
    assert nameless.status_code == 422


async def test_units_show_duty_posting_and_tasks(client: httpx.AsyncClient) -> None:
    made = await client.post(
        "/api/v1/incidents",
        json={
            "report_id": "u-1",
            "category": "traffic.congestion",
            "description": "堵",
            "location": {"lat": 28.848, "lon": 118.912},
        },
    )
    assert made.status_code == 201
    units = {u["id"]: u for u in (await client.get("/api/v1/units", params={"team": "traffic-police"})).json()["data"]}
    assert set(units) == {f"tp-0{n}" for n in range(1, 7)}
    # 16:00 local: the day shift (tp-01..04) is on, the night shift is not.
    assert [u for u in units if units[u]["on_duty"]] == ["tp-01", "tp-02", "tp-03", "tp-04"]
    assert units["tp-02"]["posted_at"] == "five-way"
    assert (units["tp-02"]["status"], units["tp-02"]["tasks"]) == ("assigned", 1)
    bad = await client.post("/api/v1/units/tp-01/status", json={})
    assert bad.status_code == 422


async def test_a_merge_answers_409_on_a_stale_version_of_either_incident(client: httpx.AsyncClient) -> None:
    async def report(report_id: str, lat: float) -> dict[str, Any]:
        body = {"report_id": report_id, "category": "traffic.congestion", "description": "堵",
                "location": {"lat": lat, "lon": 118.912}}  # fmt: skip
        made = await client.post("/api/v1/incidents", json=body)
        assert made.status_code == 201
        return dict(made.json())

    a, b, c = await report("m-a", 28.858), await report("m-b", 28.848), await report("m-c", 28.838)
    cancelled = await client.post(
        f"/api/v1/incidents/{b['id']}/cancel", json={"actor": "李强", "reason": "a drill", "version": b["version"]}
    )
    assert cancelled.status_code == 200

    merge = {"into": b["id"], "actor": "王芳", "version": a["version"]}
    stale_target = await client.post(f"/api/v1/incidents/{a['id']}/merge", json={**merge, "into_version": b["version"]})
    assert stale_target.status_code == 409
    stale_source = await client.post(
        f"/api/v1/incidents/{a['id']}/merge", json={**merge, "into": c["id"], "version": a["version"] + 1}
    )
    assert stale_source.status_code == 409
    assert (await client.get(f"/api/v1/incidents/{c['id']}")).json()["report_count"] == 1
    after = (await client.get(f"/api/v1/incidents/{a['id']}")).json()
    assert (after["status"], after["merged_into"], after["version"]) == ("dispatched", None, a["version"])
