"""Limits on hostile input: the size of a request body, and the pace of each token (token buckets)."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import orjson
from starlette.types import Send

from gateways.problems import MEDIA_TYPE, problem

DEFAULT_BODY_LIMIT = 64 * 1024


async def too_large(send: Send, limit: int) -> None:
    """Answer ``413`` (a problem naming ``limit``): the edge's body limit (:class:`gateways.edge.Edge`)."""
    body = orjson.dumps(problem(413, "too-large", f"the request body may have at most {limit} bytes", limit=limit))
    headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """One token bucket per key: ``rate_per_s`` sustained, bursts of ``burst``. Either ``<= 0``: no limit.

    Time is an argument (seconds on the injected clock, so the pace follows a virtual clock in tests). The
    least recently used keys are forgotten beyond ``max_keys`` (a forgotten key starts with a full bucket).
    Not thread-safe: the event loop only.
    """

    def __init__(self, rate_per_s: float, burst: float, *, max_keys: int = 100_000) -> None:
        self.rate_per_s = rate_per_s if burst > 0 else 0.0
        self.burst = max(burst, 1.0)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """Take one token: 0.0 when granted, else the seconds to wait until one is there (nothing taken)."""
        if self.rate_per_s <= 0:
            return 0.0
        bucket = self._buckets.pop(key, None) or _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate_per_s)
        bucket.at = now
        self._buckets[key] = bucket
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s


def retry_after(wait_s: float) -> str:
    """The ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))
