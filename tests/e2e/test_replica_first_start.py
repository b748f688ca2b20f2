"""Three replicas started at once on new, empty databases all become ready: the county database and each
township's are migrated once, by whichever process comes first, the others waiting for it (an advisory lock
around the migrations), and the first administrator is made once. Every wait is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import _asyncpg_dsn, fresh_postgres_database
from tests.e2e.county import County, serves

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(600)]


@pytest.fixture
async def empty_county(tmp_path: Path) -> AsyncIterator[County]:
    """A county whose databases are all new and empty (no tables: the replicas make them)."""
    county = County(tmp_path, 4)
    try:
        county.url = await fresh_postgres_database()
        for township in county.ids:
            county.urls[township] = await fresh_postgres_database()
        yield county
    finally:
        await county.drop()


async def _scalar(url: str, query: str) -> object:
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def test_three_replicas_started_at_once_on_new_databases_all_become_ready(empty_county: County) -> None:
    replicas = [empty_county.replica(name) for name in ("a", "b", "c")]
    try:
        await asyncio.gather(*(asyncio.to_thread(r.start, 300.0) for r in replicas))
        served = [serves(r) or [] for r in replicas]
        assert sorted(t for townships in served for t in townships) == sorted(empty_county.ids)
        heads = {await _scalar(url, "SELECT version_num FROM alembic_version") for url in empty_county.urls.values()}
        assert heads == {await _scalar(empty_county.url, "SELECT version_num FROM alembic_version")}
        assert await _scalar(empty_county.url, "SELECT count(*) FROM account WHERE name = 'admin'") == 1
    finally:
        await asyncio.gather(*(asyncio.to_thread(r.stop) for r in replicas))
    for replica in replicas:
        log = replica.log_path.read_text(encoding="utf-8")
        assert "Traceback" not in log, log[-3000:]
