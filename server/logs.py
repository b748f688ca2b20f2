"""How ``dispatcher serve`` logs: plain lines for a person at a terminal, or JSON lines for a log pipeline;
the dispatcher's own lines, the libraries' chatter kept down.

``DISPATCHER_LOG_FORMAT=json`` writes one JSON object per line: ``time`` (UTC, ISO 8601), ``level``,
``logger``, ``message``, ``exception`` when there is one, and the ``request_id``, ``township`` and
``incident_id`` the request being served was bound to (:mod:`gateways.log_context`), when there is one.
Either way the lines go to standard error, those of one turn of the event loop in one write (:class:`TurnLines`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TextIO

import orjson

from gateways import log_context

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Libraries whose INFO lines say nothing an operator acts on: APScheduler writes a line per job it adds (one per
#: shift of the roster) and per scheduler started, Alembic two per connection. The dispatcher says each once itself
#: (``shift changes: N cron jobs armed``, ``database schema upgraded from … to …``). Their warnings still show.
QUIET = ("apscheduler", "alembic")


class TextLines(logging.Formatter):
    """:data:`TEXT_FORMAT`, the time of day worked out once a second: a busy server writes a line per request (the
    access log), and ``time.strftime`` for each was about a tenth of the line's cost. The same text as
    ``logging.Formatter(TEXT_FORMAT)`` writes."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")  # a second since the epoch and its time of day, as text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        known, text = self._second
        if second != known:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"  # logging's default_msec_format


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (
            ("request_id", log_context.request_id),
            ("township", log_context.township),
            ("incident_id", log_context.incident_id),
        ):
            value = var.get()
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


class TurnLines(logging.StreamHandler[TextIO]):
    """A stream handler (standard error by default) that writes the lines of one turn of the event loop together.

    A busy server logs a line per request (the access log), and a stream handler writes and flushes each on its
    own: a system call per request. Here a line logged on a thread running an event loop is formatted at once
    (the same text, in the same order) and written with the others of that turn when the loop has run what is
    ready; a warning or an error, a line from any other thread, a flush (``logging.shutdown`` at exit) or a full
    buffer writes what is held first, then its own, at once.
    """

    #: Lines held at most before they are written without waiting for the turn to end.
    HELD = 256

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._held: list[str] = []
        self._armed: asyncio.AbstractEventLoop | None = None  # the loop whose turn will write what is held

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - logging's own contract: a bad record is reported, never raised
            self.handleError(record)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop on this thread (a worker thread, start-up, shutdown): now
            loop = None
        if loop is None or record.levelno >= logging.WARNING:
            # A warning or an error is written at once: it may come just before the loop hangs or the process ends.
            self._held.append(line)
            self._write_held()
            return
        if self._armed is not loop:  # (a loop closed with the call pending never runs it: the next one is asked)
            self._armed = loop
            loop.call_soon(self.flush)  # after what the loop runs this turn
        self._held.append(line)
        if len(self._held) >= self.HELD:
            self._write_held()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._armed = None
            self._write_held()

    def _write_held(self) -> None:
        """Write and flush the lines held (the caller holds the handler's lock)."""
        try:
            if self._held:
                text = "".join(self._held)
                self._held.clear()
                self.stream.write(text)
            if hasattr(self.stream, "flush"):
                self.stream.flush()
        except Exception:  # noqa: BLE001 - as StreamHandler: a broken stream does not break the caller
            self.handleError(logging.makeLogRecord({"msg": "log lines lost: the stream refused them"}))


def configure(level: str, log_format: str = "text") -> None:
    """The root logger at ``level`` in one format (uvicorn's loggers propagate to it), its lines written a loop
    turn at a time (:class:`TurnLines`); the :data:`QUIET` libraries at WARNING unless debugging."""
    handler = TurnLines()
    handler.setFormatter(JsonLines() if log_format == "json" else TextLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING if root.level > logging.DEBUG else logging.NOTSET)
