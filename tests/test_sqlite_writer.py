"""SQLite's writer thread: a batch in one call, durable settings, and a fresh connection after a failure."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import SQLModel

from dispatcher import sql_store
from dispatcher.alarm import ManualAlarm
from dispatcher.audit_entries import AUDIT_COLUMNS, AuditEntry, audit_row, storable
from dispatcher.clock import VirtualClock
from dispatcher.core.incidents import Report
from dispatcher.feed import EventFeed
from dispatcher.hub import Hub
from dispatcher.sql_store import SqlIncidentStore
from dispatcher.sqlite_writer import WAL_AUTOCHECKPOINT_PAGES, SqliteWriter, transact
from dispatcher.store import Changes, IncidentFilter, StoreUnavailable
from rules import RuleBook
from tests.conftest import START, HubRig


def _writer(rig: HubRig) -> SqliteWriter:
    store = rig.hub.store
    assert isinstance(store, SqlIncidentStore) and store._sqlite is not None
    return store._sqlite


def _report(report_id: str) -> Report:
    return Report(report_id=report_id, category="traffic.congestion", description="congestion", zone="five-way")


async def test_each_batch_is_written_by_one_call_on_the_writer_thread(
    sqlite_rig: HubRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = _writer(sqlite_rig)
    store = sqlite_rig.hub.store
    threads: list[str] = []
    calls, commits = 0, 0
    real_run, real_commit = writer.run, store.commit

    async def run(work: Any) -> Any:
        nonlocal calls
        calls += 1

        def traced(conn: sqlite3.Connection) -> Any:
            threads.append(threading.current_thread().name)
            return work(conn)

        return await real_run(traced)

    async def commit(changes: Any) -> None:
        nonlocal commits
        commits += 1
        await real_commit(changes)

    monkeypatch.setattr(writer, "run", run)
    monkeypatch.setattr(store, "commit", commit)

    outcomes = await asyncio.gather(
        *(sqlite_rig.hub.report(_report(f"r-{n}"), sqlite_rig.clock.now()) for n in range(60))
    )

    assert all(o.created for o in outcomes)
    assert 1 <= commits < 60  # reports that queued together were committed together
    assert calls == commits  # one call on the thread per batch, whatever its size
    assert set(threads) == {threads[0]} and threads[0].startswith("sqlite-writer")
    _, count = await sqlite_rig.hub.list_incidents(IncidentFilter(), limit=1, offset=0)
    assert count == 60


async def test_the_writer_connection_syncs_every_commit(sqlite_rig: HubRig) -> None:
    def settings(conn: sqlite3.Connection) -> tuple[Any, ...]:
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
            conn.execute("PRAGMA foreign_keys").fetchone()[0],
        )

    assert await _writer(sqlite_rig).run(settings) == ("wal", 2, 1)  # 2: FULL


async def test_the_writer_connection_checkpoints_a_longer_log_than_sqlites_default(sqlite_rig: HubRig) -> None:
    def pages(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

    assert WAL_AUTOCHECKPOINT_PAGES > 1000  # SQLite's default
    assert await _writer(sqlite_rig).run(pages) == WAL_AUTOCHECKPOINT_PAGES


async def test_a_failed_database_call_gets_a_fresh_connection_and_changes_nothing(tmp_path: Path) -> None:
    writer = SqliteWriter(str(tmp_path / "w.db"))
    await writer.open()
    try:
        await writer.run(lambda conn: conn.execute("CREATE TABLE t (x INTEGER NOT NULL)"))
        first = await writer.run(lambda conn: conn)

        def half_then_fail(conn: sqlite3.Connection) -> None:
            transact(conn, [("INSERT INTO t (x) VALUES (:x)", [{"x": 1}]), ("INSERT INTO nowhere VALUES (:x)", [{}])])

        with pytest.raises(sqlite3.OperationalError):
            await writer.run(half_then_fail)
        second = await writer.run(lambda conn: conn)
        assert second is not first
        assert await writer.run(lambda conn: conn.execute("SELECT count(*) FROM t").fetchone()[0]) == 0
    finally:
        await writer.close()


async def test_an_unreachable_sqlite_file_is_reported_unavailable(
    sqlite_rig: HubRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database's own failure (here: the writer connection cannot open) is a 503, not a refused value."""
    writer = _writer(sqlite_rig)
    await writer.run(lambda conn: conn.close())  # the thread's connection is gone: it must open a new one
    monkeypatch.setattr(writer, "path", str(Path(writer.path).parent / "missing" / "nowhere.db"))
    writer._conn = None

    with pytest.raises(StoreUnavailable, match="nothing was written"):
        await sqlite_rig.hub.report(_report("lost"), sqlite_rig.clock.now())

    monkeypatch.undo()
    assert (await sqlite_rig.hub.report(_report("lost"), sqlite_rig.clock.now())).created


async def test_a_simulation_store_commits_on_the_loop_thread_and_still_whole_or_not_at_all(tmp_path: Path) -> None:
    """``inline``: the work runs on the calling thread (a simulation's loop serves nothing else); one
    transaction as before, and a failed call still rolls back and gets a fresh connection."""
    writer = SqliteWriter(str(tmp_path / "w.db"), durable=False, inline=True)
    await writer.open()
    try:
        await writer.run(lambda conn: conn.execute("CREATE TABLE t (x INTEGER NOT NULL)"))
        assert await writer.run(lambda _conn: threading.current_thread()) is threading.current_thread()
        assert await writer.run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]) == 0  # OFF
        first = await writer.run(lambda conn: conn)

        def half_then_fail(conn: sqlite3.Connection) -> None:
            transact(conn, [("INSERT INTO t (x) VALUES (:x)", [{"x": 1}]), ("INSERT INTO nowhere VALUES (:x)", [{}])])

        with pytest.raises(sqlite3.OperationalError):
            await writer.run(half_then_fail)
        assert await writer.run(lambda conn: conn) is not first
        await writer.run(lambda conn: transact(conn, [("INSERT INTO t (x) VALUES (:x)", [{"x": 2}, {"x": 3}])]))
        assert await writer.run(lambda conn: conn.execute("SELECT x FROM t ORDER BY x").fetchall()) == [(2,), (3,)]
    finally:
        await writer.close()
    with pytest.raises(sqlite3.InterfaceError):
        await writer.run(lambda conn: conn)


async def test_a_throw_away_database_groups_its_commits_and_each_batch_stays_whole(tmp_path: Path) -> None:
    """Inline and not durable: batches are savepoints of a group committed on ``flush`` (the store calls it
    before every read through its engine) and at close; a batch that fails leaves nothing, the others stand."""
    path = tmp_path / "w.db"
    writer = SqliteWriter(str(path), durable=False, inline=True)
    await writer.open()
    insert = "INSERT INTO t (x) VALUES (:x)"

    def seen() -> list[int]:
        with contextlib.closing(sqlite3.connect(path)) as reader:
            return [x for (x,) in reader.execute("SELECT x FROM t ORDER BY x")]

    try:
        await writer.run(lambda conn: transact(conn, [("CREATE TABLE t (x INTEGER NOT NULL)", [{}])]))
        await writer.run(lambda conn: transact(conn, [(insert, [{"x": 1}, {"x": 2}])]))
        with pytest.raises(sqlite3.IntegrityError):  # its first row went in, its second is refused: neither stays
            await writer.run(lambda conn: transact(conn, [(insert, [{"x": 3}]), (insert, [{"x": None}])]))
        await writer.run(lambda conn: transact(conn, [(insert, [{"x": 4}])]))
        writer.flush()
        assert seen() == [1, 2, 4]
        await writer.run(lambda conn: transact(conn, [(insert, [{"x": 5}])]))
        assert seen() == [1, 2, 4]  # not committed yet: another connection sees the group's start
    finally:
        await writer.close()
    assert seen() == [1, 2, 4, 5]  # closing commits the group


async def test_a_simulation_store_reads_what_its_grouped_writer_wrote(tmp_path: Path, bundled_rules: RuleBook) -> None:
    clock = VirtualClock(START)
    store = SqlIncidentStore(f"sqlite+aiosqlite:///{tmp_path / 'sim.db'}", durable=False, inline_writes=True)
    hub = Hub(
        store=store,
        rules=bundled_rules,
        clock=clock,
        alarm=ManualAlarm(),
        feed=EventFeed(queue_size=10),
        duplicate_radius_m=0,
    )
    await hub.start()
    try:
        created = [(await hub.report(_report(f"r-{n}"), clock.now())).incident for n in range(3)]
        _, count = await hub.list_incidents(IncidentFilter(), limit=10, offset=0)
        assert count == 3
        assert await store.get(created[1].id) == created[1]
    finally:
        await hub.stop()


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("incident", sql_store._NEW_INCIDENT_COLUMNS),
        ("assignment", sql_store._NEW_ASSIGNMENT_COLUMNS),
        ("event", sql_store._NEW_EVENT_COLUMNS),
        ("report_key", sql_store._NEW_REPORT_KEY_COLUMNS),
    ],
)
def test_the_rows_every_report_makes_name_each_column_of_their_table_once(table: str, columns: tuple[str, ...]) -> None:
    # These rows are tuples bound by position: a column added to the table and not to the row would be left
    # to its default on every insert, silently.
    assert sorted(columns) == sorted(c.name for c in SQLModel.metadata.tables[table].columns)


async def test_a_call_whose_caller_went_before_it_started_is_not_run_and_close_ends_the_thread(tmp_path: Path) -> None:
    """The thread takes calls in order; one whose caller was cancelled while it waited its turn is skipped (as an
    executor's work item is), the next ones run, and closing ends the thread."""
    writer = SqliteWriter(str(tmp_path / "w.db"))
    await writer.open()
    thread = writer._thread
    assert thread is not None and thread.is_alive()
    release = threading.Event()
    ran: list[str] = []

    def first(_conn: sqlite3.Connection) -> None:
        assert release.wait(10)
        ran.append("first")

    try:
        busy = asyncio.create_task(writer.run(first))
        gone = asyncio.create_task(writer.run(lambda _conn: ran.append("gone")))
        await asyncio.sleep(0)  # both calls are queued: the thread is inside the first
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        release.set()
        await busy
        await writer.run(lambda _conn: ran.append("last"))
        assert ran == ["first", "last"]
    finally:
        release.set()
        await writer.close()
    assert not thread.is_alive()


def _one_by_one(value: Any) -> Any:
    return None if value is None else sql_store._sqlite_time(value)


async def test_a_batchs_rows_are_each_value_made_on_its_own(
    sqlite_rig: HubRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's thread formats each distinct time of a batch once, makes the deadline columns that an incident's
    assignments share once, and binds audit rows by position: the rows are those of every value made on its own."""
    store = sqlite_rig.hub.store
    captured: list[Changes] = []
    real_commit = store.commit

    async def commit(changes: Changes) -> None:
        changes.audit = [
            AuditEntry(
                at=sqlite_rig.clock.now(), action="POST /api/v1/incidents", outcome=201, actor="op", source="::1"
            ),
            AuditEntry(at=START, action="GET /x", outcome=404, target="/x/\x00/\ud800", detail="路口 " * 300),
        ]
        captured.append(changes)
        await real_commit(changes)

    monkeypatch.setattr(store, "commit", commit)
    categories = [("traffic.congestion", "five-way"), ("market.unlicensed_vendor", "market")]
    for round_ in range(3):
        sqlite_rig.clock.advance(timedelta(seconds=1))
        reports = [
            Report(report_id=f"r-{round_}-{n}", category=c, description="d", zone=z)
            for n, (c, z) in enumerate(categories * 3)
        ]
        await sqlite_rig.hub.report_many(reports, sqlite_rig.clock.now())

    assert captured and all(c.created for c in captured)
    for changes in captured:
        steps = {statement: rows for statement, rows in sql_store._sqlite_steps(changes) if rows}

        def rows_of(table: str, columns: tuple[str, ...], steps: dict[Any, Any] = steps) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in steps[sql_store._sqlite_insert(table, columns)]]

        assert rows_of("incident", sql_store._NEW_INCIDENT_COLUMNS) == [
            sql_store._incident_values(i, _one_by_one) for i in changes.created
        ]
        assert rows_of("assignment", sql_store._NEW_ASSIGNMENT_COLUMNS) == [
            sql_store._assignment_values(i.id, n, a, _one_by_one)
            for i in changes.created
            for n, a in enumerate(i.assignments)
        ]
        assert rows_of("event", sql_store._NEW_EVENT_COLUMNS) == [
            (e.seq, e.incident_id, e.type, _one_by_one(e.at), e.payload) for e in changes.events
        ]
        assert rows_of("audit", AUDIT_COLUMNS) == [
            tuple(_one_by_one(v) if k == "at" else v for k, v in audit_row(e).items()) for e in changes.audit
        ]
    hostile = rows_of("audit", AUDIT_COLUMNS)[1]  # the last batch's
    assert hostile[1:5] == (None, None, "GET /x", "/x/\\x00/\\ud800") and len(hostile[7]) == len("路口 " * 300)


@pytest.mark.parametrize(
    "text", ["", "plain", "a\x00b", "\ud800", "路口", "a" * 600, "é\x00" * 300, "\x00", "tab\tand\nnewline"]
)
@pytest.mark.parametrize("limit", [None, 1, 64, 512])
def test_an_audit_text_is_stored_as_its_escaped_form(text: str, limit: int | None) -> None:
    # ASCII without a NUL skips the escaping: the same text as escaping it would give.
    escaped = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    assert storable(text, limit) == (escaped[:limit] if limit is not None else escaped)


def test_an_audit_row_names_each_column_of_its_table_but_the_id_once() -> None:
    assert sorted(AUDIT_COLUMNS) == sorted(c.name for c in SQLModel.metadata.tables["audit"].columns if c.name != "id")


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 6, 1, tzinfo=UTC),
        datetime(2026, 6, 1, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(2026, 6, 1, 8, 30, 0, 7, tzinfo=timezone(timedelta(hours=8))),
        datetime(2026, 6, 1, 8, 30, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    ],
)
def test_a_time_is_stored_as_its_utc_text_with_microseconds(value: datetime) -> None:
    assert sql_store._sqlite_time(value) == value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        sql_store._sqlite_time(datetime(2026, 6, 1))
