"""The board feed (``/ws/board``) and the board page (``/board``).

Protocol (server → client, JSON text frames):

* ``{"kind": "snapshot", "seq": N, "incidents": [IncidentPublic...], "alarms": [...]}`` on connect
  without ``since``: every open incident and every open alarm (see :mod:`dispatcher.alarms`) as of
  event ``N``;
* ``{"kind": "event", "seq": N, "type": "UnitMoved", "data": {...}}`` for every committed event
  after that, in sequence order, each exactly once.

* ``{"kind": "heartbeat", "seq": N}`` after 15 s without events.

``/ws/board?since=N`` skips the snapshot and resumes with the first event after ``N`` (from
memory or, for an old ``N``, from the database): no gap, no duplicate. A board that falls more
than ``board_queue_size`` events behind is closed with code **4008** and the reason
``resume with since=<last seq sent>``; it reconnects with that ``since``. When the feed's token is revoked
(signed out, revoked by an administrator, or its account disabled or changed) the feed is closed with code
**4401** and the reason (``signed out``, ``token revoked``, ``account disabled``, ``account changed: sign in
again``); the board must sign in again.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from fastapi.responses import HTMLResponse

from dispatcher.core.incidents import Incident
from dispatcher.feed import FeedRecord, Subscription
from dispatcher.hub import Hub, feed_message
from dispatcher.values import Seq
from gateways.api import get_hub
from gateways.auth import directory_of, ws_subprotocol
from gateways.privacy import MaskedSocket, needs_masking
from gateways.schemas import incident_json

STATIC_DIR = Path(__file__).resolve().parent / "static"
LAGGING_CLOSE_CODE = 4008
REVOKED_CLOSE_CODE = 4401  # like a refused handshake's 4000 + 401: sign in again
HEARTBEAT_S = 15.0
_BACKLOG_PAGE = 1000

router = APIRouter()


@router.get("/board", response_class=HTMLResponse, include_in_schema=False)
async def board_page() -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "board.html").read_text(encoding="utf-8"))


@dataclass(slots=True)
class _Progress:
    last: int


@router.websocket("/ws/board")
async def board_feed(websocket: WebSocket, since: Seq | None = None) -> None:
    hub: Hub = await get_hub(websocket)
    # Only the subprotocol name is echoed, never a token offered in it (see gateways/auth.py).
    await websocket.accept(subprotocol=ws_subprotocol(websocket))
    principal = websocket.state.principal
    out: Any = MaskedSocket(websocket, principal.account) if needs_masking(principal) else websocket
    # Subscribe and read the position in the same step (no await between): nothing can slip by.
    subscription = hub.feed.subscribe()
    upto = hub.last_seq
    snapshot = hub.open_incidents() if since is None or since > upto else None
    alarms = hub.alarms.snapshot() if snapshot is not None else []  # the same instant as the snapshot
    progress = _Progress(last=since or 0)
    # Signing out, revoking the token or disabling the account ends the feed too, not only new requests.
    revoked: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop_watching = directory_of(websocket).watch_revocation(
        principal.token.id, lambda reason: None if revoked.done() else revoked.set_result(reason)
    )
    tasks: set[asyncio.Future[Any]] = {
        asyncio.create_task(_send(out, hub, subscription, progress, upto, snapshot, alarms)),
        asyncio.create_task(_drain_incoming(websocket)),
        dropped := asyncio.create_task(subscription.wait_dropped()),
        revoked,
    }
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_watching()
        subscription.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # The sender may be stuck on a full socket, so close from here.
    if revoked in done:
        await _close(websocket, REVOKED_CLOSE_CODE, revoked.result())
    elif dropped in done:
        await _close(websocket, LAGGING_CLOSE_CODE, f"resume with since={progress.last}")


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=code, reason=reason), 2.0)


async def _send(
    websocket: WebSocket,
    hub: Hub,
    subscription: Subscription,
    progress: _Progress,
    upto: int,
    snapshot: tuple[int, list[Incident]] | None,
    alarms: list[dict[str, Any]],
) -> None:
    if snapshot is not None:
        seq, incidents = snapshot
        await websocket.send_text(
            orjson.dumps(
                {"kind": "snapshot", "seq": seq, "incidents": [incident_json(i) for i in incidents], "alarms": alarms}
            ).decode()
        )
        progress.last = seq
    else:
        await _send_backlog(websocket, hub, progress, upto)
    while True:
        # A busy feed is read without a timer; only a quiet one waits with a timeout (a task per wait).
        record = subscription.get_nowait()
        if record is None:
            try:
                record = await asyncio.wait_for(subscription.get(), HEARTBEAT_S)
            except TimeoutError:
                # A quiet feed still says it is alive, so a board notices a silently dead link.
                await websocket.send_text(f'{{"kind":"heartbeat","seq":{progress.last}}}')
                continue
        if not isinstance(record, FeedRecord):
            return  # dropped for lagging: board_feed closes the connection
        if record.seq <= progress.last:
            continue
        await websocket.send_text(record.message)
        progress.last = record.seq


async def _send_backlog(websocket: WebSocket, hub: Hub, progress: _Progress, upto: int) -> None:
    """Send the events after ``progress.last`` up to ``upto``, from memory or else from the store."""
    recent = hub.feed.recent_since(progress.last)
    if recent is not None:
        for record in recent:
            if record.seq > upto:
                return
            await websocket.send_text(record.message)
            progress.last = record.seq
        return
    while progress.last < upto:
        page = await hub.events_since(progress.last, limit=_BACKLOG_PAGE)
        if not page:
            return
        for event in page:
            if event.seq > upto:
                return
            await websocket.send_text(feed_message(event.seq, event.type, event.payload))
            progress.last = event.seq


async def _drain_incoming(websocket: WebSocket) -> None:
    """Read (and ignore) what the board sends, so a closed connection is noticed at once."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
