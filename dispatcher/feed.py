"""Fan-out of committed events to live subscribers (the boards), each through a bounded queue.

Only events that are already committed are published, in sequence order. A subscriber that
falls more than ``queue_size`` events behind is dropped (it gets :data:`OVERFLOW` and nothing
more) instead of slowing the hub or growing memory; it resumes from the last sequence number it
saw. Recent events are kept in a ring so a resuming subscriber usually needs no database read.

A subscriber whose queue is empty may go *direct* (:meth:`Subscription.go_direct`): the feed then
hands each publication to a function that writes it at once (a board's socket) instead of waking
the subscriber's task, and turns the records into bytes once for every direct subscriber sharing
the same encoder. At 500 boards a task woken per board per commit cost several times the socket
writes themselves. When the write cannot take them now (the socket is paused, closing), the
records go to the queue as before and the subscriber's own task catches up, so order, the bound
and the drop on lagging stay as they were.

All methods run on the event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: Turns one publication's records into the bytes direct subscribers write; called once per publication for all.
Encoder = Callable[[Sequence["FeedRecord"]], bytes]
#: Writes a publication (its bytes, and its records) without waiting; False, having written nothing, when it cannot now.
DirectWrite = Callable[[bytes, Sequence["FeedRecord"]], bool]


def feed_message(seq: int, type_name: str, payload: str) -> str:
    """The JSON text a board receives for one event (the payload is spliced in, not re-encoded)."""
    return f'{{"kind":"event","seq":{seq},"type":"{type_name}","data":{payload}}}'


@dataclass(frozen=True, slots=True, init=False)
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

    def __init__(self, seq: int, incident_id: int | None, message: str, _encoded: bytes | None = None) -> None:
        # The generated ``__init__`` of a frozen class stores each field through ``object.__setattr__`` (0.8 µs a
        # record, one per event); the slots' own setters take half of that (bound below, once the class exists).
        _set_seq(self, seq)
        _set_incident_id(self, incident_id)
        _set_message(self, message)
        _set_encoded(self, _encoded)

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


_set_seq = FeedRecord.__dict__["seq"].__set__
_set_incident_id = FeedRecord.__dict__["incident_id"].__set__
_set_message = FeedRecord.__dict__["message"].__set__
_set_encoded = FeedRecord.__dict__["_encoded"].__set__


class _Overflow:
    def __repr__(self) -> str:
        return "OVERFLOW"


OVERFLOW = _Overflow()


class Subscription:
    def __init__(self, queue_size: int, unsubscribe: Callable[[Subscription], None]) -> None:
        self._queue: asyncio.Queue[FeedRecord | _Overflow] = asyncio.Queue(maxsize=queue_size)
        self._unsubscribe = unsubscribe
        self._dropped = asyncio.Event()
        self._direct: tuple[Encoder, DirectWrite] | None = None

    def go_direct(self, encode: Encoder, write: DirectWrite) -> bool:
        """Have every later publication handed to ``write`` (as ``encode`` makes it) instead of queued, until a
        write returns False or raises (those records, and what follows, are queued again) or :meth:`go_queued`.

        Only while nothing waits in the queue (nothing may overtake it) and the subscription was not dropped:
        returns False, changing nothing, otherwise. ``encode`` should be one function shared by the
        subscribers that take the same bytes: the feed calls it once per publication for all of them.
        """
        if self._dropped.is_set() or not self._queue.empty():
            return False
        self._direct = (encode, write)
        return True

    def go_queued(self) -> None:
        """Queue what is published from now on (for the subscriber's own task to send)."""
        self._direct = None

    @property
    def direct(self) -> bool:
        return self._direct is not None

    def _offer(self, record: FeedRecord) -> bool:
        try:
            self._queue.put_nowait(record)
            return True
        except asyncio.QueueFull:
            self._drop()  # too far behind: forget what it has not read and tell it to resume later
            return False

    def _drop(self) -> None:
        self._direct = None
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
        self._direct = None
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

    def publish(self, records: Sequence[FeedRecord], started: Sequence[float] | None = None) -> None:
        """Hand committed records (in increasing ``seq``) to every subscriber; never blocks.

        A direct subscriber's write runs here, before this returns. ``started``: for each record, the monotonic
        time its trip to the boards counts from (:meth:`published_at`), when not now (a tail feed's events left
        their owner's commit before it read them).
        """
        if not records:
            return
        self._ring.extend(records)
        self.last_seq = records[-1].seq
        published = self._published
        if started is None:
            now = time.monotonic()
            for record in records:
                published[record.seq] = now
        else:
            for record, at in zip(records, started, strict=True):
                published[record.seq] = at
        while len(published) > self._published_size:
            published.popitem(last=False)
        encoded: dict[Encoder, bytes] = {}
        for subscription in list(self._subscribers):
            direct = subscription._direct
            if direct is not None:
                encode, write = direct
                data = encoded.get(encode)
                if data is None:
                    data = encoded[encode] = encode(records)
                try:
                    if write(data, records):
                        continue
                except Exception:
                    log.exception("a direct feed subscriber's write failed; its records are queued instead")
                subscription._direct = None  # it cannot take them now: its own task sends them when it can
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
