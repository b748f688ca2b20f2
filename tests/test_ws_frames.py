"""Frames built once for every board (gateways/ws_frames.py): through a real uvicorn and a real websockets client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from gateways.ws_frames import SharedFrameProtocol, shared_frames, text_frame_header, text_frames


@pytest.mark.parametrize("length", [0, 5, 125, 126, 200, 65_535, 65_536, 70_000])
def test_the_header_frames_a_text_message_of_any_length(length: int) -> None:
    text = ("板" * length)[: length // 3] + "x" * (length - 3 * (length // 3))  # UTF-8, exactly ``length`` bytes
    payload = text.encode()
    assert len(payload) == length
    reader = StreamReader()
    reader.feed_data(text_frame_header(length) + payload)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    with pytest.raises(StopIteration) as done:
        while True:
            next(parser)
    frame = done.value.value
    assert (frame.opcode, frame.fin, frame.rsv1, frame.data) == (Opcode.TEXT, True, False, payload)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Sends shared frames and ordinary (compressed) text in turn, then closes."""
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    frames = shared_frames(type("Ws", (), {"scope": scope})())
    assert frames is not None
    assert await frames.send([])  # nothing to write is no error
    for n in range(20):
        long = "事件" * (50 * n)  # compressible, so the ordinary ones really are deflated
        shared = f'{{"n":{n},"shared":true,"t":"{long}"}}'.encode()
        if n % 2:
            assert frames.write_now(text_frames([shared]))
        else:
            assert await frames.send([shared])
        await send({"type": "websocket.send", "text": f'{{"n":{n},"shared":false,"t":"{long}"}}'})
    await send({"type": "websocket.close", "code": 1000})
    assert not await frames.send([b"{}"])  # after the close began nothing more is written
    assert not frames.write_now(text_frames([b"{}"]))


@contextlib.asynccontextmanager
async def _server(app: Any = _app) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, ws=SharedFrameProtocol, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    sock.listen()  # a client connecting now waits in the backlog until the server takes it: no polling
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def test_shared_frames_and_deflated_messages_arrive_in_order_on_a_deflate_connection() -> None:
    async with _server() as port, connect(f"ws://127.0.0.1:{port}/", compression="deflate", proxy=None) as ws:
        assert ws.protocol.extensions  # permessage-deflate was negotiated
        got = [await asyncio.wait_for(ws.recv(), 10) for _ in range(40)]
    expected = [f'"n":{n},"shared":{s}' for n in range(20) for s in ("true", "false")]
    assert [g[1 : 1 + len(e)] for g, e in zip(got, expected, strict=True)] == expected


def test_a_socket_without_the_extension_has_no_frame_writer() -> None:
    plain = type("Ws", (), {"scope": {"type": "websocket", "extensions": {"websocket.http.response": {}}}})()
    assert shared_frames(plain) is None


async def test_write_now_refuses_while_the_socket_is_paused_and_what_it_took_arrives_whole_and_in_order() -> None:
    """A reader that does not read: write_now takes frames until the transport pauses, then refuses (writing
    nothing) instead of buffering without bound; once the reader reads again everything taken arrives."""
    taken: list[int] = []
    refused = asyncio.Event()
    reading = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        frames = shared_frames(type("Ws", (), {"scope": scope})())
        assert frames is not None
        chunk = "x" * 16_000
        for n in range(10_000):  # bounded: the kernel's and the transport's buffers hold a few megabytes at most
            if not frames.write_now(text_frames([f'{{"n":{n},"t":"{chunk}"}}'.encode()])):
                break
            taken.append(n)
        refused.set()
        await reading.wait()
        assert await frames.send([b'{"n":"end"}'])  # waits until the transport takes more, then writes
        await receive()  # until the client goes

    async with _server(app) as port, connect(f"ws://127.0.0.1:{port}/", proxy=None, max_size=None) as ws:
        await asyncio.wait_for(refused.wait(), 30)
        assert 0 < len(taken) < 10_000
        reading.set()
        got = [json.loads(await asyncio.wait_for(ws.recv(), 10))["n"] for _ in range(len(taken) + 1)]
    assert got == [*taken, "end"]
