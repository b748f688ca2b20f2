"""Signing in, tokens, accounts, and the guard every route passes through.

* ``POST /api/v1/auth/token``: OAuth2 password flow (form ``username``, ``password``) → a session token
  (``Authorization: Bearer <token>``) that expires after ``DISPATCHER_TOKEN_TTL_S``; failures count
  towards the lockout (:class:`dispatcher.accounts.Lockout`); sign-ins are paced per client address.
* ``POST /api/v1/auth/logout`` revokes the token used; ``GET /api/v1/auth/me`` tells who it is.
* Accounts and device tokens (revocable, no expiry) are managed by administrators under ``/api/v1/accounts``.

:func:`guard` is the one dependency of the whole application (the composition root installs it): it finds
the matched route's entry in :data:`gateways.policy.POLICY` (none: refused), the principal behind the
bearer token (websockets: ``?token=`` or the subprotocol ``dispatcher.bearer.<token>``), paces the token,
settles the township (:mod:`gateways.tenancy`) and checks the role's scope.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Security
from fastapi.exceptions import WebSocketException
from fastapi.responses import Response
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError
from starlette.requests import HTTPConnection

from dispatcher.accounts import (
    COUNTY,
    NAME_PATTERN,
    SIGNED_OUT,
    Account,
    AccountError,
    AuditEntry,
    Principal,
    Role,
    SignInRefused,
    SqlDirectory,
    TokenInfo,
    TokenKind,
)
from dispatcher.hub import Hub
from dispatcher.values import INT32_MAX, RowId, Text, storable_text
from gateways import log_context
from gateways.context import context_of
from gateways.limits import TokenBuckets, retry_after
from gateways.policy import PUBLIC, Scope, grant_for, route_path, scope_refusal
from gateways.problems import Problem
from gateways.tasks import officer_teams, tasks_of
from gateways.tenancy import Townships, township_of

WS_SUBPROTOCOL = "dispatcher.bearer"
MAX_ID = INT32_MAX  # ids are INTEGER columns: PostgreSQL keeps them in 32 bits
TOWNSHIP_PATTERN = r"^(\*|[a-z0-9][a-z0-9_-]{0,63})$"

bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
router = APIRouter(prefix="/api/v1", tags=["auth"])


def json_response(data: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status_code, media_type="application/json")


def directory_of(connection: HTTPConnection) -> SqlDirectory:
    """The accounts directory of the application serving ``connection``."""
    directory: SqlDirectory = context_of(connection).directory
    return directory


def _refuse(connection: HTTPConnection, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    if connection.scope["type"] == "websocket":
        raise WebSocketException(code=4000 + status, reason=detail[:120])
    raise HTTPException(status, detail, headers=headers)


def _token_of(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization")
    if header:
        return _bearer(header)
    if connection.scope["type"] == "websocket":
        for offered in connection.headers.get("sec-websocket-protocol", "").split(","):
            offered = offered.strip()
            if offered.startswith(WS_SUBPROTOCOL + "."):
                return offered[len(WS_SUBPROTOCOL) + 1 :]
        return connection.query_params.get("token")
    return None


#: A device message another replica took, carried to the replica serving its township (gateways/mqtt/stats_api.py).
CARRY_ROUTE = ("POST", "/api/v1/mqtt/carry")

#: Open311 GeoReport v2 passes the API key as a field (``api_key``) of the query or the form: its routes only.
OPEN311_PREFIX = "/open311/"
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


async def _api_key_of(connection: HTTPConnection, path: str | None) -> str | None:
    if path is None or not path.startswith(OPEN311_PREFIX) or not isinstance(connection, Request):
        return None
    key = connection.query_params.get("api_key")
    if not key and connection.headers.get("content-type", "").startswith(_FORMS):
        # Read whole first: starlette keeps the parsed form for the route, and the body stays readable for a
        # request carried to the replica serving its township (gateways/replicas.py), which form() alone consumes.
        await connection.body()
        value = (await connection.form()).get("api_key")
        key = value if isinstance(value, str) else None
    return key or None


def ws_subprotocol(connection: HTTPConnection) -> str | None:
    """The subprotocol to accept a board websocket with: ours when the client offered it, else none."""
    offered = [p.strip() for p in connection.headers.get("sec-websocket-protocol", "").split(",")]
    return WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None


def _request_headers(scope: Any) -> tuple[str | None, str | None, str | None]:
    """``Authorization``, ``X-Township`` and ``X-Request-ID`` of an HTTP request: the first of each, in one pass.

    As :class:`starlette.datastructures.Headers` reads them (ASGI header names are lower case, values latin-1),
    without building it and walking the list once per name.
    """
    authorization = township = request_id = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"x-township":
            if township is None:
                township = value.decode("latin-1")
        elif name == b"x-request-id" and request_id is None:
            request_id = value.decode("latin-1")
    return authorization, township, request_id


def _bearer(header: str | None) -> str | None:
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None
    return None


async def guard(connection: HTTPConnection) -> None:
    """Let the request through only as the policy table allows; see the module docstring."""
    scope = connection.scope
    path = route_path(scope.get("route"))
    websocket = scope["type"] == "websocket"
    method = "GET" if websocket else scope["method"]
    if path is not None and (method, path) in PUBLIC:
        return
    grant = grant_for(method, path) if path is not None else None
    if grant is None:
        _refuse(connection, 403, f"no policy for {method} {path}: refused")
        return
    params = connection.path_params
    for name, value in params.items():
        # Ids beyond any stored one would overflow the database's integers: nothing has them. (Checked here,
        # before the route's own validation, because the scope check below looks the incident up.)
        if name.endswith("_id") and isinstance(value, str) and value.isdecimal() and int(value) > MAX_ID:
            _refuse(connection, 404, f"no {name.removesuffix('_id')} {value}")
    context = context_of(connection)
    directory = context.directory
    if not directory.is_open:
        await directory.open()
    if websocket:
        token = _token_of(connection)
        township_header = connection.headers.get("x-township")
        request_id = connection.headers.get("x-request-id")
    else:
        authorization, township_header, request_id = _request_headers(scope)
        token = _bearer(authorization)
    token = token or await _api_key_of(connection, path)
    now = context.clock.now()  # one reading for the token's expiry and the rate bucket
    principal = directory.authenticate(token, now) if token else None
    if principal is None and token and context.replicas is not None and await directory.look_up(token):
        principal = directory.authenticate(token, now)  # issued by another replica
    if principal is None:
        _refuse(connection, 401, "sign in: a valid bearer token is needed", {"WWW-Authenticate": "Bearer"})
        return
    # The request's state as Starlette keeps it (``request.state`` reads the same dict), written without a
    # ``State`` wrapper and its ``__setattr__`` per name.
    state: dict[str, Any] = scope.setdefault("state", {})
    state["principal"] = principal
    account = principal.account
    token_info = principal.token
    # Signed-in sessions of one account share a bucket; each device token has its own. Device messages carried
    # between replicas are not paced here: their pace is the devices', bounded by the broker's in-flight limits.
    buckets: TokenBuckets = context.token_buckets
    if buckets.rate_per_s > 0 and (method, path) != CARRY_ROUTE:
        key = f"t:{token_info.id}" if token_info.kind is TokenKind.DEVICE else f"a:{account.name}"
        wait = buckets.take(key, now.timestamp())
        if wait > 0:
            _refuse(connection, 429, "too many requests for this token", {"Retry-After": retry_after(wait)})
    role_scope = grant.get(account.role)
    if role_scope is None:
        _refuse(connection, 403, f"role {account.role.value} may not {method} {path}")
        return
    townships: Townships = context.townships
    # Most requests have no query string: parsing an empty one costs a QueryParams each.
    asked = connection.query_params.get("township") if scope.get("query_string") else None
    try:
        township = state["township"] = townships.choose(account, asked or township_header)
    except HTTPException as exc:
        _refuse(connection, exc.status_code, str(exc.detail))
    log_context.bind(request_id, township, params.get("incident_id"))
    if role_scope is not Scope.TOWNSHIP and role_scope is not Scope.SELF:
        await _check_scope(connection, role_scope, account, township_of(connection).hub)
    if websocket:
        # HTTP changes are audited by the edge (gateways/edge.py); a board subscription is audited here.
        client = connection.client
        await directory.record(
            AuditEntry(
                at=context.clock.now(),
                action=f"GET {path}",
                outcome=101,
                actor=principal.name,
                township=township,
                target=connection.url.path,
                source=client.host if client else None,
                detail="board feed subscribed",
            )
        )


async def _check_scope(connection: HTTPConnection, scope: Scope, account: Account, hub: Hub) -> None:
    params = connection.path_params
    if scope is Scope.OWN_UNIT:
        if account.officer_id is None or params.get("officer_id") != account.officer_id:
            _refuse(connection, 403, "a field officer reports for its own officer only")
        return
    raw_id = str(params.get("incident_id", ""))
    if not raw_id.isdecimal() or len(raw_id) > 12:
        if scope is Scope.MODULE and "incident_id" not in params:
            if connection.query_params.get("module") != account.module:
                _refuse(connection, 403, f"a module lead lists its own module: ask with ?module={account.module}")
            return
        _refuse(connection, 403, "outside your scope")
        return
    incident = await hub.get(int(raw_id))  # IncidentNotFound: 404
    refusal = scope_refusal(account, scope, incident, team=params.get("team"), roster_known=bool(hub.roster.officers))
    if refusal is not None:
        _refuse(connection, 403, refusal)


def principal_of(request: HTTPConnection) -> Principal:
    principal: Principal = request.state.principal
    return principal


PrincipalDep = Annotated[Principal, Depends(principal_of)]


def acting(request: Request, given: str | None) -> str:
    """The actor to record: the signed-in account; a different name the client gave is kept as "for …"."""
    name = principal_of(request).name
    if not given or given == name:
        return name
    return f"{name} for {given}"[:128]


# -- models ---------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenPublic(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: str | None
    account: dict[str, Any]


class AccountCreate(_In):
    name: str = Field(pattern=NAME_PATTERN)
    role: Role
    township: str = Field(pattern=TOWNSHIP_PATTERN, description="a township id, or * for the county")
    officer_id: Text | None = Field(default=None, min_length=1, max_length=64, description="field officers")
    module: Text | None = Field(default=None, min_length=1, max_length=64, description="module leads")
    password: Text | None = Field(default=None, min_length=12, max_length=256, description="none: tokens only")


class AccountUpdate(_In):
    role: Role | None = None
    township: str | None = Field(default=None, pattern=TOWNSHIP_PATTERN)
    officer_id: Text | None = Field(default=None, min_length=1, max_length=64)
    module: Text | None = Field(default=None, min_length=1, max_length=64)
    password: Text | None = Field(default=None, min_length=12, max_length=256)
    disabled: bool | None = None


class DeviceTokenCreate(_In):
    label: Text = Field(min_length=1, max_length=128, description="which device or integration holds it")


def account_json(account: Account) -> dict[str, Any]:
    return {
        "name": account.name,
        "role": account.role.value,
        "township": account.township,
        "officer_id": account.officer_id,
        "module": account.module,
        "disabled": account.disabled,
        "has_password": account.has_password,
    }


def token_json(info: TokenInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "account": info.account,
        "kind": info.kind.value,
        "label": info.label,
        "created_at": info.created_at.isoformat(),
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
    }


# -- routes ---------------------------------------------------------------------------------------


@router.post(
    "/auth/token",
    response_model=TokenPublic,
    summary="Sign in (OAuth2 password flow): a short-lived bearer token",
    responses={401: {"description": "wrong name or password, or locked"}, 429: {"description": "too many"}},
)
async def sign_in(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Response:
    try:
        # The name tried is stored (failure counts, the audit trail): refuse what the store cannot hold.
        storable_text(form.username)
    except PydanticCustomError as exc:
        raise HTTPException(422, [{"loc": ["body", "username"], "msg": exc.message(), "type": exc.type}]) from None
    client = request.client.host if request.client else "?"
    request.state.audit_actor = form.username[:64]
    tried = directory_of(request).account(form.username)
    request.state.township = tried.township if tried else None  # for the audit trail: whose township's entry
    buckets: TokenBuckets = context_of(request).sign_in_buckets
    wait = buckets.take(f"ip:{client}", context_of(request).clock.now().timestamp())
    if wait > 0:
        raise HTTPException(429, "too many sign-ins from this address", headers={"Retry-After": retry_after(wait)})
    directory = directory_of(request)
    await directory.open()
    now = context_of(request).clock.now()
    try:
        token, principal = await directory.sign_in(form.username, form.password, now)
    except SignInRefused as exc:
        headers = {"WWW-Authenticate": "Bearer"}
        if exc.locked_until is not None:
            request.state.audit_detail = f"locked until {exc.locked_until.isoformat()}"
            headers["Retry-After"] = retry_after((exc.locked_until - now).total_seconds())
            raise Problem(
                401,
                "locked",
                f"too many failed sign-ins: locked until {exc.locked_until.isoformat()}",
                headers=headers,
                locked_until=exc.locked_until.isoformat(),
            ) from None
        raise Problem(401, "sign-in-failed", "wrong name or password", headers=headers) from None
    request.state.principal = principal
    request.state.audit_detail = f"session token {principal.token.id}"
    expires = principal.token.expires_at
    return json_response(
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_at": expires.isoformat() if expires else None,
            "account": account_json(principal.account),
        }
    )


@router.post("/auth/logout", status_code=204, summary="Sign out: the token used is revoked")
async def sign_out(request: Request, principal: PrincipalDep) -> Response:
    await directory_of(request).revoke(principal.token.id, context_of(request).clock.now(), reason=SIGNED_OUT)
    request.state.audit_detail = f"revoked token {principal.token.id}"
    return Response(status_code=204)


@router.get("/auth/me", summary="Who the token belongs to, and the townships it may choose")
async def me(request: Request, principal: PrincipalDep, _: Annotated[str | None, Security(bearer)]) -> Response:
    townships: Townships = context_of(request).townships
    mine = sorted(townships) if principal.account.county else [t for t in townships if t == principal.account.township]
    return json_response(
        {
            "account": account_json(principal.account),
            "token": token_json(principal.token),
            "townships": mine,
            "township": getattr(request.state, "township", None),
        }
    )


@router.get(
    "/me/assignments",
    summary="A field officer's open assignments, the most urgent first (mine, or its team's: ?scope=team)",
)
async def my_assignments(
    request: Request, principal: PrincipalDep, scope: Annotated[Literal["mine", "team"], Query()] = "mine"
) -> Response:
    """Each item is the incident (``IncidentPublic``) with ``task``: the team, the assignment's state, its
    officer and the deadline that runs now (``kind`` ack/arrive/resolve, ``due_at``), sorted by priority then
    due time. ``seq`` is the event the list is current at: resume ``/ws/field?after=<seq>`` from it."""
    from gateways.compression import json_answer
    from gateways.schemas import incident_json

    hub = township_of(request).hub
    officer = principal.account.officer_id
    teams = officer_teams(hub, officer) if scope == "team" else frozenset()
    seq, incidents = hub.open_incidents()
    data = []
    for incident, team, deadline in tasks_of(incidents, officer, teams):
        held = incident.assignment(team)
        task = {"team": team, "state": held.state.value, "officer": held.officer, "mine": held.officer == officer}
        data.append({**incident_json(incident), "task": {**task, "deadline": deadline}})
    return await json_answer(request, {"data": data, "count": len(data), "seq": seq, "scope": scope})


def _manageable(principal: Principal, township: str) -> None:
    """A township's administrator manages its own township's accounts; the county's, every one."""
    if not principal.account.county and township != principal.account.township:
        raise HTTPException(403, f"an administrator of {principal.account.township} manages only its accounts")


def _existing(request: Request, principal: Principal, name: str) -> Account:
    account = directory_of(request).account(name)
    if account is None:
        raise HTTPException(404, f"no account {name!r}")
    _manageable(principal, account.township)
    return account


def _check_shape(role: Role, officer_id: str | None, module: str | None) -> None:
    if role is Role.FIELD_OFFICER and officer_id is None:
        raise HTTPException(422, "a field officer account needs its officer_id (the roster id)")
    if role is Role.MODULE_LEAD and module is None:
        raise HTTPException(422, "a module lead account needs its module")


@router.get("/accounts", summary="Accounts (an administrator of a township: its own)")
async def list_accounts(request: Request, principal: PrincipalDep) -> Response:
    accounts = directory_of(request).accounts()
    if not principal.account.county:
        accounts = [a for a in accounts if a.township == principal.account.township]
    return json_response({"data": [account_json(a) for a in accounts]})


@router.post("/accounts", status_code=201, summary="Create an account")
async def create_account(request: Request, body: AccountCreate, principal: PrincipalDep) -> Response:
    _manageable(principal, body.township)
    _check_shape(body.role, body.officer_id, body.module)
    try:
        account = await directory_of(request).create_account(
            body.name,
            body.role,
            body.township,
            context_of(request).clock.now(),
            officer_id=body.officer_id,
            module=body.module,
            password=body.password,
        )
    except AccountError as exc:
        raise HTTPException(409, str(exc)) from None
    request.state.audit_detail = f"created {account.name} ({account.role.value}, {account.township})"
    return json_response(account_json(account), 201)


@router.patch("/accounts/{name}", summary="Change an account: role, township, password, disabled (revokes its tokens)")
async def update_account(request: Request, name: Text, body: AccountUpdate, principal: PrincipalDep) -> Response:
    account = _existing(request, principal, name)
    if body.township is not None:
        _manageable(principal, body.township)
    _check_shape(body.role or account.role, body.officer_id or account.officer_id, body.module or account.module)
    updated = await directory_of(request).update_account(
        name,
        context_of(request).clock.now(),
        password=body.password,
        disabled=body.disabled,
        role=body.role,
        township=body.township,
        officer_id=body.officer_id,
        module=body.module,
    )
    changed = sorted(k for k, v in body.model_dump(exclude_none=True).items() if k != "password") + (
        ["password"] if body.password else []
    )
    request.state.audit_detail = f"changed {name}: {', '.join(changed)}"
    return json_response(account_json(updated))


@router.get("/accounts/{name}/tokens", summary="An account's live tokens (never the tokens themselves)")
async def list_tokens(request: Request, name: Text, principal: PrincipalDep) -> Response:
    _existing(request, principal, name)
    return json_response({"data": [token_json(t) for t in directory_of(request).tokens_of(name)]})


@router.post("/accounts/{name}/tokens", status_code=201, summary="A device token for the account (shown once)")
async def issue_device_token(
    request: Request, name: Text, body: DeviceTokenCreate, principal: PrincipalDep
) -> Response:
    _existing(request, principal, name)
    token, info = await directory_of(request).issue_token(
        name, TokenKind.DEVICE, context_of(request).clock.now(), label=body.label
    )
    request.state.audit_detail = f"device token {info.id} for {name}: {body.label}"
    return json_response({**token_json(info), "token": token}, 201)


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke a token")
async def revoke_token(request: Request, token_id: RowId, principal: PrincipalDep) -> Response:
    directory = directory_of(request)
    info = next((t for a in directory.accounts() for t in directory.tokens_of(a.name) if t.id == token_id), None)
    if info is None:
        raise HTTPException(404, f"no live token {token_id}")
    owner = directory.account(info.account)
    _manageable(principal, owner.township if owner else COUNTY)
    await directory.revoke(token_id, context_of(request).clock.now())
    request.state.audit_detail = f"revoked token {token_id} of {info.account}"
    return Response(status_code=204)
