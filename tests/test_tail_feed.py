"""Boards on a replica that does not host the township: the tail feed over the shared PostgreSQL log.

The owner is a hub on one engine (it writes and sends NOTIFY); the board is served by the board code through a
:class:`TailFeed` on a second engine, as another replica would. Every event must reach the board once, in
order, whether the NOTIFYs arrive, are lost, or the listening connection is killed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from dispatcher.alarm import ManualAlarm
from dispatcher.clock import VirtualClock
from dispatcher.core.incidents import Report
from dispatcher.core.lifecycle import IncidentAction
from dispatcher.feed import EventFeed
from dispatcher.hub import Hub
from dispatcher.ownership import SettableOwnership
from dispatcher.sql_store import SqlIncidentStore
from dispatcher.tail_feed import TailFeeds, asyncpg_dsn
from gateways.board import board_feed
from rules import RuleBook
from tests.conftest import START, drop_postgres_database, fresh_postgres_database
from tests.test_board_feed import FakeBoard

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    url = await fresh_postgres_database()  # fails, not skips, under CI=true
    try:
        yield url
    finally:
        await drop_postgres_database(url)


class Replicas:
    """The owner (a running hub, NOTIFY on unless ``notify`` is off) and a reader replica's tails and board."""

    def __init__(self, url: str, rules: RuleBook, *, notify: bool, catch_up_s: float) -> None:
        township = rules.township_id
        self.clock = VirtualClock(START)
        self.owner = Hub(
            store=SqlIncidentStore(url, township=township if notify else None),
            rules=rules,
            clock=self.clock,
            alarm=ManualAlarm(),
            feed=EventFeed(),
            duplicate_radius_m=0.0,
        )
        # The other replica: the same township's hub, never started (it is hosted elsewhere), its own engine.
        self.reader_store = SqlIncidentStore(url)
        self.reader = Hub(store=self.reader_store, rules=rules, clock=self.clock, alarm=ManualAlarm(), feed=EventFeed())
        self.ownership = SettableOwnership()
        self.tails = TailFeeds(
            self.ownership, {township: self.reader_store}, {township: self.reader.feed}, catch_up_s=catch_up_s
        )
        self.township = township
        self.n = 0

    def board(self) -> FakeBoard:
        board = FakeBoard(self.reader, read_limit=100_000)
        board.app.state.context.tail_feeds = self.tails
        return board

    async def report(self, count: int) -> None:
        for _ in range(count):
            self.n += 1
            report = Report(report_id=f"r{self.n}", category="noise.x", description="d", zone="market")
            await self.owner.report(report, self.clock.now())


@pytest.fixture
async def replicas(pg_url: str, bundled_rules: RuleBook, request: pytest.FixtureRequest) -> AsyncIterator[Replicas]:
    notify, catch_up_s = getattr(request, "param", (True, 60.0))
    pair = Replicas(pg_url, bundled_rules, notify=notify, catch_up_s=catch_up_s)
    await pair.owner.start()
    pair.tails.start()
    try:
        yield pair
    finally:
        await pair.tails.stop()
        await pair.owner.stop()
        await pair.reader.store.close()


async def _until_seq(board: FakeBoard, seq: int) -> None:
    await asyncio.wait_for(board.until_seq(seq), timeout=20)


def _events(board: FakeBoard) -> list[int]:
    return [f["seq"] for f in board.sent if f["kind"] == "event"]


async def test_a_board_gets_every_event_once_in_order_across_a_killed_listener(replicas: Replicas) -> None:
    """NOTIFY only (the periodic read is a minute away): the reconnected listener's read fills the gap."""
    await replicas.report(5)
    await replicas.owner.finish(2, IncidentAction.CANCEL, START, "operator", "a prank")
    board = replicas.board()
    connection = asyncio.create_task(board_feed(board, since=None))  # type: ignore[arg-type]
    await asyncio.wait_for(board.first_frame.wait(), timeout=10)
    snapshot = board.sent[0]
    assert snapshot["kind"] == "snapshot" and snapshot["seq"] == replicas.owner.last_seq
    assert [i["id"] for i in snapshot["incidents"]] == [1, 3, 4, 5]

    listener = replicas.tails.listener_of(replicas.township)
    assert listener is not None
    await asyncio.wait_for(listener.connected.wait(), timeout=10)
    await replicas.report(10)
    await _until_seq(board, replicas.owner.last_seq)

    pid = await listener.backend_pid()
    admin = await asyncpg.connect(asyncpg_dsn(replicas.owner.store.url))  # type: ignore[attr-defined]
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await replicas.report(10)  # while the listener is down or coming back: these NOTIFYs may be lost
    await _until_seq(board, replicas.owner.last_seq)
    await replicas.report(10)
    await _until_seq(board, replicas.owner.last_seq)
    board.gone.set()
    await asyncio.wait_for(connection, timeout=5)

    assert _events(board) == list(range(snapshot["seq"] + 1, replicas.owner.last_seq + 1))
    assert listener.connects >= 2  # the last ten came after the kill: only the new connection's read saw them


@pytest.mark.parametrize("replicas", [(False, 0.1)], indirect=True)
async def test_without_any_notify_the_periodic_read_still_delivers_every_event_once(replicas: Replicas) -> None:
    board = replicas.board()
    connection = asyncio.create_task(board_feed(board, since=None))  # type: ignore[arg-type]
    await asyncio.wait_for(board.first_frame.wait(), timeout=10)
    rounds = 5
    for _ in range(rounds):  # each round committed after the last was delivered: only a later read can see it
        await replicas.report(7)
        await _until_seq(board, replicas.owner.last_seq)
    board.gone.set()
    await asyncio.wait_for(connection, timeout=5)
    assert _events(board) == list(range(1, replicas.owner.last_seq + 1))
    assert replicas.tails[replicas.township].reads >= rounds  # with no NOTIFY, one periodic read per round at least


async def test_a_board_resumes_by_seq_from_the_log_and_a_snapshot_taken_during_writes_agrees(
    replicas: Replicas,
) -> None:
    await replicas.report(20)
    middle = replicas.owner.last_seq // 2
    resumed = replicas.board()
    connection = asyncio.create_task(board_feed(resumed, since=middle))  # type: ignore[arg-type]
    await _until_seq(resumed, replicas.owner.last_seq)

    writing = asyncio.create_task(replicas.report(30))
    fresh = replicas.board()
    second = asyncio.create_task(board_feed(fresh, since=None))  # type: ignore[arg-type]
    await writing
    await _until_seq(fresh, replicas.owner.last_seq)
    await _until_seq(resumed, replicas.owner.last_seq)
    for board, task in ((resumed, connection), (fresh, second)):
        board.gone.set()
        await asyncio.wait_for(task, timeout=5)

    assert _events(resumed) == list(range(middle + 1, replicas.owner.last_seq + 1))
    snapshot = fresh.sent[0]
    # Every report is its own open incident: the snapshot holds exactly those reported up to its seq.
    reported = {f["data"]["incident_id"] for f in fresh.sent if f.get("type") == "IncidentReported"}
    ids = [i["id"] for i in snapshot["incidents"]]
    assert sorted(set(ids) | reported) == list(range(1, 51)) and not set(ids) & reported
    assert _events(fresh) == list(range(snapshot["seq"] + 1, replicas.owner.last_seq + 1))


def test_a_township_going_elsewhere_drops_the_boards_of_its_hub_so_they_resume_from_the_log() -> None:
    feed = EventFeed()
    board, other = feed.subscribe(), EventFeed().subscribe()
    ownership = SettableOwnership({"ershili"})
    tails = TailFeeds(ownership, {}, {"ershili": feed})
    tails.start()
    ownership.set("ershili", True)  # no change
    assert not board.dropped
    ownership.set("ershili", False)
    assert board.dropped and not other.dropped and feed.subscriber_count == 0
