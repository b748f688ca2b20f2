"""``SqlOutboxCursor``: where an outbox stands in the event log, kept in table ``outbox_cursor``.

It has its own connection so that its writes never wait in or hold up the hub's writer; they are few
(the outbox saves every ~100 ms at most) and tiny. The schema comes from the store's migrations, which
run when the hub starts: open this after.

On a SQLite file a save is one statement (an upsert) on a plain ``sqlite3`` connection in a thread of its
own. Through SQLAlchemy it was an UPDATE, a hop back to the event loop, then the COMMIT: SQLite's write lock
stayed held across the loop's turn and the commit's fsync, and the hub's writer, arriving meanwhile, slept
in SQLite's busy handler (1, 2, 5, 10 ms...) — one source of the MQTT notices' p99 (benchmarks/README.md).
Now the lock is held for the statement alone, and the commit skips the fsync (``synchronous=NORMAL``): a
process killed keeps every save (the WAL is written at commit); a power loss may lose the last saves since the
hub's writer's last fsync, and the outbox then re-sends from an older position — never skips an event, since
the cursor only ever names events committed (and made durable) before they were published.
PostgreSQL (and an in-memory SQLite database, for tests) go through SQLAlchemy as before.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from dispatcher.connection_budget import ConnectionBudget
from dispatcher.sql_store import _sqlite_time, build_engine
from dispatcher.sqlite_writer import WAL_AUTOCHECKPOINT_PAGES, close_quietly, connect
from dispatcher.tables import OutboxCursorRow

cursor_t = SQLModel.metadata.tables[OutboxCursorRow.__tablename__]

T = TypeVar("T")

# Never moves the cursor backwards: a late save (from before) leaves a newer position as it is.
_SQLITE_SAVE = (
    "INSERT INTO outbox_cursor (name, last_seq, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq, updated_at = excluded.updated_at "
    "WHERE outbox_cursor.last_seq <= excluded.last_seq"
)
_SQLITE_LOAD = "SELECT last_seq FROM outbox_cursor WHERE name = ?"


class SqlOutboxCursor:
    """Load and save one named cursor. All methods are awaited on the event loop.

    Saves are applied in the order they were made (one connection, one thread); a save naming an older
    position than the one stored changes nothing.
    """

    def __init__(self, url: str, name: str, *, budget: ConnectionBudget | None = None) -> None:
        """``budget``: a replica's connection budget (:mod:`dispatcher.connection_budget`) to draw on."""
        self.name = name
        parsed = make_url(url)
        database = parsed.database or ""
        self._file: _SqliteCursorFile | None = None
        self._engine: AsyncEngine | None = None
        if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
            self._file = _SqliteCursorFile(str(Path(database).expanduser()))
        else:
            self._engine = build_engine(url, pool_size=1, budget=budget)

    async def load(self) -> int | None:
        """The last seq saved under this name, or None when this outbox never saved one."""
        if self._file is not None:
            return await self._file.run(lambda conn: _sqlite_load(conn, self.name))
        assert self._engine is not None
        async with self._engine.connect() as conn:
            query = sa.select(cursor_t.c.last_seq).where(cursor_t.c.name == self.name)
            value = (await conn.execute(query)).scalar()
        return None if value is None else int(value)

    async def save(self, last_seq: int, at: datetime) -> None:
        """Record ``last_seq`` (never moves the cursor backwards)."""
        if self._file is not None:
            row = (self.name, last_seq, _sqlite_time(at))
            await self._file.run(lambda conn: conn.execute(_SQLITE_SAVE, row))
            return
        assert self._engine is not None
        async with self._engine.begin() as conn:
            updated = await conn.execute(
                sa.update(cursor_t)
                .where(cursor_t.c.name == self.name, cursor_t.c.last_seq <= last_seq)
                .values(last_seq=last_seq, updated_at=at)
            )
            if updated.rowcount == 0:
                exists = await conn.execute(sa.select(cursor_t.c.name).where(cursor_t.c.name == self.name))
                if exists.first() is None:
                    await conn.execute(sa.insert(cursor_t).values(name=self.name, last_seq=last_seq, updated_at=at))

    async def close(self) -> None:
        if self._file is not None:
            await self._file.close()
        if self._engine is not None:
            await self._engine.dispose()


def _sqlite_load(conn: sqlite3.Connection, name: str) -> int | None:
    row = conn.execute(_SQLITE_LOAD, (name,)).fetchone()
    return None if row is None else int(row[0])


class _SqliteCursorFile:
    """One autocommit ``sqlite3`` connection to a SQLite file, used by one thread of its own.

    Opened on first use (in that thread); a connection that failed is closed and opened again next time.
    Its thread is started on first use and ends at :meth:`close`.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` in the cursor's thread, after every call made before it."""
        if self._thread is None:  # first use, or used again after close (as an engine can be after dispose)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-cursor")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn or self._connect()
        try:
            return work(conn)
        except sqlite3.Error:
            self._disconnect()
            raise

    def _connect(self) -> sqlite3.Connection:
        # Autocommit: each statement is its own transaction, so the write lock lasts one statement.
        # synchronous=NORMAL: why it is enough is in the module's docstring. The log's length before a checkpoint is
        # the writer's: with SQLite's default (1,000 pages) this connection's commit, ten a second, would checkpoint
        # the log the writer lets grow to 4,000, undoing what that saves (each save then copied and synced pages).
        self._conn = connect(
            self.path,
            [
                "PRAGMA busy_timeout=30000",
                "PRAGMA synchronous=NORMAL",
                f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}",
            ],
        )
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        close_quietly(conn)

    async def close(self) -> None:
        """Close the connection (after the calls made before) and let the thread end."""
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(thread, self._disconnect)
            thread.shutdown(wait=False)
