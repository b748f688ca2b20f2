"""The board feed (``/ws/board``) and the board page (``/board``).

Protocol (server → client, JSON text frames):

* ``{"kind": "snapshot", "seq": N, "incidents": [IncidentPublic...]}`` on connect without ``since``:
  every open incident as of event ``N``;
* ``{"kind": "event", "seq": N, "type": "UnitMoved", "data": {...}}`` for every committed event
  after that, in sequence order, each exactly once.

``/ws/board?since=N`` skips the snapshot and resumes with the first event after ``N`` (from
memory or, for an old ``N``, from the database): no gap, no duplicate. A board that falls more
than ``board_queue_size`` events behind is closed with code **4008** and the reason
``resume with since=<last seq sent>``; it reconnects with that ``since``.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

from dispatcher.core.incidents import Incident
from dispatcher.feed import OVERFLOW, FeedRecord, Subscription
from dispatcher.hub import Hub, feed_message
from gateways.schemas import incident_json

STATIC_DIR = Path(__file__).resolve().parent / "static"
LAGGING_CLOSE_CODE = 4008
_BACKLOG_PAGE = 1000

router = APIRouter()


@router.get("/board", response_class=HTMLResponse, include_in_schema=False)
async def board_page() -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "board.html").read_text(encoding="utf-8"))


@router.websocket("/ws/board")
async def board_feed(websocket: WebSocket, since: int | None = None) -> None:
    hub: Hub = websocket.app.state.hub
    await websocket.accept()
    # Subscribe and read the position in the same step (no await between): nothing can slip by.
    subscription = hub.feed.subscribe()
    upto = hub.last_seq
    snapshot = hub.open_incidents() if since is None or since > upto else None
    sender = asyncio.create_task(_send(websocket, hub, subscription, since, upto, snapshot))
    receiver = asyncio.create_task(_drain_incoming(websocket))
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        subscription.close()
        for task in (sender, receiver):
            task.cancel()
        for task in (sender, receiver):
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task


async def _send(
    websocket: WebSocket,
    hub: Hub,
    subscription: Subscription,
    since: int | None,
    upto: int,
    snapshot: tuple[int, list[Incident]] | None,
) -> None:
    if snapshot is not None:
        seq, incidents = snapshot
        await websocket.send_text(
            orjson.dumps({"kind": "snapshot", "seq": seq, "incidents": [incident_json(i) for i in incidents]}).decode()
        )
        last = seq
    else:
        assert since is not None
        last = await _send_backlog(websocket, hub, since, upto)
    while True:
        record = await subscription.get()
        if record is OVERFLOW:
            await websocket.close(code=LAGGING_CLOSE_CODE, reason=f"resume with since={last}")
            return
        assert isinstance(record, FeedRecord)
        if record.seq <= last:
            continue
        await websocket.send_text(record.message)
        last = record.seq


async def _send_backlog(websocket: WebSocket, hub: Hub, since: int, upto: int) -> int:
    """Send events ``since < seq <= upto``; returns the last one sent (``since`` if none)."""
    last = since
    recent = hub.feed.recent_since(since)
    if recent is not None:
        for record in recent:
            if record.seq > upto:
                break
            await websocket.send_text(record.message)
            last = record.seq
        return last
    while last < upto:
        page = await hub.events_since(last, limit=_BACKLOG_PAGE)
        if not page:
            break
        for event in page:
            if event.seq > upto:
                return last
            await websocket.send_text(feed_message(event.seq, event.type, event.payload))
            last = event.seq
    return last


async def _drain_incoming(websocket: WebSocket) -> None:
    """Read (and ignore) what the board sends, so a closed connection is noticed at once."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
