"""The field app's server side through a real server process and real sockets: an officer uploads a photo and
reports with it; the officer the junction's assignment is given to and the command room read it back, another
team's officer is refused; the assigned officer's /ws/field carries its incident's events and not another's."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from PIL import Image
from websockets.typing import Subprotocol

from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

PASSWORD = "a long enough password"
HOLDER, REPORTER, STRANGER = "tp-02", "tp-01", "lo-01"


def noisy_jpeg() -> bytes:
    """A 800×600 JPEG of noise: several hundred kilobytes, far over the API's default 64 KiB body limit."""
    image = Image.frombytes("RGB", (800, 600), os.urandom(800 * 600 * 3))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


async def sign_in(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    answer = await http.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def next_event_of(socket: Any, incident_id: int) -> dict[str, Any]:
    """The next event frame about ``incident_id`` (bound the wait with asyncio.wait_for); others are kept out."""
    while True:
        frame = json.loads(await socket.recv())
        if frame["kind"] == "event":
            assert frame["data"]["incident_id"] == incident_id, frame  # the feed sends only the officer's incidents
            return dict(frame)


async def test_a_photo_reported_by_an_officer_is_read_by_its_incidents_readers_only(
    database_url: str, tmp_path: Path
) -> None:
    server = ServerProcess(
        database_url, tmp_path / "server.log", env={"DISPATCHER_MEDIA_DIR": str(tmp_path / "media")}
    ).start(timeout_s=120)  # a spawn takes 10-40 s on the shared machine under load
    try:
        async with server.client() as admin:
            for name, officer in (("fo-reporter", REPORTER), ("fo-holder", HOLDER), ("fo-stranger", STRANGER)):
                body = {"name": name, "role": "field_officer", "township": "ershili", "password": PASSWORD,
                        "officer_id": officer}  # fmt: skip
                assert (await admin.post("/api/v1/accounts", json=body)).status_code == 201
            reporter, holder, stranger = [await sign_in(admin, n) for n in ("fo-reporter", "fo-holder", "fo-stranger")]
            token = holder["Authorization"].removeprefix("Bearer ")

            feed_url = server.base_url.replace("http", "ws") + "/ws/field"
            protocols = [Subprotocol("dispatcher.bearer"), Subprotocol(f"dispatcher.bearer.{token}")]
            async with websockets.connect(feed_url, subprotocols=protocols) as feed:
                hello = json.loads(await asyncio.wait_for(feed.recv(), 10))
                assert hello["kind"] == "hello"

                async with httpx.AsyncClient(base_url=server.base_url, timeout=30, headers=reporter) as phone:
                    photo = noisy_jpeg()
                    assert len(photo) > 64 * 1024
                    uploaded = await phone.post(
                        "/api/v1/media",
                        files={"file": ("IMG_0001.jpg", photo, "image/jpeg")},
                        data={"taken_at": "2026-06-12T16:05:00+08:00", "lat": "28.848", "lon": "118.912"},
                    )
                    assert uploaded.status_code == 201, uploaded.text
                    sha = uploaded.json()["id"]
                    made = await phone.post(
                        "/api/v1/incidents",
                        json={"report_id": "field-e2e-1", "category": "traffic.congestion", "description": "五岔口拥堵",
                              "location": {"lat": 28.848, "lon": 118.912}, "accuracy_m": 9, "photos": [sha]},
                    )  # fmt: skip
                    assert made.status_code in (200, 201), made.text
                    incident_id = made.json()["id"]
                    assert (await phone.get(f"/api/v1/media/{sha}")).content == photo  # its uploader

                detail = (await admin.get(f"/api/v1/incidents/{incident_id}")).json()
                assert detail["photos"] == [sha] and detail["accuracy_m"] == 9
                traffic = next(a for a in detail["assignments"] if a["team"] == "traffic-police")
                if traffic["officer"] != HOLDER:  # whoever was on shift: the command room hands it to tp-02
                    handed = await admin.post(
                        f"/api/v1/incidents/{incident_id}/assignments/traffic-police/officer", json={"officer": HOLDER}
                    )
                    assert handed.status_code == 200, handed.text
                # The holder's feed carries its incident's events, among them the one that gave it the assignment.
                gave: list[dict[str, Any]] = []
                while not gave:
                    frame = await asyncio.wait_for(next_event_of(feed, incident_id), 10)
                    units = frame["data"].get("units") or []
                    if frame["data"].get("officer") == HOLDER or any(u.get("officer") == HOLDER for u in units):
                        gave.append(frame)
                assert gave[0]["type"] in ("UnitsDispatched", "OfficerAssigned")

                async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
                    got = await http.get(f"/api/v1/media/{sha}", headers=holder)
                    assert got.status_code == 200 and got.content == photo
                    assert got.headers["content-type"] == "image/jpeg"
                    thumb = await http.get(f"/api/v1/media/{sha}/thumbnail", headers=holder)
                    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
                    assert (await admin.get(f"/api/v1/media/{sha}")).content == photo  # the command room
                    refused = await http.get(f"/api/v1/media/{sha}", headers=stranger)
                    assert refused.status_code == 404
                    assert (await http.get(f"/api/v1/media/{sha}/thumbnail", headers=stranger)).status_code == 404

                    # A step with the photo, sent twice: applied once, then "already"; the feed shows the one move.
                    step = f"/api/v1/incidents/{incident_id}/assignments/traffic-police/acknowledge"
                    first = await http.post(step, headers=holder, json={"photos": [sha]})
                    assert first.status_code == 200 and first.json()["outcome"] == "applied", first.text
                    again = await http.post(step, headers=holder, json={"photos": [sha]})
                    assert again.status_code == 200 and again.json()["outcome"] == "already"
                moved = await asyncio.wait_for(next_event_of(feed, incident_id), 10)
                while moved["type"] != "UnitMoved":  # other teams' dispatch news of the same incident come first
                    moved = await asyncio.wait_for(next_event_of(feed, incident_id), 10)
                assert (moved["type"], moved["data"]["to_state"], moved["data"]["photos"]) == (
                    "UnitMoved", "acknowledged", [sha],
                )  # fmt: skip
        stored = sorted(
            p.relative_to(tmp_path / "media").as_posix() for p in (tmp_path / "media").rglob("*") if p.is_file()
        )
        assert stored == [f"{sha[:2]}/{sha}", f"{sha[:2]}/{sha}.thumb.jpg"]
    finally:
        server.stop()
