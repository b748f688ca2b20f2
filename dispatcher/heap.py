"""Keeping Python's cyclic garbage collector off the long-lived heap of open incidents.

A full collection walks every tracked object. With thousands of open incidents in memory it took
170-270 ms, stalling intake and the boards (benchmarks/README.md). Incidents are immutable values
without reference cycles, freed by reference counting alone, so the collector need not look at
them: every ``every_s`` the young generations are collected and whatever survived is frozen
(``gc.freeze``), which full collections skip. Every ``thaw_every_s`` the heap is thawed and collected
once in full, so cyclic garbage among frozen objects is still reclaimed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)


class HeapFreezer:
    """Runs on the event loop as one task; ``stop`` thaws the heap."""

    def __init__(self, *, every_s: float = 1.0, thaw_every_s: float = 600.0) -> None:
        self.every_s = every_s
        self.thaw_every_s = thaw_every_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        self._task = asyncio.create_task(self._run(), name="heap-freezer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
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
