"""The operator's board in a real headless Chromium against a real server process: the detail panel's
actions go through the HTTP API, alarms are shared between boards, a cut feed resumes exactly,
languages, URL filters and the map. One browser per module; each test gets its own server and page."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from dispatcher.settings import BUNDLED_TABLE
from tests.e2e.browser import chromium, signed_in_context
from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

I18N = Path(__file__).resolve().parents[2] / "gateways" / "static" / "i18n"
ZH = json.loads((I18N / "zh-CN.json").read_text(encoding="utf-8"))
EN = json.loads((I18N / "en.json").read_text(encoding="utf-8"))
FIVE_WAY = {"category": "traffic.congestion", "zone": "five-way", "description": "集市日五岔口拥堵"}
WAGES = {"category": "labour.wage_arrears", "zone": "town-centre", "description": "拖欠工资"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with chromium() as launched:
        yield launched


def _start(tmp_path: Path, env: dict[str, str] | None = None) -> ServerProcess:
    url = f"sqlite+aiosqlite:///{tmp_path / 'board.db'}"
    return ServerProcess(url, tmp_path / "server.log", env={**PLAIN, **(env or {})}).start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = _start(tmp_path)
    try:
        yield process
    finally:
        process.stop()


async def open_board(browser: Any, server: ServerProcess, query: str = "", operator: str | None = "王芳") -> Any:
    context = await signed_in_context(browser, server)
    page = await context.new_page()
    await page.goto(f"{server.base_url}/board{query}")
    await page.wait_for_selector("#connection[data-state=open]", timeout=10_000)
    if operator is not None:
        await page.fill("#operator", operator)
    return page


async def report(http: httpx.AsyncClient, report_id: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await http.post("/api/v1/incidents", json={**body, "report_id": report_id})
    assert answer.status_code == 201, answer.text
    data: dict[str, Any] = answer.json()
    return data


async def test_actions_clicked_in_the_detail_panel_go_through_the_api_with_the_operator(
    browser: Any, server: ServerProcess
) -> None:
    page = await open_board(browser, server)
    async with server.client() as http:
        await report(http, "op-1", FIVE_WAY)
        await page.click('#incidents [data-incident-id="1"]', timeout=2_000)
        await page.wait_for_selector('#detail[data-incident="1"] .d-timeline .ev-UnitsDispatched', timeout=5_000)

        await page.click('#detail button[data-action="acknowledge"][data-team="traffic-police"]')
        await page.wait_for_selector('#incidents [data-incident-id="1"][data-status="acknowledged"]', timeout=5_000)
        await page.fill("#note-text", "已联系交警 <b>现场</b>")
        await page.click('#detail button[data-action="note"]')
        # The panel follows live: the note and the move appear in its timeline from the feed.
        await page.wait_for_selector("#detail .d-timeline .ev-NoteAdded", timeout=5_000)

        detail = (await http.get("/api/v1/incidents/1")).json()
        assert detail["status"] == "acknowledged"
        moved = [e["data"] for e in detail["timeline"] if e["type"] == "UnitMoved"]
        assert [(m["team"], m["to_state"], m["actor"]) for m in moved] == [
            ("traffic-police", "acknowledged", "admin for operator:王芳 for traffic-police")
        ]
        notes = [e["data"] for e in detail["timeline"] if e["type"] == "NoteAdded"]
        assert [(n["author"], n["text"]) for n in notes] == [("admin for operator:王芳", "已联系交警 <b>现场</b>")]
        assert await page.locator("#detail .d-notes b").count() == 0  # shown as text

        await page.fill("#cancel-reason", "重复上报")
        await page.click('#detail button[data-action="cancel"]')
        await page.wait_for_selector('#incidents [data-incident-id="1"]', state="detached", timeout=5_000)
        detail = (await http.get("/api/v1/incidents/1")).json()
        cancelled = [e["data"] for e in detail["timeline"] if e["type"] == "IncidentCancelled"]
        assert detail["status"] == "cancelled"
        assert [(c["actor"], c["reason"]) for c in cancelled] == [("admin for operator:王芳", "重复上报")]
        await page.wait_for_selector(f'#detail .d-finished:text("{ZH["detail.finished"]}")', timeout=5_000)
    await page.context.close()


async def test_without_an_operator_name_nothing_is_sent(browser: Any, server: ServerProcess) -> None:
    page = await open_board(browser, server, operator=None)
    async with server.client() as http:
        await report(http, "anon-1", FIVE_WAY)
        await page.click('#incidents [data-incident-id="1"]', timeout=2_000)
        await page.click('#detail button[data-action="acknowledge"][data-team="traffic-police"]', timeout=5_000)
        await page.wait_for_selector("#detail .d-message.error", timeout=2_000)
        assert await page.locator("#operator.needed").count() == 1
        detail = (await http.get("/api/v1/incidents/1")).json()
        assert [e["type"] for e in detail["timeline"]] == ["IncidentReported", "UnitsDispatched"]
    await page.context.close()


@pytest.fixture
def quick_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server whose five-way rule gives 2 s to acknowledge, so a deadline is missed during the test."""
    tables = tmp_path / "tables"
    tables.mkdir()
    for source in BUNDLED_TABLE.parent.glob("ershili*.yaml"):
        shutil.copy(source, tables / source.name)
    table = tables / BUNDLED_TABLE.name
    text = table.read_text(encoding="utf-8")
    at = text.index("ack_within: 3m", text.index("id: five-way-joint-enforcement"))
    table.write_text(text[:at] + "ack_within: 2s" + text[at + len("ack_within: 3m") :], encoding="utf-8")
    process = _start(tmp_path, env={"DISPATCHER_RULES_PATH": str(table)})
    try:
        yield process
    finally:
        process.stop()


async def test_an_alarm_acknowledged_on_one_board_clears_on_every_board(
    browser: Any, quick_server: ServerProcess
) -> None:
    board_a = await open_board(browser, quick_server, operator="王芳")
    async with quick_server.client() as http:
        await report(http, "alarm-1", FIVE_WAY)
        for team in ("police-station", "market-supervision", "law-enforcement", "market-town-office"):
            await http.post(f"/api/v1/incidents/1/assignments/{team}/acknowledge", json={"actor": team})
        # The lead misses its 2 s acknowledgement: one alarm, raised to the module lead.
        await board_a.wait_for_selector("#alarm-list li[data-alarm-seq]", timeout=10_000)
        board_b = await open_board(browser, quick_server, operator="李明")  # learns the alarm from the snapshot
        await board_b.wait_for_selector("#alarm-list li[data-alarm-seq]", timeout=5_000)
        seq = await board_a.locator("#alarm-list li").first.get_attribute("data-alarm-seq")
        assert await board_b.locator("#alarm-list li").first.get_attribute("data-alarm-seq") == seq
        assert await board_a.locator("#alarm-list li").count() == 1
        text = await board_b.locator("#alarm-list li").first.inner_text()
        assert "交警中队" in text and "副镇长" in text

        await board_a.click(f'#alarm-list li[data-alarm-seq="{seq}"] .alarm-ack')
        await board_b.wait_for_selector("#alarm-list li", state="detached", timeout=5_000)
        await board_a.wait_for_selector("#alarm-list li", state="detached", timeout=5_000)
        assert await board_b.locator("#alarms").is_hidden()
        detail = (await http.get("/api/v1/incidents/1")).json()
        acks = [e["data"] for e in detail["timeline"] if e["type"] == "AlarmAcknowledged"]
        assert [(a["alarm_seq"], a["actor"]) for a in acks] == [(int(seq or 0), "admin for operator:王芳")]
        # A board that connects now sees no alarm.
        board_c = await open_board(browser, quick_server)
        await board_c.wait_for_selector('#incidents [data-incident-id="1"]', timeout=5_000)
        assert await board_c.locator("#alarm-list li").count() == 0
    for page in (board_a, board_b, board_c):
        await page.context.close()


async def test_a_cut_feed_resumes_without_losing_or_doubling_events(browser: Any, server: ServerProcess) -> None:
    page = await open_board(browser, server)
    async with server.client() as http:
        await report(http, "cut-0", FIVE_WAY)
        await page.wait_for_selector('#incidents [data-incident-id="1"]', timeout=2_000)
        # Hold the reconnection back so the events below happen while the board is cut off.
        await page.evaluate(
            """() => {
                window.__realWebSocket = window.WebSocket;
                window.WebSocket = function () { throw new Error('offline'); };
                window.WebSocket.OPEN = 1;
                board.dropFeed();
            }"""
        )
        await page.wait_for_selector("#connection[data-state=closed]", timeout=5_000)
        for n in range(1, 6):
            await report(http, f"cut-{n}", WAGES if n % 2 else FIVE_WAY)
        await http.post("/api/v1/incidents/1/assignments/traffic-police/acknowledge", json={"actor": "交警"})
        await http.post("/api/v1/incidents/2/cancel", json={"reason": "duplicate"})
        last_seq = (await http.get("/readyz")).json()["last_seq"]
        await page.evaluate("() => { window.WebSocket = window.__realWebSocket; }")
        await page.wait_for_selector("#connection[data-state=open]", timeout=15_000)
        await page.wait_for_function(
            "seq => document.getElementById('last-seq').textContent === String(seq)", arg=last_seq, timeout=5_000
        )
        ids = await page.eval_on_selector_all(
            "#incidents [data-incident-id]", "rows => rows.map(r => r.dataset.incidentId)"
        )
        api_open = (await http.get("/api/v1/incidents", params={"open": "true", "limit": 100})).json()["data"]
        assert sorted(ids, key=int) == sorted((str(i["id"]) for i in api_open), key=int)
        assert len(ids) == len(set(ids)) == 5
        assert await page.locator('#incidents [data-incident-id="1"]').get_attribute("data-status") == "acknowledged"
        chips = page.locator('#incidents [data-incident-id="1"] .chip[data-team]')
        assert await chips.count() == 5
    await page.context.close()


async def test_labels_come_from_the_translation_files_in_both_languages(browser: Any, server: ServerProcess) -> None:
    page = await open_board(browser, server)
    async with server.client() as http:
        await report(http, "lang-1", FIVE_WAY)
    row = page.locator('#incidents [data-incident-id="1"]')
    await page.wait_for_selector('#incidents [data-incident-id="1"][data-status="dispatched"]', timeout=2_000)
    assert await page.locator("#main-title").inner_text() == ZH["lane.main"]
    assert await page.locator("#detail-close").get_attribute("title") == ZH["detail.close"]
    assert "交通拥堵" in await row.inner_text() and ZH["status.dispatched"] in await row.inner_text()

    await page.click("#lang-toggle")
    await page.wait_for_function("t => document.getElementById('main-title').textContent === t", arg=EN["lane.main"])
    # The rows are drawn again once the English names of categories and teams have arrived.
    await page.wait_for_function(
        "() => document.querySelector('#incidents [data-incident-id=\"1\"]').innerText.includes('Traffic police')"
    )
    text = await row.inner_text()
    assert "Traffic congestion" in text and "Traffic police squadron" in text and EN["status.dispatched"] in text
    assert "lang=en" in page.url
    assert await page.locator("#lang-toggle").inner_text() == EN["lang.switch"]

    other = await open_board(browser, server, "?lang=en")
    await other.wait_for_selector('#incidents [data-incident-id="1"]', timeout=2_000)
    await other.wait_for_function("t => document.getElementById('main-title').textContent === t", arg=EN["lane.main"])
    assert await other.locator(".stat-label").first.inner_text() == EN["stat.open"]
    assert "Five-way intersection" in await other.locator("#map-zones").inner_html()
    for p in (page, other):
        await p.context.close()


async def test_url_filters_hide_rows_and_survive_a_reload(browser: Any, server: ServerProcess) -> None:
    async with server.client() as http:
        await report(http, "f-1", FIVE_WAY)
        await report(http, "f-2", WAGES)
    page = await open_board(browser, server, "?module=enforcement")
    traffic = page.locator('#incidents [data-incident-id="1"]')
    wages = page.locator('#incidents [data-incident-id="2"]')
    await wages.wait_for(state="attached", timeout=2_000)
    assert await traffic.is_visible() and await wages.is_hidden()

    await page.select_option("#filter-status", "dispatched")
    await page.select_option("#filter-module", "service")
    assert "module=service" in page.url and "status=dispatched" in page.url
    assert await traffic.is_hidden() and await wages.is_visible()

    await page.reload()
    await page.wait_for_selector("#connection[data-state=open]", timeout=10_000)
    await wages.wait_for(state="visible", timeout=2_000)
    assert await traffic.is_hidden()
    assert await page.locator("#filter-module").input_value() == "service"
    await page.click("#filter-clear")
    assert await traffic.is_visible() and "module=" not in page.url
    await page.context.close()


async def test_clicking_a_map_marker_opens_the_incident(browser: Any, server: ServerProcess) -> None:
    page = await open_board(browser, server)
    async with server.client() as http:
        await report(
            http,
            "map-1",
            {"category": "traffic.congestion", "location": {"lat": 28.8481, "lon": 118.9121}, "description": "路口"},
        )
    marker = page.locator('#map .marker[data-marker-id="1"][data-status="dispatched"]')
    await marker.wait_for(timeout=5_000)
    assert await marker.get_attribute("class") == "marker"  # at its coordinates, not approximated
    await marker.click()
    await page.wait_for_selector('#detail[data-incident="1"]:not([hidden])', timeout=2_000)
    assert "路口" in await page.locator("#detail .d-desc").inner_text()
    await page.keyboard.press("Escape")
    await page.wait_for_selector("#detail", state="hidden", timeout=2_000)
    await page.context.close()
