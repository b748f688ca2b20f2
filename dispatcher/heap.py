"""Keeping Python's cyclic garbage collector off the long-lived heap of open incidents.

A full collection walks every tracked object. With thousands of open incidents in memory it took
170-270 ms, stalling intake and the boards (benchmarks/README.md). Incidents are immutable values
without reference cycles, freed by reference counting alone, so the collector need not look at
them: every ``every_s`` the young generations are collected and whatever survived is frozen
(``gc.freeze``), which full collections skip. Every ``thaw_every_s`` the heap is thawed and collected
once in full, so cyclic garbage among frozen objects is still reclaimed.

While it runs, the youngest generation is collected after ``young_threshold`` net allocations instead of
Python's 700. At 700, intake at saturation collected it about once every eight reports and the next generation
(2-3 ms each, over everything that had survived) every tenth time: about 8 % of the server's CPU, on objects
that reference counting frees within a request anyway (benchmarks/README.md). Fewer, larger young collections
let more of them die first. The frozen heap is untouched by either.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)


class HeapFreezer:
    """Runs on the event loop as one task; ``stop`` thaws the heap and gives back the collector's thresholds."""

    def __init__(self, *, every_s: float = 1.0, thaw_every_s: float = 600.0, young_threshold: int = 20_000) -> None:
        self.every_s = every_s
        self.thaw_every_s = thaw_every_s
        self.young_threshold = young_threshold
        self._task: asyncio.Task[None] | None = None
        self._thresholds: tuple[int, int, int] | None = None

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        gc.set_threshold(self.young_threshold, *self._thresholds[1:])
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
