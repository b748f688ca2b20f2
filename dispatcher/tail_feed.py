"""Boards on any replica: a township hosted by another replica, followed through its event log.

A board needs from a township a snapshot (the open incidents and alarms as of one ``seq``) and then every
event after it, in order, once. Where the township's hub runs here, the hub gives both (its
:class:`~dispatcher.feed.EventFeed`). Where it runs on another replica, a :class:`TailFeed` gives the same
from the database the replicas share:

* **the event table is the truth**: events are read with ``events_since(last_seq)`` (by primary key, a page
  at a time) and published, in ``seq`` order, to an :class:`~dispatcher.feed.EventFeed` of its own, which the
  board code reads exactly as it reads a hub's;
* **NOTIFY is the wake-up**: the owner's store sends ``pg_notify('dispatcher_events', {"township", "seq"})``
  in each commit that logs events (delivered at COMMIT); one ``LISTEN`` connection per database
  (:class:`PgListener`) wakes the tail of the township named;
* **nothing rests on a NOTIFY arriving**: a tail also reads every ``catch_up_s`` (one indexed query, at most
  ``page`` rows), and after its listener connection came back; a lost NOTIFY delays events by at most
  ``catch_up_s``, never loses one. Only events after ``last_seq`` are published, so no event is published
  twice.

The snapshot is read in one ``REPEATABLE READ`` transaction (``SqlIncidentStore.open_state``) and shared by
the boards that connect before the next event. Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

import asyncpg
import orjson
from sqlalchemy.engine import make_url

from dispatcher.alarms import ALARM_EVENTS, OpenAlarms
from dispatcher.core.incidents import Incident
from dispatcher.feed import EventFeed, FeedRecord, feed_message
from dispatcher.ownership import Ownership
from dispatcher.sql_store import EVENTS_CHANNEL
from dispatcher.stats import HubStats
from dispatcher.store import StoredEvent

log = logging.getLogger(__name__)


class LogReader(Protocol):
    """The reads a tail makes of a township's database (``SqlIncidentStore``, which need not be open)."""

    url: str

    async def last_ids(self) -> tuple[int, int]: ...

    async def events_since(self, seq: int, *, limit: int) -> list[StoredEvent]: ...

    async def open_state(self, types: Collection[str]) -> tuple[int, list[Incident], list[StoredEvent]]: ...


class OpenState:
    """The open incidents and open alarms as of ``seq`` (what ``Hub.open_incidents`` and ``hub.alarms`` say)."""

    __slots__ = ("alarms", "incidents", "seq")

    def __init__(self, seq: int, incidents: list[Incident], alarms: list[dict[str, Any]]) -> None:
        self.seq = seq
        self.incidents = incidents
        self.alarms = alarms


class TailFeed:
    """One township hosted elsewhere, as boards read it: ``feed``, ``last_seq``, ``events_since``, ``open_state``."""

    def __init__(
        self,
        township: str,
        reader: LogReader,
        *,
        queue_size: int = 1000,
        ring_size: int = 10_000,
        page: int = 1000,
        catch_up_s: float = 2.0,
    ) -> None:
        self.township = township
        self.feed = EventFeed(queue_size=queue_size, ring_size=ring_size)
        self.stats = HubStats()  # the boards' latency, as a hub's
        self.reads = 0  # catch-up reads made (tests, stats)
        self._reader = reader
        self._page = page
        self._catch_up_s = catch_up_s
        self._wake = asyncio.Event()
        self._reading = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._state: OpenState | None = None
        self._loading: asyncio.Task[OpenState] | None = None
        # For the boards' latency: when each NOTIFY arrived (its seq: the last of the owner's commit), and when
        # the last read that found everything began (events it did not see were committed after it).
        self._notices: dict[int, float] = {}
        self._read_began = time.monotonic()

    @property
    def last_seq(self) -> int:
        """The last event published to this tail's boards (read from the log)."""
        return self.feed.last_seq

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Begin at the end of the log and follow it; raises what the first read raises."""
        self._read_began = time.monotonic()
        _, last_seq = await self._reader.last_ids()
        self.feed.last_seq = last_seq
        self._task = asyncio.create_task(self._follow(), name=f"tail-feed-{self.township}")

    async def stop(self) -> None:
        for task in (self._task, self._loading):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._task, self._loading) if t is not None), return_exceptions=True)
        self._task = None

    def notified(self, seq: int | None) -> None:
        """A NOTIFY (or a reconnected listener, ``seq`` None) says events up to ``seq`` may be committed."""
        if seq is None or seq > self.last_seq:
            if seq is not None and len(self._notices) < _NOTICES_KEPT:
                self._notices.setdefault(seq, time.monotonic())
            self._wake.set()

    async def catch_up(self) -> int:
        """Read and publish every event committed after ``last_seq``; returns how many were published.

        Reads are one at a time (a lock): two readers would publish the same page twice.
        """
        published = 0
        async with self._reading:
            self.reads += 1
            while True:
                began = time.monotonic()
                page = await self._reader.events_since(self.last_seq, limit=self._page)
                fresh = [e for e in page if e.seq > self.last_seq]
                if fresh:
                    records = [FeedRecord(e.seq, e.incident_id, _message(e)) for e in fresh]
                    self.feed.publish(records, self._commit_times(fresh))
                    published += len(fresh)
                if len(page) < self._page:
                    self._read_began = began
                    return published
                await asyncio.sleep(0)  # a long backlog: let the boards send between pages

    def _commit_times(self, events: Sequence[StoredEvent]) -> list[float]:
        """When each event's trip to the boards began (monotonic), and forgets the notices they used up.

        The boards' latency of a tailed event counts from its owner's commit, as near as this replica knows
        it: the arrival of the NOTIFY of its commit (sent by PostgreSQL at COMMIT), else (the notice lost, the
        event found by the periodic read) the start of the last read that did not see it, an upper bound."""
        notices = sorted(self._notices.items())
        started = [next((at for seq, at in notices if seq >= event.seq), self._read_began) for event in events]
        last = events[-1].seq
        self._notices = {seq: at for seq, at in notices if seq > last}
        return started

    async def events_since(self, seq: int, *, limit: int) -> list[StoredEvent]:
        """Logged events after ``seq`` up to what this tail has published (a board's backlog)."""
        if seq >= self.last_seq:
            return []
        return [e for e in await self._reader.events_since(max(seq, 0), limit=limit) if e.seq <= self.last_seq]

    async def open_state(self) -> OpenState:
        """The open incidents and alarms at one instant, shared by the boards connecting before the next event.

        Its ``seq`` may be ahead of ``last_seq`` (the snapshot read saw a commit not yet published here): the
        board then skips the events up to it as they come.
        """
        state = self._state
        if state is not None and state.seq >= self.last_seq:
            return state
        if self._loading is None or self._loading.done():
            self._loading = asyncio.create_task(self._load_state())
        return await asyncio.shield(self._loading)

    async def _load_state(self) -> OpenState:
        seq, incidents, events = await self._reader.open_state(ALARM_EVENTS)
        alarms = OpenAlarms()
        alarms.apply(events)
        state = OpenState(seq, incidents, alarms.snapshot())
        if self._state is None or state.seq >= self._state.seq:
            self._state = state
        return state

    async def _follow(self) -> None:
        delay = 0.2
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._catch_up_s)
            self._wake.clear()
            try:
                await self.catch_up()
                delay = 0.2
            except Exception as exc:  # noqa: BLE001 - the database away: the next round reads again
                log.warning(
                    "township %s: reading the event log failed (%s); again in %.1f s", self.township, exc, delay
                )
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 10.0)


#: NOTIFY arrival times kept for events not read yet (a bound: a tail that cannot read keeps no more).
_NOTICES_KEPT = 10_000


def _message(event: StoredEvent) -> str:
    return feed_message(event.seq, event.type, event.payload)


def _database_of(url: str) -> tuple[str | None, int | None, str | None]:
    parsed = make_url(url)
    return parsed.host, parsed.port, parsed.database


def asyncpg_dsn(url: str) -> str:
    """The DSN asyncpg takes for a SQLAlchemy ``postgresql+asyncpg://`` URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


OnNotice = Callable[[str, int | None], None]


class PgListener:
    """One ``LISTEN dispatcher_events`` connection to one database, kept up; calls ``on_notice(township, seq)``.

    After each (re)connection it calls ``on_notice(township, None)`` for every township it was told of, since
    the NOTIFYs sent while it was down are lost. A connection that stops answering (``keepalive_s``) is
    replaced. Runs on the event loop.
    """

    def __init__(
        self, url: str, on_notice: OnNotice, townships: Callable[[], Collection[str]], *, keepalive_s: float = 5.0
    ) -> None:
        self.url = url
        self.connects = 0
        self._dsn = asyncpg_dsn(url)
        self._on_notice = on_notice
        self._townships = townships
        self._keepalive_s = keepalive_s
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pg-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def backend_pid(self) -> int | None:
        """The listening connection's server process id (tests end it with ``pg_terminate_backend``)."""
        return self._conn.get_server_pid() if self._conn is not None else None

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._session()
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the connection is made again
                log.warning("LISTEN connection to %s lost (%s); again in %.1f s", _where(self.url), exc, delay)
            self.connected.clear()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 10.0)

    async def _session(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn, timeout=10)
        self._conn = conn
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(EVENTS_CHANNEL, self._notice)
            self.connects += 1
            self.connected.set()
            for township in list(self._townships()):
                self._on_notice(township, None)  # what was committed while nobody listened
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._keepalive_s)
                if not lost.is_set():
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), self._keepalive_s)
            raise ConnectionError("the listening connection was closed")
        finally:
            self._conn = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)

    def _notice(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            notice = orjson.loads(payload)
            township, seq = str(notice["township"]), int(notice["seq"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("NOTIFY %s: a payload not understood: %.100r", EVENTS_CHANNEL, payload)
            return
        self._on_notice(township, seq)


def _where(url: str) -> str:
    host, port, database = _database_of(url)
    return f"{database} on {host}:{port or 5432}"


class TailFeeds:
    """The tails of the townships this process serves boards for but does not host, started on first use.

    ``readers`` gives each township's log (its store's read side). When a township this process hosted goes
    elsewhere, the boards following its hub are dropped (``EventFeed.drop_all``): they resume with ``since``
    and are then served by a tail. Runs on the event loop; ``start``/``stop`` from the app's lifespan.
    """

    def __init__(
        self,
        ownership: Ownership,
        readers: Mapping[str, LogReader],
        hub_feeds: Mapping[str, EventFeed] | None = None,
        *,
        queue_size: int = 1000,
        ring_size: int = 10_000,
        catch_up_s: float = 2.0,
        keepalive_s: float = 5.0,
    ) -> None:
        self.ownership = ownership
        self._readers = readers
        self._hub_feeds = hub_feeds or {}
        self._queue_size, self._ring_size, self._catch_up_s = queue_size, ring_size, catch_up_s
        self._keepalive_s = keepalive_s
        self._tails: dict[str, TailFeed] = {}
        self._starting: dict[str, asyncio.Task[TailFeed]] = {}
        self._listeners: dict[tuple[str | None, int | None, str | None], PgListener] = {}
        self._unwatch: Callable[[], None] | None = None

    def start(self) -> None:
        self._unwatch = self.ownership.watch(self._ownership_changed)

    async def stop(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        for task in self._starting.values():
            task.cancel()
        await asyncio.gather(*self._starting.values(), return_exceptions=True)
        for tail in self._tails.values():
            await tail.stop()
        for listener in self._listeners.values():
            await listener.stop()
        self._tails.clear()
        self._listeners.clear()

    def tails(self) -> dict[str, TailFeed]:
        """The tails running now, by township (``/metrics`` reads their boards' latency)."""
        return dict(self._tails)

    def __getitem__(self, township: str) -> TailFeed:
        return self._tails[township]

    def listener_of(self, township: str) -> PgListener | None:
        return self._listeners.get(_database_of(self._readers[township].url))

    async def tail(self, township: str) -> TailFeed:
        """The tail of ``township`` (started now if need be), caught up with the log as of this call."""
        tail = self._tails.get(township)
        if tail is None:
            starting = self._starting.get(township)
            if starting is None:
                starting = self._starting[township] = asyncio.create_task(self._start_tail(township))
            try:
                tail = await asyncio.shield(starting)
            finally:
                if starting.done():
                    self._starting.pop(township, None)
        else:
            await tail.catch_up()  # a board resuming with a recent ``since`` finds it known here
        return tail

    async def _start_tail(self, township: str) -> TailFeed:
        reader = self._readers[township]
        key = _database_of(reader.url)
        # LISTEN/NOTIFY is PostgreSQL's; elsewhere (a SQLite file has one process anyway) the periodic read alone.
        if key not in self._listeners and make_url(reader.url).get_backend_name() == "postgresql":
            listener = PgListener(reader.url, self._notified, self._townships_of(key), keepalive_s=self._keepalive_s)
            listener.start()
            self._listeners[key] = listener
        tail = TailFeed(
            township, reader, queue_size=self._queue_size, ring_size=self._ring_size, catch_up_s=self._catch_up_s
        )
        await tail.start()
        self._tails[township] = tail
        return tail

    def _townships_of(self, key: tuple[str | None, int | None, str | None]) -> Callable[[], Sequence[str]]:
        return lambda: [t for t in self._tails if _database_of(self._readers[t].url) == key]

    def _notified(self, township: str, seq: int | None) -> None:
        tail = self._tails.get(township)
        if tail is not None:
            tail.notified(seq)

    def _ownership_changed(self, township: str, owned: bool) -> None:
        feed = self._hub_feeds.get(township)
        if not owned and feed is not None:
            dropped = feed.drop_all()
            if dropped:
                log.info("township %s is hosted elsewhere now: %d boards resume from its log", township, dropped)
