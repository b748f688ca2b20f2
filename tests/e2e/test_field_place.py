"""Place codes (龙游通) in the field app: a code from a sheet printed by ``dispatcher places codes``, photographed
and given to the page, opens the place with its incidents; a report made from there is tied to the place."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import expect
from typer.testing import CliRunner, Result

from server.cli import app
from tests.e2e.browser import chromium
from tests.e2e.phone import incidents, make_officer, open_app, phone, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

PLACES = Path(__file__).resolve().parents[2] / "rules" / "tables" / "ershili-places.yaml"
CODE = "ESL-T-003"  # 集贸市场蔬菜摊位12号 (made up, like every place of the example file)


async def cli(*args: str) -> Result:
    """``dispatcher <args>`` as typed on the township's machine (the command runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def photograph(sheet_svg: str, code: str) -> bytes:
    """A PNG of one code of the sheet with its white margin, as a phone's camera would frame it."""
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1300, "height": 1000}, device_scale_factor=1)
        await page.set_content(
            "<body style='margin:0;background:#fff'>"
            + sheet_svg.split("?>", 1)[-1].replace('width="210mm"', 'width="1260"').replace('mm"', '"', 1)
            + "</body>"
        )
        box = await page.locator(f'g[data-code="{code}"]').bounding_box()
        assert box is not None
        margin = 24
        clip = {"x": box["x"] - margin, "y": box["y"] - margin, "width": box["width"] + 2 * margin}
        clip["height"] = box["height"] + 2 * margin
        return bytes(await page.screenshot(clip=clip, type="png"))


async def test_a_code_from_the_printed_sheet_opens_the_place_and_a_report_from_there_is_tied_to_it(
    database_url: str, tmp_path: Path
) -> None:
    loaded = await cli("places", "load", str(PLACES), "--database-url", database_url)
    assert loaded.exit_code == 0, loaded.output
    server = start_server(database_url, tmp_path)
    try:
        sheet = tmp_path / "codes.svg"
        printed = await cli(
            "places",
            "codes",
            "--format",
            "svg",
            "--out",
            str(sheet),
            "--base-url",
            server.base_url,
            "--from",
            str(PLACES),
        )
        assert printed.exit_code == 0, printed.output
        png = await photograph(sheet.read_text(encoding="utf-8"), CODE)

        token = await make_officer(server)
        async with server.client() as admin:
            earlier = {"report_id": "place-0", "category": "market.stall_encroachment", "zone": "market", "place": CODE}
            made = await admin.post("/api/v1/incidents", json={**earlier, "description": "蔬菜摊占用通道 <b>x</b>"})
            assert made.status_code == 201, made.text

        async with phone(server, token) as context:
            page = await open_app(context, server)
            await page.locator("#nav button[data-go=scan]").tap()
            await page.set_input_files("#scan-photo", [{"name": "code.png", "mimeType": "image/png", "buffer": png}])
            card = page.locator("#place-card")
            await expect(card.locator("h2")).to_have_text("集贸市场蔬菜摊位12号")
            assert page.url == f"{server.base_url}/field/place/{CODE}"
            await expect(card).to_contain_text("廿里集贸市场A区12号")
            contact = await card.locator("dd").nth(4).inner_text()
            assert "*" in contact  # a field officer sees the contact's phone masked
            await expect(page.locator("#view-place .list li")).to_contain_text("蔬菜摊占用通道 <b>x</b>")

            await page.locator("#report-here").tap()
            await expect(page.locator("#report-place")).to_contain_text(CODE)
            assert await page.locator("#report-form select[name=zone]").input_value() == "market"
            await page.fill("#report-form textarea[name=description]", "摊位雨棚倒塌")
            await page.locator("#report-form button[type=submit]").tap()
            await expect(page.locator("#view-tasks")).to_be_visible()
            await expect(page.locator("#outbox-badge")).to_be_hidden()
        tied = [i for i in await incidents(server) if i["description"] == "摊位雨棚倒塌"]
        assert len(tied) == 1 and tied[0]["place"] == CODE and tied[0]["zone"] == "market"
    finally:
        server.stop()


async def test_a_typed_code_and_an_address_opened_directly_show_the_place(database_url: str, tmp_path: Path) -> None:
    assert (await cli("places", "load", str(PLACES), "--database-url", database_url)).exit_code == 0
    server = start_server(database_url, tmp_path)
    try:
        token = await make_officer(server)
        async with phone(server, token) as context:
            page = await open_app(context, server, f"/field/place/{CODE}")
            await expect(page.locator("#place-card h2")).to_have_text("集贸市场蔬菜摊位12号")
            await expect(page.locator("#view-place .empty")).to_have_text("此处暂无事件")
            await page.locator("#nav button[data-go=scan]").tap()
            await page.fill("#scan-form input[name=code]", "ESL-S-001")
            await page.locator("#scan-form button").tap()
            await expect(page.locator("#place-card h2")).to_have_text("五岔口便民超市")
            await page.locator("#nav button[data-go=scan]").tap()
            await page.fill("#scan-form input[name=code]", "NO-SUCH-1")
            await page.locator("#scan-form button").tap()
            await expect(page.locator("#place-detail .error")).to_contain_text("NO-SUCH-1")
    finally:
        server.stop()
