"""The boards' latency of a township followed in its log (a tail feed) is in ``/metrics``, labelled
``source="tail"``, and counts from the owner's commit (the NOTIFY's arrival), not from the tail's own read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from types import SimpleNamespace
from typing import Any

from prometheus_client.core import Metric

from dispatcher.core.incidents import Incident
from dispatcher.ownership import SettableOwnership
from dispatcher.settings import BUNDLED_TABLE
from dispatcher.shifts import ShiftWatch
from dispatcher.store import StoredEvent
from dispatcher.tail_feed import TailFeed
from gateways.board import board_feed
from gateways.metrics import DispatcherCollector
from gateways.tenancy import Township, Townships
from tests.conftest import START
from tests.test_tail_feed import Replicas, _until_seq, pg_url, replicas

__all__ = ["pg_url", "replicas"]


class SlowLog:
    """A township's log in memory whose reads wait until ``release`` is set (a slow database)."""

    url = "memory://"

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.release = asyncio.Event()
        self.release.set()
        self.reading = asyncio.Event()

    def append(self, seq: int) -> None:
        self.events.append(StoredEvent(seq=seq, incident_id=None, type="RosterInstalled", at=START, payload="{}"))

    async def last_ids(self) -> tuple[int, int]:
        return 0, max((e.seq for e in self.events), default=0)

    async def events_since(self, seq: int, *, limit: int) -> list[StoredEvent]:
        self.reading.set()
        await self.release.wait()
        return [e for e in self.events if e.seq > seq][:limit]

    async def open_state(self, types: Collection[str]) -> tuple[int, list[Incident], list[StoredEvent]]:
        return (await self.last_ids())[1], [], []


async def test_a_tailed_event_counts_from_its_notice_not_from_the_slow_read_that_found_it() -> None:
    log = SlowLog()
    tail = TailFeed("ershili", log, catch_up_s=60.0)
    await tail.start()
    try:
        log.release.clear()
        log.append(1)
        noticed = time.monotonic()
        tail.notified(1)
        await asyncio.wait_for(log.reading.wait(), 10)
        subscription = tail.feed.subscribe()
        await asyncio.sleep(0.3)  # the database takes 0.3 s to answer (the time measured, not a synchronisation)
        log.release.set()
        assert await asyncio.wait_for(subscription.get(), 10) is not None
        assert tail.last_seq == 1
        published = tail.feed.published_at(1)
        assert published is not None
        assert noticed <= published <= noticed + 0.2  # the notice's arrival, not the publication 0.3 s later
    finally:
        await tail.stop()


async def test_an_event_no_notice_announced_counts_from_the_last_read_that_did_not_see_it() -> None:
    log = SlowLog()
    tail = TailFeed("ershili", log, catch_up_s=60.0)
    before = time.monotonic()
    await tail.start()
    try:
        await asyncio.sleep(0.3)  # the event is committed 0.3 s after the read at start (its NOTIFY is lost)
        log.append(1)
        assert await tail.catch_up() == 1
        published = tail.feed.published_at(1)
        assert published is not None and before <= published <= before + 0.2
    finally:
        await tail.stop()


def _samples(metric: Metric, **labels: str) -> dict[str, float]:
    return {
        s.name + (f"{{le={s.labels['le']}}}" if "le" in s.labels else ""): s.value
        for s in metric.samples
        if all(s.labels.get(k) == v for k, v in labels.items())
    }


async def test_metrics_give_the_boards_latency_of_a_tailed_township_by_source(replicas: Replicas) -> None:
    await replicas.report(2)
    board = replicas.board()
    connection = asyncio.create_task(board_feed(board, since=None))  # type: ignore[arg-type]
    await asyncio.wait_for(board.first_frame.wait(), timeout=10)
    listener = replicas.tails.listener_of(replicas.township)
    assert listener is not None
    await asyncio.wait_for(listener.connected.wait(), timeout=10)
    first_live = replicas.owner.last_seq + 1
    await replicas.report(5)
    await _until_seq(board, replicas.owner.last_seq)
    board.gone.set()
    await asyncio.wait_for(connection, timeout=5)
    live = replicas.owner.last_seq - first_live + 1

    reader = Township(replicas.township, replicas.reader, ShiftWatch(replicas.reader), BUNDLED_TABLE)
    reader.serving = False  # hosted by the other replica: its hub here is not running
    context: Any = SimpleNamespace(
        townships=Townships([reader]),
        tail_feeds=replicas.tails,
        mqtt=None,
        webhooks=None,
        ownership=SettableOwnership(),
    )
    families = {m.name: m for m in DispatcherCollector(context).collect()}
    latency = families["dispatcher_board_latency_seconds"]
    tail = _samples(latency, township=replicas.township, source="tail")
    assert tail["dispatcher_board_latency_seconds_count"] == live
    assert tail["dispatcher_board_latency_seconds_bucket{le=+Inf}"] == live
    assert tail["dispatcher_board_latency_seconds_sum"] > 0
    assert _samples(latency, source="hub") == {}  # no hub of it runs here
