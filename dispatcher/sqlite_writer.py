"""SQLite's writer: one thread of its own with one plain ``sqlite3`` connection, a batch per call.

The async driver (aiosqlite) hands every cursor, ``execute`` and ``close`` to its worker thread and
back: some 25–30 hops of the event loop per report. Here a batch's whole commit (``BEGIN IMMEDIATE``,
one statement per table, ``COMMIT``) is one function run on the writer's thread, so a batch costs
one hop there and one back whatever its size.

A table's new rows go to SQLite as one parameter, a JSON array of arrays that ``orjson`` writes in C and SQLite
takes apart in C (``json_each``) with the GIL let go (:func:`write`): ``executemany`` binds every value of every
row with the GIL held, and the event loop's thread waits for it meanwhile (a 100-report batch's rows hold some
14,000 values; on the batch door the writer's thread held the GIL 41–55 µs a report in ``transact``, now 10–15 µs,
``benchmarks/README.md``, i14-jsonrows). The values stored are those ``executemany`` stores, of the same types;
rows holding a value JSON cannot carry exactly are bound one by one as before (:func:`json_rows`).

The hops are as lean as they can be (a report's trip to the board waits for both): a call goes to the thread
through a plain queue, and its outcome comes back by one ``call_soon_threadsafe`` that settles the caller's
future, after which the thread at once blocks on the queue again, so the loop it has just woken finds the GIL
free. Through ``run_in_executor`` the thread still held the GIL while the loop woke (setting the executor's
own future and its chained callbacks, under a lock), and the loop waited for it: an empty call's round trip
took 80–89 µs (median, idle loop, uvloop) against 35–37 µs now (``benchmarks/README.md``, i14-latency).

The connection runs in WAL mode with ``synchronous=FULL``: in WAL mode that is the setting under which
each ``COMMIT`` syncs the log before it returns, so a report answered ``201`` survives a crash of the
process and of the machine. ``NORMAL`` would save that sync and survive a crash of the process only (the
last commits can be lost with the machine's power), which is not the promise; ``EXTRA`` adds nothing in
WAL mode. Throw-away databases (``durable=False``: simulations) take ``synchronous=OFF``.

A simulation's event loop serves nobody but the replay, so it has nothing to do while a commit runs: there
(``inline=True``) the work runs on the loop's own thread, in the same order, without the two hops to the
writer's thread and back (a wake-up of another thread each: on a busy 2-core machine a simulated month's
8,800 commits spent more time waiting for them than writing). A throw-away database written inline also
groups its commits: each call's :func:`transact` is a savepoint (all of that batch or, raising, none of it,
as before) inside a transaction committed every ``GROUP_CALLS`` calls and whenever :meth:`SqliteWriter.flush`
is called (the store calls it before every read through its other connections, which see only what is
committed). A failure of the database itself there loses the uncommitted group: the simulation fails anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import math
import operator
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

import orjson

T = TypeVar("T")

#: Calls whose batches a throw-away database written inline commits together (see the module's docstring).
GROUP_CALLS = 200

#: The WAL's length, in pages, past which a commit copies it back into the database (SQLite's default is
#: 1,000). A checkpoint writes each changed page once however often the log holds it, and the pages a batch
#: of reports changes are mostly the same few (the tables' and indexes' right-hand leaves): with a log four
#: times longer, a 100-report batch's commit costs 1.2–1.5 ms less CPU on average (``benchmarks/README.md``,
#: i14-writer2). The log grows to about 16 MiB (at 4 KiB pages) before each checkpoint, and a restart after
#: a crash replays at most that much.
WAL_AUTOCHECKPOINT_PAGES = 4000


class Insert(NamedTuple):
    """New rows of ``table``, each a sequence of values in the order of ``columns`` (see :func:`write`).

    ``floats``: the positions of the columns whose values may be floats; any other column holds none."""

    table: str
    columns: tuple[str, ...]
    floats: tuple[int, ...] = ()


#: The fewest rows of an :class:`Insert` that go as one JSON text. SQLite's side costs more CPU than binding
#: (about 15 µs a statement, and 1.5–2 times the binding's a row), which pays only while the GIL is fought over:
#: a small batch (a quiet hour's, one report) is bound row by row, a busy door's (tens of reports) goes as JSON.
JSON_MIN_ROWS = 8

#: A statement and the rows it runs for (values by position, or by name), as one ``executemany``; or an
#: :class:`Insert` and its rows by position, as one JSON parameter where they can go that way exactly.
Step = tuple[str | Insert, Sequence[Sequence[Any]] | Sequence[Mapping[str, Any]]]

#: A call for the writer's thread: the caller's loop, its future and what to run.
_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class SqliteWriter:
    """The writer's SQLite connection, owned by a thread of its own; :meth:`run` calls a function there.

    Open, run and close from one event loop. The functions run one at a time, in the order called.
    ``inline``: they run on the loop's thread instead, blocking the loop meanwhile (simulations only).
    """

    def __init__(self, path: str, *, durable: bool = True, inline: bool = False) -> None:
        self.path = path
        self.durable = durable
        self.inline = inline
        self._grouped = inline and not durable
        self._in_group = 0  # calls since the group's transaction began
        self._open = False
        self._calls: queue.SimpleQueue[_Call | None] | None = None  # to the writer's thread; None: stop
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None  # touched on the writer's thread only

    async def open(self) -> None:
        self._open = True
        if self.inline:
            try:
                self._call(lambda _conn: None)
            except BaseException:
                await self.close()
                raise
            return
        self._calls = queue.SimpleQueue()
        # A daemon: a process that exits without closing its store is not held up by the thread (a commit it
        # cuts short is rolled back, as after a crash: nobody was answered for it).
        self._thread = threading.Thread(target=self._serve, args=(self._calls,), name="sqlite-writer", daemon=True)
        self._thread.start()
        try:
            await self.run(lambda _conn: None)  # connects, so that a database it cannot open fails here
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._open = False
        if self.inline:
            try:
                self.flush()
            finally:
                self._disconnect()
            return
        if self._calls is None:
            return
        try:
            await self._on_thread(self._disconnect)
        finally:
            calls, thread, self._calls, self._thread = self._calls, self._thread, None, None
            calls.put(None)
            if thread is not None:
                thread.join()  # at once: the thread has nothing left to do

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` on the writer's thread; raises what it raised. A connection that failed
        with an error of the database itself (not of a value) is closed, and the next call opens a new one."""
        if self.inline and self._open:
            return self._call(work)
        return await self._on_thread(functools.partial(self._call, work))

    async def _on_thread(self, function: Callable[[], T]) -> T:
        if self._calls is None:
            raise sqlite3.InterfaceError("the SQLite writer is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, function))
        try:
            return await future
        finally:
            del future  # a raised exception's traceback holds this frame: no cycle through the future

    def flush(self) -> None:
        """Commit the open group of a throw-away database written inline (nothing otherwise). Loop's thread."""
        conn = self._conn
        if self._grouped and conn is not None and conn.in_transaction:
            self._in_group = 0
            try:
                conn.execute("COMMIT")
            except BaseException:
                self._disconnect()
                raise

    def _serve(self, calls: queue.SimpleQueue[_Call | None]) -> None:
        """The writer's thread: each call in turn, until the stop marker."""
        while (call := calls.get()) is not None:
            loop, future, function = call
            del call
            if future.cancelled():  # its caller went before it started (as an executor's work item): not run
                continue
            try:
                outcome: tuple[Any, BaseException | None] = (function(), None)
            except BaseException as exc:  # noqa: BLE001 - the caller's to hear
                outcome = (None, exc)
            del function  # nothing of the batch is held while the thread waits for the next call
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(_settle, future, *outcome)
            del future, outcome

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn if self._conn is not None else self._connect()
        if self._grouped and not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
        except BaseException as exc:
            if self._grouped:
                self.flush()  # the batches before this one stand; transact() took back this one's part
            if isinstance(exc, sqlite3.OperationalError | sqlite3.InterfaceError) or conn.in_transaction:
                self._disconnect()  # the database failed (not a value), or the transaction could not be ended
            raise
        if self._grouped:
            self._in_group += 1
            if self._in_group >= GROUP_CALLS:
                self.flush()
        return result

    def _connect(self) -> sqlite3.Connection:
        # No implicit transactions: transact() says BEGIN and COMMIT itself.
        pragmas = [
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL" if self.durable else "PRAGMA synchronous=OFF",
            f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}",
            # Each batch's savepoint keeps the pages it changes first in a sub-journal: a temporary file
            # otherwise, written page by page (a simulated month: about 28 writes a batch, most of them).
            *(["PRAGMA temp_store=MEMORY"] if self._grouped else []),
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=30000",
        ]
        self._conn = connect(self.path, pragmas)
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        close_quietly(conn)  # an open transaction ends with the connection, rolled back


def connect(path: str, pragmas: Sequence[str]) -> sqlite3.Connection:
    """A plain connection to the file ``path`` without implicit transactions (``isolation_level=None``), usable from
    another thread than the one that made it, with ``pragmas`` run on it; closed again when one of them fails."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        for pragma in pragmas:
            conn.execute(pragma)
    except BaseException:
        conn.close()
        raise
    return conn


def close_quietly(conn: sqlite3.Connection | None) -> None:
    """Close ``conn`` (if any), ignoring the database's errors: it is being given up."""
    if conn is not None:
        with contextlib.suppress(sqlite3.Error):
            conn.close()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """On the caller's loop: hand a call's outcome to its caller, unless it has stopped waiting."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def transact(conn: sqlite3.Connection, steps: Iterable[Step]) -> None:
    """Run ``steps`` as one transaction: all of them, or, raising, none (each as :func:`write` runs it).

    Inside a transaction already open (a throw-away database's group), as one savepoint of it."""
    if conn.in_transaction:
        conn.execute("SAVEPOINT batch")
        try:
            write(conn, steps)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # the caller hears the first error
                conn.execute("ROLLBACK TO batch")
                conn.execute("RELEASE batch")
            raise
        conn.execute("RELEASE batch")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        write(conn, steps)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the caller hears the first error; the writer reconnects
                conn.execute("ROLLBACK")
        raise


def write(conn: sqlite3.Connection, steps: Iterable[Step]) -> None:
    """Each step in turn, inside the caller's transaction: a statement as one ``executemany``; an :class:`Insert`'s
    rows as one JSON text that SQLite takes apart itself (``json_each``), unless a value cannot go that way exactly
    or they are fewer than :data:`JSON_MIN_ROWS`.

    Why JSON: ``executemany`` binds every value of every row while it holds the GIL (it lets go of it only while
    SQLite steps the statement), and the event loop's thread waits for the GIL meanwhile: a batch of 100 reports
    binds some 14,000 values. ``orjson`` writes the rows' text in C, and SQLite reads it back in C with the GIL
    let go; the values stored are the same, of the same types (:func:`json_rows`).
    """
    for statement, rows in steps:
        if not rows:
            continue
        if isinstance(statement, Insert):
            by_position: Sequence[Sequence[Any]] = rows  # type: ignore[assignment]  # an Insert's rows are
            text = json_rows(by_position, statement.floats) if len(rows) >= JSON_MIN_ROWS else None
            if text is not None:
                conn.execute(_json_insert(statement), (text,))
                continue
            statement = _plain_insert(statement)
        conn.executemany(statement, rows)


#: Anything orjson would write as something else than ``sqlite3`` binds: a datetime (``sqlite3`` adapts it to
#: other text, or refuses it), an integer beyond 53 bits (SQLite 3.40 reads one beyond 64 bits of JSON as REAL, where
#: ``sqlite3`` refuses it), a subclass of str or int that is no enum, a dataclass.
#: orjson then raises, and the rows are bound one by one instead.
_JSON_OPTIONS = (
    orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def json_rows(rows: Sequence[Sequence[Any]], floats: Sequence[int] = ()) -> bytes | None:
    """``rows`` as a JSON array of arrays that SQLite reads back as the very values ``sqlite3`` binds, or None
    where some value cannot go that way: bytes, a str with a lone surrogate or a NUL (SQLite 3.40's ``->>``
    ends a text at an escaped NUL), an infinite or NaN float in a column of ``floats`` (orjson writes null), an
    integer beyond 53 bits, a datetime (see ``_JSON_OPTIONS``).

    Exact otherwise: a float is written as its shortest text that reads back as the same double, an integer
    as its digits, a str as UTF-8 with only ``"``, ``\\`` and control characters escaped, True and False as
    1 and 0 (as ``sqlite3`` binds them); a column's affinity then applies as to a bound value.
    Values that ``sqlite3`` would refuse (a list, a dict, an enum that is no str or int, a UUID) are not looked
    for: orjson writes them, and the row builders make none. Nor are floats outside ``floats``.
    """
    if floats and not _finite(rows, floats):
        return None
    try:
        text = orjson.dumps(rows, option=_JSON_OPTIONS)
    except orjson.JSONEncodeError:
        return None
    # An escaped backslash before the text "u0000" only costs the rows their JSON.
    if b"\\u0000" in text:
        return None
    return text


def _finite(rows: Sequence[Sequence[Any]], floats: Sequence[int]) -> bool:
    """Whether every number in the columns ``floats`` of ``rows`` is finite (or too large to add up: then not)."""
    column = operator.itemgetter(*floats)
    values = map(column, rows) if len(floats) == 1 else itertools.chain.from_iterable(map(column, rows))
    try:
        # In C: fsum's total of finite numbers is finite unless it overflows (OverflowError); an infinity or
        # NaN among them makes it one (or ValueError). None, 0 and the like are left out; a str is a TypeError.
        return math.isfinite(math.fsum(filter(None, values)))
    except (OverflowError, ValueError, TypeError):
        return False


@lru_cache(maxsize=64)
def _json_insert(insert: Insert) -> str:
    # Each row's array is taken out of the text once, into a temporary table (MATERIALIZED), and its values read
    # from there: read straight from json_each, the array is rendered again as text for each of its columns (four
    # times the SQLite's work at 42 columns). The parameter comes as bytes (a BLOB, which json_each refuses): CAST
    # reads them as the UTF-8 text they are, without Python decoding them first.
    listed = ", ".join(f'"{name}"' for name in insert.columns)
    values = ", ".join(f"line ->> {n}" for n in range(len(insert.columns)))
    return (
        "WITH given AS MATERIALIZED (SELECT value AS line FROM json_each(CAST(? AS TEXT))) "
        f'INSERT INTO "{insert.table}" ({listed}) SELECT {values} FROM given'
    )


@lru_cache(maxsize=64)
def _plain_insert(insert: Insert) -> str:
    listed = ", ".join(f'"{name}"' for name in insert.columns)
    return f'INSERT INTO "{insert.table}" ({listed}) VALUES ({", ".join("?" * len(insert.columns))})'
