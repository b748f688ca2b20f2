"""End to end through real sockets: a server process, HTTP, and board websockets.

The five-way intersection case of DOMAIN.md: one report dispatches the enforcement module's five
teams together; each acknowledges; the lead resolves; the operator closes; the board sees every
event once and in order.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import websockets

from gateways.schemas import IncidentDetail, IncidentPublic, IncidentsPublic
from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

TEAMS = ["traffic-police", "police-station", "market-supervision", "law-enforcement", "market-town-office"]
FIVE_WAY = {
    "report_id": "ershili-0612-0001",
    "category": "traffic.congestion",
    "zone": "five-way",
    "description": "集市日五岔口拥堵，摊位占道 (market-day congestion, stalls on the road)",
    "location": {"lat": 28.8481, "lon": 118.9121},
    "severity": 3,
    "reporter": "网格员 张",
}


async def _read_until(ws: Any, stop_type: str, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if frame.get("type") == stop_type:
                return frames


async def test_five_way_intersection_end_to_end(server: ServerProcess) -> None:
    async with (
        websockets.connect(server.ws_url, additional_headers=server.headers) as board,
        server.client() as http,
    ):
        snapshot = json.loads(await board.recv())
        assert snapshot["kind"] == "snapshot" and snapshot["incidents"] == []

        created = await http.post("/api/v1/incidents", json=FIVE_WAY)
        assert created.status_code == 201, created.text
        incident = IncidentPublic.model_validate(created.json())
        assert incident.status == "dispatched"
        assert incident.module == "enforcement"
        assert incident.routing.rule_id == "five-way-joint-enforcement"
        assert incident.routing.table_version == "ershili-2026.11-1"
        assert [(a.team, a.role) for a in incident.assignments] == [("traffic-police", "lead")] + [
            (t, "support") for t in TEAMS[1:]
        ]
        again = await http.post("/api/v1/incidents", json=FIVE_WAY)
        assert again.status_code == 200 and again.json()["id"] == incident.id

        base = f"/api/v1/incidents/{incident.id}"
        for team in TEAMS:
            answer = await http.post(f"{base}/assignments/{team}/acknowledge", json={"actor": f"{team}-duty"})
            assert answer.status_code == 200, answer.text
        early_close = await http.post(f"{base}/close")
        assert early_close.status_code == 409
        refusal = early_close.json()
        assert (refusal["code"], refusal["current"]["status"]) == ("illegal-transition", "acknowledged")
        assert refusal["allowed"] == ["cancel", "merge", "dispatch", "return", "park"]
        for step in ("en-route", "on-scene", "resolve"):
            assert (await http.post(f"{base}/assignments/traffic-police/{step}")).status_code == 200
        closed = await http.post(f"{base}/close", json={"actor": "指挥室值班员"})
        assert closed.status_code == 200 and closed.json()["status"] == "closed"

        frames = await _read_until(board, "IncidentClosed")

    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(frames)))
    types = [f["type"] for f in frames]
    assert types == ["IncidentReported", "UnitsDispatched"] + ["UnitMoved"] * 8 + ["IncidentClosed"]
    acked = [f["data"]["team"] for f in frames if f["type"] == "UnitMoved" and f["data"]["to_state"] == "acknowledged"]
    assert acked == TEAMS
    dispatched = next(f for f in frames if f["type"] == "UnitsDispatched")
    assert [u["team"] for u in dispatched["data"]["units"]] == TEAMS

    async with server.client() as http:
        detail = IncidentDetail.model_validate((await http.get(f"/api/v1/incidents/{incident.id}")).json())
    assert [e.seq for e in detail.timeline] == seqs


async def test_board_resumes_with_since_without_gap_or_duplicate(server: ServerProcess) -> None:
    async with server.client() as http:
        # The first start logged the rule table it put in force: the incidents' events come after it.
        base = (await http.get("/readyz")).json()["last_seq"]
        for n in range(5):
            body = {**FIVE_WAY, "report_id": f"before-{n}"}
            assert (await http.post("/api/v1/incidents", json=body)).status_code == 201
        async with websockets.connect(server.ws_url, additional_headers=server.headers) as board:
            snapshot = json.loads(await board.recv())
            assert snapshot["seq"] == base + 10 and len(snapshot["incidents"]) == 5
        for n in range(5):
            body = {**FIVE_WAY, "report_id": f"while-away-{n}"}
            assert (await http.post("/api/v1/incidents", json=body)).status_code == 201
        since = base + 4
        async with websockets.connect(f"{server.ws_url}?since={since}", additional_headers=server.headers) as board:
            backlog = [json.loads(await board.recv()) for _ in range(16)]
            assert (await http.post("/api/v1/incidents", json={**FIVE_WAY, "report_id": "live"})).status_code == 201
            live = [json.loads(await board.recv()) for _ in range(2)]
    assert [f["seq"] for f in backlog + live] == list(range(since + 1, since + 19))
    assert all(f["kind"] == "event" for f in backlog + live)


async def test_refused_report_answers_422_per_field_and_leaves_no_trace(server: ServerProcess) -> None:
    async with server.client() as http:
        base = (await http.get("/readyz")).json()["last_seq"]  # the rule table put in force at first start
        bad = await http.post(
            "/api/v1/incidents",
            json={"report_id": "x 1", "category": "", "description": "d", "severity": 9, "colour": "red"},
        )
        unplaced = await http.post("/api/v1/incidents", json={"report_id": "p", "category": "a", "description": "d"})
        unknown_zone = await http.post(
            "/api/v1/incidents", json={"report_id": "z", "category": "a", "description": "d", "zone": "moon"}
        )
        listing = IncidentsPublic.model_validate((await http.get("/api/v1/incidents")).json())
        events = (await http.get("/api/v1/events", params={"since": base})).json()

    assert bad.status_code == 422
    fields = {e["field"] for e in bad.json()["errors"]}
    assert {"report_id", "category", "severity", "colour"} <= fields
    assert unplaced.status_code == 422 and "location, a zone" in unplaced.text
    assert unknown_zone.status_code == 422 and unknown_zone.json()["errors"][0]["field"] == "zone"
    assert listing.count == 0
    assert events == {"data": [], "last_seq": base}


async def test_unknown_category_lands_in_the_triage_queue(server: ServerProcess) -> None:
    async with server.client() as http:
        answer = await http.post(
            "/api/v1/incidents",
            json={"report_id": "t-1", "category": "misc.strange_smell", "description": "怪味", "zone": "market"},
        )
        queued = await http.get("/api/v1/incidents", params={"module": "command-room", "status": "reported"})
    assert answer.status_code == 201
    body = answer.json()
    assert (body["module"], body["routing"]["queue"], body["assignments"]) == ("command-room", "triage", [])
    assert [i["report_id"] for i in queued.json()["data"]] == ["t-1"]


async def test_answered_reports_survive_kill_9(database_url: str, tmp_path: Path) -> None:
    first = ServerProcess(database_url, tmp_path / "first.log", env=PLAIN).start()
    try:
        async with first.client() as http:
            answers = await asyncio.gather(
                *(http.post("/api/v1/incidents", json={**FIVE_WAY, "report_id": f"k-{n}"}) for n in range(200))
            )
        assert all(a.status_code == 201 for a in answers)
        ids = sorted(a.json()["id"] for a in answers)
    finally:
        first.kill_hard()

    second = ServerProcess(database_url, tmp_path / "second.log", env=PLAIN).start()
    try:
        async with second.client() as http:
            listing = (await http.get("/api/v1/incidents", params={"limit": 500})).json()
            events = (await http.get("/api/v1/events", params={"limit": 5000})).json()
            ready = (await http.get("/readyz")).json()
    finally:
        second.stop()
    assert sorted(i["id"] for i in listing["data"]) == ids
    # Seq 1 is the rule table the first start put in force; the second start found it stored.
    assert [e["seq"] for e in events["data"]] == list(range(1, 402))
    assert [e["type"] for e in events["data"][:2]] == ["RulesPutInForce", "IncidentReported"]
    assert ready["last_seq"] == 401


def _placed_report(n: int) -> dict[str, Any]:
    """Report ``n`` of a stream whose reports come in clusters of five (20 m apart): most join another."""
    cluster, member = divmod(n, 5)
    return {
        **FIVE_WAY,
        "report_id": f"placed-{n}",
        "location": {"lat": 28.84 + cluster * 0.01, "lon": 118.91 + member * 0.0002},
    }


async def test_every_report_resent_after_kill_9_is_stored_once(database_url: str, tmp_path: Path) -> None:
    """Phones re-send what they never heard answered: after a crash, each report must be stored exactly once.

    Duplicates are joined (200 m), so a retry that is not recognised would join its own incident or open a
    new one. 150 reports are answered, 50 more are in flight when the process is killed; afterwards all 200
    are re-sent, twice.
    """
    env = {"DISPATCHER_NO_ROSTER": "true", "DISPATCHER_RATE_PER_S": "0"}  # duplicates joined (200 m)
    first = ServerProcess(database_url, tmp_path / "first.log", env=env).start()
    try:
        async with first.client() as http:
            answered = await asyncio.gather(
                *(http.post("/api/v1/incidents", json=_placed_report(n)) for n in range(150))
            )
            assert {a.status_code for a in answered} <= {200, 201}
            in_flight = [
                asyncio.ensure_future(http.post("/api/v1/incidents", json=_placed_report(n))) for n in range(150, 200)
            ]
            await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            first.kill_hard()
            await asyncio.gather(*in_flight, return_exceptions=True)
    finally:
        first.stop()

    second = ServerProcess(database_url, tmp_path / "second.log", env=env).start()
    try:
        async with second.client() as http:
            for _ in range(2):
                resent = [await http.post("/api/v1/incidents", json=_placed_report(n)) for n in range(200)]
                assert {a.status_code for a in resent} <= {200, 201}, {a.text for a in resent if a.status_code > 201}
            outcomes = [a.headers["X-Report-Outcome"] for a in resent]
            listing = (await http.get("/api/v1/incidents", params={"limit": 500})).json()
    finally:
        second.stop()
    assert outcomes == ["known"] * 200  # the second round: every id is known
    stored = [r for i in listing["data"] for r in [i["report_id"], *(j["report_id"] for j in i["reports"])]]
    assert sorted(stored) == sorted(f"placed-{n}" for n in range(200))
    assert sum(i["report_count"] for i in listing["data"]) == 200
    assert len(listing["data"]) == 40  # one incident per cluster of five


async def test_a_second_process_on_the_same_database_exits_with_the_reason(
    server: ServerProcess, tmp_path: Path
) -> None:
    second = ServerProcess(server.database_url, tmp_path / "second.log", env=PLAIN)
    with pytest.raises(RuntimeError, match="one process per database"):
        second.start()
    assert second.process is not None and second.process.returncode == 1
    said = (tmp_path / "second.log").read_text()
    assert "not started: another dispatcher process is writing to" in said and "one process per database" in said
    assert "Traceback" not in said  # one plain line, not uvicorn's account of a failed startup
    async with server.client() as http:  # the first goes on serving
        assert (await http.get("/readyz")).status_code == 200


async def test_openapi_schema_documents_the_api(server: ServerProcess) -> None:
    async with server.client() as http:
        schema = (await http.get("/openapi.json")).json()
        docs = await http.get("/docs")
        page = await http.get("/board")
    assert "/api/v1/incidents" in schema["paths"]
    assert "/api/v1/incidents/{incident_id}/assignments/{team}/{action}" in schema["paths"]
    assert "IncidentCreate" in schema["components"]["schemas"]
    assert docs.status_code == 200
    assert page.status_code == 200 and "/static/board.js" in page.text


async def test_a_citizen_report_without_category_is_classified_and_explained(server: ServerProcess) -> None:
    body = {
        "report_id": "citizen-1",
        "description": "集贸市场门口有人占道摆摊，油烟很大，堵住了路",
        "zone": "market",
        "reporter_kind": "citizen",
    }
    async with server.client() as http:
        answer = await http.post("/api/v1/incidents", json=body)
        why = await http.get("/api/v1/rules/explain", params={"description": body["description"], "zone": "market"})
    assert answer.status_code == 201, answer.text
    incident = IncidentPublic.model_validate(answer.json())
    assert incident.reported_category is None and incident.category == "market.stall_encroachment"
    assert incident.routing.rule_id in {"market-order", "market-day-order"}
    explanation = why.json()
    assert explanation["category_source"] == "keywords"
    assert "占道摆摊" in [h["word"] for h in explanation["keywords"]["hits"]]


async def test_a_live_drill_marks_its_incidents_as_exercises(server: ServerProcess, tmp_path: Path) -> None:
    from simulations.drill import run_drill
    from simulations.scenario import load_scenario

    scenario = tmp_path / "drill.yaml"
    scenario.write_text(
        """\
name: a short drill
start: 2026-06-12T09:00:00+08:00
until: 30m
behaviour:
  default:
    ack_after: {dist: fixed, value: 30s}
    arrive_after: {dist: fixed, value: 2m}
    resolve_after: {dist: fixed, value: 5m}
  close_after: {dist: fixed, value: 1m}
timeline:
  - at: 0s
    report: {category: traffic.congestion, zone: five-way, description: 演练：五岔口拥堵}
  - at: 1m
    report: {description: 演练：有人拖欠工资, zone: town-centre, reporter_kind: hotline}
""",
        encoding="utf-8",
    )
    async with server.client() as http:
        outcome = await run_drill(load_scenario(scenario), http, speed=600, max_seconds=30)
        drills = (await http.get("/api/v1/incidents", params={"exercise": "true"})).json()
        real = (await http.get("/api/v1/incidents", params={"exercise": "false"})).json()

    assert outcome.errors == [] and outcome.reports == 2
    assert drills["count"] == 2 and real["count"] == 0
    assert all(i["exercise"] for i in drills["data"])
    assert {i["status"] for i in drills["data"]} == {"closed"}  # each lead resolved and the operator closed
    assert outcome.moves == 4 * (5 + 3) + 2  # every team's four moves, and two closes
