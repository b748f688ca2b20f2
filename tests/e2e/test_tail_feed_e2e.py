"""Two processes on one PostgreSQL: a real server writes as the township's owner (reports over HTTP), and this
process follows the township through the tail feed, as a replica that does not host it serves its boards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from dispatcher.feed import FeedRecord
from dispatcher.ownership import SettableOwnership
from dispatcher.sql_store import SqlIncidentStore
from dispatcher.tail_feed import TailFeeds, asyncpg_dsn
from tests.conftest import drop_postgres_database, fresh_postgres_database
from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.postgres

NOISE = {"category": "noise.x", "zone": "market", "description": "集市喇叭"}


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    url = await fresh_postgres_database()  # fails, not skips, under CI=true
    try:
        yield url
    finally:
        await drop_postgres_database(url)


async def test_a_replica_follows_a_township_written_by_another_process_once_in_order(
    pg_url: str, tmp_path: Path
) -> None:
    owner = ServerProcess(pg_url, tmp_path / "owner.log", env=PLAIN)
    await asyncio.to_thread(owner.start, 120.0)  # a shared machine may take long to start a server
    reader = SqlIncidentStore(pg_url)
    tails = TailFeeds(SettableOwnership(), {"ershili": reader}, catch_up_s=60.0)  # NOTIFY and reconnects only
    tails.start()
    try:
        async with owner.client() as http:

            async def report(first: int, count: int) -> None:
                for n in range(first, first + count):
                    answer = await http.post("/api/v1/incidents", json={**NOISE, "report_id": f"e-{n}"})
                    assert answer.status_code == 201, answer.text

            await report(0, 3)  # before the tail starts: not its to publish
            tail = await tails.tail("ershili")
            start = tail.last_seq
            subscription = tail.feed.subscribe()
            listener = tails.listener_of("ershili")
            assert listener is not None
            await asyncio.wait_for(listener.connected.wait(), timeout=10)
            await report(3, 10)
            admin = await asyncpg.connect(asyncpg_dsn(pg_url))
            try:  # the listening connection dies mid-stream
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", await listener.backend_pid())
            finally:
                await admin.close()
            await report(13, 10)
            last = int((await http.get("/readyz")).json()["last_seq"])

        seen: list[int] = []
        async with asyncio.timeout(30):
            while not seen or seen[-1] < last:
                record = await subscription.get()
                assert isinstance(record, FeedRecord)
                seen.append(record.seq)
        assert seen == list(range(start + 1, last + 1))
        assert listener.connects >= 2
    finally:
        await tails.stop()
        await reader.close()
        await asyncio.to_thread(owner.stop)
