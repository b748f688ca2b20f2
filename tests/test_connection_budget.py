"""The connection budget a replica's engines share: never more connections open than the budget, whatever the
number of databases; idle ones reused, evicted for another database, waited for when all are in use."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatcher.connection_budget import ConnectionBudget
from dispatcher.sql_store import build_engine
from tests.conftest import POSTGRES_URL, _asyncpg_dsn, drop_postgres_database, fresh_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
async def databases() -> AsyncIterator[list[str]]:
    urls = [await fresh_postgres_database() for _ in range(3)]
    try:
        yield urls
    finally:
        for url in urls:
            await drop_postgres_database(url)


async def _open_connections(name: str) -> int:
    """Connections the server has open now under ``application_name`` ``name``."""
    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        count = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name)
    finally:
        await conn.close()
    return int(count)


def _budget(limit: int, timeout_s: float = 30.0) -> ConnectionBudget:
    return ConnectionBudget(limit, application_name=f"budget-test-{uuid.uuid4().hex[:8]}", timeout_s=timeout_s)


async def test_engines_of_three_databases_hold_no_more_connections_than_the_budget(databases: list[str]) -> None:
    budget = _budget(2)
    assert budget.application_name is not None
    engines = [build_engine(url, budget=budget) for url in databases]
    try:
        # Twelve queries at once, four per database, each holding its connection a moment.
        async def query(engine: AsyncEngine) -> int:
            async with engine.connect() as conn:
                return int((await conn.execute(sa.text("SELECT 1 FROM pg_sleep(0.05)"))).scalar_one())

        results = await asyncio.gather(*(query(e) for e in engines for _ in range(4)))
        assert results == [1] * 12
        assert budget.open <= 2
        assert await _open_connections(budget.application_name) <= 2
        # Every database was served, so connections moved between them: idle ones were closed for another's use.
        assert budget.evictions >= 1
    finally:
        for engine in engines:
            await engine.dispose()
    assert budget.open == 0
    assert await _open_connections(budget.application_name) == 0


async def test_an_idle_connection_is_reused_by_its_engine_not_reopened(databases: list[str]) -> None:
    budget = _budget(3)
    engine = build_engine(databases[0], budget=budget)
    try:
        pids = set()
        for _ in range(5):
            async with engine.connect() as conn:
                pids.add((await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())
        assert len(pids) == 1
        assert (budget.open, budget.idle, budget.evictions) == (1, 1, 0)
    finally:
        await engine.dispose()


async def test_a_caller_waits_for_a_connection_in_use_and_times_out_when_none_comes(databases: list[str]) -> None:
    budget = _budget(1, timeout_s=0.5)
    first, second = build_engine(databases[0], budget=budget), build_engine(databases[1], budget=budget)
    try:
        async with first.connect() as held:
            await held.execute(sa.text("SELECT 1"))
            with pytest.raises(sa.exc.TimeoutError):
                async with second.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
            # Given back while the other waits: the waiter gets the slot (the idle connection is closed for it).
            waiting = asyncio.create_task(_select_one(second))
            await asyncio.sleep(0)
            assert not waiting.done()
        assert await asyncio.wait_for(waiting, 10) == 1
        assert budget.open == 1
    finally:
        await first.dispose()
        await second.dispose()


async def _select_one(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.text("SELECT 1"))).scalar_one())
