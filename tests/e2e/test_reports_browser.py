"""/reports in a real headless Chromium against a real server process: a leader opens a period, follows a
score to the incidents behind it, and downloads the briefing as XLSX (opened here with openpyxl).

The server starts on a database that already holds the hand-made June of tests/test_briefing.py (its
answers are written there, incident by incident)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from dispatcher.sql_store import SqlIncidentStore, build_engine
from tests.e2e.browser import chromium, signed_in_context
from tests.e2e.conftest import PLAIN
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
        finally:
            await engine.dispose()

    asyncio.run(fill())


@pytest.fixture
def june_server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    _fill(database_url)
    process = ServerProcess(database_url, tmp_path / "server.log", env=PLAIN).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_open_a_period_follow_a_score_and_download_the_xlsx(june_server: ServerProcess, tmp_path: Path) -> None:
    async with chromium() as browser:
        context = await signed_in_context(browser, june_server, accept_downloads=True)
        page: Any = await context.new_page()
        await page.goto(f"{june_server.base_url}/reports")
        await page.fill("#period", "2026-06")
        await page.click("#open")
        ranking = page.locator("#document table[data-table='组团排名'] tbody tr")
        await ranking.first.wait_for(timeout=10_000)
        first = [await c.inner_text() for c in await ranking.first.locator("td").all()]
        assert first[:3] == ["1", "traffic", "70.0"]  # 60 × ½ on time + 40 × all closed

        # traffic's score is made by its two due incidents: 1 (on time) and 2 (late)
        await page.click("#document table[data-table='组团排名'] a[data-unit='traffic'][data-figure='due']")
        await page.locator("#behind-rows tr[data-incident='2']").wait_for(timeout=10_000)
        listed = [await r.get_attribute("data-incident") for r in await page.locator("#behind-rows tr").all()]
        assert listed == ["1", "2"]
        assert "traffic" in await page.locator("#behind-title").inner_text()

        # market's one open matter past its deadline (incident 3), from the per-team table
        await page.click("#document table[data-table='按组团'] a[data-unit='market'][data-figure='overdue_open']")
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
        assert "tp-02" in await page.locator("#score-title").inner_text()

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
    assert teams["traffic"][1:5] == (2, 2, 2, 3)
