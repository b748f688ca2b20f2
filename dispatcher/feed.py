"""Fan-out of committed events to live subscribers (the boards), each through a bounded queue.

Only events that are already committed are published, in sequence order. A subscriber that
falls more than ``queue_size`` events behind is dropped (it gets :data:`OVERFLOW` and nothing
more) instead of slowing the hub or growing memory; it resumes from the last sequence number it
saw. Recent events are kept in a ring so a resuming subscriber usually needs no database read.
All methods run on the event loop thread.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


def feed_message(seq: int, type_name: str, payload: str) -> str:
    """The JSON text a board receives for one event (the payload is spliced in, not re-encoded)."""
    return f'{{"kind":"event","seq":{seq},"type":"{type_name}","data":{payload}}}'


@dataclass(frozen=True, slots=True)
class FeedRecord:
    """One committed event as the board receives it: ``message`` is the serialised JSON text.

    ``incident_id`` is ``None`` for a fact of the township's log (a handover, a roster, a rule table).
    The text is encoded once, by the first reader of :meth:`encoded`, and every other reader (every
    board, the outbox) shares those bytes.
    """

    seq: int
    incident_id: int | None
    message: str
    _encoded: bytes | None = field(default=None, compare=False, repr=False)

    def encoded(self) -> bytes:
        """``message`` as UTF-8, encoded on the first call only."""
        data = self._encoded
        if data is None:
            data = self.message.encode()
            object.__setattr__(self, "_encoded", data)  # a cache, not a change: equality ignores it
        return data

    def type_name(self) -> str:
        """The event's type, read from the text (see :func:`feed_message`), not by parsing it."""
        start = self.message.index(',"type":"') + 9
        return self.message[start : self.message.index('"', start)]

    def payload(self) -> str:
        """The event's stored JSON payload as spliced into the text (see :func:`feed_message`)."""
        return self.message[self.message.index(',"data":') + 8 : -1]


class _Overflow:
    def __repr__(self) -> str:
        return "OVERFLOW"


OVERFLOW = _Overflow()


class Subscription:
    def __init__(self, queue_size: int, unsubscribe: Callable[[Subscription], None]) -> None:
        self._queue: asyncio.Queue[FeedRecord | _Overflow] = asyncio.Queue(maxsize=queue_size)
        self._unsubscribe = unsubscribe
        self._dropped = asyncio.Event()

    def _offer(self, record: FeedRecord) -> bool:
        try:
            self._queue.put_nowait(record)
            return True
        except asyncio.QueueFull:
            self._drop()  # too far behind: forget what it has not read and tell it to resume later
            return False

    def _drop(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(OVERFLOW)
        self._dropped.set()

    @property
    def dropped(self) -> bool:
        return self._dropped.is_set()

    async def wait_dropped(self) -> None:
        """Return once the feed has dropped this subscriber for lagging (even while its reader is stuck)."""
        await self._dropped.wait()

    async def get(self) -> FeedRecord | _Overflow:
        return await self._queue.get()

    def get_nowait(self) -> FeedRecord | _Overflow | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def close(self) -> None:
        self._unsubscribe(self)


class EventFeed:
    def __init__(self, *, queue_size: int = 1000, ring_size: int = 10_000) -> None:
        self._queue_size = queue_size
        self._ring: deque[FeedRecord] = deque(maxlen=ring_size)
        self._subscribers: set[Subscription] = set()
        self.last_seq = 0
        # seq -> monotonic time it was published (the recent ones, oldest first). An OrderedDict, not a dict: the
        # oldest is dropped on every publish, and a plain dict's first key is found by scanning past the slots of
        # every key deleted since it last resized (thousands), where ``popitem(last=False)`` is constant time.
        self._published: OrderedDict[int, float] = OrderedDict()
        self._published_size = ring_size

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        """A new subscription receiving every record published after this call."""
        subscription = Subscription(self._queue_size, self._subscribers.discard)
        self._subscribers.add(subscription)
        return subscription

    def publish(self, records: Sequence[FeedRecord]) -> None:
        """Hand committed records (in increasing ``seq``) to every subscriber; never blocks."""
        if not records:
            return
        self._ring.extend(records)
        self.last_seq = records[-1].seq
        now = time.monotonic()
        published = self._published
        for record in records:
            published[record.seq] = now
        while len(published) > self._published_size:
            published.popitem(last=False)
        for subscription in list(self._subscribers):
            for record in records:
                if not subscription._offer(record):
                    self._subscribers.discard(subscription)
                    break

    def drop_all(self) -> int:
        """Drop every subscriber as if it lagged (it resumes from the last seq it saw); returns how many.

        For a township whose hub stops publishing here (hosted elsewhere now): its boards resume from the log.
        """
        dropped = list(self._subscribers)
        self._subscribers.clear()
        for subscription in dropped:
            subscription._drop()
        return len(dropped)

    def count_from(self, seq: int, started: float) -> None:
        """Count the trip of event ``seq`` (published already) to the boards from ``started`` (monotonic), not
        from its publication here: a tail feed's events left their owner's commit before it read them."""
        if seq in self._published:
            self._published[seq] = started

    def published_at(self, seq: int) -> float | None:
        """The monotonic time event ``seq`` was published, while it is among the recent ones."""
        return self._published.get(seq)

    def recent_since(self, seq: int) -> list[FeedRecord] | None:
        """Records after ``seq`` from memory, or None when the ring no longer reaches back that far."""
        if seq >= self.last_seq:
            return []
        if not self._ring or self._ring[0].seq > seq + 1:
            return None
        return [r for r in self._ring if r.seq > seq]
