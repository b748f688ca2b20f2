"""``/metrics`` of a real server: the numbers agree with what was done to it and what its board received."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _report(n: int) -> dict[str, Any]:
    return {"report_id": f"m-{n}", "category": "market.unlicensed_vendor", "zone": "market", "description": f"占道 {n}"}


async def test_metrics_count_reports_events_incidents_commits_and_board_frames(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as scraper:  # no token: the scraper is not a user
        before = _samples((await scraper.get("/metrics")).text)
    async with (
        websockets.connect(server.ws_url, additional_headers=server.headers) as board,
        server.client() as http,
    ):
        assert json.loads(await board.recv())["kind"] == "snapshot"
        for n in range(5):
            assert (await http.post("/api/v1/incidents", json=_report(n))).status_code == 201
        assert (await http.post("/api/v1/incidents", json=_report(0))).status_code == 200  # a retry: known
        batch = await http.post("/api/v1/incidents/batch", json=[_report(10), _report(11), {"zone": "nowhere"}])
        assert batch.status_code == 200
        events = (await http.get("/api/v1/events")).json()
        last_seq = events["last_seq"]
        seen = 0
        while seen < last_seq:  # the board has every frame: each one's latency was observed
            frame = json.loads(await board.recv())
            if frame["kind"] == "event":
                seen = frame["seq"]
        async with httpx.AsyncClient(base_url=server.base_url) as scraper:
            scraped = await scraper.get("/metrics")

    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    samples = _samples(scraped.text)
    t = {"township": "ershili"}
    assert _value(samples, "dispatcher_reports_total", **t, channel="http", outcome="created") == 5
    assert _value(samples, "dispatcher_reports_total", **t, channel="http", outcome="known") == 1
    assert _value(samples, "dispatcher_reports_total", **t, channel="http_batch", outcome="created") == 2
    assert _value(samples, "dispatcher_reports_total", **t, channel="http_batch", outcome="refused") == 1
    by_type: dict[str, int] = {}
    for event in events["data"]:
        by_type[event["type"]] = by_type.get(event["type"], 0) + 1
    for type_name, count in by_type.items():
        assert _value(samples, "dispatcher_events_total", **t, type=type_name) == count, type_name
    assert _value(samples, "dispatcher_open_incidents", **t) == 7
    assert _value(samples, "dispatcher_last_seq", **t) == last_seq
    assert _value(samples, "dispatcher_feed_subscribers", **t) == _value(before, "dispatcher_feed_subscribers", **t) + 1
    assert _value(samples, "dispatcher_writer_running", **t) == 1
    commits = _value(samples, "dispatcher_writer_commit_seconds_count", **t)
    # One commit per request that stored reports (5 + the batch), and one per audit entry of the township (the 7
    # POSTs and the client's sign-in: each goes in the writer's next batch), or fewer when they rode together.
    assert 1 <= commits <= 6 + 8
    assert _value(samples, "dispatcher_writer_batch_size_sum", **t) >= 7
    # Every commit was of a batch applied either after the one before had landed or beside its commit.
    applied = [_value(samples, "dispatcher_writer_batches_applied_total", **t, how=h) for h in ("after", "overlapped")]
    assert sum(applied) >= commits and applied[0] >= 1
    hub = {**t, "source": "hub"}  # the township's hub runs here: its boards are fed by the hub, not the log's tail
    frames = _value(samples, "dispatcher_board_latency_seconds_count", **hub)
    assert frames == last_seq - 1  # every live frame after the snapshot (the rule table's event came before)
    assert _value(samples, "dispatcher_board_latency_seconds_bucket", **hub, le="+Inf") == frames
    assert _value(samples, "process_resident_memory_bytes") > 0
