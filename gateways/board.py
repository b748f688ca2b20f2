"""The board feed (``/ws/board``) and the board page (``/board``).

Protocol (server → client, JSON text frames):

* on connect without ``since``, a snapshot of every open incident and every open alarm (see
  :mod:`dispatcher.alarms`) as of event ``N``, in pages: first
  ``{"kind": "snapshot", "seq": N, "total": T, "county_forwarding": F, "alarms": [...], "incidents":
  [IncidentPublic...], "more": M}`` (``F``: whether county matters are forwarded, a webhook being set; also
  ``"map_tiles"``: the township's own tile server's URL template, or null),
  then while ``more`` is true ``{"kind": "snapshot_page", "seq": N, "incidents": [...], "more": M}``; the
  snapshot is whole once a frame says ``"more": false`` (a small one is a single frame);
* ``{"kind": "event", "seq": N, "type": "UnitMoved", "data": {...}}`` for every committed event
  after that, in sequence order, each exactly once.

* ``{"kind": "heartbeat", "seq": N}`` after 15 s without events.

``/ws/board?since=N`` skips the snapshot and resumes with the first event after ``N`` (from
memory or, for an old ``N``, from the database): no gap, no duplicate. After a snapshot the feed
resumes the same way from the snapshot's ``seq``. A board that falls more than
``board_queue_size`` events behind is closed with code **4008** and the reason
``resume with since=<last seq sent>``; it reconnects with that ``since``. When the feed's token is revoked
(signed out, revoked by an administrator, or its account disabled or changed) the feed is closed with code
**4401** and the reason (``signed out``, ``token revoked``, ``account disabled``, ``account changed: sign in
again``), during the snapshot as after it; the board must sign in again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from fastapi.responses import HTMLResponse

from dispatcher.core.incidents import Incident
from dispatcher.feed import DirectWrite, FeedRecord, Subscription
from dispatcher.hub import Hub, feed_message
from dispatcher.stats import Histogram
from dispatcher.tail_feed import TailFeed, TailFeeds
from dispatcher.values import Seq
from gateways.api import get_hub
from gateways.auth import directory_of, ws_subprotocol
from gateways.context import context_of
from gateways.privacy import MaskedSocket, needs_masking
from gateways.schemas import incident_json
from gateways.tenancy import township_of
from gateways.ws_frames import SharedFrames, shared_frames, text_frames

STATIC_DIR = Path(__file__).resolve().parent / "static"
LAGGING_CLOSE_CODE = 4008
REVOKED_CLOSE_CODE = 4401  # like a refused handshake's 4000 + 401: sign in again
HEARTBEAT_S = 15.0
_BACKLOG_PAGE = 1000
_ENCODE_SLICE = 25  # incidents encoded between two turns of the other work
_BACKLOG_YIELD = 200  # backlog frames sent between two turns of the other work
_LIVE_BATCH = 256  # live frames written to a board in one go at most
#: Open incidents per snapshot frame (``DISPATCHER_BOARD_SNAPSHOT_PAGE``).
SNAPSHOT_PAGE = 200

router = APIRouter()


@router.get("/board", response_class=HTMLResponse, include_in_schema=False)
async def board_page() -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "board.html").read_text(encoding="utf-8"))


@dataclass(slots=True)
class _Progress:
    last: int  # the seq of the last event written to the board
    written: float = field(default_factory=time.monotonic)  # when it was last written an event or heartbeat


@router.websocket("/ws/board")
async def board_feed(websocket: WebSocket, since: Seq | None = None) -> None:
    hub = await _source(websocket)
    # Only the subprotocol name is echoed, never a token offered in it (see gateways/auth.py).
    await websocket.accept(subprotocol=ws_subprotocol(websocket))
    principal = websocket.state.principal
    out: Any = MaskedSocket(websocket, principal.account) if needs_masking(principal) else websocket
    drain = asyncio.create_task(_drain_incoming(websocket))
    # Signing out, revoking the token or disabling the account ends the feed too, not only new requests.
    revoked: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop_watching = directory_of(websocket).watch_revocation(
        principal.token.id, lambda reason: None if revoked.done() else revoked.set_result(reason)
    )
    try:
        if since is None or since > hub.last_seq:
            # The snapshot is streamed in pages with no subscription held: a board that takes long to
            # read it neither overflows a queue nor holds the hub. It then resumes from the snapshot's
            # seq like any board resuming with ``since``.
            pages = _snapshot_pages(websocket)
            forwarding = _county_forwarding(websocket, _township_id(websocket))
            tiles = _map_tiles(websocket)
            sending = asyncio.create_task(_send_snapshot(out, hub, _snapshot_page(websocket), pages, forwarding, tiles))
            try:
                watched: set[asyncio.Future[Any]] = {sending, drain, revoked}
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not sending.done():  # the board went away, its token was revoked, or the server stops
                    sending.cancel()
                    await asyncio.gather(sending, return_exceptions=True)
            if revoked.done():
                await _close(websocket, REVOKED_CLOSE_CODE, revoked.result())
                return
            if sending.cancelled() or sending.exception() is not None:
                return
            since = sending.result()
        await _follow(websocket, out, hub, since, drain, revoked)
    finally:
        stop_watching()
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)


async def _follow(
    websocket: WebSocket,
    out: Any,
    hub: Hub | TailFeed,
    since: int,
    drain: asyncio.Task[None],
    revoked: asyncio.Future[str],
) -> None:
    """Every event after ``since``: the backlog, then live; closes with 4008 when the board lags, 4401 when
    its token stops working."""
    # Subscribe and read the position in the same step (no await between): nothing can slip by.
    subscription = hub.feed.subscribe()
    upto = hub.last_seq
    progress = _Progress(last=since)
    # A board that sees every frame as it is gets the frames every board shares, written by the feed itself
    # while its socket takes them (see gateways/ws_frames.py, dispatcher/feed.py); a masked one, or the field
    # app's filter, sends its own text.
    frames = shared_frames(websocket) if out is websocket else None
    sending = asyncio.create_task(_send(out, hub, subscription, progress, upto, frames))
    dropped = asyncio.create_task(subscription.wait_dropped())
    try:
        watched: set[asyncio.Future[Any]] = {sending, drain, dropped, revoked}
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    finally:
        subscription.close()
        for task in (sending, dropped):
            task.cancel()
        await asyncio.gather(sending, dropped, return_exceptions=True)
    # The sender may be stuck on a full socket, so close from here.
    if revoked in done:
        await _close(websocket, REVOKED_CLOSE_CODE, revoked.result())
    elif dropped in done:
        await _close(websocket, LAGGING_CLOSE_CODE, f"resume with since={progress.last}")


async def _source(websocket: WebSocket) -> Hub | TailFeed:
    """The township's hub when it is hosted here, else its tail over the shared log (dispatcher/tail_feed.py)."""
    tails = getattr(context_of(websocket), "tail_feeds", None)
    if isinstance(tails, TailFeeds):  # asked first: a township served by another replica has no hub here
        township = _township_id(websocket)
        if not tails.ownership.owns(township):
            return await tails.tail(township)
    hub: Hub = await get_hub(websocket)
    return hub


async def _open_state(hub: Hub | TailFeed) -> tuple[int, Sequence[Incident], list[dict[str, Any]]]:
    if isinstance(hub, TailFeed):
        state = await hub.open_state()
        return state.seq, state.incidents, state.alarms
    seq, incidents = hub.open_incidents()
    return seq, incidents, hub.alarms.snapshot()  # the same instant as the incidents


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=code, reason=reason), 2.0)


def _snapshot_page(websocket: WebSocket) -> int:
    settings = getattr(context_of(websocket), "settings", None)
    return int(getattr(settings, "board_snapshot_page", SNAPSHOT_PAGE))


def _township_id(websocket: WebSocket) -> str:
    """The township the guard settled for this board, served here or not (``township_of`` refuses the latter)."""
    chosen: str | None = getattr(websocket.state, "township", None)
    return chosen if chosen is not None else township_of(websocket).id


def _county_forwarding(websocket: WebSocket, township: str) -> bool:
    """Whether county matters are forwarded (an enabled county hand-over webhook subscription, which
    ``DISPATCHER_COUNTY_WEBHOOK_URL`` makes): the board says so."""
    deliverer = getattr(context_of(websocket), "webhooks", None)
    return deliverer is not None and bool(deliverer.county_forwarding(township))


def _map_tiles(websocket: WebSocket) -> str | None:
    """The township's own tile server for the map (``DISPATCHER_MAP_TILES_URL``), or None: no tiles."""
    settings = getattr(context_of(websocket), "settings", None)
    url = getattr(settings, "map_tiles_url", None)
    return url if isinstance(url, str) else None


def _snapshot_pages(websocket: WebSocket) -> SnapshotPages:
    """The app's shared pages (``create_app`` puts them in the context); an app without them shares none."""
    pages = getattr(context_of(websocket), "snapshot_pages", None)
    return pages if isinstance(pages, SnapshotPages) else SnapshotPages()


class SnapshotPages:
    """Encoded snapshot pages, shared by the boards whose snapshots hold the same incidents.

    Wall screens tend to connect together (after a restart, a network cut, a shift change), and
    encoding is the whole cost of a snapshot: boards whose pages hold the same incident objects (they
    are immutable) send the same text, encoded once. A page is keyed by the identities of its
    incidents; the entry holds the incidents, so no identity is reused while it is kept. Bounded to
    the ``size`` pages used last. Runs on the event loop.
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._pages: OrderedDict[tuple[int, ...], tuple[Sequence[Incident], str]] = OrderedDict()
        self._encoding: dict[tuple[int, ...], asyncio.Future[str]] = {}

    def __len__(self) -> int:
        return len(self._pages)

    async def encoded(self, incidents: Sequence[Incident]) -> str:
        """The JSON array of ``incidents`` as ``IncidentPublic`` objects.

        Built ``_ENCODE_SLICE`` incidents at a time, letting the loop run other work in between (about
        a millisecond each): a page of 200 in one go would hold the writer and every request for 8 ms
        per connecting board.
        """
        key = tuple(map(id, incidents))
        while (found := self._pages.get(key)) is None and (encoding := self._encoding.get(key)) is not None:
            try:  # another board is encoding this page right now: take its text
                return await asyncio.shield(encoding)
            except _Abandoned:
                continue  # its board went away mid-page: encode it here
        if found is not None:
            self._pages.move_to_end(key)
            return found[1]
        encoding = self._encoding[key] = asyncio.get_running_loop().create_future()
        try:
            items: list[dict[str, Any]] = []
            for start in range(0, len(incidents), _ENCODE_SLICE):
                items.extend(incident_json(i) for i in incidents[start : start + _ENCODE_SLICE])
                await asyncio.sleep(0)
            text = orjson.dumps(items).decode()
        except BaseException:
            encoding.set_exception(_Abandoned())
            encoding.exception()  # retrieved: there may be nobody waiting
            raise
        finally:
            del self._encoding[key]
        encoding.set_result(text)
        self._pages[key] = (incidents, text)
        if len(self._pages) > self._size:
            self._pages.popitem(last=False)
        return text


class _Abandoned(Exception):
    """The board encoding a page went away before finishing it."""


async def _send_snapshot(
    websocket: WebSocket,
    hub: Hub | TailFeed,
    page: int,
    pages: SnapshotPages,
    county_forwarding: bool = True,
    map_tiles: str | None = None,
) -> int:
    """Send every open incident and open alarm as of one seq, in frames of ``page`` incidents; returns the seq.

    The incidents are immutable, so the list taken here stays the state as of ``seq`` while later
    pages are encoded; each page is encoded (or found encoded by another board) and sent on its own,
    and the loop runs other work (the writer, requests) between pages.
    """
    seq, incidents, alarms = await _open_state(hub)
    total = len(incidents)
    for start in range(0, max(total, 1), page):
        more = "true" if start + page < total else "false"
        array = await pages.encoded(incidents[start : start + page])
        if start == 0:
            forwarding = "true" if county_forwarding else "false"
            head = (
                f'{{"kind":"snapshot","seq":{seq},"total":{total},"county_forwarding":{forwarding},'
                f'"map_tiles":{orjson.dumps(map_tiles).decode()},'
                f'"alarms":{orjson.dumps(alarms).decode()}'
            )
        else:
            head = f'{{"kind":"snapshot_page","seq":{seq}'
        await websocket.send_text(f'{head},"incidents":{array},"more":{more}}}')
        await asyncio.sleep(0)  # yield between pages even when the socket takes them without waiting
    return seq


async def _send(
    websocket: WebSocket,
    hub: Hub | TailFeed,
    subscription: Subscription,
    progress: _Progress,
    upto: int,
    frames: SharedFrames | None = None,
) -> None:
    await _send_backlog(websocket, hub, progress, upto)
    direct = _direct_writer(frames, hub, progress) if frames is not None else None
    while True:
        # A busy feed is read without a timer; only a quiet one waits with a timeout.
        record = subscription.get_nowait()
        if record is None:
            if direct is not None:
                # Nothing waits here: from now on the feed writes each commit's frames to this socket itself, as
                # it publishes them, until the socket cannot take them at once (they then wait here, in order).
                subscription.go_direct(_frames_of, direct)
            try:
                async with asyncio.timeout(max(0.0, progress.written + HEARTBEAT_S - time.monotonic())):
                    record = await subscription.get()
            except TimeoutError:
                if time.monotonic() - progress.written < HEARTBEAT_S:
                    continue  # events went out directly meanwhile
                # A quiet feed still says it is alive, so a board notices a silently dead link. Queued while it
                # goes out, so that no event is written between reading progress.last and the heartbeat.
                subscription.go_queued()
                await websocket.send_text(f'{{"kind":"heartbeat","seq":{progress.last}}}')
                progress.written = time.monotonic()
                continue
        # Everything already queued goes out together: one wake-up and one socket write per commit, not per event.
        batch: list[FeedRecord] = []
        last = progress.last
        while isinstance(record, FeedRecord):
            if record.seq > last:
                batch.append(record)
                last = record.seq
            if len(batch) >= _LIVE_BATCH:
                break
            record = subscription.get_nowait()
        if record is not None and not isinstance(record, FeedRecord):
            return  # dropped for lagging: board_feed closes the connection (resuming after progress.last)
        if not batch:
            continue
        if frames is None or not await frames.send([r.encoded() for r in batch]):
            for r in batch:
                await websocket.send_text(r.message)  # (a closing socket raises here, as before)
        progress.last = last
        progress.written = time.monotonic()
        _observe_latency(hub.feed.published_at, hub.stats.board_latency, batch, progress.written)


def _frames_of(records: Sequence[FeedRecord]) -> bytes:
    """The frames of one commit's events, built once by the feed for every board that takes them directly."""
    return text_frames([r.encoded() for r in records])


def _direct_writer(frames: SharedFrames, hub: Hub | TailFeed, progress: _Progress) -> DirectWrite:
    """What the feed calls with each commit's frames while this board goes direct (see ``_send``): runs inside
    the feed's publication, so it only writes when the socket takes the bytes at once, and never waits."""
    write_now = frames.write_now
    published_at = hub.feed.published_at
    latency = hub.stats.board_latency

    def write(data: bytes, records: Sequence[FeedRecord]) -> bool:
        if records[0].seq <= progress.last or not write_now(data):
            return False  # (an event it has: the queued path skips what was sent)
        progress.written = time.monotonic()
        progress.last = records[-1].seq
        _observe_latency(published_at, latency, records, progress.written)
        return True

    return write


def _observe_latency(
    published_at: Callable[[int], float | None], latency: Histogram, records: Sequence[FeedRecord], now: float
) -> None:
    """Each record's time from its publication to its frame written at ``now``, for live frames only: a
    backlog's age is the board's absence, not the dispatcher's delay (its publication time is forgotten)."""
    for r in records:
        published = published_at(r.seq)
        if published is not None:
            latency.observe(now - published)


async def _send_backlog(websocket: WebSocket, hub: Hub | TailFeed, progress: _Progress, upto: int) -> None:
    """Send the events after ``progress.last`` up to ``upto``, from memory or else from the store."""
    recent = hub.feed.recent_since(progress.last)
    if recent is not None:
        for n, record in enumerate(recent, start=1):
            if record.seq > upto:
                return
            await websocket.send_text(record.message)
            progress.last = record.seq
            if n % _BACKLOG_YIELD == 0:
                await asyncio.sleep(0)  # a socket that takes every frame at once never suspends the sender
        return
    while progress.last < upto:
        page = await hub.events_since(progress.last, limit=_BACKLOG_PAGE)
        if not page:
            return
        for n, event in enumerate(page, start=1):
            if event.seq > upto:
                return
            await websocket.send_text(feed_message(event.seq, event.type, event.payload))
            progress.last = event.seq
            if n % _BACKLOG_YIELD == 0:
                await asyncio.sleep(0)


async def _drain_incoming(websocket: WebSocket) -> None:
    """Read (and ignore) what the board sends, so a closed connection is noticed at once."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
