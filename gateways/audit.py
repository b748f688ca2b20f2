"""The audit trail: who did what, when and from where, for every change made through the API.

:func:`hand_over` (called by the edge, :class:`gateways.edge.Edge`) appends one entry per changing request
(``POST``, ``PUT``, ``PATCH``, ``DELETE`` under ``/api/``, signing in and out included) and per audit export,
after the answer is sent:
the account (none when not signed in; the name tried for a sign-in), the township, the route template
and the concrete path, the status answered and the client address (the socket's peer: put no proxy in
front without teaching it here). Incident events keep their own ``actor`` in the event log; the audit
entry of the same request adds where it came from. ``GET /api/v1/audit`` exports the trail.

The entry is built from the request alone (:func:`entry_of`, pure) and handed to an :class:`AuditSink`: the
application's :class:`Trail`, which gives an entry of a township to its hub's writer when the hub's database is the
directory's (the entry commits with the writer's next batch), and any other to the directory (entries that arrive
together commit in one transaction of their own).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal, Protocol

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.types import Scope

from dispatcher.accounts import AuditEntry, Principal, SqlDirectory
from dispatcher.hub import Hub
from dispatcher.writer import HubStopped
from gateways.context import AppContext, context_of

log = logging.getLogger(__name__)

CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXPORTS = frozenset({"/api/v1/audit"})


class AuditSink(Protocol):
    """Where audit entries go: the directory's audit table (:class:`SqlDirectory`), or :class:`Trail`."""

    async def record(self, entry: AuditEntry) -> None:
        """Store ``entry``; returns once it is stored (raises when it could not be)."""


def audited(scope: Scope) -> bool:
    """Whether the request of ``scope`` leaves an audit entry: changing requests under ``/api/`` and the exports."""
    path: str = scope["path"]
    return path.startswith("/api/") and (scope["method"] in CHANGING or path in EXPORTS)


def entry_of(scope: Scope, status: int, at: datetime) -> AuditEntry:
    """The audit entry of the request of ``scope``, answered ``status`` at ``at``. Pure: no I/O.

    Who comes from what the guard and the route left in the request's state (``principal``, ``township``,
    ``audit_actor``, ``audit_detail``); the action names the matched route's template when there is one.
    """
    state = scope.get("state", {})
    principal: Principal | None = state.get("principal")
    route = scope.get("route")
    client = scope.get("client")
    # By position (at, action, outcome, actor, township, target, source, detail): a frozen dataclass's keywords
    # cost a quarter more, and every changing request makes one.
    return AuditEntry(
        at,
        f"{scope['method']} {getattr(route, 'path', None) or scope['path']}",
        status,
        principal.name if principal else state.get("audit_actor"),
        state.get("township"),
        scope["path"] + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else ""),
        client[0] if client else None,
        state.get("audit_detail"),
    )


class Trail:
    """The application's sink: an entry of a township whose hub writes the directory's database goes with that
    hub's next writer batch (no transaction of its own, no second connection writing the same SQLite file); any
    other entry (a sign-in, a township with a database of its own, a stopped hub) to the directory.

    ``hubs``: the townships whose hub shares the directory's database (the composition root decides, by URL).
    """

    def __init__(self, directory: SqlDirectory, hubs: Mapping[str, Hub]) -> None:
        self._directory = directory
        self._hubs = dict(hubs)

    async def flush(self) -> None:
        """Commit the entries the hubs' writers hold (waiting for a change to ride with) now."""
        for hub in self._hubs.values():
            if hub.running:
                with contextlib.suppress(HubStopped):
                    await hub.settle()

    async def record(self, entry: AuditEntry) -> None:
        hub = self._hubs.get(entry.township) if entry.township is not None else None
        if hub is not None and hub.running:
            try:
                await hub.record_audit(entry)
                return
            except HubStopped:  # stopping between the check and the queue: the directory takes it
                pass
        await self._directory.open()
        await self._directory.record(entry)


async def hand_over(scope: Scope, status: int, sink: AuditSink | None = None) -> None:
    """Build the request's entry and hand it to ``sink`` (the context's trail, else the directory, when None); a
    failure is logged, not raised.

    Called by the edge (:class:`gateways.edge.Edge`) once the answer is sent.
    """
    context: AppContext = scope["app"].state.context
    entry = entry_of(scope, status, context.clock.now())
    try:
        if sink is None:
            sink = context.audit
        if sink is None:
            await context.directory.open()
            sink = context.directory
        await sink.record(entry)
    except Exception:
        log.exception("audit entry not stored: %s", entry)


router = APIRouter(prefix="/api/v1", tags=["audit"])


def _cell(value: object) -> object:
    """A CSV cell a spreadsheet will not run as a formula (a target or detail may start with = + - @)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


_FIELDS = ("id", "at", "actor", "township", "action", "target", "outcome", "source", "detail")


@router.get("/audit", summary="The audit trail (who, what, when, from where) as JSON lines or CSV")
async def export_audit(
    request: Request,
    since: Annotated[datetime | None, Query(description="from (inclusive; with a timezone)")] = None,
    until: Annotated[datetime | None, Query(description="to (exclusive; with a timezone)")] = None,
    format: Literal["jsonl", "csv"] = "jsonl",
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(422, detail=[{"loc": ["query", name], "msg": "give a timezone", "type": "value_error"}])
    principal: Principal = request.state.principal
    context = context_of(request)
    directory: SqlDirectory = context.directory
    if isinstance(context.audit, Trail):
        await context.audit.flush()  # entries answered before this export, still waiting for a batch: in it
    township = None if principal.account.county else principal.account.township
    entries = await directory.audit(since=since, until=until, township=township, limit=limit)
    rows = [
        {
            "id": e.id,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "township": e.township,
            "action": e.action,
            "target": e.target,
            "outcome": e.outcome,
            "source": e.source,
            "detail": e.detail,
        }
        for e in entries
    ]
    if format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=_FIELDS)
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8")
    return Response(b"".join(orjson.dumps(r) + b"\n" for r in rows), media_type="application/x-ndjson")
