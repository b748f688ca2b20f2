"""Which incidents have something due, and when: an in-memory index over the absolute due times stored with them.

The index is only a lookup structure; the deadlines themselves are data on the incident (and rows
in the store). It holds one :class:`DueMark` per incident and due time, not one entry per deadline: a
new five-team incident has some fifteen deadlines, and a mark is all the heap needs to know when to look
at it again. Marks are never removed when a deadline is kept: :meth:`DeadlineWatch.pop_due` hands back the
marks that came up, and their incidents' own deadlines then say what is due (see
:mod:`dispatcher.deadline_scheduler`). That keeps marking O(log n) and obviously correct after a restart:
mark every incident with something pending, nothing more.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from dispatcher.core.events import DeadlineKind


class DueEntry(NamedTuple):
    """One deadline or escalation step that fell due: what the writer's batch records. A plain tuple, so that a
    list of them sorts in C.

    ``step`` 0 is the deadline itself; ``step`` n ≥ 1 is the n-th step of the escalation chain
    waiting for that missed deadline.
    """

    due_at: datetime
    incident_id: int
    team: str
    kind: DeadlineKind
    step: int = 0


class DueMark(NamedTuple):
    """A heap entry: incident ``incident_id`` had its earliest pending deadline or step at ``due_at`` when marked."""

    due_at: datetime
    incident_id: int


class DeadlineWatch:
    """A min-heap of marks. Not thread-safe: owned by the hub's event loop."""

    def __init__(self) -> None:
        self._heap: list[DueMark] = []

    def __len__(self) -> int:
        return len(self._heap)

    def mark(self, incident_id: int, due_at: datetime) -> None:
        heapq.heappush(self._heap, DueMark(due_at, incident_id))

    def push(self, marks: Iterable[DueMark]) -> None:
        """Add a few marks (a batch's): one push each, the heap is not rebuilt."""
        heap, push = self._heap, heapq.heappush
        for mark in marks:
            push(heap, mark)

    def mark_many(self, marks: list[DueMark]) -> None:
        """Add many marks at once (a restart): one O(n) heapify instead of n pushes."""
        self._heap.extend(marks)
        heapq.heapify(self._heap)

    def marks(self) -> list[DueMark]:
        """Every mark held, in no particular order (a copy)."""
        return list(self._heap)

    def peek(self) -> DueMark | None:
        return self._heap[0] if self._heap else None

    def drop_first(self) -> None:
        heapq.heappop(self._heap)

    def next_due(self) -> datetime | None:
        return self._heap[0].due_at if self._heap else None

    def pop_due(self, now: datetime) -> list[DueMark]:
        """Every mark due at or before ``now``, earliest first."""
        due = []
        while self._heap and self._heap[0].due_at <= now:
            due.append(heapq.heappop(self._heap))
        return due
