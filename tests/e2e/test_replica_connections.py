"""A replica's PostgreSQL connections are bounded by its settings, not by the number of townships it hosts.

One ``dispatcher serve`` replica hosts 30 townships (each in its own database) with ``DISPATCHER_DB_CONNECTIONS``
of 8, takes reports for all of them at once, and the server never shows more than 8 + 1 (the lease rounds')
connections named after it in ``pg_stat_activity``. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from server.app import replica_application_name
from tests.conftest import POSTGRES_URL, _asyncpg_dsn
from tests.e2e.county import County, serves, settled, until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(900)]

BUDGET = 8
TOWNSHIPS = 30


@pytest.fixture
async def county(tmp_path: Path) -> AsyncIterator[County]:
    made = County(tmp_path, TOWNSHIPS)
    try:
        yield await made.create()
    finally:
        await made.drop()


async def _connections(conn: asyncpg.Connection, name: str) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name))


async def test_a_replica_hosting_30_townships_holds_at_most_its_budget_of_connections(county: County) -> None:
    replica = county.replica("solo", env={"DISPATCHER_DB_CONNECTIONS": str(BUDGET), "DISPATCHER_ACCESS_LOG": "false"})
    name = replica_application_name("solo")
    await asyncio.to_thread(replica.start, 300.0)
    watcher = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        await until(lambda: settled(replica) and len(serves(replica) or []) == TOWNSHIPS, "30 townships served", 300)
        seen: list[int] = []
        posting = True

        async def watch() -> None:
            while posting:
                seen.append(await _connections(watcher, name))
                await asyncio.sleep(0.02)

        watching = asyncio.create_task(watch())
        answers: list[int] = []
        failures: list[str] = []
        async with httpx.AsyncClient(headers=replica.headers, timeout=60) as http:

            async def post(n: int) -> None:
                township = county.ids[n % TOWNSHIPS]
                body = {"report_id": f"c-{n}", "category": "order.noise", "zone": "square", "description": "广场噪音"}
                answer = await http.post(
                    f"{replica.base_url}/api/v1/incidents", params={"township": township}, json=body
                )
                answers.append(answer.status_code)
                if answer.status_code != 201:
                    failures.append(f"{township}: {answer.status_code} {answer.text[:200]}")

            started = time.monotonic()
            # Three reports per township, 30 at a time: every township's writer wants a connection at once.
            for wave in range(3):
                await asyncio.gather(*(post(wave * TOWNSHIPS + n) for n in range(TOWNSHIPS)))
            assert time.monotonic() - started < 300
        posting = False
        await watching
        after = await _connections(watcher, name)
    finally:
        await watcher.close()
        replica.stop()
    assert Counter(answers) == {201: 3 * TOWNSHIPS}, failures[:5]
    assert seen, "no sample of pg_stat_activity was taken"
    assert max(seen) >= 2  # the hubs did use connections while the samples ran
    assert max(seen) <= BUDGET + 1, f"{max(seen)} connections (budget {BUDGET} and the lease rounds' one)"
    assert after <= BUDGET + 1
