"""How the dispatcher logs: plain lines for a person at a terminal, or JSON lines for a log pipeline.

``DISPATCHER_LOG_FORMAT=json`` writes one JSON object per line: ``time`` (UTC, ISO 8601), ``level``,
``logger``, ``message``, ``exception`` when there is one, and the ``request_id``, ``township`` and
``incident_id`` the request being served was bound to (:mod:`gateways.log_context`), when there is one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson

from gateways import log_context

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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


def configure(level: str, log_format: str) -> None:
    """Set the root logger up once for ``serve`` (uvicorn's loggers then propagate to it)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
