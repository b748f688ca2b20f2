"""Dispatch on the board, in a real headless Chromium against a real server: officers on the chips and in
the units panel, a waiting assignment, a duplicate's report count, and the operator's reassign and
escalate-now clicked in the detail panel reaching the API with the operator's name.

The quick township (tests/fixtures/quick-township.yaml, with an hour to acknowledge here) and its roster of
two patrol officers on duty around the clock keep the test independent of the hour it runs at."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.browser import chromium, signed_in_context
from tests.e2e.server import ADMIN_PASSWORD, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NOISE = {"category": "order.noise", "description": "广场舞音响太吵", "location": {"lat": 28.8, "lon": 118.9}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    patient = tmp_path / "patient-township.yaml"
    text = (FIXTURES / "quick-township.yaml").read_text(encoding="utf-8")
    patient.write_text(text.replace("ack_within: 2s", "ack_within: 1h"), encoding="utf-8")
    env = {"DISPATCHER_RULES_PATH": str(patient), "DISPATCHER_ROSTER_PATH": str(FIXTURES / "quick-roster.yaml")}
    process = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'board.db'}", tmp_path / "server.log", env=env).start()
    try:
        yield process
    finally:
        process.stop()


async def test_officers_waiting_duplicates_and_operator_dispatch_actions(browser: Any, server: ServerProcess) -> None:
    context = await signed_in_context(browser, server)
    page = await context.new_page()
    await page.goto(f"{server.base_url}/board")
    await page.wait_for_selector("#connection[data-state=open]", timeout=10_000)
    await page.fill("#operator", "王芳")
    async with server.client() as http:
        made = (await http.post("/api/v1/incidents", json={**NOISE, "report_id": "n-1"})).json()
        chip = '#incidents [data-incident-id="1"] .chip[data-team="patrol"]'
        await page.wait_for_selector(f'{chip}[data-officer="p-1"]', timeout=5_000)
        assert "甲" in await page.locator(chip).inner_text()  # the roster's name, not the id
        await page.wait_for_selector(
            '#unit-teams [data-team="patrol"] .unit[data-officer="p-1"][data-status="assigned"]', timeout=15_000
        )

        joined = await http.post(
            "/api/v1/incidents", json={**NOISE, "report_id": "n-2", "location": {"lat": 28.8003, "lon": 118.9}}
        )
        assert joined.status_code == 200
        await page.wait_for_selector('#incidents [data-incident-id="1"] .reports[data-count="2"]', timeout=5_000)

        await page.click('#incidents [data-incident-id="1"]')
        await page.wait_for_selector(
            '#detail select#officer-patrol option[value="p-2"]', state="attached", timeout=15_000
        )
        await page.select_option("#detail select#officer-patrol", "p-2")
        await page.click('#detail button[data-action="reassign"][data-team="patrol"]')
        await page.wait_for_selector(f'{chip}[data-officer="p-2"]', timeout=5_000)

        await page.click('#detail button[data-action="escalate-now"]')
        await page.wait_for_selector('#incidents [data-incident-id="1"] .esc-badge[data-escalated]', timeout=5_000)
        timeline = (await http.get(f"/api/v1/incidents/{made['id']}")).json()["timeline"]
        by_operator = [(e["type"], e["data"]["actor"]) for e in timeline if e["data"].get("actor")]
        # The account signed in (admin) acts; the name typed on the board says for whom at the desk.
        who = "admin for operator:王芳"
        assert by_operator == [("OfficerAssigned", who), ("EscalationRaised", who)]

        for officer in ("p-1", "p-2"):
            await http.post(f"/api/v1/units/{officer}/status", json={"status": "off_duty"})
        waiting = (
            await http.post(
                "/api/v1/incidents", json={**NOISE, "report_id": "n-3", "location": {"lat": 28.9, "lon": 118.9}}
            )
        ).json()
        await page.wait_for_selector(
            f'#incidents [data-incident-id="{waiting["id"]}"] .chip[data-team="patrol"][data-waiting="true"]',
            timeout=5_000,
        )
        await page.wait_for_function("document.getElementById('waiting-count').textContent === '1'", timeout=15_000)

    # The units panel names its teams in the board's language, after a switch too (it was left in Chinese).
    name = '#unit-teams [data-team="patrol"] .unit-team-name'
    assert await page.locator(name).inner_text() == "巡逻队"
    await page.click("#lang-toggle")
    # Drawn in the same pass as the rows (the panel's own refresh comes only every 10 s).
    await page.wait_for_function(
        'document.querySelector(\'#incidents [data-incident-id="1"] .chip[data-team="patrol"]\')'
        ".textContent.includes('Patrol')",
        timeout=5_000,
    )
    assert await page.locator(name).inner_text() == "Patrol"
    await context.close()


async def test_the_board_signs_in_with_its_form_and_out_again(browser: Any, server: ServerProcess) -> None:
    context = await browser.new_context(viewport={"width": 1600, "height": 900})  # no token: a fresh tab
    page = await context.new_page()
    await page.goto(f"{server.base_url}/board")
    await page.wait_for_selector("#signin:not([hidden])", timeout=10_000)
    assert await page.locator("#connection[data-state=open]").count() == 0
    await page.fill("#signin-user", "admin")
    await page.fill("#signin-password", "wrong password")
    await page.click("#signin-submit")
    await page.wait_for_selector("#signin-error:not(:empty)", timeout=5_000)
    # The refusal's code (sign-in-failed) in the board's language, not the server's English detail.
    assert await page.locator("#signin-error").text_content() == "登录失败：账号或密码错误"
    await page.fill("#signin-password", ADMIN_PASSWORD)
    await page.click("#signin-submit")
    await page.wait_for_selector("#connection[data-state=open]", timeout=10_000)
    assert await page.locator("#signin").is_hidden()
    await page.wait_for_selector("#account:not(:empty)", timeout=5_000)
    await page.click("#signout")
    await page.wait_for_selector("#signin:not([hidden])", timeout=10_000)
    await context.close()


async def test_a_board_whose_token_is_revoked_elsewhere_asks_to_sign_in(browser: Any, server: ServerProcess) -> None:
    context = await browser.new_context(viewport={"width": 1600, "height": 900})
    page = await context.new_page()
    await page.goto(f"{server.base_url}/board")
    await page.wait_for_selector("#signin:not([hidden])", timeout=10_000)
    await page.fill("#signin-user", "admin")
    await page.fill("#signin-password", ADMIN_PASSWORD)
    await page.click("#signin-submit")
    await page.wait_for_selector("#connection[data-state=open]", timeout=10_000)
    async with server.client() as http:
        tokens = (await http.get("/api/v1/accounts/admin/tokens")).json()["data"]
        board_token = max((t for t in tokens if t["kind"] == "session"), key=lambda t: t["id"])
        assert (await http.delete(f"/api/v1/tokens/{board_token['id']}")).status_code == 204
    # The open feed is closed (4401) at once: the board shows its sign-in form without a request of its own.
    await page.wait_for_selector("#signin:not([hidden])", timeout=10_000)
    assert await page.locator("#connection[data-state=open]").count() == 0
    await context.close()
