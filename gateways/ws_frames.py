"""Websocket frames built once and written to many sockets: the board's fan-out.

Every board receives the same text for an event. Through ASGI each ``send_text`` is encoded, framed
and (with ``permessage-deflate``, which browsers ask for) compressed again for each connection: at
500 boards that is 500 times the work of one. :class:`SharedFrameProtocol` is uvicorn's websockets
protocol with one addition, the ASGI scope extension ``dispatcher.shared_frames``, which offers two
ways to write uncompressed text frames built elsewhere (:func:`text_frames`: the same bytes for
every connection, handed to the transport as they are):

* ``write_now(frames)``: a plain function, for the feed's fan-out (``dispatcher/feed.py``): writes at
  once when the socket takes data now, else returns False having written nothing (the transport is
  paused above its high-water mark, or the connection is closing). No task, no await per board.
* ``send(payloads)``: a coroutine that frames UTF-8 text messages and writes them once the socket
  takes more, waiting while it is paused like ``send``.

Sending a message uncompressed on a connection that negotiated ``permessage-deflate`` is allowed (RFC
7692 §6: compression is per message, marked by RSV1); with context takeover the sender's and the
receiver's windows hold only compressed messages, so they stay in step. Frames from server to client
are not masked (RFC 6455 §5.1), so the same bytes serve every connection. Where the extension is
absent (another server, the test client) :func:`shared_frames` returns ``None`` and callers send text.
All of it runs on the event loop.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

EXTENSION = "dispatcher.shared_frames"


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, final, uncompressed text frame of ``length`` payload bytes (RFC 6455 §5.2)."""
    if length < 126:
        return bytes((0x81, length))
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


def _frame_parts(payloads: Iterable[bytes]) -> list[bytes]:
    parts: list[bytes] = []
    for payload in payloads:
        parts += (text_frame_header(len(payload)), payload)
    return parts


def text_frames(payloads: Iterable[bytes]) -> bytes:
    """Each of ``payloads`` (UTF-8 text) as one text frame, all in one buffer."""
    return b"".join(_frame_parts(payloads))


@dataclass(frozen=True, slots=True)
class SharedFrames:
    """A connection's writers of frames built elsewhere (see the module's docstring)."""

    #: Writes whole frames at once if the socket takes data now; False, writing nothing, otherwise.
    write_now: Callable[[bytes], bool]
    #: Frames text messages and writes them once the socket takes more; False when it no longer takes data frames.
    send: Callable[[Sequence[bytes]], Awaitable[bool]]


class SharedFrameProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets (sans-I/O) protocol that also writes frames built elsewhere (``ws=`` of uvicorn)."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # a refused handshake has no application and no scope
            scope["extensions"][EXTENSION] = {"send": self.send_shared_frames, "write_now": self.write_frames_now}

    def _takes_data_frames(self) -> bool:
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.conn.state is State.OPEN
            and not self.transport.is_closing()
        )

    def write_frames_now(self, frames: bytes) -> bool:
        """Write ``frames`` (whole frames, see :func:`text_frames`) when the socket takes data now: open, and its
        transport not paused. False, writing nothing, otherwise. Never waits."""
        if not self.writable.is_set() or not self._takes_data_frames():
            return False
        self.transport.write(frames)
        return True

    async def send_shared_frames(self, payloads: Sequence[bytes]) -> bool:
        """Write each of ``payloads`` (UTF-8 text) as a text frame once the socket takes more; waits while it
        is paused, like ``send``. False, writing nothing, when the handshake is not done or a close began."""
        await self.writable.wait()
        if not self._takes_data_frames():
            return False
        self.transport.writelines(_frame_parts(payloads))  # headers and payloads as they are: no copy per board
        return True


def shared_frames(websocket: Any) -> SharedFrames | None:
    """The connection's frame writers when the server offers them (see :class:`SharedFrameProtocol`)."""
    scope = getattr(websocket, "scope", None)
    extensions = (scope.get("extensions") if isinstance(scope, dict) else None) or {}
    found = extensions.get(EXTENSION)
    if not isinstance(found, dict):
        return None
    send, write_now = found.get("send"), found.get("write_now")
    return SharedFrames(write_now, send) if callable(send) and callable(write_now) else None
