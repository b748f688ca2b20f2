"""The alarm clock that wakes the hub when the earliest deadline falls due.

The hub keeps deadlines as data; an alarm is only told the next time to wake. Two adapters:
:class:`ApschedulerAlarm` for a running server (APScheduler 3's asyncio scheduler, one date job
that is replaced whenever the earliest deadline changes) and :class:`ManualAlarm` for tests and
simulations on a virtual clock, where the driver fires it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

Wake = Callable[[], Coroutine[Any, Any, None]]


class Alarm(Protocol):
    def start(self, wake: Wake) -> None:
        """Begin; ``wake`` is awaited on the event loop each time the alarm goes off."""
        ...

    def set(self, when: datetime | None) -> None:
        """Go off once at ``when`` (at once if it has passed), replacing any earlier setting; None clears."""
        ...

    def stop(self) -> None: ...


class ApschedulerAlarm:
    """An alarm on APScheduler 3's :class:`AsyncIOScheduler`; call from the event loop thread."""

    _JOB_ID = "deadline-alarm"

    def __init__(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._wake: Wake | None = None
        self._when: datetime | None = None
        self._rings: set[asyncio.Task[None]] = set()

    def start(self, wake: Wake) -> None:
        self._wake = wake
        self._scheduler.start()

    def set(self, when: datetime | None) -> None:
        if when == self._when:
            return
        self._when = when
        if when is None:
            if self._scheduler.get_job(self._JOB_ID):
                self._scheduler.remove_job(self._JOB_ID)
            return
        self._scheduler.add_job(
            self._fire,
            DateTrigger(run_date=when),
            id=self._JOB_ID,
            replace_existing=True,
            misfire_grace_time=None,  # a late alarm must still ring: deadlines never get lost
            coalesce=True,
        )

    async def _fire(self) -> None:
        # The ring runs as a task of its own, so this job instance ends at once: a deadline set while a ring
        # is still committing (due a few ms after it) gets a job instance of its own instead of being skipped
        # by APScheduler as a second instance of a running job, which lost that alarm for good.
        self._when = None
        if self._wake is not None:
            task = asyncio.create_task(self._wake(), name="deadline-ring")
            self._rings.add(task)
            task.add_done_callback(self._rings.discard)

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)


class ManualAlarm:
    """Remembers when it should go off; the driver of a virtual clock calls :meth:`ring`."""

    def __init__(self) -> None:
        self.when: datetime | None = None
        self._wake: Wake | None = None

    def start(self, wake: Wake) -> None:
        self._wake = wake

    def set(self, when: datetime | None) -> None:
        self.when = when

    async def ring(self) -> None:
        self.when = None
        if self._wake is not None:
            await self._wake()

    def stop(self) -> None:
        self._wake = None
