"""Shared fixtures: the bundled rule table, stores on SQLite and PostgreSQL, a hub on a virtual clock.

PostgreSQL comes from ``DISPATCHER_TEST_POSTGRES_URL`` (default: the local server, database
``test``, trust auth). When it cannot be reached the PostgreSQL tests are skipped on a
developer's machine but **fail** under ``CI=true``: CI must prove both backends.
"""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatcher.alarm import ManualAlarm
from dispatcher.clock import VirtualClock
from dispatcher.core.roster import Roster
from dispatcher.feed import EventFeed
from dispatcher.hub import Hub
from dispatcher.settings import BUNDLED_TABLE
from dispatcher.sql_store import SqlIncidentStore, build_engine
from rules import RuleBook, compile_table, load_table

POSTGRES_URL = os.environ.get("DISPATCHER_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def shared_data(*parts: str) -> Path:
    """A file of the workplace's shared data (``../shared/data`` beside the repository, else /work/shared/data,
    or ``DISPATCHER_SHARED_DATA``): read at test time, never copied in. The first place that has it wins."""
    given = os.environ.get("DISPATCHER_SHARED_DATA")
    roots = [Path(given)] if given else []
    roots += [Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data")]
    for root in roots:
        if root.joinpath(*parts).exists():
            return root.joinpath(*parts)
    return roots[0].joinpath(*parts)


def cn_messages() -> list[dict[str, str]]:
    """The labelled development messages (shared data, never committed): fails under CI when missing, else skips."""
    path = shared_data("cn_messages", "cn_messages_dev.csv")
    if not path.is_file():
        message = f"{path} is missing (the labelled development messages, see shared/data/README.md)"
        if IN_CI:
            pytest.fail(message + "; CI=true requires it")
        pytest.skip(message)
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


#: Which of the cn_messages rows the session's model is trained on (every third, from the first): a third
#: trains in a few seconds and still decides most messages; the others are messages it has never seen.
CN_MODEL_ROWS = slice(0, None, 3)


@pytest.fixture(scope="session")
def cn_message_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A message model file trained at test time on a third of cn_messages (the rows of ``CN_MODEL_ROWS``),
    labels checked against the bundled table, as ``dispatcher classify train`` writes it."""
    from rules.message_file import write_message_model
    from rules.training import train

    rows = cn_messages()[CN_MODEL_ROWS]
    path = tmp_path_factory.mktemp("model") / "ershili.messages.json"
    texts = [f"{r['title']} {r['text']}".strip() for r in rows]
    write_message_model(train(texts, [r["label"] for r in rows], trained_on={"csv": "cn_messages_dev.csv"}), path)
    return path


START = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)  # a market day morning


@pytest.fixture(scope="session")
def bundled_rules() -> RuleBook:
    return compile_table(load_table(BUNDLED_TABLE))


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _postgres_reachable() -> str | None:
    try:
        conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def fresh_postgres_database(*, template: str | None = None) -> str:
    """Create an empty database (or a copy of the database ``template``) for one test; its SQLAlchemy URL."""
    problem = await _postgres_reachable()
    if problem is not None:
        message = f"PostgreSQL at {POSTGRES_URL} is unreachable ({problem})"
        if IN_CI:
            pytest.fail(message + "; CI=true requires it")
        pytest.skip(message)
    name = f"dispatcher_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        await conn.close()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """One empty database per test, on each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'dispatcher.db'}"
        return
    url = await fresh_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


class HubRig:
    """A hub on a virtual clock with a manual alarm, restartable on the same database.

    ``roster`` (optional) gives the teams officers to choose from; ``hub_options`` go to the hub.
    """

    def __init__(
        self, url: str, rules: RuleBook, roster: Roster | None = None, *, start: datetime = START, **hub_options: Any
    ) -> None:
        self.url = url
        self.rules = rules
        self.roster = roster
        self.hub_options = hub_options
        self.clock = VirtualClock(start)
        self.alarm = ManualAlarm()
        self.feed = EventFeed(queue_size=10_000)
        self.hub = self._build()

    def _build(self) -> Hub:
        return Hub(
            store=SqlIncidentStore(self.url),
            rules=self.rules,
            clock=self.clock,
            alarm=self.alarm,
            feed=self.feed,
            roster=self.roster,
            **self.hub_options,
        )

    async def advance(self, delta: timedelta) -> int:
        """Move the virtual clock on and fire whatever fell due, as the alarm would; returns how many fired."""
        self.clock.advance(delta)
        return await self.hub.fire_due(self.clock.now())

    async def restart(self) -> Hub:
        await self.hub.stop()
        self.alarm = ManualAlarm()
        self.feed = EventFeed(queue_size=10_000)
        self.hub = self._build()
        await self.hub.start()
        return self.hub


@pytest.fixture
async def rig(database_url: str, bundled_rules: RuleBook) -> AsyncIterator[HubRig]:
    """A hub without roster, every report its own incident (duplicate joining off: see ``crew`` for it on)."""
    rig = HubRig(database_url, bundled_rules, duplicate_radius_m=0.0)
    await rig.hub.start()
    try:
        yield rig
    finally:
        await rig.hub.stop()


@pytest.fixture
async def sqlite_rig(tmp_path: Path, bundled_rules: RuleBook) -> AsyncIterator[HubRig]:
    """A hub on a SQLite file without roster (the SQLite writer's own tests)."""
    rig = HubRig(f"sqlite+aiosqlite:///{tmp_path / 'dispatcher.db'}", bundled_rules, duplicate_radius_m=0.0)
    await rig.hub.start()
    try:
        yield rig
    finally:
        await rig.hub.stop()


@pytest.fixture(scope="session")
def bundled_roster(bundled_rules: RuleBook) -> Roster:
    from dispatcher.roster_file import BUNDLED_ROSTER, build_roster, read_roster

    return build_roster(read_roster(BUNDLED_ROSTER), bundled_rules)


@pytest.fixture
async def crew(database_url: str, bundled_rules: RuleBook, bundled_roster: Roster) -> AsyncIterator[HubRig]:
    """A hub with the bundled roster and duplicate joining on (200 m, 30 min)."""
    rig = HubRig(database_url, bundled_rules, bundled_roster, duplicate_radius_m=200.0)
    await rig.hub.start()
    try:
        yield rig
    finally:
        await rig.hub.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Any]:
    """A Mosquitto of the test's own on a free loopback port (see tests/mqtt_broker.py)."""
    from tests.mqtt_broker import Broker

    (tmp_path / "broker").mkdir()
    started = Broker(tmp_path / "broker").start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def repo_root() -> Iterator[Path]:
    yield Path(__file__).resolve().parent.parent


async def sign_in_as(
    app: Any,
    role: Any = None,
    *,
    name: str | None = None,
    township: str = "*",
    officer_id: str | None = None,
    module: str | None = None,
) -> dict[str, str]:
    """Headers carrying a fresh device token of a new account (default: a county administrator).

    No password is hashed: the matrix of roles would otherwise spend most of its time in argon2.
    """
    from dispatcher.accounts import Role, TokenKind

    role = role or Role.ADMIN
    directory = app.state.context.directory
    await directory.open()
    name = name or f"{role.value.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    await directory.create_account(name, role, township, START, officer_id=officer_id, module=module)
    token, _ = await directory.issue_token(name, TokenKind.DEVICE, START, label="tests")
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def api_client(app: Any, headers: dict[str, str] | None = None) -> AsyncIterator[Any]:
    """An in-process client of ``app`` (no lifespan: the hub is the test's), signed in as an administrator."""
    import httpx

    try:
        headers = headers if headers is not None else await sign_in_as(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
            yield http
    finally:
        await app.state.context.directory.close()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on ``database_url`` (each backend) whose schema the store's migrations made, for tests that write
    and read rows directly (the briefing's and the assessment's SQL)."""
    store = SqlIncidentStore(database_url, durable=False)
    await store.open()
    await store.close()
    engine = build_engine(database_url, durable=False)
    try:
        yield engine
    finally:
        await engine.dispose()
