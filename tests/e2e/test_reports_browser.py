"""/reports in a real headless Chromium against a real server process: a leader opens a period, follows a
score to the incidents behind it, and downloads the briefing as XLSX (opened here with openpyxl); the units
are shown by the names of the bundled rule table and roster, in Chinese or English, and the page fits a phone.

The server starts on a database that already holds the hand-made June of tests/test_briefing.py (its
answers are written there, incident by incident), its teams given the bundled rule table's ids."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import sqlalchemy as sa

from dispatcher.sql_store import SqlIncidentStore, build_engine
from tests.e2e.browser import chromium, signed_in_context
from tests.e2e.server import ServerProcess
from tests.test_briefing import History, june_history

pytestmark = pytest.mark.e2e


def _fill(url: str) -> None:
    async def fill() -> None:
        store = SqlIncidentStore(url, durable=False)
        await store.open()
        await store.close()
        engine = build_engine(url, durable=False)
        try:
            await june_history(History(engine))
            async with engine.begin() as conn:
                for old, new in (("traffic", "traffic-police"), ("market", "market-supervision")):
                    await conn.execute(
                        sa.text("UPDATE assignment SET team = :new WHERE team = :old"), {"old": old, "new": new}
                    )
        finally:
            await engine.dispose()

    asyncio.run(fill())


@pytest.fixture
def june_server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    _fill(database_url)
    # the bundled roster (tp-01 陈帆平, tp-02 孟新霞) names the officers
    process = ServerProcess(database_url, tmp_path / "server.log", env={"DISPATCHER_DUPLICATE_RADIUS_M": "0"}).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_open_a_period_follow_a_score_and_download_the_xlsx(june_server: ServerProcess, tmp_path: Path) -> None:
    async with chromium() as browser:
        context = await signed_in_context(browser, june_server, accept_downloads=True)
        page: Any = await context.new_page()
        await page.goto(f"{june_server.base_url}/reports")  # the last whole month opens first
        await page.fill("#period", "2026-06")
        await page.click("#open")
        await page.wait_for_function("document.getElementById('status').textContent === '2026-06 简报'")
        ranking = page.locator("#document table[data-table='组团排名'] tbody tr")
        await ranking.first.wait_for(timeout=10_000)
        first = [await c.inner_text() for c in await ranking.first.locator("td").all()]
        assert first[:3] == ["1", "交警中队", "70.0"]  # 60 × ½ on time + 40 × all closed
        heads = [await h.inner_text() for h in await page.locator("#document table[data-table='全镇'] th").all()]
        assert "办结中位 (小时)" in heads and not any("秒" in h for h in heads)

        # traffic's score is made by its two due incidents: 1 (on time) and 2 (late)
        await page.click("#document table[data-table='组团排名'] a[data-unit='traffic-police'][data-figure='due']")
        await page.locator("#behind-rows tr[data-incident='2']").wait_for(timeout=10_000)
        listed = [await r.get_attribute("data-incident") for r in await page.locator("#behind-rows tr").all()]
        assert listed == ["1", "2"]
        assert "交警中队" in await page.locator("#behind-title").inner_text()
        cells = [await c.inner_text() for c in await page.locator("#behind-rows tr").first.locator("td").all()]
        assert cells[1] == "交警中队" and cells[2] == "已关闭"
        assert re.fullmatch(r"2026-06-\d\d \d\d:\d\d", cells[3]), cells  # 北京时间 to the minute, not ISO in UTC

        # market's one open matter past its deadline (incident 3), from the per-team table
        await page.click(
            "#document table[data-table='按组团'] a[data-unit='market-supervision'][data-figure='overdue_open']"
        )
        await page.locator("#behind-rows tr[data-incident='3']").wait_for(timeout=10_000)
        assert await page.locator("#behind-rows tr").count() == 1

        # the assessment: tp-02's post score, made by its late close of incident 2
        score = page.locator("#assessment table[data-kind='posts'] a[data-unit='tp-02']")
        await score.wait_for(timeout=10_000)
        assert float(await score.inner_text()) < 100  # a late close loses points from the base
        await score.click()
        await page.locator("#score-lines tr[data-incident='2']").wait_for(timeout=10_000)
        lines = await page.locator("#score-lines tr").all()
        assert [await r.get_attribute("data-incident") for r in lines] == ["2"]
        assert "late_close" in (await lines[0].get_attribute("data-rule") or "")
        assert (await lines[0].locator("td").first.inner_text()).startswith("逾期结案 · ")  # the rule in words
        assert "孟新霞" in await page.locator("#score-title").inner_text()
        row = page.locator("#assessment table[data-kind='posts'] tr", has=page.locator("a[data-unit='tp-02']"))
        assert await row.locator("td.name").inner_text() == "交警 (孟新霞)"
        assert "逾期结案 · " in await row.inner_text()  # its lines in words, not post_points.late_close.pN

        async with page.expect_download(timeout=10_000) as waiting:
            await page.click("#xlsx")
        download = await waiting.value
        assert download.suggested_filename == "briefing-2026-06.xlsx"
        saved = tmp_path / download.suggested_filename
        await download.save_as(saved)
        await context.close()

    book = openpyxl.load_workbook(saved)
    township = [c.value for c in book["全镇"][2]]
    assert township[1:8] == [6, 5, 3, 3, pytest.approx(2 / 3), pytest.approx(1 / 3), 1]
    teams = {r[0]: r for r in book["按组团"].iter_rows(min_row=2, values_only=True)}
    assert teams["交警中队"][1:5] == (2, 2, 2, 3) and teams["交警中队"][-1] == "traffic-police"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_in_english_and_on_a_phone(june_server: ServerProcess) -> None:
    async with chromium() as browser:
        context = await signed_in_context(browser, june_server)
        page: Any = await context.new_page()
        await page.goto(f"{june_server.base_url}/reports?period=2026-06&lang=en")
        ranking = page.locator("#document table[data-table='组团排名'] tbody tr")
        await ranking.first.wait_for(timeout=10_000)
        assert await ranking.first.locator("td").nth(1).inner_text() == "Traffic police squadron"
        assert await page.locator("#document h2").first.inner_text() == "Whole township"
        await context.close()

        phone = await browser.new_context(viewport={"width": 390, "height": 844})
        await phone.add_init_script(f"sessionStorage.setItem('board.token', {june_server.token!r});")
        page = await phone.new_page()
        await page.goto(f"{june_server.base_url}/reports?period=2026-06")
        await page.locator("#assessment table[data-kind='posts'] a[data-unit='tp-02']").wait_for(timeout=10_000)
        # the wide tables scroll in their own boxes: the page itself never scrolls sideways
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        name = page.locator("#document table[data-table='按组团'] td.name").first
        box = await name.bounding_box()
        assert box is not None and box["height"] < 40  # one line, not 交警 / 中队
        await phone.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_without_a_period_the_last_whole_month_opens_and_a_later_choice_is_not_overwritten(
    june_server: ServerProcess,
) -> None:
    from datetime import datetime

    def last_month() -> str:
        now = datetime.now()  # the browser's calendar is this machine's
        return f"{now.year - 1}-12" if now.month == 1 else f"{now.year}-{now.month - 1:02d}"

    months = {last_month()}
    async with chromium() as browser:
        context = await signed_in_context(browser, june_server)
        page: Any = await context.new_page()
        await page.goto(f"{june_server.base_url}/reports?lang=en")
        await page.wait_for_function("/[?&]period=/.test(location.search)", timeout=10_000)
        months.add(last_month())  # should the month have turned meanwhile
        opened = await page.locator("#period").input_value()
        assert opened in months and f"period={opened}" in page.url
        assert await page.locator("#document h2").first.inner_text() == "Whole township"

        # That month asked for again, its answer held back, then June: June stays on the page when that month's
        # answer comes last.
        release = asyncio.Event()

        async def held(route: Any) -> None:
            await release.wait()
            await route.continue_()

        await page.route(f"**/api/v1/reports/briefing?period={opened}*", held)
        await page.click("#open")
        await page.fill("#period", "2026-06")
        await page.click("#open")
        await page.wait_for_function(
            "document.getElementById('status').textContent === 'Briefing 2026-06'", timeout=10_000
        )
        ranking = page.locator("#document table[data-table='组团排名'] tbody tr")
        async with page.expect_event("requestfinished", lambda r: f"period={opened}" in r.url and "/briefing" in r.url):
            release.set()
        # The page's own continuation of that fetch runs in a task after the body arrived: two turns of its loop.
        await page.evaluate("() => new Promise((done) => setTimeout(() => setTimeout(done, 0), 0))")
        assert "period=2026-06" in page.url
        assert await page.locator("#status").inner_text() == "Briefing 2026-06"
        assert await ranking.first.locator("td").nth(1).inner_text() == "Traffic police squadron"
        await context.close()
