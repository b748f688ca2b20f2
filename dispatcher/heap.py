"""Keeping Python's cyclic garbage collector off the long-lived heap of open incidents.

A full collection walks every tracked object. With thousands of open incidents in memory it took
170-270 ms, stalling intake and the boards (benchmarks/README.md). Incidents are immutable values
without reference cycles, freed by reference counting alone, so the collector need not look at
them: every ``every_s`` the youngest generation is collected and whatever survived is frozen
(``gc.freeze``), which full collections skip. Every ``thaw_every_s`` the heap is thawed and collected
once in full, so cyclic garbage among frozen objects is still reclaimed.

Before a freeze the middle generation is walked only when a young collection since the last round found cyclic
garbage (``gc.collect(1)`` every round until i14-core3). It holds what survived a young collection since the last
freeze (about a second of new incidents at saturation, some 90,000 objects), and walking it cost 30-60 ms of the
loop thread's CPU a second, about 10 us a report at the batch door, and found nothing: a clean workload makes no
cyclic garbage once it runs (none found by any collection, nor by the thaws, benchmarks/README.md, i14-core3).
A workload that does make it (requests failing with unexpected exceptions, whose tracebacks hold cycles: millions
of objects a minute in a run where every request failed) shows it in the young collections too, and then the
middle generation is walked as before, so that the garbage is not frozen until the next thaw. Cycles that die
only after a young collection saw them alive, with none found young, are frozen and reclaimed at the next thaw.

While it runs, Python's own full collections are off (the oldest generation's threshold is set out of reach):
they are this task's job. After a freeze the collector's estimate of the long-lived heap is near zero, so its
rule "collect in full when a quarter more has survived" held after every ten collections of the middle
generation, and each full collection walked everything that had survived since the last freeze: about once
a second at saturation, some 20 ms of CPU each. Without them the collector's CPU on the batch door fell from
about 34 to 17 us a report (benchmarks/README.md).

The youngest generation's threshold can be raised too (``young``; the server takes :data:`SERVING_YOUNG`). At
Python's 700, a collection of it came every few reports at saturation and walked whatever the requests in
flight still held (64 at once in the benchmark); those objects survived into the middle generation and were
walked again there: 38-39 us of collector CPU a report at the single report door. With 20,000, collections
come thirty times less often and each finds a smaller share of its objects still alive: 14-15 us a report
(benchmarks/README.md, i14-one). The price: a longer pause when one comes (up to about 10 ms of CPU for the
middle generation's, against about 4), and cyclic garbage held until up to 20,000 objects more were made.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

#: The oldest generation's threshold while the freezer runs: middle-generation collections before a full one.
_NEVER = 1_000_000_000

#: The youngest generation's threshold the server runs with (see the module's docstring; Python's default is 700).
SERVING_YOUNG = 20_000


class HeapFreezer:
    """Runs on the event loop as one task; ``stop`` thaws the heap and gives back the collector's thresholds.

    ``young``: the youngest generation's threshold while it runs (None: left as it is).
    """

    def __init__(self, *, every_s: float = 1.0, thaw_every_s: float = 600.0, young: int | None = None) -> None:
        self.every_s = every_s
        self.thaw_every_s = thaw_every_s
        self.young = young
        self._task: asyncio.Task[None] | None = None
        self._thresholds: tuple[int, int, int] | None = None
        self._since_thaw = 0.0
        self._young_found = gc.get_stats()[0]["collected"]

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        young, middle, _ = self._thresholds
        gc.set_threshold(self.young if self.young is not None else young, middle, _NEVER)
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
        while True:
            await asyncio.sleep(self.every_s)
            self.tick()

    def tick(self) -> None:
        """One round, ``every_s`` after the last: collect the youngest generation (the middle one too when young
        collections found cyclic garbage since the last round) and freeze, or thaw and collect in full once
        ``thaw_every_s`` has passed. Runs on the event loop (it holds the GIL while it walks)."""
        self._since_thaw += self.every_s
        if self._since_thaw >= self.thaw_every_s:
            self._since_thaw = 0.0
            started = time.perf_counter()
            gc.unfreeze()
            found = gc.collect()
            log.debug("full collection: %d unreachable, %.1f ms", found, (time.perf_counter() - started) * 1e3)
        else:
            gc.collect(0)
            if gc.get_stats()[0]["collected"] != self._young_found:  # by every young collection so far, this one too
                gc.collect(1)
        self._young_found = gc.get_stats()[0]["collected"]  # the next round compares with this (a thaw's included)
        gc.freeze()
