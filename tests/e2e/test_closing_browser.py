"""The board's closing-the-loop lanes in a real headless Chromium against a real server process: the party
secretary approves an extension and fails then passes a verification from the lanes, through the HTTP API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.e2e.browser import chromium
from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

ZH = json.loads((Path(__file__).resolve().parents[2] / "gateways/static/i18n/zh-CN.json").read_text(encoding="utf-8"))
TEAMS = ["traffic-police", "police-station", "market-supervision", "law-enforcement", "market-town-office"]
JAM = {"category": "traffic.congestion", "zone": "five-way", "description": "集市日五岔口拥堵"}
WAGES = {"category": "labour.wage_arrears", "zone": "town-centre", "description": "拖欠工资"}
PASSWORD = "secretary-password-1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'board.db'}"
    process = ServerProcess(url, tmp_path / "server.log", env=PLAIN).start()
    try:
        yield process
    finally:
        process.stop()


async def secretary_token(admin: httpx.AsyncClient) -> str:
    body = {"name": "secretary", "role": "party_secretary", "township": "ershili", "password": PASSWORD}
    assert (await admin.post("/api/v1/accounts", json=body)).status_code == 201
    answer = await admin.post("/api/v1/auth/token", data={"username": "secretary", "password": PASSWORD})
    token: str = answer.json()["access_token"]
    return token


async def resolve_all(admin: httpx.AsyncClient, incident_id: int) -> None:
    for team in TEAMS:
        for step in ("acknowledge", "resolve"):
            moved = await admin.post(f"/api/v1/incidents/{incident_id}/assignments/{team}/{step}")
            assert moved.status_code == 200, moved.text


async def test_the_party_secretary_works_the_extension_and_verification_lanes(
    browser: Any, server: ServerProcess
) -> None:
    async with server.client() as admin:
        token = await secretary_token(admin)
        wages = (await admin.post("/api/v1/incidents", json={**WAGES, "report_id": "b-w"})).json()
        asked = await admin.post(
            f"/api/v1/incidents/{wages['id']}/extensions",
            json={"team": "labour-office", "reason": "等法庭排期", "due_at": "2030-01-01T00:00:00+00:00"},
        )
        assert asked.status_code == 200, asked.text
        jam = (await admin.post("/api/v1/incidents", json={**JAM, "report_id": "b-j"})).json()

        context = await browser.new_context(viewport={"width": 1600, "height": 900})
        await context.add_init_script(f"sessionStorage.setItem('board.token', {token!r});")
        page = await context.new_page()
        try:
            await page.goto(f"{server.base_url}/board")
            await page.wait_for_selector("#connection[data-state=open]", timeout=10_000)
            await page.fill("#operator", "王芳")

            # The extension lane: the request is there; approving it empties the lane.
            request = page.locator(f'#extensions-list li[data-incident-id="{wages["id"]}"][data-request-id="1"]')
            await request.wait_for(timeout=10_000)
            assert "等法庭排期" in await request.inner_text()
            await request.locator("button.closing-approve").click()
            await page.wait_for_selector("#extensions-empty:not([hidden])", timeout=10_000)
            decided = (await admin.get(f"/api/v1/incidents/{wages['id']}")).json()
            assert decided["closing"]["extensions"] == 1
            (event,) = [e["data"] for e in decided["timeline"] if e["type"] == "RequestDecided"]
            assert (event["role"], event["actor"]) == ("party_secretary", "secretary for operator:王芳")
            assert decided["assignments"][0]["deadlines"][-1]["due_at"].startswith("2030-01-01")

            # The verification lane: a failure needs a reason, sends it back, and it comes again when resolved.
            await resolve_all(admin, jam["id"])
            item = page.locator(f'#verifying-list li[data-incident-id="{jam["id"]}"]')
            await item.wait_for(timeout=10_000)
            await item.locator("button.closing-fail").click()
            await item.locator(".message").wait_for(timeout=10_000)
            assert await item.locator(".message").inner_text() == ZH["closing.need_reason"]
            await item.locator("input.closing-reason").fill("仍有车辆违停")
            await item.locator("button.closing-fail").click()
            await page.wait_for_selector("#verifying-empty:not([hidden])", timeout=10_000)
            reworked = (await admin.get(f"/api/v1/incidents/{jam['id']}")).json()
            assert reworked["status"] == "dispatched" and reworked["closing"]["reworks"] == 1

            await resolve_all(admin, jam["id"])
            await item.wait_for(timeout=10_000)
            assert ZH["closing.rework"].replace("{n}", "1") in await item.inner_text()
            await item.locator("button.closing-pass").click()
            await page.wait_for_selector("#verifying-empty:not([hidden])", timeout=10_000)
            closed = (await admin.get(f"/api/v1/incidents/{jam['id']}")).json()
            assert closed["status"] == "closed"
            assert [v["passed"] for v in closed["closing"]["verifications"]] == [False, True]
            assert closed["closing"]["verifications"][1]["verifier"] == "secretary for operator:王芳"
        finally:
            await context.close()
