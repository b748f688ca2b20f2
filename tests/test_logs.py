"""The log formats: plain text lines as logging writes them, and JSON lines with what the request being served was bound to."""

from __future__ import annotations

import asyncio
import io
import logging
import sys

import orjson

from gateways import log_context
from server.logs import TEXT_FORMAT, JsonLines, TextLines, TurnLines, configure


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("dispatcher.hub", logging.WARNING, __file__, 1, message, args, exc_info)


def test_a_line_outside_any_request_has_no_request_fields() -> None:
    async def outside() -> dict[str, object]:
        return dict(orjson.loads(JsonLines().format(_record("hub started: %d open", 3))))

    line = asyncio.run(outside())  # a fresh task: nothing bound
    assert line["message"] == "hub started: 3 open"
    assert line["level"] == "WARNING" and line["logger"] == "dispatcher.hub"
    assert str(line["time"]).endswith("+00:00")
    assert {"request_id", "township", "incident_id"}.isdisjoint(line)


def test_a_line_inside_a_request_carries_its_id_township_and_incident() -> None:
    async def inside(given: str | None) -> dict[str, object]:
        log_context.bind(given, "ershili", "42")
        return dict(orjson.loads(JsonLines().format(_record("refused", exc=True))))

    line = asyncio.run(inside("req-7f3a"))
    assert (line["request_id"], line["township"], line["incident_id"]) == ("req-7f3a", "ershili", 42)
    assert "ValueError: boom" in str(line["exception"])
    odd = asyncio.run(inside('bad id" with quotes'))  # not a sane token: a new one instead
    assert odd["request_id"] != 'bad id" with quotes' and len(str(odd["request_id"])) == 12


def test_the_text_lines_read_as_the_plain_format_writes_them() -> None:
    plain, ours = logging.Formatter(TEXT_FORMAT), TextLines()
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.25, 1_700_000_000.5):  # back in time too
        record = logging.LogRecord("dispatcher.access", logging.INFO, __file__, 1, "POST %s %d", ("/x", 201), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == plain.format(record)


class _Writes(io.StringIO):
    """A stream that keeps each ``write`` apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def _turn_lines() -> tuple[TurnLines, _Writes]:
    stream = _Writes()
    handler = TurnLines(stream)
    handler.setFormatter(TextLines())
    return handler, stream


def _access_record(status: int) -> logging.LogRecord:
    return logging.LogRecord("dispatcher.access", logging.INFO, __file__, 1, "POST %s %d", ("/x", status), None)


async def _turn_over() -> None:
    """Return once the callbacks queued so far (the handler's among them) have run."""
    turn_over = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(turn_over.set_result, None)
    await turn_over


def test_the_lines_of_one_loop_turn_are_written_together_when_the_turn_ends() -> None:
    handler, stream = _turn_lines()
    records = [_access_record(status) for status in (201, 200, 422)]

    async def one_turn() -> list[str]:
        for record in records:
            handler.handle(record)
        written_within_the_turn = list(stream.writes)
        await _turn_over()
        return written_within_the_turn

    assert asyncio.run(one_turn()) == []
    assert stream.writes == ["".join(TextLines().format(r) + "\n" for r in records)]  # one write, in order


def _held_by_a_loop_that_closes(handler: TurnLines, record: logging.LogRecord) -> None:
    """Log ``record`` on a loop that stops in the same turn and is closed: the handler's call never runs."""
    loop = asyncio.new_event_loop()
    try:
        loop.call_soon(handler.handle, record)
        loop.call_soon(loop.stop)  # the handler's call is queued for the next turn, which never comes
        loop.run_forever()
    finally:
        loop.close()


def test_a_line_without_a_running_loop_is_written_at_once_after_those_held() -> None:
    handler, stream = _turn_lines()
    held, alone = _access_record(201), _access_record(500)
    _held_by_a_loop_that_closes(handler, held)
    assert stream.writes == []
    handler.handle(alone)
    assert stream.getvalue() == TextLines().format(held) + "\n" + TextLines().format(alone) + "\n"


def test_a_flush_writes_the_lines_held_and_the_next_loop_is_asked_again() -> None:
    handler, stream = _turn_lines()
    first, second = _access_record(201), _access_record(202)
    _held_by_a_loop_that_closes(handler, first)
    handler.flush()  # what logging.shutdown does at exit
    assert stream.writes == [TextLines().format(first) + "\n"]
    _held_by_a_loop_that_closes(handler, second)
    _held_by_a_loop_that_closes(handler, second)  # a new loop: its own call, not the closed one's
    assert stream.writes == [TextLines().format(first) + "\n"]

    async def turn() -> None:
        handler.handle(first)
        await _turn_over()

    asyncio.run(turn())
    assert stream.writes[1:] == ["".join(TextLines().format(r) + "\n" for r in (second, second, first))]


def test_serve_writes_its_lines_to_standard_error_a_turn_at_a_time() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("info")
        (handler,) = root.handlers
        assert isinstance(handler, TurnLines) and handler.stream is sys.stderr
        assert isinstance(handler.formatter, TextLines)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_a_warning_is_written_at_once_with_the_lines_held_before_it() -> None:
    handler, stream = _turn_lines()
    held = _access_record(201)
    warning = logging.LogRecord("dispatcher.hub", logging.WARNING, __file__, 1, "store unreachable", (), None)

    async def log() -> list[str]:
        handler.handle(held)
        handler.handle(warning)
        return list(stream.writes)  # before the turn ends

    assert asyncio.run(log()) == [TextLines().format(held) + "\n" + TextLines().format(warning) + "\n"]
