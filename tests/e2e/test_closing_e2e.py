"""Closing the loop end to end: a real server process on each backend, real sockets, signed-in accounts.

resolve → verify-fail → rework → resolve → verify-pass with photos (the bundled 廿里镇 table: the five-way
intersection asks for verification within 2 h), an extension approved by the module lead, and the new
deadlines (verification due, parking review date) across ``kill -9``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess
from tests.e2e.test_dispatch_e2e import FIXTURES, quick_server, timeline, wait_for

TEAMS = ["traffic-police", "police-station", "market-supervision", "law-enforcement", "market-town-office"]
JAM = {"category": "traffic.congestion", "description": "集日五岔口拥堵", "location": {"lat": 28.848, "lon": 118.912}}
PASSWORD = "closing-the-loop-1"


def jpeg(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (shade, 90, 40)).save(out, "JPEG")
    return out.getvalue()


async def upload(http: httpx.AsyncClient, headers: dict[str, str], data: bytes, lat: float, lon: float) -> str:
    """A photo into the photo store, with the phone's time (now) and fix; returns its id."""
    taken = datetime.now(UTC).isoformat()
    answer = await http.post(
        "/api/v1/media",
        headers=headers,
        files={"file": ("IMG.jpg", data, "image/jpeg")},
        data={"taken_at": taken, "lat": str(lat), "lon": str(lon)},
    )
    assert answer.status_code == 201, answer.text
    sha: str = answer.json()["id"]
    assert sha == hashlib.sha256(data).hexdigest()
    return sha


async def account(admin: httpx.AsyncClient, **fields: str) -> dict[str, str]:
    """Create an account and return the headers of a session signed in as it."""
    made = await admin.post("/api/v1/accounts", json={**fields, "password": PASSWORD})
    assert made.status_code == 201, made.text
    token = await admin.post("/api/v1/auth/token", data={"username": fields["name"], "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def resolve_all(http: httpx.AsyncClient, base: str) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    for team in TEAMS:
        for step in ("acknowledge", "resolve"):
            moved = await http.post(f"{base}/assignments/{team}/{step}", json={"actor": f"{team}-duty"})
            assert moved.status_code == 200, moved.text
            answer = moved.json()
    return answer


async def test_resolve_fail_rework_resolve_pass_with_photos(database_url: str, tmp_path: Path) -> None:
    env = {**PLAIN, "DISPATCHER_MEDIA_DIR": str(tmp_path / "media")}
    server = ServerProcess(database_url, tmp_path / "server.log", env=env).start()
    try:
        async with server.client() as admin:
            grid = await account(admin, name="grid-07", role="field_officer", township="ershili",
                                 officer_id="gw-07")  # fmt: skip
            lead = await account(admin, name="enforcement-lead", role="module_lead", township="ershili",
                                 module="enforcement")  # fmt: skip
            made = await admin.post("/api/v1/incidents", json={**JAM, "report_id": "c-1"})
            assert made.status_code == 201, made.text
            base = f"/api/v1/incidents/{made.json()['id']}"

            # 延期 on the way: the lead team asks, the module lead approves; a second one is over the limit.
            due = made.json()["assignments"][0]["deadlines"][-1]["due_at"]
            later = "2030-01-01T00:00:00+00:00"
            asked = await admin.post(
                f"{base}/extensions", json={"team": "traffic-police", "reason": "等拖车", "due_at": later}
            )
            assert asked.status_code == 200, asked.text
            lanes = (await admin.get("/api/v1/lanes")).json()
            assert [item["request_id"] for item in lanes["extension_requests"]] == [1]
            refused_role = await admin.post(f"{base}/requests/1/approve")  # an administrator is no approver
            assert refused_role.status_code == 403, refused_role.text
            approved = await admin.post(f"{base}/requests/1/approve", headers=lead, json={"reason": "同意"})
            assert approved.status_code == 200, approved.text
            resolve_due = approved.json()["assignments"][0]["deadlines"][-1]
            assert resolve_due["kind"] == "resolve" and resolve_due["due_at"] != due
            assert approved.json()["closing"]["extensions"] == 1
            again = await admin.post(f"{base}/requests/1/refuse", headers=lead, json={"reason": "no"})
            assert again.status_code == 409 and again.json()["current"]["state"] == "approved", again.text

            waiting = await resolve_all(admin, base)
            assert waiting["status"] == "verifying"
            assert [c["kind"] for c in waiting["closing"]["checks"]] == ["verify"]
            closing = await admin.post(f"{base}/close")
            assert closing.status_code == 409
            assert set(closing.json()["allowed"]) == {"pass", "fail", "cancel"}
            assert [i["incident"]["id"] for i in (await admin.get("/api/v1/lanes")).json()["verifying"]] == [
                made.json()["id"]
            ]

            no_reason = await admin.post(f"{base}/verification", headers=grid, json={"passed": False})
            assert no_reason.status_code == 422 and "reason" in no_reason.text
            bad_photo = await admin.post(f"{base}/verification", headers=grid, json={"passed": True, "photos": ["x"]})
            assert bad_photo.status_code == 422
            unknown = await admin.post(
                f"{base}/verification", headers=grid, json={"passed": True, "photos": ["0" * 64]}
            )
            assert unknown.status_code == 422 and "upload it first" in unknown.text
            # The first check's photo was taken 1.3 km away: flagged with the reason, not refused.
            far = await upload(admin, grid, jpeg(10), 28.860, 118.912)
            failed = await admin.post(
                f"{base}/verification",
                headers=grid,
                json={"passed": False, "reason": "仍有车辆违停", "photos": [far]},
            )
            assert failed.status_code == 200, failed.text
            (flag,) = failed.json()["closing"]["verifications"][0]["flags"]
            assert flag.startswith(f"photo {far[:12]}: taken 1,3") and flag.endswith("m from the incident")
            assert failed.json()["status"] == "dispatched"
            assert {a["state"] for a in failed.json()["assignments"]} == {"dispatched"}
            assert failed.json()["closing"]["reworks"] == 1

            await resolve_all(admin, base)
            there = await upload(admin, grid, jpeg(200), 28.8481, 118.9121)
            passed = await admin.post(f"{base}/verification", headers=grid, json={"passed": True, "photos": [there]})
            assert passed.status_code == 200, passed.text
            assert passed.json()["status"] == "closed"
            verifications = passed.json()["closing"]["verifications"]
            assert [(v["verifier"], v["passed"]) for v in verifications] == [("grid-07", False), ("grid-07", True)]
            assert verifications[1]["photos"] == [there] and verifications[1]["flags"] == []
            # The evidence is readable with the incident: the command room gets the photo back.
            assert (await admin.get(f"/api/v1/media/{there}")).content == jpeg(200)

            events = await timeline(admin, made.json()["id"])
            kinds = [e["type"] for e in events]
            assert kinds.count("VerificationAwaited") == 2 and kinds.count("IncidentVerified") == 2
            assert kinds[-2:] == ["IncidentVerified", "IncidentClosed"]
            assert [e["data"]["actor"] for e in events if e["type"] == "RequestDecided"] == ["enforcement-lead"]
    finally:
        server.stop()


async def test_verification_due_and_parking_review_survive_kill_9(database_url: str, tmp_path: Path) -> None:
    """Both deadlines pass while the process is killed; the next process records each once, late."""
    table = tmp_path / "closing-township.yaml"
    text = (FIXTURES / "quick-township.yaml").read_text(encoding="utf-8")
    table.write_text(
        text.replace("ack_within: 2s", "ack_within: 1h").replace(
            "then: {module: enforcement, lead: patrol}", "then: {module: enforcement, lead: patrol, verify_within: 2s}"
        ),
        encoding="utf-8",
    )
    env = {"DISPATCHER_RULES_PATH": str(table)}
    first = quick_server(database_url, tmp_path / "1.log", **env).start()
    try:
        async with first.client() as admin:
            lead = await account(admin, name="quick-lead", role="module_lead", township="quick",
                                 module="enforcement")  # fmt: skip
            noise = {"category": "order.noise", "description": "广场舞音响太吵", "zone": "square"}
            checked = (await admin.post("/api/v1/incidents", json={**noise, "report_id": "k-v"})).json()
            for step in ("acknowledge", "resolve"):
                await admin.post(f"/api/v1/incidents/{checked['id']}/assignments/patrol/{step}")
            parked = (await admin.post("/api/v1/incidents", json={**noise, "report_id": "k-p"})).json()
            server_now = (await admin.get(f"/api/v1/incidents/{parked['id']}")).json()["updated_at"]
            review_at = (datetime.fromisoformat(server_now) + timedelta(seconds=3)).isoformat()
            asked = await admin.post(
                f"/api/v1/incidents/{parked['id']}/parking", json={"reason": "等资金", "review_at": review_at}
            )
            assert asked.status_code == 200, asked.text
            done = await admin.post(f"/api/v1/incidents/{parked['id']}/requests/1/approve", headers=lead)
            assert done.status_code == 200 and done.json()["status"] == "parked", done.text
            verifying = (await admin.get(f"/api/v1/incidents/{checked['id']}")).json()
            assert verifying["status"] == "verifying"
    finally:
        first.kill_hard()
    await asyncio.sleep(4)  # both due times pass while nothing runs

    second = quick_server(database_url, tmp_path / "2.log", **env).start()
    try:
        async with second.client() as admin:

            async def missed(incident_id: int, kind: str) -> list[dict[str, Any]]:
                return [
                    e["data"]
                    for e in await timeline(admin, incident_id)
                    if e["type"] == "DeadlineMissed" and e["data"]["kind"] == kind
                ]

            (verify,) = await wait_for(lambda: missed(checked["id"], "verify"), 10, "the missed verification")
            (review,) = await wait_for(lambda: missed(parked["id"], "review"), 10, "the missed review date")
            assert verify["late_by"] > 0 and review["late_by"] > 0
            # The parked incident's acknowledgement (1 h) was voided, not missed.
            assert await missed(parked["id"], "ack") == []
    finally:
        second.kill_hard()

    third = quick_server(database_url, tmp_path / "3.log", **env).start()
    try:
        async with third.client() as admin:
            # A second restart records nothing again: each deadline fired exactly once.
            events = await timeline(admin, checked["id"]) + await timeline(admin, parked["id"])
            assert sum(1 for e in events if e["type"] == "DeadlineMissed") == 2
            alarms = await admin.get("/api/v1/lanes")
            assert [i["incident"]["id"] for i in alarms.json()["parked"]] == [parked["id"]]
    finally:
        third.stop()
