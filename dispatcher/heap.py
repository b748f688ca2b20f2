"""Keeping Python's cyclic garbage collector off the long-lived heap of open incidents.

A full collection walks every tracked object. With thousands of open incidents in memory it took
170-270 ms, stalling intake and the boards (benchmarks/README.md). Incidents are immutable values
without reference cycles, freed by reference counting alone, so the collector need not look at
them: every ``every_s`` the young generations are collected and whatever survived is frozen
(``gc.freeze``), which full collections skip. Every ``thaw_every_s`` the heap is thawed and collected
once in full, so cyclic garbage among frozen objects is still reclaimed.

While it runs, Python's own full collections are off (the oldest generation's threshold is set out of reach):
they are this task's job. After a freeze the collector's estimate of the long-lived heap is near zero, so its
rule "collect in full when a quarter more has survived" held after every ten collections of the middle
generation, and each full collection walked everything that had survived since the last freeze: about once
a second at saturation, some 20 ms of CPU each. Without them the collector's CPU on the batch door fell from
about 34 to 17 us a report (benchmarks/README.md). The young generations are collected as before.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

#: The oldest generation's threshold while the freezer runs: middle-generation collections before a full one.
_NEVER = 1_000_000_000


class HeapFreezer:
    """Runs on the event loop as one task; ``stop`` thaws the heap and gives back the collector's thresholds."""

    def __init__(self, *, every_s: float = 1.0, thaw_every_s: float = 600.0) -> None:
        self.every_s = every_s
        self.thaw_every_s = thaw_every_s
        self._task: asyncio.Task[None] | None = None
        self._thresholds: tuple[int, int, int] | None = None

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        gc.set_threshold(*self._thresholds[:2], _NEVER)
        self._task = asyncio.create_task(self._run(), name="heap-freezer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
        gc.unfreeze()

    async def _run(self) -> None:
        since_thaw = 0.0
        while True:
            await asyncio.sleep(self.every_s)
            since_thaw += self.every_s
            if since_thaw >= self.thaw_every_s:
                since_thaw = 0.0
                started = time.perf_counter()
                gc.unfreeze()
                found = gc.collect()
                log.debug("full collection: %d unreachable, %.1f ms", found, (time.perf_counter() - started) * 1e3)
            else:
                gc.collect(1)
            gc.freeze()
