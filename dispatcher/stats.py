"""The hub's own counters, kept as plain numbers: what ``/metrics`` exports (``gateways/metrics.py``).

No exporter library here: the hub counts, the gateway formats. Every update is an increment or a
bucket search over a handful of bounds, cheap enough for the writer's path.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

#: Batch sizes: how many commands one commit carried.
BATCH_BOUNDS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 512.0)
#: Seconds: one commit of the writer, or an event's trip from its commit to a board's socket.
SECONDS_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    """Counts of observations per bucket (``value <= bound``), their sum and number, as Prometheus has them."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, observations <= le)`` for every bound and ``+Inf``, as an exporter writes the buckets."""
        total = 0
        out: list[tuple[str, int]] = []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


@dataclass(slots=True)
class HubStats:
    """What one township's hub did since it started."""

    events: Counter[str] = field(default_factory=Counter)  # committed events by type
    #: Reports taken, by (door, outcome): doors ``http``, ``http_batch``, ``mqtt``; outcomes ``created``,
    #: ``joined``, ``known``, ``refused`` (counted by the gateways, which know the door).
    reports: Counter[tuple[str, str]] = field(default_factory=Counter)
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_BOUNDS))
    commit_seconds: Histogram = field(default_factory=lambda: Histogram(SECONDS_BOUNDS))
    commit_failures: Counter[str] = field(default_factory=Counter)  # "unavailable", "refused"
    #: Writer batches by how they were applied: "overlapped" (beside the commit of the batch before them),
    #: "after" (once every earlier batch had landed), "again" (applied beside one that then failed: redone).
    batches_applied: Counter[str] = field(default_factory=Counter)
    #: From an event's publication after its commit to its frame written to a board's socket (one per board).
    board_latency: Histogram = field(default_factory=lambda: Histogram(SECONDS_BOUNDS))
