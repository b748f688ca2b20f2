"""Lease rounds on PostgreSQL: a replica's renewals are one statement whatever the number of townships, and a
late round (its own leases expired, nobody took them) goes on with the same epochs and the same hubs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import pytest
import sqlalchemy as sa

from dispatcher.leases import Fence, SqlLeases, lease_t
from dispatcher.sql_store import SqlIncidentStore, build_engine
from gateways.tenancy import Township, Townships
from server.replicas import ReplicaSet
from tests.conftest import drop_postgres_database, fresh_postgres_database

pytestmark = pytest.mark.postgres

TTL = timedelta(seconds=4)


@pytest.fixture
async def county() -> AsyncIterator[str]:
    url = await fresh_postgres_database()
    try:
        store = SqlIncidentStore(url, pool_size=1)
        await store.open()  # the tables
        await store.close()
        yield url
    finally:
        await drop_postgres_database(url)


async def _expire_all(url: str) -> None:
    engine = build_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.update(lease_t).values(expires_at=sa.func.now() - TTL))
    finally:
        await engine.dispose()


async def test_renewing_thirty_leases_is_one_statement_and_skips_the_one_taken_over(county: str) -> None:
    engine = build_engine(county, pool_size=1)
    leases = SqlLeases(engine, TTL)
    townships = [f"t{n:02d}" for n in range(1, 31)]
    try:
        await leases.round("a", "http://a", townships)
        held = {t: await leases.acquire(t, "a") for t in townships}
        assert set(held.values()) == {1}
        await _expire_all(county)
        assert await leases.acquire("t07", "b") == 2  # b took t07 after a's lease expired
        statements: list[str] = []
        sa.event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        renewed = await leases.renew_all("a", {t: e for t, e in held.items() if e is not None})
        assert renewed == set(townships) - {"t07"}
        assert sum(s.lstrip().upper().startswith("UPDATE") for s in statements) == 1
        assert await leases.renew_all("a", {}) == set()
    finally:
        await engine.dispose()


@dataclass
class _Place:
    """What the replica set reads of a township (``gateways.tenancy.Township``'s id and serving flag)."""

    id: str
    serving: bool = False


async def test_a_late_round_keeps_its_own_expired_leases_and_hubs_when_nobody_took_them(county: str) -> None:
    places = {t: _Place(t) for t in ("t1", "t2", "t3")}
    starts: list[tuple[str, int]] = []
    stops: list[str] = []

    async def start(township: Township, fence: Fence) -> AsyncExitStack:
        starts.append((township.id, fence.epoch))
        stack = AsyncExitStack()
        stack.callback(stops.append, township.id)
        return stack

    replicas = ReplicaSet(
        replica_id="a",
        url="http://127.0.0.1:1",
        county_url=county,
        townships=cast(Townships, places),
        start_township=start,
        ttl=TTL,
    )
    await replicas.start()
    try:
        await _rounds(replicas, 2)
        assert sorted(starts) == [("t1", 1), ("t2", 1), ("t3", 1)]
        assert all(p.serving for p in places.values())
        await _expire_all(county)  # as if the rounds had come too late on a loaded machine
        await _rounds(replicas, 2)
        assert sorted(starts) == [("t1", 1), ("t2", 1), ("t3", 1)]  # no second hub, no new epoch
        assert stops == []
        assert replicas.held == ["t1", "t2", "t3"] and replicas.settled
    finally:
        await replicas.stop()
    assert sorted(stops) == ["t1", "t2", "t3"]


async def _rounds(replicas: ReplicaSet, count: int) -> None:
    """Until ``count`` more lease rounds have run (every TTL/4), at most 20 s."""
    target = replicas.rounds + count
    deadline = time.monotonic() + 20
    while replicas.rounds < target:
        assert time.monotonic() < deadline, "the lease rounds stopped"
        await asyncio.sleep(0.05)
