"""Every refusal in one shape: RFC 9457 problem details (``application/problem+json``).

A problem is ``{"type", "title", "status", "detail", "code"}`` and, by kind, ``errors`` (validation: a list of
``{"field", "message"}``), ``current`` (a 409: the incident's ``status`` and ``version`` now, and the ``state``
that refused the move) and ``allowed`` (an illegal move: the moves the lifecycle allows from there). ``code`` is
the stable machine word a client switches on (the board translates it through its i18n files, ``problem.<code>``);
``type`` is the same word as a tag URI (:data:`TYPE_PREFIX`, not meant to be dereferenced, RFC 9457 §4). The list
of codes is :data:`TITLES` (and docs/api.md).

Installed centrally (:func:`install`): a route that raises ``HTTPException`` or lets a domain error through gets
this shape without change; :class:`Problem` is an ``HTTPException`` that names its code and extra members. The MQTT
gateway's dead letters and the batch door's refused items carry the same codes (:func:`code_of`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from dispatcher.core.incidents import Refused, StaleVersion, UnknownAssignment
from dispatcher.core.lifecycle import IllegalTransition
from dispatcher.hub import HubStopped, IncidentNotFound, UnknownAlarm, UnknownOfficer
from dispatcher.store import CommitRefused, StoreUnavailable

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "tag:township-dispatcher,2026:problem:"

#: Every code, with its title (English, fixed: the board shows ``problem.<code>`` from its i18n files instead).
TITLES: dict[str, str] = {
    "bad-request": "Bad request",
    "invalid": "The request is not valid",
    "refused": "The command makes no sense for this incident now",
    "value-refused": "The database refused a value of this request",
    "unauthenticated": "Sign in first",
    "sign-in-failed": "Wrong name or password",
    "locked": "Locked after too many failed sign-ins",
    "forbidden": "Not allowed",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "stale-version": "The incident moved on since this version",
    "illegal-transition": "The lifecycle does not allow this move now",
    "conflict": "Conflict",
    "wrong-township": "The table is for another township",
    "too-large": "The request body is too large",
    "unsupported-media-type": "Unsupported media type",
    "too-many-requests": "Too many requests",
    "internal-error": "Internal error",
    "unavailable": "Not stored: the dispatcher or its database is unavailable, try again",
}

#: The code of a status when nothing more precise was said.
BY_STATUS: dict[int, str] = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    422: "invalid",
    429: "too-many-requests",
    500: "internal-error",
    503: "unavailable",
}


def code_for_status(status: int) -> str:
    return BY_STATUS.get(status, "bad-request" if status < 500 else "internal-error")


def code_of(exc: BaseException) -> str:
    """The problem code of a domain error (as the HTTP API answers it), for the gateways that are not HTTP."""
    if isinstance(exc, IllegalTransition):
        return "illegal-transition"
    if isinstance(exc, StaleVersion):
        return "stale-version"
    if isinstance(exc, IncidentNotFound | UnknownAssignment | UnknownOfficer | UnknownAlarm):
        return "not-found"
    if isinstance(exc, Refused):
        return "refused"
    if isinstance(exc, CommitRefused):
        return "value-refused"
    if isinstance(exc, StoreUnavailable | HubStopped):
        return "unavailable"
    if isinstance(exc, Problem):
        return exc.code
    if isinstance(exc, StarletteHTTPException):
        return code_for_status(exc.status_code)
    return "internal-error"


class Problem(HTTPException):
    """An ``HTTPException`` with its problem code and extension members (``errors``, ``current``, ``allowed``...)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **members: Any,
    ) -> None:
        assert code in TITLES, code
        super().__init__(status, detail, headers=dict(headers) if headers else None)
        self.code = code
        self.members = members


def problem(status: int, code: str, detail: str, **members: Any) -> dict[str, Any]:
    """The problem document as plain data."""
    return {
        "type": TYPE_PREFIX + code,
        "title": TITLES[code],
        "status": status,
        "detail": detail,
        "code": code,
        **members,
    }


def problem_response(
    status: int, code: str, detail: str, *, headers: Mapping[str, str] | None = None, **members: Any
) -> Response:
    body = orjson.dumps(answerable(problem(status, code, detail, **members)))
    return Response(body, status_code=status, media_type=MEDIA_TYPE, headers=dict(headers) if headers else None)


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors (``loc``, ``msg``, ``type``, ``input``) as ``{"field", "message", "type"?,
    "input"?}`` (a leading ``body`` is dropped; the whole body is ``body``, whose input is not echoed)."""
    out = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if loc and loc[0] == "body" and len(loc) > 1:
            loc = loc[1:]
        loc = loc or ["body"]
        problem = {"field": ".".join(loc), "message": _PLAINER.get(str(error.get("type")), str(error.get("msg", "")))}
        if error.get("type"):
            problem["type"] = str(error["type"])  # pydantic's kind of problem (text_nul, finite_number, missing...)
        if "input" in error and loc != ["body"]:
            problem["input"] = error["input"]  # the value refused, so that a client can find it in what it sent
        out.append(problem)
    return out


def one_line(errors: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(f"{e['field']}: {e['message']}" for e in errors)


# pydantic's words for a lone surrogate in a constrained string, said the way dispatcher.values says them
_PLAINER = {"string_unicode": "a lone surrogate (\\ud800-\\udfff) is not valid Unicode text"}


def answerable(value: Any) -> Any:
    """``value`` as a JSON answer can carry it: NaN, Infinity and integers beyond 64 bits as text, a lone
    surrogate escaped.

    A refusal may quote what it refused; Python's JSON reader takes NaN, Infinity, integers of any size and
    ``\\ud800``, which orjson cannot write: the refusal itself would fail with a 500.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {answerable(k): answerable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [answerable(v) for v in value]
    return value


def _http_problem(exc: StarletteHTTPException) -> Response:
    headers = getattr(exc, "headers", None)
    if isinstance(exc, Problem):
        return problem_response(exc.status_code, exc.code, str(exc.detail), headers=headers, **exc.members)
    detail: Any = exc.detail
    if isinstance(detail, list):
        # FastAPI's way of naming fields in an HTTPException: [{"loc", "msg", "type"}].
        errors = field_errors(d for d in detail if isinstance(d, Mapping))
        return problem_response(exc.status_code, "invalid", one_line(errors), headers=headers, errors=errors)
    return problem_response(exc.status_code, code_for_status(exc.status_code), str(detail), headers=headers)


async def _incident_now(request: Request, get_hub: Callable[[Request], Any]) -> dict[str, Any]:
    """The incident of the request's path as it is now: ``{"status", "version"}`` (empty when there is none)."""
    incident_id = request.path_params.get("incident_id")
    if incident_id is None:
        return {}
    try:
        hub = await get_hub(request)
        incident = await hub.get(int(incident_id))
    except (IncidentNotFound, ValueError, HubStopped, StoreUnavailable):
        return {}
    return {"status": incident.status.value, "version": incident.version}


def install(app: FastAPI, get_hub: Callable[[Request], Any]) -> None:
    """Answer every refusal of ``app`` as a problem; ``get_hub`` chooses the hub of a request (its township)."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return _http_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        errors = field_errors(jsonable_encoder(exc.errors()))
        return problem_response(422, "invalid", one_line(errors), errors=errors)

    @app.exception_handler(IllegalTransition)
    async def _illegal(request: Request, exc: IllegalTransition) -> Response:
        current = {"state": exc.current, **(await _incident_now(request, get_hub))}
        return problem_response(
            409, "illegal-transition", str(exc), current=current, allowed=list(exc.allowed), action=exc.action
        )

    @app.exception_handler(StaleVersion)
    async def _stale(request: Request, exc: StaleVersion) -> Response:
        current = {"version": exc.current, **(await _incident_now(request, get_hub))}
        return problem_response(409, "stale-version", str(exc), current=current, expected=exc.expected)

    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> Response:
        return problem_response(422, "refused", str(exc))

    @app.exception_handler(IncidentNotFound)
    @app.exception_handler(UnknownAssignment)
    @app.exception_handler(UnknownOfficer)
    @app.exception_handler(UnknownAlarm)
    async def _not_found(_: Request, exc: LookupError) -> Response:
        return problem_response(404, "not-found", str(exc))

    @app.exception_handler(HubStopped)
    async def _stopped(_: Request, exc: HubStopped) -> Response:
        # Retry-After: a hub stops for a moment too (a replica handing its township over): nothing was stored.
        return problem_response(
            503, "unavailable", str(exc) or "the dispatcher is not running", headers={"Retry-After": "1"}
        )

    @app.exception_handler(StoreUnavailable)
    async def _store_down(_: Request, exc: StoreUnavailable) -> Response:
        # The store's messages carry no SQL and no parameters: nothing of another caller's batch.
        return problem_response(503, "unavailable", f"not stored, try again: {exc}", headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        # Starlette's outermost middleware answers with this, then raises the error on for the log.
        return problem_response(500, "internal-error", "an unexpected error: see the dispatcher's log")

    @app.exception_handler(CommitRefused)
    async def _store_refused(_: Request, exc: CommitRefused) -> Response:
        return problem_response(422, "value-refused", f"not stored, a value of this request was refused: {exc}")


def problem_schema() -> dict[str, Any]:
    """The OpenAPI schema of a problem document."""
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "description": f"{TYPE_PREFIX}<code>"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string", "enum": sorted(TITLES)},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "field": {"type": "string"},
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "input": {},
                    },
                },
            },
            "current": {"type": "object", "description": "a 409: the incident's status and version now"},
            "allowed": {"type": "array", "items": {"type": "string"}},
        },
    }


#: Operations that can answer 409 besides those FastAPI already knows of (``responses=``): the moves on an incident
#: (an illegal move, a stale ``version``), creating an account that exists, a rule table of another township.
_CONFLICTS = {("POST", "/api/v1/accounts"), ("PUT", "/api/v1/rules")}
_NO_CONFLICT = ("/notes", "/alarms/")


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Every error answer of an OpenAPI document as ``application/problem+json`` (the ``Problem`` schema), and the
    409 of the operations that can give one. Changes ``schema`` in place and returns it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = problem_schema()
    content = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            moves = path.startswith("/api/v1/incidents/{incident_id}/") and not any(n in path for n in _NO_CONFLICT)
            if (method.upper() == "POST" and moves) or (method.upper(), path) in _CONFLICTS:
                responses.setdefault(
                    "409",
                    {
                        "description": "`illegal-transition` (with `allowed`) or `stale-version`: the incident is "
                        "not where the caller thought (`current`); `conflict` or `wrong-township` elsewhere"
                    },
                )
            for status, answer in responses.items():
                if str(status)[:1] in ("4", "5"):
                    answer["content"] = content
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema
