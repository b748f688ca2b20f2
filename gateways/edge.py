"""The HTTP edge: ONE pure-ASGI layer in front of the application, and the hot routes it answers itself.

Every HTTP request passes :class:`Edge` once; one wrapper of ``receive`` and one of ``send`` do, in this order
as seen from the client:

* the access log (:mod:`gateways.access`): one line after the answer, a 413 of the body limit too;
* the body limit (:mod:`gateways.limits`): a body over the path's limit is answered ``413`` unread, whether
  ``Content-Length`` says so or the bytes show it as they arrive (a declared 413 is not audited: nothing ran);
* the audit trail (:mod:`gateways.audit`): changing requests under ``/api/`` and the exports; the entry is built
  from the request once it is answered and handed to the sink (:class:`gateways.audit.AuditSink`);
* masking (:mod:`gateways.privacy`): JSON answers under ``/api/`` to a principal who must not see every reporter.

The hot routes (report intake, the batch door and a team's steps: the composition root names them) are then
answered without FastAPI's router and dependency solving, by :class:`HotRoute`: the guard (the same
:func:`gateways.auth.guard`), one validation of the path and the body (``orjson``, then the route's compiled
models), the route's own function and the application's own exception handlers (RFC 9457 problems). A request the
route would refuse before its function runs (a body that is not JSON or does not validate, another content type,
a path parameter out of range) is handed to the application with its body replayed, so every refusal stays the one
FastAPI gives and the OpenAPI schema documents; the routes stay in the application, and in its schema, as they
are. A path that a route tried before the hot one could take (``/assignments/{team}/officer``) goes to the
application too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateways import access, audit
from gateways.auth import guard
from gateways.limits import too_large
from gateways.policy import route_path
from gateways.privacy import mask, needs_masking
from gateways.tenancy import township_of

log = logging.getLogger(__name__)


class Edge:
    """ASGI middleware: the access log, the body limit, the audit trail and masking, with the hot routes first.

    ``limit`` bytes per body (``larger`` per path); ``access_log`` False leaves the access log out entirely;
    ``hot`` maps ``(method, path)`` to the route that answers it here (see :func:`hot_routes`).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        larger: Mapping[str, int] | None = None,
        access_log: bool = True,
        hot: Mapping[tuple[str, str], HotRoute] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.larger = dict(larger or {})
        self.access_log = access_log
        self.exact = {key: route for key, route in (hot or {}).items() if "{" not in key[1]}
        self.patterned = [(key[0], route) for key, route in (hot or {}).items() if "{" in key[1]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(self, scope, receive, send)
        await exchange.run()

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The hot route that takes the request, else the application."""
        method, path = scope["method"], scope["path"]
        hot = self.exact.get((method, path))
        if hot is not None:
            await hot(scope, receive, send, self.app)
            return
        for hot_method, route in self.patterned:
            if hot_method == method and (params := route.match(path)) is not None:
                await route(scope, receive, send, self.app, params)
                return
        await self.app(scope, receive, send)


class _Exchange:
    """One HTTP request through the edge: what it received and what was answered (the event loop only)."""

    __slots__ = (
        "answered_at",
        "app_status",
        "chunks",
        "edge",
        "held",
        "limit",
        "masking",
        "receive",
        "received",
        "refused",
        "scope",
        "send",
        "started",
        "status",
    )

    def __init__(self, edge: Edge, scope: Scope, receive: Receive, send: Send) -> None:
        self.edge = edge
        self.scope = scope
        self.receive = receive
        self.send = send
        self.limit = edge.larger.get(scope["path"], edge.limit)
        self.received = 0
        self.started = False  # an answer's start went to the client
        self.refused = False  # 413 answered while the body came in: the application's answer is dropped
        self.status = 500  # as the client got it
        self.app_status = 500  # as the application (or a hot route) answered it: the audit's outcome
        self.answered_at = 0.0
        self.held: Message | None = None  # the start of an answer being masked
        self.chunks: list[bytes] = []
        self.masking = scope["path"].startswith("/api/")

    async def run(self) -> None:
        scope = self.scope
        logged = self.edge.access_log and access.log.isEnabledFor(logging.INFO)
        # A duration, not a time of day: the monotonic counter, not the injected clock (which may be virtual).
        started = time.perf_counter() if logged else 0.0
        try:
            if self._declared_too_large():
                self.status = 413
                await too_large(self.send, self.limit)
                return
            audited = audit.audited(scope)
            try:
                await self.edge.dispatch(scope, self.counted, self.watched)
            finally:
                if audited:
                    await audit.hand_over(scope, self.app_status)
        finally:
            if logged:
                access.write(scope, self.status, ((self.answered_at or time.perf_counter()) - started) * 1000.0)

    def _declared_too_large(self) -> bool:
        for name, value in self.scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return True
                if declared > self.limit or declared < 0:
                    return True
        return False

    async def counted(self) -> Message:
        """``receive``, counting the body's bytes: over the limit, 413 now and the application hears the client left."""
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                # Frameworks turn a failed body read into a 400 otherwise: tell the application the client left,
                # and drop whatever it still sends.
                if not self.started:
                    self.started = self.refused = True
                    self.status = 413
                    await too_large(self.send, self.limit)
                    self.answered_at = time.perf_counter()
                return {"type": "http.disconnect"}
        return message

    async def watched(self, message: Message) -> None:
        """``send``: masks JSON answers for principals who must not see every reporter, then passes them on."""
        kind = message["type"]
        if kind == "http.response.start":
            self.app_status = message["status"]
            if self.masking:
                principal = self.scope.get("state", {}).get("principal")
                # A compressed answer (gateways.compression) was masked by its route: it passes unread.
                if needs_masking(principal) and _readable_json(message["headers"]):
                    self.held = message
                    return
        elif kind == "http.response.body" and self.held is not None:
            self.chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            start, self.held = self.held, None
            account = self.scope["state"]["principal"].account
            body = orjson.dumps(mask(orjson.loads(b"".join(self.chunks)), account))
            headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await self._out({**start, "headers": headers})
            await self._out({"type": "http.response.body", "body": body})
            return
        await self._out(message)

    async def _out(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
        await self.send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.answered_at = time.perf_counter()  # the audit entry is handed over after this: not the client's wait


def _readable_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """A JSON answer with no ``Content-Encoding``: one the edge can read to mask it."""
    json = False
    for k, v in headers:
        if k == b"content-encoding":
            return False
        if k == b"content-type" and v.startswith(b"application/json"):
            json = True
    return json


# -- the hot routes ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hot:
    """What makes a route hot: its function, the model of its body and, when its path has parameters, of those.

    The function is called with keywords: ``request``, ``body`` (the validated body; None for an empty body when
    ``optional``), ``hub`` (the request's township's) and each path parameter by name.
    """

    endpoint: Callable[..., Awaitable[Response]]
    body: type[BaseModel]
    path: type[BaseModel] | None = None
    optional: bool = False


class HotRoute:
    """One route of the application answered at the edge: guard, one validation, the route's function.

    ``route`` is the application's own route (its path template is what the guard and the audit trail read);
    ``shadows`` the routes the application's router would try first and that could take the same path (a request
    one of them matches goes to the application); ``handlers`` the application's exception handlers.
    """

    __slots__ = ("handlers", "hot", "route", "shadows")

    def __init__(self, route: Any, hot: Hot, handlers: Mapping[Any, Any], shadows: tuple[Any, ...] = ()) -> None:
        self.route = route
        self.hot = hot
        self.handlers = handlers
        self.shadows = shadows

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters when this route is the one the application would choose for ``path``, else None."""
        found = self.route.path_regex.match(path)
        if found is None or any(r.match(path) for r in self.shadows):
            return None
        return dict(found.groupdict())

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, app: ASGIApp, params: dict[str, str] | None = None
    ) -> None:
        hot = self.hot
        body, disconnected = await _read_body(receive)
        if disconnected:
            return  # the client left, or the body limit answered 413
        try:
            values = dict(hot.path.model_validate(params)) if hot.path is not None else {}
            if body:
                content_type = _header(scope, b"content-type") or b""
                if content_type.partition(b";")[0].strip().lower() != b"application/json":
                    # None, a form, other bytes (FastAPI refuses them), or another +json type: the application's.
                    raise ValueError("not application/json")
                parsed = hot.body.model_validate(orjson.loads(body))
            elif hot.optional:
                parsed = None
            else:
                raise ValueError("no body")
        except ValueError:  # not JSON (orjson.JSONDecodeError), not valid (pydantic's ValidationError)...
            await app(scope, _replay(body, receive), send)
            return
        scope["route"] = self.route
        scope["endpoint"] = hot.endpoint
        scope["path_params"] = params or {}
        # The body stays readable for a handler that needs it again (a township served by another replica is
        # carried there with its body: gateways/replicas.py).
        request = Request(scope, _replay(body, receive))
        try:
            await guard(request)
            response = await hot.endpoint(request=request, body=parsed, hub=township_of(request).hub, **values)
        except Exception as exc:  # noqa: BLE001 - answered as the application's handlers answer it
            await self._refusal(request, exc, send)
            return
        await response(scope, receive, send)

    async def _refusal(self, request: Request, exc: Exception, send: Send) -> None:
        handled = next((k for k in type(exc).__mro__ if k in self.handlers), Exception)
        if handled is Exception:
            # Unexpected: Starlette's outermost layer (around the edge) answers 500 with the handler of Exception
            # and raises it on for the log, as it does for every route.
            raise exc
        response: Response = await self.handlers[handled](request, exc)
        await response(request.scope, request.receive, send)


def hot_routes(app: FastAPI, hot: Mapping[tuple[str, str], Hot]) -> dict[tuple[str, str], HotRoute]:
    """The hot routes of ``app``: each ``(method, path template)`` of ``hot``, with what would shadow it.

    Raises ``LookupError`` when the application has no such route with that function (the edge answers only
    routes the application has, and documents).
    """
    walked = list(_walk(app.routes))
    routes = dict(walked)
    out = {}
    for key, spec in hot.items():
        route = routes.get(key)
        if route is None or getattr(route, "endpoint", None) is not spec.endpoint:
            raise LookupError(f"no route {key[0]} {key[1]} with {spec.endpoint.__name__} in the application")
        earlier = [r for k, r in walked[: [k for k, _ in walked].index(key)] if k[0] == key[0]]
        shadows = tuple(r.path_regex for r in earlier if _overlap(route_path(r) or "", key[1]))
        out[key] = HotRoute(route, spec, app.exception_handlers, shadows)
    return out


def _overlap(one: str, other: str) -> bool:
    """Whether two path templates can match one path (segment by segment: a parameter matches any segment)."""
    a, b = one.split("/"), other.split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") or y.startswith("{") for x, y in zip(a, b, strict=True))


def _walk(routes: Any) -> Iterator[tuple[tuple[str, str], Any]]:
    """((method, path template), route) of every HTTP route in the router's order, walking included routers."""
    for route in routes:
        if hasattr(route, "effective_candidates"):
            yield from _walk(route.effective_candidates())
            continue
        path = route_path(route)
        for method in sorted(getattr(route, "methods", None) or ()):
            if path is not None:
                yield (method, path), route


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the application after the edge read the body: the body once, then what the client sends."""
    replayed = False

    async def again() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again
