"""Where the audit trail is written: with the hub's writer batch when the hub's database is the directory's,
else in the directory's own transactions (gateways/audit.py's Trail)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from dispatcher.accounts import AuditEntry, SqlDirectory
from dispatcher.core.incidents import Report
from dispatcher.settings import Settings
from dispatcher.sql_store import SqlIncidentStore
from dispatcher.writer import HubStopped
from gateways.audit import Trail
from server.app import create_app
from tests.conftest import START, HubRig, api_client

REPORT = {"report_id": "t-1", "category": "traffic.congestion", "zone": "five-way", "description": "堵"}


class CountingDirectory(SqlDirectory):
    """The directory, counting the entries handed to it rather than to a hub."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.recorded: list[AuditEntry] = []

    async def record(self, entry: AuditEntry) -> None:
        self.recorded.append(entry)
        await super().record(entry)


@pytest.fixture
async def app(crew: HubRig) -> AsyncIterator[Any]:
    application = create_app(Settings(database_url=crew.url), hub=crew.hub)
    yield application
    await application.state.context.directory.close()


async def test_a_report_is_audited_in_the_writers_batch(app: Any, crew: HubRig) -> None:
    context = app.state.context
    directory = CountingDirectory(crew.url)
    context.audit = Trail(directory, {"ershili": crew.hub})
    async with api_client(app) as http:
        made = await http.post("/api/v1/incidents", json=REPORT)
        assert made.status_code == 201
        rows = [orjson.loads(line) for line in (await http.get("/api/v1/audit")).text.splitlines()]
    await directory.close()
    mine = [r for r in rows if r["action"] == "POST /api/v1/incidents"]
    assert [(r["outcome"], r["township"], r["target"]) for r in mine] == [(201, "ershili", "/api/v1/incidents")]
    # It reached the table through the hub's writer: the directory was handed no entry of the township.
    assert [e for e in directory.recorded if e.township == "ershili"] == []


async def test_the_composition_root_sends_a_township_sharing_the_database_to_its_hub(app: Any, crew: HubRig) -> None:
    assert isinstance(crew.hub.store, SqlIncidentStore)
    assert crew.hub.store.shares_database(crew.url)
    trail = app.state.context.audit
    assert isinstance(trail, Trail)
    entry = AuditEntry(at=START, action="POST /api/v1/incidents", outcome=201, actor="op-1", township="ershili")
    await trail.record(entry)
    stored = await app.state.context.directory.audit(since=None, until=None, township="ershili", limit=10)
    assert [(e.actor, e.action, e.outcome) for e in stored] == [("op-1", "POST /api/v1/incidents", 201)]


def test_a_database_private_to_its_engine_is_never_shared(tmp_path: Path) -> None:
    memory = SqlIncidentStore("sqlite+aiosqlite://")
    assert not memory.shares_database("sqlite+aiosqlite://")
    on_file = SqlIncidentStore(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    assert on_file.shares_database(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    assert not on_file.shares_database(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")


class FakeHub:
    def __init__(self, *, running: bool = True, stopped: bool = False) -> None:
        self.running = running
        self.stopped = stopped
        self.entries: list[AuditEntry] = []

    async def record_audit(self, entry: AuditEntry) -> None:
        if self.stopped:
            raise HubStopped("the hub stopped")
        self.entries.append(entry)


class FakeDirectory:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def open(self) -> None:
        return None

    async def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


@pytest.mark.parametrize(
    ("township", "hub", "to_hub"),
    [
        ("ershili", FakeHub(), True),
        (None, FakeHub(), False),  # a sign-in with an unknown name: no township
        ("quick", FakeHub(), False),  # a township whose database is its own
        ("ershili", FakeHub(running=False), False),
        ("ershili", FakeHub(stopped=True), False),  # stopped between the check and the queue
    ],
)
async def test_the_trail_falls_back_to_the_directory(township: str | None, hub: FakeHub, to_hub: bool) -> None:
    directory = FakeDirectory()
    trail = Trail(directory, {"ershili": hub})  # type: ignore[arg-type, dict-item]
    entry = AuditEntry(at=START, action="POST /api/v1/incidents", outcome=201, township=township)
    await trail.record(entry)
    assert (hub.entries, directory.entries) == (([entry], []) if to_hub else ([], [entry]))


async def test_an_audit_entry_waits_for_the_next_change_and_commits_with_it(
    database_url: str, bundled_rules: Any
) -> None:
    rig = HubRig(database_url, bundled_rules, audit_hold_s=30.0)  # far longer than the test: only a change ends it
    await rig.hub.start()
    try:
        writer = rig.hub._writer
        taken = asyncio.Event()  # set when the writer has taken the entry off its queue (and holds it)
        take_queued = writer._take_queued

        def spy(queue: Any, batch: list[Any]) -> bool:
            stopping = take_queued(queue, batch)
            if any(c.light for c in batch):
                taken.set()
            return stopping

        writer._take_queued = spy  # type: ignore[method-assign]
        commits = rig.hub.stats.batch_size.count
        entry = AuditEntry(at=START, action="POST /api/v1/incidents", outcome=201, actor="op-1", township="ershili")
        held = asyncio.create_task(rig.hub.record_audit(entry))
        await asyncio.wait_for(taken.wait(), 10)
        assert not held.done()
        outcome = await rig.hub.report(
            Report(report_id="t-2", category="traffic.congestion", zone="five-way", description="堵"), START
        )
        await held
        assert outcome.created
        assert rig.hub.stats.batch_size.count == commits + 1  # one commit for both
        directory = SqlDirectory(database_url)
        await directory.open()
        stored = await directory.audit(since=None, until=None, township="ershili", limit=10)
        await directory.close()
        assert [e.actor for e in stored] == ["op-1"]
    finally:
        await rig.hub.stop()


async def test_a_lone_audit_entry_commits_after_the_hold(database_url: str, bundled_rules: Any) -> None:
    rig = HubRig(database_url, bundled_rules, audit_hold_s=0.01)
    await rig.hub.start()
    directory = SqlDirectory(database_url)
    try:
        entry = AuditEntry(at=START, action="POST /api/v1/incidents", outcome=201, actor="op-9", township="ershili")
        await rig.hub.record_audit(entry)
        await directory.open()
        stored = await directory.audit(since=None, until=None, township="ershili", limit=10)
        assert [e.actor for e in stored] == ["op-9"]
    finally:
        await directory.close()
        await rig.hub.stop()
