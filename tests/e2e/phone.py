"""The field officer's phone for the /field tests: Debian's Chromium with a 390x844 touch screen and a GPS fix,
a real server with the bundled roster, and an officer account holding a task."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.e2e.browser import chromium
from tests.e2e.server import ServerProcess

PASSWORD = "a long enough password"
OFFICER = "tp-01"  # a traffic police officer of the bundled roster
ACCOUNT = "fo-chen"
#: A fix at the five-way intersection (rules/tables/ershili.yaml), 12 m accurate.
POSITION = {"latitude": 28.8481, "longitude": 118.9121, "accuracy": 12}
#: Duplicates are not joined: several tests report the same jam on purpose. The roster stays on, so that a
#: task is an officer's (GET /api/v1/me/assignments lists only those).
ENV = {"DISPATCHER_DUPLICATE_RADIUS_M": "0"}


def start_server(database_url: str, tmp_path: Path) -> ServerProcess:
    # A spawn takes 10-40 s on the shared 2-core machine under load (more than the helper's default 30 s).
    return ServerProcess(database_url, tmp_path / "server.log", env=ENV).start(timeout_s=120)


async def make_officer(server: ServerProcess, name: str = ACCOUNT, officer_id: str = OFFICER) -> str:
    """Creates the field officer's account and answers a session token of it."""
    async with server.client() as admin:
        body = {"name": name, "role": "field_officer", "township": "ershili", "password": PASSWORD}
        made = await admin.post("/api/v1/accounts", json={**body, "officer_id": officer_id})
        assert made.status_code == 201, made.text
        answer = await admin.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])


async def dispatch_task(server: ServerProcess, report_id: str, description: str, officer_id: str = OFFICER) -> int:
    """A jam at the five-way intersection reported by the command room, its traffic police part handed to
    ``officer_id`` (whoever the roster chose at this hour). Answers the incident id."""
    async with server.client() as admin:
        body = {
            "report_id": report_id,
            "category": "traffic.congestion",
            "zone": "five-way",
            "description": description,
        }
        made = await admin.post("/api/v1/incidents", json=body)
        assert made.status_code == 201, made.text
        incident = int(made.json()["id"])
        held = any(a["team"] == "traffic-police" and a["officer"] == officer_id for a in made.json()["assignments"])
        if held:  # the roster chose this officer already (it depends on the hour's shifts)
            return incident
        handed = await admin.post(
            f"/api/v1/incidents/{incident}/assignments/traffic-police/officer", json={"officer": officer_id}
        )
        assert handed.status_code == 200, handed.text
        return incident


async def events_of(server: ServerProcess, incident: int) -> list[dict[str, Any]]:
    async with server.client() as admin:
        answer = await admin.get(f"/api/v1/incidents/{incident}")
        assert answer.status_code == 200, answer.text
        timeline: list[dict[str, Any]] = answer.json()["timeline"]
        return timeline


def moves(timeline: list[dict[str, Any]], team: str = "traffic-police") -> list[str]:
    """The states a team's part went through, in order, as its ``UnitMoved`` events tell them."""
    return [e["data"]["to_state"] for e in timeline if e["type"] == "UnitMoved" and e["data"]["team"] == team]


def jpeg(colour: tuple[int, int, int] = (200, 80, 40), size: tuple[int, int] = (640, 480)) -> bytes:
    """A real JPEG photo made here with Pillow."""
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG", quality=85)
    return out.getvalue()


def photo_file(name: str = "scene.jpg", colour: tuple[int, int, int] = (200, 80, 40)) -> dict[str, Any]:
    """What ``set_input_files`` takes: a camera photo as the file input would give it."""
    return {"name": name, "mimeType": "image/jpeg", "buffer": jpeg(colour)}


@asynccontextmanager
async def phone(
    server: ServerProcess, token: str | None = None, *, service_workers: str = "block"
) -> AsyncIterator[Any]:
    """A phone's browser context: 390x844, touch, mobile, geolocation allowed at :data:`POSITION`. With
    ``token``, the app starts signed in (as it would after an earlier sign-in: the token is kept on the phone).

    Service workers are blocked unless asked for: offline emulation does not reach a worker's own fetches, and
    the outbox, not the worker, is what those tests are about (the worker has a test of its own)."""
    async with chromium() as browser:
        context = await browser.new_context(
            viewport={"width": 390, "height": 844},
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
            locale="zh-CN",
            geolocation=POSITION,
            permissions=["geolocation"],
            service_workers=service_workers,
        )
        if token is not None:
            account = {"name": ACCOUNT, "role": "field_officer", "officer_id": OFFICER, "township": "ershili"}
            await context.add_init_script(
                "if (!localStorage.getItem('field.account')) {"
                f"localStorage.setItem('field.token', {json.dumps(token)});"
                f"localStorage.setItem('field.account', {json.dumps(json.dumps(account))});}}"
            )
        try:
            yield context
        finally:
            await context.close()


async def open_app(context: Any, server: ServerProcess, path: str = "/field") -> Any:
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    await page.goto(server.base_url + path)
    await page.wait_for_selector("body[data-ready=true]")
    return page


async def incidents(server: ServerProcess) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=10) as admin:
        answer = await admin.get("/api/v1/incidents")
        assert answer.status_code == 200, answer.text
        data: list[dict[str, Any]] = answer.json()["data"]
        return data
