"""Websocket frames built once and written to many sockets: the board's fan-out.

Every board receives the same text for an event. Through ASGI each ``send_text`` is encoded, framed
and (with ``permessage-deflate``, which browsers ask for) compressed again for each connection: at
500 boards that is 500 times the work of one. :class:`SharedFrameProtocol` is uvicorn's websockets
protocol with one addition, the ASGI scope extension ``dispatcher.shared_frames``: a coroutine taking
text messages already encoded as UTF-8 and writing each as one uncompressed text frame, headers and
payloads handed to the transport as they are (one ``writelines`` for them all, no copy of a payload per
board).

Sending a message uncompressed on a connection that negotiated ``permessage-deflate`` is allowed (RFC
7692 §6: compression is per message, marked by RSV1); with context takeover the sender's and the
receiver's windows hold only compressed messages, so they stay in step. Frames from server to client
are not masked (RFC 6455 §5.1), so the same bytes serve every connection. Where the extension is
absent (another server, the test client) :func:`shared_frames` returns ``None`` and callers send text.
All of it runs on the event loop.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

EXTENSION = "dispatcher.shared_frames"

#: Writes UTF-8 text messages, a frame each; False when the connection no longer takes data frames.
SendFrames = Callable[[Sequence[bytes]], Awaitable[bool]]


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, final, uncompressed text frame of ``length`` payload bytes (RFC 6455 §5.2)."""
    if length < 126:
        return bytes((0x81, length))
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


class SharedFrameProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets (sans-I/O) protocol that also writes frames built elsewhere (``ws=`` of uvicorn)."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # a refused handshake has no application and no scope
            scope["extensions"][EXTENSION] = {"send": self.send_shared_frames}

    async def send_shared_frames(self, payloads: Sequence[bytes]) -> bool:
        """Write each of ``payloads`` (UTF-8 text) as a text frame once the socket takes more; waits while it
        is paused, like ``send``. False, writing nothing, when the handshake is not done or a close began."""
        await self.writable.wait()
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or self.conn.state is not State.OPEN
            or self.transport.is_closing()
        ):
            return False
        parts: list[bytes] = []
        for payload in payloads:
            parts += (text_frame_header(len(payload)), payload)
        self.transport.writelines(parts)
        return True


def shared_frames(websocket: Any) -> SendFrames | None:
    """The connection's frame writer when the server offers one (see :class:`SharedFrameProtocol`)."""
    scope = getattr(websocket, "scope", None)
    extensions = (scope.get("extensions") if isinstance(scope, dict) else None) or {}
    found = extensions.get(EXTENSION)
    send = found.get("send") if isinstance(found, dict) else None
    return send if callable(send) else None
