"""The edge (gateways/edge.py): report intake answered there, every refusal still the application's own.

A spy stands between the edge and FastAPI's router: a valid report never reaches it (guard, one validation, the
route's function at the edge), a body the route would refuse does, with its bytes replayed, so the refusal is
FastAPI's as the OpenAPI schema documents it. The audit trail, the body limit and the problems hold either way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from starlette.types import Receive, Scope, Send

from dispatcher.accounts import Role
from dispatcher.settings import Settings
from gateways.edge import Edge
from gateways.privacy import MASK
from server.app import create_app
from server.logs import JsonLines
from tests.conftest import HubRig, api_client, sign_in_as

INTAKE = "/api/v1/incidents"
FAR = {"lat": 28.9, "lon": 118.8}  # kilometres from the five-way junction: no duplicate of its reports


class Spy:
    """The application behind the edge, counting what reaches it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            message = await receive()
            self.bodies.append(message.get("body", b""))
            replayed = False

            async def again() -> Any:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return message

            await self.app(scope, again, send)
            return
        await self.app(scope, receive, send)


@pytest.fixture
async def spied(crew: HubRig) -> AsyncIterator[tuple[Any, Spy]]:
    app = create_app(Settings(database_url=crew.url, rate_per_s=0, body_limit_bytes=2048), hub=crew.hub)
    app.middleware_stack = app.build_middleware_stack()
    edge: Any = app.middleware_stack
    while not isinstance(edge, Edge):
        edge = edge.app
    spy = edge.app = Spy(edge.app)
    yield app, spy
    await app.state.context.directory.close()


def report(report_id: str, **extra: Any) -> dict[str, Any]:
    return {"report_id": report_id, "category": "traffic.congestion", "zone": "five-way", "description": "堵", **extra}


async def _audit(app: Any) -> list[tuple[str, str | None, int]]:
    entries = await app.state.context.directory.audit(since=None, until=None, township=None, limit=100)
    return [(e.action, e.target, e.outcome) for e in entries]


async def test_a_report_is_answered_at_the_edge_and_audited(spied: tuple[Any, Spy]) -> None:
    app, spy = spied
    async with api_client(app) as http:
        created = await http.post(INTAKE, json=report("edge-1"))
        again = await http.post(INTAKE, json=report("edge-1"))
        batch = await http.post(
            f"{INTAKE}/batch", json=[report("edge-2", zone=None, location=FAR), {"report_id": "edge-3"}]
        )
    assert created.status_code == 201 and created.headers["x-report-outcome"] == "created", created.text
    assert again.status_code == 200 and again.headers["x-report-outcome"] == "known"
    assert created.json()["id"] == again.json()["id"]
    assert [o["outcome"] for o in batch.json()["data"]] == ["created", "refused"]
    assert spy.bodies == []  # none reached FastAPI's router
    audit = await _audit(app)
    assert audit.count(("POST /api/v1/incidents", INTAKE, 201)) == 1
    assert audit.count(("POST /api/v1/incidents", INTAKE, 200)) == 1
    assert ("POST /api/v1/incidents/batch", f"{INTAKE}/batch", 200) in audit


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        (orjson.dumps({"report_id": "edge-4", "zone": "five-way"}), "application/json", "description"),
        (b'{"report_id": "edge-5",', "application/json", None),
        (b"report_id=edge-6", "application/x-www-form-urlencoded", None),
        (orjson.dumps(report("edge-7")), None, "body"),  # valid, but not said to be JSON: FastAPI refuses it
        (orjson.dumps(report("edge-8", severity=9)), "application/json; charset=utf-8", "severity"),
    ],
)
async def test_what_the_route_refuses_is_refused_by_fastapi_from_the_same_bytes(
    spied: tuple[Any, Spy], body: bytes, content_type: str | None, field: str | None
) -> None:
    app, spy = spied
    headers = {"content-type": content_type} if content_type else {}
    async with api_client(app) as http:
        answer = await http.post(INTAKE, content=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == "invalid" and problem["status"] == 422
    if field is not None:
        assert [e["field"] for e in problem["errors"]] == [field]
    assert spy.bodies == [body]
    assert ("POST /api/v1/incidents", INTAKE, 422) in await _audit(app)


async def test_the_guard_refuses_at_the_edge_with_problems(spied: tuple[Any, Spy], crew: HubRig) -> None:
    app, spy = spied
    async with api_client(app, headers={"Authorization": "Bearer dsp_not-a-real-token"}) as http:
        unsigned = await http.post(INTAKE, json=report("edge-18"))
        supervision = await sign_in_as(app, Role.SUPERVISION, township=crew.hub.rules.township_id)
        forbidden = await http.post(INTAKE, json=report("edge-19"), headers=supervision)
    assert unsigned.status_code == 401 and unsigned.headers["www-authenticate"] == "Bearer"
    assert unsigned.json()["code"] == "unauthenticated"
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
    assert spy.bodies == []
    audit = await _audit(app)
    assert ("POST /api/v1/incidents", INTAKE, 401) in audit and ("POST /api/v1/incidents", INTAKE, 403) in audit


async def test_a_body_over_the_limit_is_413_declared_or_counted(spied: tuple[Any, Spy]) -> None:
    app, spy = spied
    big = orjson.dumps(report("edge-10", description="x" * 4000))

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(big), 1000):
            yield big[at : at + 1000]

    async with api_client(app) as http:
        declared = await http.post(INTAKE, content=big, headers={"content-type": "application/json"})
        assert await _audit(app) == []  # refused unread: nothing ran, nothing to audit
        counted = await http.post(INTAKE, content=chunks(), headers={"content-type": "application/json"})
    for answer in (declared, counted):
        assert answer.status_code == 413, answer.text
        assert answer.json()["code"] == "too-large" and answer.json()["limit"] == 2048
    assert spy.bodies == []


async def test_a_teams_step_is_answered_at_the_edge_unless_another_route_takes_the_path(
    spied: tuple[Any, Spy],
) -> None:
    app, spy = spied
    async with api_client(app) as http:
        incident = (await http.post(INTAKE, json=report("edge-20", zone=None, location=FAR))).json()
        team = incident["assignments"][0]["team"]
        steps = f"{INTAKE}/{incident['id']}/assignments/{team}"
        acked = await http.post(f"{steps}/acknowledge")
        again = await http.post(f"{steps}/acknowledge")
        en_route = await http.post(f"{steps}/en-route", json={"version": acked.json()["version"]})
        assert spy.bodies == []
        unknown = await http.post(f"{steps}/dance")
        too_far = await http.post(f"{INTAKE}/99999999999/assignments/{team}/acknowledge")
        stale = await http.post(f"{steps}/on-scene", json={"version": 1})
        officer = await http.post(f"{steps}/officer", json={})
    assert acked.status_code == 200 and acked.headers["x-step-outcome"] == "applied", acked.text
    assert again.status_code == 200 and again.headers["x-step-outcome"] == "already"
    assert en_route.status_code == 200, en_route.text
    assert stale.status_code == 409 and stale.json()["code"] == "stale-version"  # the handler's problem, at the edge
    assert unknown.status_code == 422 and too_far.status_code == 404  # FastAPI's refusals, from the guard first
    assert officer.status_code == 200, officer.text  # dispatch's route (the best free officer), not a step
    assert spy.bodies == [b"", b"", b"{}"]  # dance, 99999999999 and the officer route reached the application
    audit = await _audit(app)
    action = "POST /api/v1/incidents/{incident_id}/assignments/{team}/{action}"
    assert [outcome for a, target, outcome in audit if a == action and target == f"{steps}/acknowledge"] == [200, 200]


async def test_a_step_answered_at_the_edge_is_masked_for_its_officer(spied: tuple[Any, Spy]) -> None:
    app, spy = spied
    labour = {
        "report_id": "edge-30",
        "category": "labour.wage_arrears",
        "zone": "town-centre",
        "description": "欠薪",
        "reporter": "王五 13800000000",
    }
    async with api_client(app) as admin:
        incident = (await admin.post(INTAKE, json=labour)).json()
    held = next(a for a in incident["assignments"] if a["officer"])
    officer = await sign_in_as(app, Role.FIELD_OFFICER, township="ershili", officer_id=held["officer"])
    async with api_client(app, headers=officer) as http:
        acked = await http.post(f"{INTAKE}/{incident['id']}/assignments/{held['team']}/acknowledge")
    assert acked.status_code == 200, acked.text
    assert acked.json()["reporter"] == MASK and "13800000000" not in acked.text  # a sensitive category
    assert int(acked.headers["content-length"]) == len(acked.content)
    assert spy.bodies == []


async def test_the_access_line_of_a_hot_route_carries_the_request_id(
    spied: tuple[Any, Spy], caplog: pytest.LogCaptureFixture
) -> None:
    app, spy = spied
    lines: list[dict[str, Any]] = []

    class Formatted(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(orjson.loads(JsonLines().format(record)))  # at emit time: the request's own context

    handler = Formatted()
    caplog.set_level(logging.INFO, logger="dispatcher.access")
    logging.getLogger("dispatcher.access").addHandler(handler)
    try:
        async with api_client(app) as http:
            incident = (await http.post(INTAKE, json=report("edge-40"), headers={"X-Request-ID": "req-edge-40"})).json()
            team = incident["assignments"][0]["team"]
            step = f"{INTAKE}/{incident['id']}/assignments/{team}/acknowledge"
            await http.post(step, headers={"X-Request-ID": "req-edge-41"})
    finally:
        logging.getLogger("dispatcher.access").removeHandler(handler)
    assert [(line["request_id"], line["township"], line.get("incident_id")) for line in lines] == [
        ("req-edge-40", "ershili", None),
        ("req-edge-41", "ershili", incident["id"]),
    ]
    assert spy.bodies == []


@pytest.mark.parametrize("status", [200, 201, 202, 400, 404, 422, 503])
@pytest.mark.parametrize("outcome", [None, "created", "joined", "known"])
def test_a_json_answer_has_the_head_a_response_would_have(status: int, outcome: str | None) -> None:
    """The single door's answer, made without Starlette's header machinery: the same head, byte for byte."""
    from starlette.responses import Response

    from gateways.api import _OUTCOME_HEADERS, JsonAnswer, json_response

    data = {"id": 7, "status": "dispatched", "text": "路口堵塞"}
    before = Response(orjson.dumps(data), status_code=status, media_type="application/json")
    if outcome is not None:
        before.headers["X-Report-Outcome"] = outcome
    after = JsonAnswer(orjson.dumps(data), status, _OUTCOME_HEADERS[outcome] if outcome else ())
    assert (after.status_code, after.raw_headers, after.body) == (before.status_code, before.raw_headers, before.body)
    if outcome is None:
        plain = json_response(data, status)
        assert (plain.raw_headers, plain.body) == (before.raw_headers, before.body)
    after.headers["X-Later"] = "1"  # a fresh list of its own: a later header lands in this answer only
    assert JsonAnswer(b"{}", status).raw_headers[-1] == (b"content-type", b"application/json")


def test_an_answer_without_a_body_keeps_the_responses_head() -> None:
    from starlette.responses import Response

    from gateways.api import json_response

    for status in (204, 304):
        made = json_response(None, status)
        assert made.raw_headers == Response(b"null", status_code=status, media_type="application/json").raw_headers
