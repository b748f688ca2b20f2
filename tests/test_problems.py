"""Every refusal in one shape (RFC 9457 problem details), through the real application in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from dispatcher.accounts import Role
from dispatcher.settings import Settings
from gateways.mqtt.codec import dead_letter_payload, decode
from gateways.mqtt.topics import Topics
from gateways.problems import MEDIA_TYPE, TITLES, TYPE_PREFIX
from server.app import create_app
from tests.conftest import HubRig, api_client, sign_in_as

REPORT = {"report_id": "p-1", "category": "traffic.congestion", "zone": "five-way", "description": "五岔口拥堵"}
PASSWORD = "correct horse battery"


@pytest.fixture
async def app(crew: HubRig) -> AsyncIterator[Any]:
    settings = Settings(database_url=crew.url, rate_burst=30, rate_per_s=0.001, body_limit_bytes=4096)
    application = create_app(settings, hub=crew.hub)
    yield application
    await application.state.context.directory.close()


def problem_of(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The answer's problem document, checked for the members every problem has."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == MEDIA_TYPE, answer.headers
    body: dict[str, Any] = orjson.loads(answer.content)
    assert body["code"] == code, body
    assert body["type"] == TYPE_PREFIX + code and body["title"] == TITLES[code] and body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


async def test_401_without_a_token_and_with_a_wrong_password(app: Any) -> None:
    directory = app.state.context.directory
    await directory.open()
    await directory.create_account("op-p", Role.OPERATOR, "ershili", datetime.now(UTC), password=PASSWORD)
    async with api_client(app, headers={}) as http:
        unsigned = await http.get("/api/v1/incidents")
        wrong = await http.post("/api/v1/auth/token", data={"username": "op-p", "password": "not it"})
        right = await http.post("/api/v1/auth/token", data={"username": "op-p", "password": PASSWORD})
    problem_of(unsigned, 401, "unauthenticated")
    assert unsigned.headers["WWW-Authenticate"] == "Bearer"
    assert problem_of(wrong, 401, "sign-in-failed")["detail"] == "wrong name or password"
    assert right.status_code == 200 and right.headers["content-type"] == "application/json"


async def test_403_404_and_422(app: Any) -> None:
    officer = await sign_in_as(app, Role.FIELD_OFFICER, township="ershili", officer_id="tp-01")
    async with api_client(app, headers=officer) as http:
        forbidden = await http.get("/api/v1/audit")
    async with api_client(app) as http:
        missing = await http.get("/api/v1/incidents/987654")
        invalid = await http.post("/api/v1/incidents", json={**REPORT, "severity": 9, "colour": "red"})
        unknown_zone = await http.post("/api/v1/incidents", json={**REPORT, "zone": "moon"})
        stored = await http.get("/api/v1/incidents")
    assert "may not GET /api/v1/audit" in problem_of(forbidden, 403, "forbidden")["detail"]
    assert problem_of(missing, 404, "not-found")["detail"] == "no incident 987654"
    errors = problem_of(invalid, 422, "invalid")["errors"]
    assert {e["field"] for e in errors} == {"severity", "colour"} and all(e["message"] for e in errors)
    zone = problem_of(unknown_zone, 422, "invalid")
    assert zone["errors"] == [{"field": "zone", "message": "unknown zone 'moon' in rule table ershili-2026.11-1"}]
    assert stored.json()["count"] == 0  # the refusals stored nothing


async def test_409_an_illegal_move_says_what_is_allowed_and_a_stale_version_says_the_current_one(app: Any) -> None:
    async with api_client(app) as http:
        created = (await http.post("/api/v1/incidents", json=REPORT)).json()
        base = f"/api/v1/incidents/{created['id']}"
        early_close = await http.post(f"{base}/close")
        twice = await http.post(f"{base}/assignments/traffic-police/acknowledge")
        # The same account sending it again is a retry (answered 200, "already"); another account's is a conflict.
        operator = await sign_in_as(app, Role.OPERATOR, township="ershili")
        again = await http.post(f"{base}/assignments/traffic-police/acknowledge", headers=operator)
        stale = await http.post(f"{base}/priority", json={"priority": 1, "actor": "op", "version": created["version"]})
        now = (await http.get(base)).json()
    illegal = problem_of(early_close, 409, "illegal-transition")
    assert illegal["current"] == {"state": "dispatched", "status": "dispatched", "version": created["version"]}
    assert illegal["allowed"] == ["cancel", "merge", "dispatch", "return", "park"] and illegal["action"] == "close"
    assert twice.status_code == 200
    repeated = problem_of(again, 409, "illegal-transition")
    assert repeated["current"]["state"] == "acknowledged"
    assert repeated["allowed"] == ["en-route", "on-scene", "resolve", "return", "cancel"]
    moved_on = problem_of(stale, 409, "stale-version")
    assert moved_on["current"] == {"status": now["status"], "version": now["version"]}
    assert moved_on["expected"] == created["version"] != now["version"]


async def test_413_a_body_over_the_limit(app: Any) -> None:
    async with api_client(app) as http:
        large = await http.post("/api/v1/incidents", json={**REPORT, "description": "长" * 3000})
    assert problem_of(large, 413, "too-large")["limit"] == 4096


async def test_429_too_many_requests_for_one_token(app: Any) -> None:
    answers = []
    async with api_client(app) as http:
        for _ in range(31):  # the burst is 30 and the virtual clock stands still: the 31st is refused
            answers.append(await http.get("/api/v1/rules/zones"))
    assert [a.status_code for a in answers[:30]] == [200] * 30
    problem_of(answers[30], 429, "too-many-requests")
    assert int(answers[30].headers["Retry-After"]) >= 1


async def test_the_openapi_document_declares_problems_and_409(app: Any) -> None:
    async with api_client(app, headers={}) as http:
        schema = (await http.get("/openapi.json")).json()
    paths = schema["paths"]
    for path, method in [
        ("/api/v1/incidents/{incident_id}/close", "post"),
        ("/api/v1/incidents/{incident_id}/priority", "post"),
        ("/api/v1/incidents/{incident_id}/assignments/{team}/officer", "post"),
        ("/api/v1/accounts", "post"),
        ("/api/v1/rules", "put"),
    ]:
        assert "409" in paths[path][method]["responses"], (method, path)
    assert "409" not in paths["/api/v1/incidents/{incident_id}/notes"]["post"]["responses"]
    refusals = [
        answer
        for operations in paths.values()
        for operation in operations.values()
        for status, answer in operation["responses"].items()
        if status[0] in "45"
    ]
    assert len(refusals) > 100
    assert all(list(a["content"]) == [MEDIA_TYPE] for a in refusals)
    assert set(schema["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]) == set(TITLES)


def test_mqtt_dead_letters_carry_the_same_codes() -> None:
    topics = Topics("township/ershili/")
    now = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)
    letters = {
        payload: decode(topics, topics.reports, payload, received_at=now, max_bytes=64, has_zone=lambda z: False)
        for payload in (b"{not json", b'{"report_id": "x"}', b"x" * 100)
    }
    codes = {p: orjson.loads(dead_letter_payload(letter, p, at=now))["code"] for p, letter in letters.items()}  # type: ignore[arg-type]
    assert codes == {b"{not json": "invalid", b'{"report_id": "x"}': "invalid", b"x" * 100: "too-large"}
