"""The access log: one line per HTTP request on the ``dispatcher.access`` logger.

``GET /api/v1/incidents 200 3.1ms admin``: method, path (never the query string: ``?token=`` and other secrets
stay out of the log), status, milliseconds until the answer was sent, and the signed-in account (``-`` when
none). The line is formatted by the logging handler only when it is written: an operator silences it with
``DISPATCHER_ACCESS_LOG=false`` (the edge then does not time requests at all) or by setting the logger's level
above INFO. Uvicorn's own access log stays off. The edge (:class:`gateways.edge.Edge`) times each request and
calls :func:`write`.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from starlette.types import Scope

log = logging.getLogger("dispatcher.access")
_SAFE = "/:@!$&'()*+,;=-._~"


_LINE = "%s %s %d %.1fms %s"


def write(scope: Scope, status: int, ms: float) -> None:
    """The line of one answered request (``scope`` of the request; ``ms`` until its answer was sent)."""
    if not log.isEnabledFor(logging.INFO):
        return
    principal = scope.get("state", {}).get("principal")
    path = scope["path"]
    args = (
        scope["method"],
        path if path.isprintable() and " " not in path else quote(path, safe=_SAFE),  # one field, one line
        status,
        ms,
        principal.name if principal is not None else "-",
    )
    # What ``log.info`` does, less its walk up the stack for the caller's file and line (``findCaller``, about a
    # fifth of the line's cost): the caller is always this function.
    log.handle(log.makeRecord(log.name, logging.INFO, __file__, _WRITE_LINE, _LINE, args, None, "write"))


_WRITE_LINE = write.__code__.co_firstlineno
