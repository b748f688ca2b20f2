"""The log formats: plain text lines as logging writes them, and JSON lines with what the request being served was bound to."""

from __future__ import annotations

import asyncio
import logging
import sys

import orjson

from gateways import log_context
from server.logs import TEXT_FORMAT, JsonLines, TextLines


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
