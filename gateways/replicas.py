"""Any replica answers any request: one for a township another replica serves is carried to it over HTTP.

:func:`gateways.tenancy.township_of` raises :class:`Elsewhere` for a township this replica does not serve;
:func:`carry` answers it. The request goes to the owner's advertised URL as it came (method, path, query,
body, every end-to-end header: the caller's token and request id too), marked with ``X-Dispatcher-Via``;
the owner's answer comes back as it is. The owner checks the token itself against the shared accounts.
While nobody serves the township (a switch: its owner died or is handing it over, a few seconds) or the owner
cannot be reached, the answer is 503 with ``Retry-After``: nothing was stored. A request that was carried
once is never carried again (the layouts of two replicas can disagree for a round): 503, retry.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field

import httpx
from fastapi import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from dispatcher.core.leases import Layout
from dispatcher.ownership import NotCarried
from gateways.mqtt.codec import Refusal
from gateways.mqtt.gateway import CarriedMessage, RefusalOf
from gateways.problems import problem_response

log = logging.getLogger(__name__)

VIA = "x-dispatcher-via"
#: Headers of one connection, not of the request (RFC 9110 §7.6.1), and those httpx sets itself.
_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding"}
    | {"upgrade", "host", "content-length", "content-encoding"}
)


class Elsewhere(HTTPException):
    """The township is not served by this replica. Unhandled (a websocket): 503, retry."""

    def __init__(self, township: str) -> None:
        super().__init__(503, f"township {township} is served by another replica", {"Retry-After": "1"})
        self.township = township


@dataclass(slots=True)
class Replicas:
    """This replica as the gateways see it: its id, its URL, and who serves what (updated every lease round)."""

    id: str
    url: str
    client: httpx.AsyncClient
    layout: Layout = field(default_factory=Layout)
    retry_after_s: int = 2


async def carry(request: Request, exc: Exception) -> Response:
    """The exception handler of :class:`Elsewhere`: the owner's answer, or 503 with ``Retry-After``."""
    assert isinstance(exc, Elsewhere)
    replicas: Replicas | None = request.app.state.context.replicas
    url = replicas.layout.owner_url(exc.township) if replicas is not None else None
    if replicas is None or url is None or url == replicas.url or request.headers.get(VIA):
        return _switching(exc.township, replicas)
    headers = [(k, v) for k, v in request.headers.items() if k not in _HOP]
    headers.append((VIA, replicas.id))
    try:
        answer = await replicas.client.request(
            request.method,
            url.rstrip("/") + request.url.path,
            params=request.url.query,
            content=await request.body(),
            headers=headers,
        )
    except httpx.HTTPError as error:
        log.warning("township %s: its owner %s did not answer (%s)", exc.township, url, type(error).__name__)
        return _switching(exc.township, replicas)
    response = Response(answer.content, status_code=answer.status_code)
    for name, value in answer.headers.multi_items():
        if name not in _HOP:
            response.headers.append(name, value)
    return response


def _switching(township: str, replicas: Replicas | None) -> Response:
    wait = replicas.retry_after_s if replicas is not None else 2
    return problem_response(
        503,
        "unavailable",
        f"township {township} is changing replicas: nothing was stored, try again in {wait} s",
        headers={"Retry-After": str(wait)},
    )


async def carry_message(replicas: Replicas, token: str, township: str, message: CarriedMessage) -> RefusalOf | None:
    """Hand a device message this replica took (a shared subscription) to the owner of ``township``
    (``POST /api/v1/mqtt/carry`` there, as the replicas' own account): the owner's refusal, or None once stored.

    Raises :class:`NotCarried` while nobody serves the township, or the owner did not store it (the caller keeps
    the message unacknowledged with the broker and tries again).
    """
    url = replicas.layout.owner_url(township)
    if url is None or url == replicas.url:
        raise NotCarried(f"township {township}: no other replica serves it now")
    body = {
        "topic": message.topic,
        "payload": base64.b64encode(message.payload).decode(),
        "received_at": message.received_at.isoformat(),
    }
    try:
        answer = await replicas.client.post(
            url.rstrip("/") + "/api/v1/mqtt/carry",
            params={"township": township},
            json=body,
            headers={"authorization": f"Bearer {token}", VIA: replicas.id},
        )
    except httpx.HTTPError as error:
        raise NotCarried(f"township {township}: its owner {url} did not answer ({type(error).__name__})") from error
    if answer.status_code != 200:
        raise NotCarried(f"township {township}: its owner {url} answered {answer.status_code} {answer.text[:200]}")
    refusal = answer.json()["refusal"]
    return None if refusal is None else (Refusal(refusal["reason"]), refusal["detail"], refusal["code"])
