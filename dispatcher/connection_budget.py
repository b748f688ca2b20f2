"""One PostgreSQL connection budget for every engine of a replica, whatever the number of townships it hosts.

Each township has a database of its own, so each has an engine of its own, and a connection belongs to one
database: a pool per engine would hold connections in proportion to the townships (a writer and a reader
each: 30 townships on one replica took some 75 of a server's 100). Here the engines of a replica share one
:class:`ConnectionBudget`: at most ``limit`` connections are open at once, over all of them. A connection
given back stays open (idle) for its engine's next use, so a replica whose townships fit in the budget
reconnects nothing; when an engine needs one and the budget is spent, the connection idle longest (of any
engine) is closed for it, and when none is idle the caller waits (up to ``timeout_s``, then
``sqlalchemy.exc.TimeoutError``, which the store answers as unavailable).

:class:`BudgetPool` is the SQLAlchemy pool each such engine uses (``poolclass``); everything here runs on the
event loop's thread (SQLAlchemy calls the pool from its greenlets, whose waits are ``await_``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.pool import ConnectionPoolEntry, Pool
from sqlalchemy.util import await_


class ConnectionBudget:
    """At most ``limit`` connections open at once across the engines built with it.

    ``application_name`` is set on every connection (``pg_stat_activity`` says whose it is). ``open`` counts
    the connections open now (in use or idle), ``evictions`` the idle ones closed for another engine's use.
    """

    def __init__(self, limit: int, *, application_name: str | None = None, timeout_s: float = 30.0) -> None:
        if limit < 1:
            raise ValueError("a connection budget needs at least one connection")
        self.limit = limit
        self.application_name = application_name
        self.timeout_s = timeout_s
        self.open = 0
        self.evictions = 0
        self._idle: OrderedDict[ConnectionPoolEntry, BudgetPool] = OrderedDict()  # given back longest ago first
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._poolclass: type[BudgetPool] = type("BudgetPool", (BudgetPool,), {"budget": self})

    @property
    def poolclass(self) -> type[BudgetPool]:
        """The pool class of an engine that takes its connections from this budget."""
        return self._poolclass

    @property
    def idle(self) -> int:
        return len(self._idle)

    def _claim(self) -> tuple[bool, ConnectionPoolEntry | None]:
        """A slot for one more connection: (granted, an idle connection of another engine to close first)."""
        if self.open < self.limit:
            self.open += 1
            return True, None
        if self._idle:
            record, owner = self._idle.popitem(last=False)
            owner._forget(record)
            self.evictions += 1
            return True, record  # its slot passes to the caller once it is closed
        return False, None

    def _release(self) -> None:
        self.open -= 1
        self._wake()

    def _rest(self, record: ConnectionPoolEntry, pool: BudgetPool) -> None:
        self._idle[record] = pool
        self._wake()

    def _resume(self, record: ConnectionPoolEntry) -> None:
        self._idle.pop(record, None)

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _wait(self, deadline: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken as the time ran out: the next waiter has it
            raise sa.exc.TimeoutError(
                f"all {self.limit} connections of the budget stayed in use for {self.timeout_s:.0f} s"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)


class BudgetPool(Pool):
    """A pool whose connections count against its class's :class:`ConnectionBudget` (made by the budget)."""

    budget: ClassVar[ConnectionBudget]
    _is_asyncio = True  # waits with await_, as AsyncAdaptedQueuePool does

    def __init__(self, creator: Any, **kw: Any) -> None:
        super().__init__(creator, **kw)
        self._idle: list[ConnectionPoolEntry] = []
        self._disposed = False

    def _forget(self, record: ConnectionPoolEntry) -> None:
        with contextlib.suppress(ValueError):
            self._idle.remove(record)

    def _do_get(self) -> ConnectionPoolEntry:
        deadline = time.monotonic() + self.budget.timeout_s
        while True:
            if self._idle:
                record = self._idle.pop()  # the most recent: the others may age out first
                self.budget._resume(record)
                return record
            granted, evicted = self.budget._claim()
            if granted:
                if evicted is not None:
                    with contextlib.suppress(Exception):  # a broken connection is gone anyway
                        evicted.close()
                try:
                    return self._create_connection()
                except BaseException:
                    self.budget._release()
                    raise
            await_(self.budget._wait(deadline))

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        if self._disposed:  # its engine was disposed while this one was in use
            try:
                record.close()
            finally:
                self.budget._release()
            return
        self._idle.append(record)
        self.budget._rest(record, self)

    def dispose(self) -> None:
        self._disposed = True
        while self._idle:
            record = self._idle.pop()
            self.budget._resume(record)
            try:
                record.close()
            except Exception:  # noqa: BLE001 - closing a connection that broke: its slot is free either way
                pass
            finally:
                self.budget._release()

    def recreate(self) -> BudgetPool:
        return self.__class__(
            self._creator,
            recycle=self._recycle,
            echo=self.echo,
            logging_name=self._orig_logging_name,
            reset_on_return=self._reset_on_return,
            pre_ping=self._pre_ping,
            _dispatch=self.dispatch,
            dialect=self._dialect,
        )

    def status(self) -> str:
        budget = self.budget
        return f"BudgetPool: {len(self._idle)} idle here; budget {budget.open} of {budget.limit} open"
