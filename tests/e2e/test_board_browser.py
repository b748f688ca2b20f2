"""The board in a real headless Chromium (Debian's, driven by Playwright) against a real server process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.browser import chromium, signed_in_context
from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
async def page(server: ServerProcess) -> AsyncIterator[Any]:
    async with chromium() as browser:
        context = await signed_in_context(browser, server)
        board = await context.new_page()
        dialogs: list[str] = []
        board.on("dialog", lambda d: dialogs.append(d.message))
        board.dialogs = dialogs
        await board.goto(f"{server.base_url}/board")
        await board.wait_for_selector("#connection[data-state=open]", timeout=10_000)
        yield board


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_report_appears_live_and_its_acknowledgement_follows(server: ServerProcess, page: Any) -> None:
    body = {
        "report_id": "browser-1",
        "category": "traffic.congestion",
        "zone": "five-way",
        "description": "集市日五岔口拥堵 <script>alert('x')</script><img src=x onerror=alert(2)>",
    }
    async with server.client() as http:
        answer = await http.post("/api/v1/incidents", json=body)
        assert answer.status_code == 201
        # Within one second of the answer the row is there with its teams dispatched.
        await page.wait_for_selector('#incidents [data-incident-id="1"][data-status="dispatched"]', timeout=1_000)
        row = page.locator('#incidents [data-incident-id="1"]')
        chips = row.locator(".chip[data-team]")
        assert await chips.count() == 5
        assert await row.locator('.chip[data-team="traffic-police"]').get_attribute("data-role") == "lead"

        await http.post("/api/v1/incidents/1/assignments/traffic-police/acknowledge", json={"actor": "王警官"})
        await page.wait_for_selector(
            '#incidents [data-incident-id="1"][data-status="acknowledged"] .chip[data-team="traffic-police"][data-state="acknowledged"]',
            timeout=2_000,
        )

    text = await row.inner_text()
    assert "<script>alert('x')</script>" in text  # shown as text, not run
    assert page.dialogs == []
    assert await page.locator("#incidents script, #incidents img").count() == 0
    # Labels come from the rule table, in the board's language (zh-CN by default; see test_board_operator).
    assert "交通拥堵" in text and "五岔口" in text and "Traffic congestion" not in text
    assert await page.locator("#last-seq").inner_text() == "4"  # seq 1: the rule table put in force at start


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_queue_lanes_and_closing_remove_rows(server: ServerProcess, page: Any) -> None:
    async with server.client() as http:
        await http.post(
            "/api/v1/incidents",
            json={"report_id": "q-1", "category": "ufo.sighting", "zone": "market", "description": "?"},
        )
        await page.wait_for_selector('#triage-rows [data-incident-id="1"]', timeout=2_000)
        await http.post("/api/v1/incidents/1/cancel", json={"reason": "not a matter for the township"})
        await page.wait_for_selector('#triage-rows [data-incident-id="1"]', state="detached", timeout=2_000)
    assert await page.locator("#triage-count").inner_text() == "0"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_board_resumes_after_the_server_restarts_without_loss_or_doubles(
    server: ServerProcess, page: Any, tmp_path: Any
) -> None:
    five_way = {"category": "traffic.congestion", "zone": "five-way", "description": "拥堵"}
    async with server.client() as http:
        await http.post("/api/v1/incidents", json={**five_way, "report_id": "before"})
    await page.wait_for_selector('#incidents [data-incident-id="1"]', timeout=2_000)

    server.stop()  # the link is cut: the board notices and retries
    await page.wait_for_selector("#connection[data-state=closed]", timeout=5_000)
    again = ServerProcess(server.database_url, tmp_path / "again.log", port=server.port, env=PLAIN).start()
    try:
        async with again.client() as http:
            await http.post("/api/v1/incidents", json={**five_way, "report_id": "after"})
            await http.post("/api/v1/incidents/1/assignments/traffic-police/acknowledge")
            last_seq = (await http.get("/readyz")).json()["last_seq"]
        await page.wait_for_selector("#connection[data-state=open]", timeout=15_000)
        await page.wait_for_function(
            "seq => document.getElementById('last-seq').textContent === String(seq)", arg=last_seq, timeout=5_000
        )
        rows = page.locator("#incidents [data-incident-id]")
        assert sorted([await rows.nth(i).get_attribute("data-incident-id") for i in range(await rows.count())]) == [
            "1",
            "2",
        ]
        assert await page.locator('#incidents [data-incident-id="1"]').get_attribute("data-status") == "acknowledged"
    finally:
        again.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_snapshot_in_pages_draws_every_open_incident_and_the_feed_follows(
    database_url: str, tmp_path: Any
) -> None:
    paged = ServerProcess(database_url, tmp_path / "paged.log", env={**PLAIN, "DISPATCHER_BOARD_SNAPSHOT_PAGE": "2"})
    paged.start()
    try:
        async with paged.client() as http:
            for n in range(5):
                body = {
                    "report_id": f"p-{n}",
                    "category": "traffic.congestion",
                    "zone": "five-way",
                    "description": "拥堵",
                }
                assert (await http.post("/api/v1/incidents", json=body)).status_code == 201
            await http.post("/api/v1/incidents/5/cancel", json={"reason": "a prank"})
            async with chromium() as browser:
                context = await signed_in_context(browser, paged)
                board = await context.new_page()
                frames: list[str] = []
                board.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
                await board.goto(f"{paged.base_url}/board")
                await board.wait_for_selector("#connection[data-state=open]", timeout=10_000)
                await board.wait_for_selector('#incidents [data-incident-id="4"]', timeout=5_000)

                body = {
                    "report_id": "p-live",
                    "category": "traffic.congestion",
                    "zone": "five-way",
                    "description": "又堵",
                }
                assert (await http.post("/api/v1/incidents", json=body)).status_code == 201
                last_seq = (await http.get("/readyz")).json()["last_seq"]
                await board.wait_for_function(
                    "seq => document.getElementById('last-seq').textContent === String(seq)",
                    arg=last_seq,
                    timeout=5_000,
                )
                rows = board.locator("#incidents [data-incident-id]")
                drawn = sorted(
                    [int(await rows.nth(i).get_attribute("data-incident-id")) for i in range(await rows.count())]
                )
                assert drawn == [1, 2, 3, 4, 6]
        snapshot = [f for f in frames if f.startswith(('{"kind":"snapshot"', '{"kind":"snapshot_page"'))]
        assert len(snapshot) == 2  # four open incidents in pages of two
    finally:
        paged.stop()
