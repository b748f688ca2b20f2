"""What a log line is about: the request, its township and incident, bound by the guard for the request's task.

The JSON log format (``DISPATCHER_LOG_FORMAT=json``, :mod:`server.logs`) writes them beside each line the
request's code logs; plain text ignores them. Binding is three ``ContextVar.set`` calls per request.
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
township: ContextVar[str | None] = ContextVar("township", default=None)
incident_id: ContextVar[int | None] = ContextVar("incident_id", default=None)

_GIVEN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def bind(given_request_id: str | None, township_id: str | None, incident: str | None) -> None:
    """Bind the request's id (the caller's ``X-Request-ID`` when it is a sane token, else a new one)."""
    # A correlation id, not a secret: the process's pseudo-random generator, not the system's (``secrets`` reads
    # the kernel's random source with a system call on every request).
    request_id.set(
        given_request_id if given_request_id and _GIVEN_ID.match(given_request_id) else f"{random.getrandbits(48):012x}"
    )
    township.set(township_id)
    incident_id.set(int(incident) if incident is not None and incident.isdecimal() else None)
