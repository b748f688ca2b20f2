"""A county for replica tests and benchmarks: townships made from the quick test table (deadlines of seconds),
each in its own PostgreSQL database, and ``dispatcher serve`` replicas sharing them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from dispatcher.sql_store import SqlIncidentStore
from tests.conftest import drop_postgres_database, fresh_postgres_database
from tests.e2e.server import ServerProcess, free_port

QUICK_TABLE = Path(__file__).resolve().parents[1] / "fixtures" / "quick-township.yaml"


def township_ids(count: int) -> list[str]:
    """``ershili`` first (the one the tests kill the owner of), then ``q02``, ``q03``..."""
    return ["ershili", *(f"q{n:02d}" for n in range(2, count + 1))]


def township_tables(folder: Path, ids: list[str]) -> dict[str, Path]:
    """The quick table once per township, its id changed (same teams, zones and seconds-long deadlines)."""
    text = QUICK_TABLE.read_text(encoding="utf-8")
    assert "township: {id: quick," in text
    tables = {}
    for township in ids:
        path = folder / f"{township}.yaml"
        path.write_text(text.replace("township: {id: quick,", f"township: {{id: {township},"), encoding="utf-8")
        tables[township] = path
    return tables


class County:
    """A county database (accounts, leases) and one database per township, on the test PostgreSQL."""

    def __init__(self, folder: Path, count: int) -> None:
        self.folder = folder
        self.ids = township_ids(count)
        self.url = ""
        self.urls: dict[str, str] = {}
        self.tables = township_tables(folder, self.ids)

    async def create(self) -> County:
        """The county database, migrated once, then each township's as a copy of it (``TEMPLATE``): migrating
        thirty databases one by one at their first start would take minutes on a loaded machine."""
        self.url = await fresh_postgres_database()
        store = SqlIncidentStore(self.url, pool_size=1)
        await store.open()
        await store.close()
        template = make_url(self.url).database
        for township in self.ids:
            self.urls[township] = await fresh_postgres_database(template=template)
        return self

    async def drop(self) -> None:
        for url in [self.url, *self.urls.values()]:
            if url:
                await drop_postgres_database(url)

    @property
    def townships_setting(self) -> str:
        return ";".join(f"{t}={self.tables[t]}:{self.urls[t]}" for t in self.ids)

    def replica(self, replica_id: str, *, lease_ttl_s: float = 3.0, env: dict[str, str] | None = None) -> ServerProcess:
        port = free_port()
        settings = {
            "DISPATCHER_TOWNSHIPS": self.townships_setting,
            "DISPATCHER_NO_ROSTER": "true",
            "DISPATCHER_DUPLICATE_RADIUS_M": "0",
            "DISPATCHER_REPLICA_ID": replica_id,
            "DISPATCHER_ADVERTISE_URL": f"http://127.0.0.1:{port}",
            "DISPATCHER_LEASE_TTL_S": str(lease_ttl_s),
            "DISPATCHER_DB_POOL_SIZE": "1",
            "DISPATCHER_RATE_PER_S": "0",
            "DISPATCHER_RATE_BURST": "0",
            **(env or {}),
        }
        return ServerProcess(self.url, self.folder / f"{replica_id}.log", env=settings, port=port, log_level="info")


def serves(replica: ServerProcess) -> list[str] | None:
    """What ``replica`` serves now by its /readyz (None: not answering)."""
    try:
        body = httpx.get(f"{replica.base_url}/readyz", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    served: list[str] = body.get("replica", {}).get("serves", [])
    return served


def settled(replica: ServerProcess) -> bool:
    try:
        return httpx.get(f"{replica.base_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


async def until(condition: object, what: str, timeout_s: float = 30.0) -> None:
    """Poll ``condition()`` (a plain function) every 0.1 s until true; fail after ``timeout_s``."""
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def owner_of(township: str, replicas: list[ServerProcess]) -> ServerProcess | None:
    for replica in replicas:
        if township in (serves(replica) or []):
            return replica
    return None
