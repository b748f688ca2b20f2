"""Who may do what: ONE table keyed by (HTTP method, route path template) → the roles allowed, each with a scope.

The table is data: :func:`gateways.auth.guard` (one dependency of the whole application) looks up the matched
route here and refuses what is missing (deny by default). ``tests/test_policy.py`` walks every route of the
application and fails when one has no entry, and ``docs/security.md`` carries the table as
:func:`policy_markdown` renders it (a test keeps them equal).

Scopes narrow a role to part of its township:

* ``township``: everything of the township served to the request (a county account: the township it chose);
* ``own_assignment``: only incidents where the caller's officer holds an assignment, and when the path names a
  ``{team}``, only that team's assignment held by the caller's officer (field officers);
* ``own_unit``: only the caller's own officer in ``{officer_id}`` (field officers' devices);
* ``module``: only incidents of the caller's module; on lists, the caller must ask with ``?module=<its own>``;
* ``self``: only about the caller's own account and token.

Whether a scope reaches one incident is :func:`scope_refusal`, pure, and the same for every door: the HTTP
guard, the answer to a report (:func:`gateways.api.report_incident`) and the MQTT gateway's acknowledgements
(devices act as field officers, :data:`DEVICE_ROLE`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any

from dispatcher.accounts import Account, Role
from dispatcher.core.incidents import Incident


class Scope(StrEnum):
    TOWNSHIP = "township"
    OWN_ASSIGNMENT = "own_assignment"
    OWN_UNIT = "own_unit"
    MODULE = "module"
    SELF = "self"


Grant = Mapping[Role, Scope]

FO, OP, ML, PS, SV, AD = (
    Role.FIELD_OFFICER,
    Role.OPERATOR,
    Role.MODULE_LEAD,
    Role.PARTY_SECRETARY,
    Role.SUPERVISION,
    Role.ADMIN,
)
T = Scope.TOWNSHIP


def allow(*roles: Role, **scoped: Scope) -> Grant:
    """``allow(OP, PS, field_officer=Scope.OWN_ASSIGNMENT)``: the roles named plainly get the township scope."""
    grant = dict.fromkeys(roles, T)
    grant.update({Role(role): scope for role, scope in scoped.items()})
    return grant


#: The command room's own work: operators, the party secretary (all of the township) and administrators.
COMMAND = (OP, PS, AD)
#: Reading everything of the township: the command room and the supervision office (read-only).
READ_ALL = (OP, PS, SV, AD)
EVERYONE = (FO, OP, ML, PS, SV, AD)
_INCIDENT = "/api/v1/incidents/{incident_id}"

#: Routes anybody may call, signed in or not.
PUBLIC: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/api/v1/auth/token"),
        ("GET", "/board"),  # the page and /static hold no data; the data needs a token
        ("GET", "/field"),  # the field officer's app (docs/field.md): page, worker and manifest, no data
        ("GET", "/field/place/{code}"),
        ("GET", "/field/sw.js"),
        ("GET", "/field/manifest.webmanifest"),
        ("GET", "/field/assets/{name}"),  # the app's script, style, labels and icon (gzip), no data
        ("GET", "/reports"),  # likewise: the briefing comes from /api/v1/reports/* with a token
        ("GET", "/"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),  # counts and timings only, no personal data: keep it on the intranet (operations.md)
        # Open311 GeoReport v2: reading is open to any citizen app, as the specification has it; the records
        # carry no reporter, and no description in sensitive categories (gateways/open311.py)
        ("GET", "/open311/v2/services.{fmt}"),
        ("GET", "/open311/v2/services/{service_code}.{fmt}"),
        ("GET", "/open311/v2/requests.{fmt}"),
        ("GET", "/open311/v2/requests/{service_request_id}.{fmt}"),
        ("GET", "/open311/v2/tokens/{token}.{fmt}"),
        # CAP 1.2 public notices: public by nature (gateways/cap.py)
        ("GET", "/cap/alerts/{alert_id}.xml"),
        ("GET", "/cap/feed.xml"),
    }
)

POLICY: dict[tuple[str, str], Grant] = {
    # -- signing in, the caller itself --
    ("POST", "/api/v1/auth/logout"): allow(**dict.fromkeys(EVERYONE, Scope.SELF)),
    ("GET", "/api/v1/auth/me"): allow(**dict.fromkeys(EVERYONE, Scope.SELF)),
    ("GET", "/api/v1/me/assignments"): allow(field_officer=Scope.SELF),
    # -- accounts and device tokens: administrators --
    ("GET", "/api/v1/accounts"): allow(AD),
    ("POST", "/api/v1/accounts"): allow(AD),
    ("PATCH", "/api/v1/accounts/{name}"): allow(AD),
    ("GET", "/api/v1/accounts/{name}/tokens"): allow(AD),
    ("POST", "/api/v1/accounts/{name}/tokens"): allow(AD),
    ("DELETE", "/api/v1/tokens/{token_id}"): allow(AD),
    # -- the audit trail: supervision and administrators --
    ("GET", "/api/v1/audit"): allow(SV, AD),
    # -- incidents --
    ("POST", "/api/v1/incidents"): allow(FO, OP, ML, PS, AD),
    ("POST", "/api/v1/incidents/batch"): allow(FO, OP, ML, PS, AD),  # the same reports, up to 500 at once
    ("GET", "/api/v1/incidents"): allow(*READ_ALL, module_lead=Scope.MODULE),
    ("GET", _INCIDENT): allow(*READ_ALL, module_lead=Scope.MODULE, field_officer=Scope.OWN_ASSIGNMENT),
    ("POST", _INCIDENT + "/assignments/{team}/{action}"): allow(
        *COMMAND, module_lead=Scope.MODULE, field_officer=Scope.OWN_ASSIGNMENT
    ),
    ("POST", _INCIDENT + "/notes"): allow(*COMMAND, module_lead=Scope.MODULE, field_officer=Scope.OWN_ASSIGNMENT),
    ("POST", _INCIDENT + "/close"): allow(*COMMAND, module_lead=Scope.MODULE),
    ("POST", _INCIDENT + "/cancel"): allow(*COMMAND),
    ("POST", _INCIDENT + "/assignments/{team}/officer"): allow(*COMMAND, module_lead=Scope.MODULE),
    ("POST", _INCIDENT + "/assignments/{team}/reassign"): allow(*COMMAND, module_lead=Scope.MODULE),
    ("POST", _INCIDENT + "/teams"): allow(*COMMAND, module_lead=Scope.MODULE),
    ("POST", _INCIDENT + "/escalate"): allow(*COMMAND, module_lead=Scope.MODULE),
    ("POST", _INCIDENT + "/priority"): allow(*COMMAND, module_lead=Scope.MODULE),
    ("POST", _INCIDENT + "/merge"): allow(*COMMAND),
    ("POST", _INCIDENT + "/split"): allow(*COMMAND),
    ("POST", _INCIDENT + "/alarms/{alarm_seq}/ack"): allow(*COMMAND, module_lead=Scope.MODULE),
    ("GET", "/api/v1/events"): allow(*READ_ALL),
    # -- closing the loop: extensions (延期), parking (挂账), verification (核查) --
    ("POST", _INCIDENT + "/extensions"): allow(*COMMAND, module_lead=Scope.MODULE, field_officer=Scope.OWN_ASSIGNMENT),
    ("POST", _INCIDENT + "/parking"): allow(*COMMAND, module_lead=Scope.MODULE),
    # the decision is taken in the account's role: a module lead (of the incident's module), the party secretary
    ("POST", _INCIDENT + "/requests/{request_id}/{decision}"): allow(PS, module_lead=Scope.MODULE),
    ("POST", _INCIDENT + "/resume"): allow(*COMMAND, module_lead=Scope.MODULE),
    # the command room or a grid officer (网格员) sent to check; the hub refuses any of the incident's handlers
    ("POST", _INCIDENT + "/verification"): allow(OP, PS, AD, field_officer=Scope.TOWNSHIP),
    ("GET", "/api/v1/lanes"): allow(*READ_ALL),
    # -- dispatch: the queue, returns, units, handovers --
    ("GET", "/api/v1/dispatch/waiting"): allow(*READ_ALL),
    ("GET", "/api/v1/dispatch/returns"): allow(*READ_ALL),
    ("GET", "/api/v1/units"): allow(*READ_ALL, ML),
    ("POST", "/api/v1/units/{officer_id}/status"): allow(*COMMAND, field_officer=Scope.OWN_UNIT),
    ("GET", "/api/v1/handovers"): allow(*READ_ALL, ML),
    ("POST", "/api/v1/handovers/{handover_id}/ack"): allow(*COMMAND),
    # -- the roster and the rule table: reading for all, changing for administrators --
    ("GET", "/api/v1/roster"): allow(*READ_ALL, ML),
    ("PUT", "/api/v1/roster"): allow(AD),
    ("PUT", "/api/v1/roster/officers/{officer_id}"): allow(AD),
    ("DELETE", "/api/v1/roster/officers/{officer_id}"): allow(AD),
    ("POST", "/api/v1/roster/overrides"): allow(AD),
    ("GET", "/api/v1/rules"): allow(*EVERYONE),
    ("GET", "/api/v1/rules/catalogue"): allow(*EVERYONE),
    ("GET", "/api/v1/rules/zones"): allow(*EVERYONE),
    ("GET", "/api/v1/rules/explain"): allow(*READ_ALL, ML),
    ("GET", "/api/v1/rules/classify"): allow(*EVERYONE),  # the keyword categories as a phone's officer types
    ("PUT", "/api/v1/rules"): allow(AD),
    ("GET", "/api/v1/rules/versions"): allow(*READ_ALL, ML),
    ("GET", "/api/v1/rules/versions/{table_id}"): allow(*READ_ALL, ML),
    # -- what leaders read: the briefing's figures (aggregates of the whole township) --
    ("GET", "/api/v1/briefing"): allow(ML, PS, SV, AD),
    # -- webhook subscriptions: administrators --
    ("GET", "/api/v1/webhooks"): allow(AD),
    ("POST", "/api/v1/webhooks"): allow(AD),
    ("GET", "/api/v1/webhooks/{subscription_id}"): allow(AD),
    ("PATCH", "/api/v1/webhooks/{subscription_id}"): allow(AD),
    ("DELETE", "/api/v1/webhooks/{subscription_id}"): allow(AD),
    ("GET", "/api/v1/webhooks/{subscription_id}/deliveries"): allow(AD),
    ("GET", "/api/v1/reports/briefing"): allow(ML, PS, SV, AD),
    ("GET", "/api/v1/reports/incidents"): allow(ML, PS, SV, AD),
    ("GET", "/api/v1/assessment"): allow(ML, PS, SV, AD),
    ("POST", "/api/v1/assessment/bonuses"): allow(SV),
    ("POST", "/api/v1/assessment/bonuses/{bonus_id}/approve"): allow(SV, PS),
    ("PUT", "/api/v1/assessment/scoring"): allow(SV),
    ("GET", "/api/v1/assessment/scoring"): allow(ML, PS, SV, AD),
    # -- the MQTT gateway's counters --
    ("GET", "/api/v1/mqtt/stats"): allow(*READ_ALL),
    # a device message another replica took for a township served here (replica mode; the replicas' own account)
    ("POST", "/api/v1/mqtt/carry"): allow(AD),
    # -- Open311 GeoReport v2: citizen apps and hotlines report with their account's key (api_key) --
    ("POST", "/open311/v2/requests.{fmt}"): allow(Role.CITIZEN_APP, Role.HOTLINE),
    # -- public notices (CAP 1.2): the command room issues them; reading them is public (/cap/...) --
    ("POST", "/api/v1/alerts"): allow(*COMMAND),
    ("GET", "/api/v1/alerts"): allow(*READ_ALL),
    # -- the live board feed (the websocket upgrade is a GET) --
    ("GET", "/ws/board"): allow(*READ_ALL),
    # -- the field officer's app (docs/field.md): photos, places, its own live feed --
    ("POST", "/api/v1/media"): allow(FO, OP, ML, PS, AD),
    # reading a photo: its uploader, or whoever may read an incident that references it (checked by the route)
    ("GET", "/api/v1/media/{media_id}"): allow(*EVERYONE),
    ("GET", "/api/v1/media/{media_id}/thumbnail"): allow(*EVERYONE),
    ("GET", "/api/v1/places/{code}"): allow(*EVERYONE),
    ("POST", "/api/v1/places/decode"): allow(FO, OP, ML, PS, AD),
    ("GET", "/api/v1/me/tasks"): allow(field_officer=Scope.SELF),  # the phone's list: a summary of each task
    ("GET", "/ws/field"): allow(field_officer=Scope.SELF),
}


#: The routes whose entries the other doors borrow: reading one incident, and moving a team's assignment.
READ_INCIDENT = ("GET", _INCIDENT)
MOVE_ASSIGNMENT = ("POST", _INCIDENT + "/assignments/{team}/{action}")
#: What a field device on MQTT is: a field officer, the officer of its topic.
DEVICE_ROLE = Role.FIELD_OFFICER


def scope_refusal(
    account: Account, scope: Scope, incident: Incident, *, team: str | None = None, roster_known: bool = True
) -> str | None:
    """Why ``scope`` keeps ``account`` from ``incident`` (and from ``team``'s part of it), or None: it reaches it.

    ``own_assignment`` reaches an incident where the account's officer holds an assignment (of ``team``
    when given). ``roster_known`` False is a township dispatched without a roster (``DISPATCHER_NO_ROSTER``):
    teams are sent whole and no officer holds anything, so there every assignment is every field officer's.
    """
    if scope in (Scope.TOWNSHIP, Scope.SELF):
        return None
    if scope is Scope.MODULE:
        if account.module is not None and incident.module == account.module:
            return None
        return f"incident {incident.id} is not of module {account.module}"
    if scope is Scope.OWN_ASSIGNMENT and account.officer_id is not None:
        if not roster_known and (team is None or any(a.team == team for a in incident.assignments)):
            return None
        if any(a.officer == account.officer_id and (team is None or a.team == team) for a in incident.assignments):
            return None
        held = f"{team}'s assignment" if team is not None else "an assignment"
        return f"incident {incident.id}: not {held} of officer {account.officer_id}"
    return "outside your scope"


def grant_for(method: str, path: str) -> Grant | None:
    """The roles allowed on a route, or None: not in the table, refused."""
    return POLICY.get((method, path))


def route_path(route: Any) -> str | None:
    """A route's path template (an included websocket route keeps it on its original route)."""
    return getattr(route, "path", None) or getattr(getattr(route, "original_route", None), "path", None)


def iter_routes(routes: Any) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route, walking included routers; a websocket counts as ``GET``."""
    for route in routes:
        if hasattr(route, "effective_candidates"):
            yield from iter_routes(route.effective_candidates())
            continue
        path = route_path(route)
        if path is None:
            continue
        methods = getattr(route, "methods", None)
        if not methods:
            if type(getattr(route, "original_route", route)).__name__.endswith("WebSocketRoute"):
                yield "GET", path
            continue
        for method in sorted(methods):
            if method != "HEAD":
                yield method, path


BEARER_SCHEME = "OAuth2PasswordBearer"  # the scheme FastAPI names after gateways.auth.bearer


def document_security(schema: dict[str, Any]) -> dict[str, Any]:
    """Mark in an OpenAPI document what the guard enforces: every operation of the policy table needs the
    bearer token and can answer 401 (no valid token), 403 (role or scope), 429 (pace), and 404 when its
    path names something. Public operations are left open. Changes ``schema`` in place and returns it.
    """
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes.setdefault(
        BEARER_SCHEME,
        {"type": "oauth2", "flows": {"password": {"scopes": {}, "tokenUrl": "/api/v1/auth/token"}}},
    )
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            key = (method.upper(), path)
            if key in PUBLIC or grant_for(*key) is None:
                continue
            operation["security"] = [{BEARER_SCHEME: []}]
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "no valid bearer token: sign in (`WWW-Authenticate: Bearer`)"})
            responses.setdefault("403", {"description": "the caller's role or scope may not do this here"})
            responses.setdefault("429", {"description": "too many requests for this token (`Retry-After`)"})
            if "{" in path:
                responses.setdefault("404", {"description": "nothing of that id (or not in the caller's township)"})
    return schema


def policy_markdown() -> str:
    """The table as Markdown (one row per route; ``role (scope)`` when narrower than the township)."""
    lines = ["| method | route | roles |", "|---|---|---|"]
    for (method, path), grant in sorted(POLICY.items(), key=lambda item: (item[0][1], item[0][0])):
        roles = ", ".join(r.value if s is T else f"{r.value} ({s.value})" for r, s in grant.items())
        lines.append(f"| {method} | `{path}` | {roles} |")
    for method, path in sorted(PUBLIC, key=lambda item: item[1]):
        lines.append(f"| {method} | `{path}` | anybody |")
    return "\n".join(lines) + "\n"
