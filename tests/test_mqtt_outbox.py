"""The outbox cursor table on each backend: saved, read back, never moved backwards, one row per name."""

from __future__ import annotations

from pathlib import Path

from dispatcher.outbox import SqlOutboxCursor
from dispatcher.sql_store import SqlIncidentStore
from dispatcher.sqlite_writer import WAL_AUTOCHECKPOINT_PAGES, connect
from tests.conftest import START


async def test_the_cursor_is_saved_per_name_and_never_goes_back(database_url: str) -> None:
    store = SqlIncidentStore(database_url)
    await store.open()  # the migrations create the table
    first, other = SqlOutboxCursor(database_url, "dispatcher"), SqlOutboxCursor(database_url, "dispatcher-b")
    try:
        assert await first.load() is None
        await first.save(5, START)
        await first.save(12, START)
        await first.save(7, START)  # a late save from before must not rewind it
        await other.save(3, START)
        assert (await first.load(), await other.load()) == (12, 3)
        await other.close()
        assert await other.load() == 3  # used again after close (a gateway stopped and started again)
        await first.close()
        first = SqlOutboxCursor(database_url, "dispatcher")  # as a restarted process reads it
        assert await first.load() == 12
    finally:
        await first.close()
        await other.close()
        await store.close()


async def test_a_save_leaves_the_log_as_long_as_the_writer_lets_it_grow(tmp_path: Path) -> None:
    """A save is a commit on a connection of its own: it must not checkpoint a log shorter than the writer's limit
    (the writer's pages copied back into the file ten times a second, at SQLite's default of 1,000 pages)."""
    path = tmp_path / "dispatcher.db"
    store = SqlIncidentStore(f"sqlite+aiosqlite:///{path}")
    await store.open()
    await store.close()
    other = connect(str(path), ["PRAGMA journal_mode=WAL", "PRAGMA wal_autocheckpoint=0"])  # the writer's part
    try:
        other.execute("CREATE TABLE filler (b BLOB)")
        other.execute("BEGIN")  # one transaction: the log then holds each page once (~1,500 pages)
        other.executemany("INSERT INTO filler VALUES (?)", [(b"x" * 3000,) for _ in range(1500)])
        other.execute("COMMIT")
        file_before = path.stat().st_size
        cursor = SqlOutboxCursor(f"sqlite+aiosqlite:///{path}", "dispatcher")
        try:
            await cursor.save(1, START)
            assert await cursor.load() == 1
        finally:
            await cursor.close()
        assert WAL_AUTOCHECKPOINT_PAGES > 1500
        assert path.stat().st_size == file_before  # nothing was copied back from the log
    finally:
        other.close()
