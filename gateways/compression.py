"""Large JSON answers of a few read routes, gzip-compressed for a client that takes it (the field officer's phone).

Used by the routes that name it (the officer's task lists, the catalogue, the zones), not by a middleware:
the report intake doors and every other route answer exactly as before. A phone's task list of 200 summaries is
about 95 KB of JSON and 4 KB compressed, which is what a weak signal in a basement notices.

The edge (:mod:`gateways.edge`) masks the reporters of JSON answers for the roles that must not see them by
reading the answer's body; it cannot read a compressed one. So :func:`json_answer` masks the data itself, as
the edge would, before compressing, and the edge passes an answer with a ``Content-Encoding`` through unread.
"""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import orjson
from fastapi import Request, Response

from gateways.privacy import mask, needs_masking

#: Smaller answers are sent as they are: under about a kilobyte, gzip's header and the CPU buy nothing.
GZIP_MIN_BYTES = 1024
#: zlib's level 5. Measured on the 2-core machine at load average 17: 200 task summaries, 96,581 B of JSON,
#: to 3,568 B in 3.4 ms (level 9: 3,178 B, as long); 200 whole incidents (/me/assignments), 780,737 B, to
#: 15,546 B in 17 ms (level 9: 11,112 B in 22 ms).
GZIP_LEVEL = 5
#: Larger JSON is compressed on a worker thread, not on the event loop (the whole-incident list takes ~17 ms).
THREAD_MIN_BYTES = 64 * 1024


def takes_gzip(request: Request) -> bool:
    """Whether the client's ``Accept-Encoding`` names gzip with a quality above zero."""
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        name, _, value = params.partition("=")
        if name.strip().lower() != "q":
            return True
        try:
            return float(value) > 0
        except ValueError:
            return False
    return False


async def json_answer(request: Request, data: Any, status_code: int = 200) -> Response:
    """``data`` as JSON, its reporters masked for the caller as the edge would, gzip-compressed when the
    client takes gzip and the JSON is at least :data:`GZIP_MIN_BYTES`. ``data`` is masked in place. Call
    from the event loop; JSON of :data:`THREAD_MIN_BYTES` or more is compressed on a worker thread."""
    principal = getattr(request.state, "principal", None)
    if needs_masking(principal):
        assert principal is not None
        mask(data, principal.account)
    body = orjson.dumps(data)
    headers = {"Vary": "Accept-Encoding"}
    if len(body) >= GZIP_MIN_BYTES and takes_gzip(request):
        if len(body) >= THREAD_MIN_BYTES:
            body = await asyncio.to_thread(gzip.compress, body, GZIP_LEVEL, mtime=0)
        else:
            body = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)
