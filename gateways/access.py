"""The access log: one line per HTTP request on the ``dispatcher.access`` logger.

``GET /api/v1/incidents 200 3.1ms admin``: method, path (never the query string: ``?token=`` and other secrets
stay out of the log), status, milliseconds until the answer was sent, and the signed-in account (``-`` when
none). The line is formatted by the logging handler only when it is written: an operator silences it with
``DISPATCHER_ACCESS_LOG=false`` (the middleware is then not installed at all) or by setting the logger's level
above INFO. Uvicorn's own access log stays off.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("dispatcher.access")
_SAFE = "/:@!$&'()*+,;=-._~"


class AccessLog:
    """ASGI middleware: one INFO line per HTTP request after its answer (a request whose client left too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        # A duration, not a time of day: the monotonic counter, not the injected clock (which may be virtual).
        started = time.perf_counter()
        answered = 0.0
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = time.perf_counter()  # the audit trail writes its row after this: not the client's wait

        try:
            await self.app(scope, receive, watched)
        finally:
            principal = scope.get("state", {}).get("principal")
            path = scope["path"]
            log.info(
                "%s %s %d %.1fms %s",
                scope["method"],
                path if path.isprintable() and " " not in path else quote(path, safe=_SAFE),  # one field, one line
                status,
                ((answered or time.perf_counter()) - started) * 1000.0,
                principal.name if principal is not None else "-",
            )
