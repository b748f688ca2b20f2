"""The outbox cursor table on each backend: saved, read back, never moved backwards, one row per name."""

from __future__ import annotations

from dispatcher.outbox import SqlOutboxCursor
from dispatcher.sql_store import SqlIncidentStore
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
