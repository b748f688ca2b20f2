"""Which deadlines are due: an in-memory index over the absolute due times stored with incidents.

The index is only a lookup structure; the deadlines themselves are data on the incident (and rows
in the store). Entries are never removed when a deadline is kept: :meth:`DeadlineWatch.pop_due`
hands back candidates and the incident itself decides (``miss_deadline`` is a no-op for a
deadline that is no longer pending). That keeps arming and cancelling O(log n) and obviously
correct after a restart: re-arm everything pending, nothing more.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from dispatcher.core.events import DeadlineKind


class DueEntry(NamedTuple):
    """A heap entry; a plain tuple so that the heap compares it in C.

    ``step`` 0 is the deadline itself; ``step`` n ≥ 1 is the n-th step of the escalation chain
    waiting for that missed deadline.
    """

    due_at: datetime
    incident_id: int
    team: str
    kind: DeadlineKind
    step: int = 0


class DeadlineWatch:
    """A min-heap of due times. Not thread-safe: owned by the hub's event loop."""

    def __init__(self) -> None:
        self._heap: list[DueEntry] = []

    def __len__(self) -> int:
        return len(self._heap)

    def arm(self, incident_id: int, team: str, kind: DeadlineKind, due_at: datetime, step: int = 0) -> None:
        heapq.heappush(self._heap, DueEntry(due_at, incident_id, team, kind, step))

    def push(self, entries: Iterable[DueEntry]) -> None:
        """Add a few entries (an incident's): one push each, the heap is not rebuilt."""
        heap, push = self._heap, heapq.heappush
        for entry in entries:
            push(heap, entry)

    def arm_many(self, entries: list[DueEntry]) -> None:
        """Add many entries at once (a restart): one O(n) heapify instead of n pushes."""
        self._heap.extend(entries)
        heapq.heapify(self._heap)

    def entries(self) -> list[DueEntry]:
        """Every entry watched, in no particular order (a copy)."""
        return list(self._heap)

    def peek(self) -> DueEntry | None:
        return self._heap[0] if self._heap else None

    def drop_first(self) -> None:
        heapq.heappop(self._heap)

    def next_due(self) -> datetime | None:
        return self._heap[0].due_at if self._heap else None

    def pop_due(self, now: datetime) -> list[DueEntry]:
        """Every entry due at or before ``now``, earliest first."""
        due = []
        while self._heap and self._heap[0].due_at <= now:
            due.append(heapq.heappop(self._heap))
        return due
