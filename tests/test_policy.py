"""The policy table: every route has an entry, the docs carry it, and each role gets exactly what it grants.

The matrix runs in process (httpx over ASGI) on the hub with the bundled roster: a five-way report gives the
field officer an assignment and the enforcement module lead an incident of its module; every route of the
table is then called by each role, with parameters inside the role's scope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from dispatcher.accounts import Account, Role
from dispatcher.settings import Settings
from gateways.policy import POLICY, PUBLIC, Scope, iter_routes, policy_markdown, scope_refusal
from server.app import create_app
from tests.conftest import HubRig, sign_in_as

FIVE_WAY = {"report_id": "p-1", "category": "traffic.congestion", "zone": "five-way", "description": "堵"}


def _app() -> Any:
    return create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))


def test_every_route_has_a_policy_entry_and_every_entry_a_route() -> None:
    routes = set(iter_routes(_app().routes))
    guarded = {(m, p) for m, p in routes if p.startswith(("/api/", "/ws/"))}
    assert guarded, "the walk found no API route"
    missing = sorted(guarded - set(POLICY) - PUBLIC)
    assert missing == [], f"routes without a policy entry (they are refused): {missing}"
    stale = sorted(set(POLICY) - routes)
    assert stale == [], f"policy entries without a route: {stale}"
    assert ("GET", "/ws/board") in routes


def test_the_openapi_document_declares_what_the_guard_enforces() -> None:
    """Generated clients and "Try it out" need the bearer scheme and the guard's answers on every guarded route."""
    schema = _app().openapi()
    operations = [(m.upper(), path, op) for path, ops in schema["paths"].items() for m, op in ops.items()]
    guarded = [(m, p, op) for m, p, op in operations if (m, p) not in PUBLIC]
    assert len(guarded) > 40
    for method, path, op in guarded:
        assert op.get("security") == [{"OAuth2PasswordBearer": []}], (method, path)
        assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
        assert "{" not in path or "404" in op["responses"], (method, path)
    public = [op for m, p, op in operations if (m, p) in PUBLIC]
    assert public and all("security" not in op for op in public)
    assert schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["type"] == "oauth2"


def test_docs_carry_the_policy_table(repo_root: Path) -> None:
    assert policy_markdown() in (repo_root / "docs" / "security.md").read_text(encoding="utf-8")


def _concrete(path: str, params: dict[str, str]) -> str:
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    return path


_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/incidents"): {**FIVE_WAY, "report_id": "p-2"},
    ("POST", "/api/v1/accounts"): {"name": "made-here", "role": "operator", "township": "ershili"},
    ("PATCH", "/api/v1/accounts/{name}"): {"module": "enforcement"},
}


_CANCEL = ("POST", "/api/v1/incidents/{incident_id}/cancel")
_REPORT = ("POST", "/api/v1/incidents")
_PUT_RULES = ("PUT", "/api/v1/rules")
_AUDIT = ("GET", "/api/v1/audit")
_EVENTS = ("GET", "/api/v1/events")
_ACK = ("POST", "/api/v1/incidents/{incident_id}/assignments/{team}/{action}")
_ACCOUNTS = ("POST", "/api/v1/accounts")
_OPEN311 = ("POST", "/open311/v2/requests.{fmt}")
_BY_HAND: dict[Role, dict[str, set[tuple[str, str]]]] = {
    Role.FIELD_OFFICER: {"allowed": {_REPORT, _ACK}, "refused": {_CANCEL, _EVENTS, _AUDIT, _PUT_RULES, _ACCOUNTS}},
    Role.OPERATOR: {"allowed": {_REPORT, _ACK, _CANCEL, _EVENTS}, "refused": {_AUDIT, _PUT_RULES, _ACCOUNTS}},
    Role.MODULE_LEAD: {"allowed": {_ACK, ("POST", _CANCEL[1].replace("cancel", "escalate"))}, "refused": {_CANCEL}},
    Role.PARTY_SECRETARY: {"allowed": {_CANCEL, _EVENTS}, "refused": {_PUT_RULES, _ACCOUNTS, _AUDIT}},
    Role.SUPERVISION: {"allowed": {_AUDIT, _EVENTS}, "refused": {_REPORT, _ACK, _CANCEL, _PUT_RULES}},
    Role.ADMIN: {"allowed": {_ACCOUNTS, _PUT_RULES, _AUDIT, _CANCEL}, "refused": {_OPEN311}},
    Role.CITIZEN_APP: {"allowed": {_OPEN311}, "refused": {_REPORT, _EVENTS, _ACK, _ACCOUNTS}},
    Role.HOTLINE: {"allowed": {_OPEN311}, "refused": {_REPORT, _EVENTS, _ACK, _ACCOUNTS}},
}


@pytest.fixture
async def matrix(crew: HubRig) -> AsyncIterator[tuple[Any, dict[str, str]]]:
    app = create_app(Settings(database_url=crew.url), hub=crew.hub)
    try:
        admin = await sign_in_as(app)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test", headers=admin
        ) as http:
            made = (await http.post("/api/v1/incidents", json=FIVE_WAY)).json()
            lead = made["assignments"][0]
            assert lead["officer"], "the roster chose no officer"
            await sign_in_as(app, Role.OPERATOR, name="someone", township="ershili")
        params = {
            "incident_id": str(made["id"]),
            "team": lead["team"],
            "action": "acknowledge",
            "officer_id": lead["officer"],
            "module": made["module"],
            "name": "someone",
            "token_id": "999999",
            "handover_id": "999999",
            "fmt": "json",
        }
        yield app, params
    finally:
        await app.state.context.directory.close()


@pytest.mark.parametrize("role", list(Role))
async def test_each_role_reaches_exactly_what_the_table_grants(role: Role, matrix: tuple[Any, dict[str, str]]) -> None:
    app, params = matrix
    headers = await sign_in_as(app, role, township="ershili", officer_id=params["officer_id"], module=params["module"])
    refused: list[tuple[str, str]] = []
    allowed: list[tuple[str, str]] = []
    entries = sorted(POLICY.items(), key=lambda item: item[0] == ("POST", "/api/v1/auth/logout"))  # sign out last
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        for (method, template), grant in entries:
            if template.startswith("/ws/"):
                continue  # the websocket has tests of its own (test_auth.py)
            url = _concrete(template, params)
            query = {"module": params["module"]}
            body = _BODIES.get((method, template), {} if method in {"POST", "PUT", "PATCH"} else None)
            answer = await http.request(method, url, params=query, json=body, headers=headers)
            assert answer.status_code != 401, (method, template, answer.text)
            (allowed if answer.status_code != 403 else refused).append((method, template))
            if role in grant:
                assert answer.status_code != 403, (method, template, answer.text)
                assert answer.status_code < 500, (method, template, answer.text)
            else:
                assert answer.status_code == 403, (method, template, answer.status_code, answer.text)
    assert allowed, "a role that may do nothing"
    # Spot checks written out by hand, so that the matrix is not only the table checked against itself.
    expected = _BY_HAND[role]
    assert expected["allowed"] <= set(allowed), expected["allowed"] - set(allowed)
    assert expected["refused"] <= set(refused), expected["refused"] - set(refused)


async def test_scopes_narrow_field_officers_and_module_leads(matrix: tuple[Any, dict[str, str]]) -> None:
    app, params = matrix
    incident = params["incident_id"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        admin = await sign_in_as(app)
        other = (
            await http.post(
                "/api/v1/incidents",
                json={"report_id": "p-9", "category": "labour.wage_arrears", "zone": "market", "description": "欠薪"},
                headers=admin,
            )
        ).json()
        assert other["module"] != params["module"]
        officer = await sign_in_as(app, Role.FIELD_OFFICER, township="ershili", officer_id=params["officer_id"])
        stranger = await sign_in_as(app, Role.FIELD_OFFICER, township="ershili", officer_id="nobody-01")
        lead = await sign_in_as(app, Role.MODULE_LEAD, township="ershili", module=params["module"])

        assert (await http.get(f"/api/v1/incidents/{incident}", headers=officer)).status_code == 200
        assert (await http.get(f"/api/v1/incidents/{incident}", headers=stranger)).status_code == 403
        assert (await http.get(f"/api/v1/incidents/{other['id']}", headers=officer)).status_code == 403
        mine = (await http.get("/api/v1/me/assignments", headers=officer)).json()
        assert [i["id"] for i in mine["data"]] == [int(incident)]
        assert (await http.get("/api/v1/me/assignments", headers=stranger)).json()["data"] == []
        move = f"/api/v1/incidents/{incident}/assignments/{params['team']}/acknowledge"
        assert (await http.post(move, headers=stranger)).status_code == 403
        assert (
            await http.post(f"/api/v1/units/{params['officer_id']}/status", json={}, headers=stranger)
        ).status_code == 403
        acknowledged = await http.post(move, json={"actor": "someone else"}, headers=officer)
        assert acknowledged.status_code == 200
        # The actor recorded is the account; the name the client sent is kept only as "for ...".
        timeline = (await http.get(f"/api/v1/incidents/{incident}", headers=admin)).json()["timeline"]
        moved = [e for e in timeline if e["type"] == "UnitMoved"][-1]
        assert moved["data"]["actor"].endswith(" for someone else")
        assert moved["data"]["actor"].startswith("field-officer-")

        assert (await http.get(f"/api/v1/incidents/{incident}", headers=lead)).status_code == 200
        assert (await http.get(f"/api/v1/incidents/{other['id']}", headers=lead)).status_code == 403
        assert (await http.get("/api/v1/incidents", headers=lead)).status_code == 403
        listed = await http.get("/api/v1/incidents", params={"module": params["module"]}, headers=lead)
        assert listed.status_code == 200 and {i["module"] for i in listed.json()["data"]} == {params["module"]}
        assert (await http.post(f"/api/v1/incidents/{other['id']}/escalate", json={}, headers=lead)).status_code == 403
        assert (await http.post(f"/api/v1/incidents/{incident}/escalate", json={}, headers=lead)).status_code != 403


# An incident of the enforcement module: the traffic police sent to tp-1, the police station sent whole.
_SCOPED = SimpleNamespace(
    id=7,
    module="enforcement",
    assignments=(
        SimpleNamespace(team="traffic-police", officer="tp-1"),
        SimpleNamespace(team="police-station", officer=None),
    ),
)
_TP1 = Account("tp-1-phone", Role.FIELD_OFFICER, "ershili", officer_id="tp-1")
_PS1 = Account("ps-1-phone", Role.FIELD_OFFICER, "ershili", officer_id="ps-1")


@pytest.mark.parametrize(
    ("account", "scope", "team", "roster_known", "reaches"),
    [
        (_TP1, Scope.OWN_ASSIGNMENT, None, True, True),
        (_TP1, Scope.OWN_ASSIGNMENT, "traffic-police", True, True),
        (_TP1, Scope.OWN_ASSIGNMENT, "police-station", True, False),  # another team's, even of its incident
        (_PS1, Scope.OWN_ASSIGNMENT, None, True, False),
        (_PS1, Scope.OWN_ASSIGNMENT, "traffic-police", True, False),  # the MQTT case of issue 21
        (_PS1, Scope.OWN_ASSIGNMENT, "police-station", True, False),  # sent whole, but a roster exists
        (_PS1, Scope.OWN_ASSIGNMENT, "police-station", False, True),  # no roster: nobody holds anything
        (_PS1, Scope.OWN_ASSIGNMENT, "market-supervision", False, False),  # no such assignment
        (Account("x", Role.FIELD_OFFICER, "ershili"), Scope.OWN_ASSIGNMENT, None, True, False),
        (Account("ml", Role.MODULE_LEAD, "ershili", module="enforcement"), Scope.MODULE, None, True, True),
        (Account("ml", Role.MODULE_LEAD, "ershili", module="labour"), Scope.MODULE, None, True, False),
        (Account("op", Role.OPERATOR, "ershili"), Scope.TOWNSHIP, None, True, True),
        (_TP1, Scope.OWN_UNIT, None, True, False),  # a unit's scope never reaches an incident
    ],
)
def test_scope_refusal_is_one_table_for_every_door(
    account: Account, scope: Scope, team: str | None, roster_known: bool, reaches: bool
) -> None:
    refusal = scope_refusal(account, scope, _SCOPED, team=team, roster_known=roster_known)  # type: ignore[arg-type]
    assert (refusal is None) == reaches, refusal
