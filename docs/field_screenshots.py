"""Take the field app's screenshots for docs/field.md: every screen in zh-CN on a 390x844 phone.

    .venv/bin/python docs/field_screenshots.py              # docs/field-*.png, about a minute

It starts ``dispatcher serve`` on a fresh SQLite database (bundled rule table and roster, the example places of
``rules/tables/ershili-places.yaml``, free loopback port), makes a field officer (tp-01) with three tasks, and
photographs in Debian's Chromium with a phone profile: sign-in, my tasks, a task, the report form as a
description is typed, the scan screen, a place, and "me" with an item waiting to send (taken offline).
Chinese labels need a CJK font (Debian ``fonts-noto-cjk``).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from typer.testing import CliRunner  # noqa: E402

from server.cli import app  # noqa: E402
from tests.e2e.phone import ACCOUNT, PASSWORD, dispatch_task, make_officer, open_app, phone, start_server  # noqa: E402

OUT = ROOT / "docs"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/shots.db"
        places = ROOT / "rules" / "tables" / "ershili-places.yaml"
        loaded = CliRunner().invoke(app, ["places", "load", str(places), "--database-url", url])  # its own loop
        if loaded.exit_code != 0:
            raise SystemExit(loaded.output)
        asyncio.run(shoot(url, Path(tmp)))


async def shoot(url: str, tmp: Path) -> None:
    server = start_server(url, tmp)
    try:
        await make_officer(server)
        first = await dispatch_task(server, "shot-1", "五岔口东侧两车剐蹭，占用两条车道")
        await dispatch_task(server, "shot-2", "集市日五岔口拥堵，行人与车辆混行")
        await dispatch_task(server, "shot-3", "路口信号灯不亮")
        async with server.client() as admin:
            stall = {"report_id": "shot-4", "category": "market.stall_encroachment", "zone": "market"}
            await admin.post("/api/v1/incidents", json={**stall, "description": "蔬菜摊占用通道", "place": "ESL-T-003"})
            await admin.post(f"/api/v1/incidents/{first}/assignments/traffic-police/acknowledge")
        async with phone(server) as context:
            page = await open_app(context, server)
            await page.fill("#signin-form input[name=username]", ACCOUNT)
            await page.screenshot(path=OUT / "field-signin.png")
            await page.fill("#signin-form input[name=password]", PASSWORD)
            await page.locator("#signin-form button[type=submit]").tap()
            await page.locator("#task-list .task").nth(2).wait_for()
            await page.screenshot(path=OUT / "field-tasks.png")
            await page.locator(f'#task-list .task[data-id="{first}"]').tap()
            await page.locator("#task-detail [data-action=en-route]").wait_for()
            await page.screenshot(path=OUT / "field-task.png")
            await page.locator("#nav button[data-go=report]").tap()
            await page.fill("#report-form textarea[name=description]", "五岔口路口拥堵，有车辆违停")
            await page.locator("#report-guess button").first.wait_for()
            await page.locator("#report-gps").tap()
            await page.locator("#report-position:has-text('±')").wait_for()
            await page.screenshot(path=OUT / "field-report.png")
            await page.locator("#nav button[data-go=scan]").tap()
            await page.screenshot(path=OUT / "field-scan.png")
            await page.fill("#scan-form input[name=code]", "ESL-T-003")
            await page.locator("#scan-form button").tap()
            await page.locator("#place-card h2").wait_for()
            await page.locator("#view-place .list li").first.wait_for()
            await page.screenshot(path=OUT / "field-place.png")
            await context.set_offline(True)
            await page.locator("#nav button[data-go=me]").tap()
            await page.locator("#status-available").tap()
            await page.locator("#outbox-list li").first.wait_for()
            await page.screenshot(path=OUT / "field-me.png")
            await context.set_offline(False)
            await page.close()
        print("wrote", ", ".join(sorted(p.name for p in OUT.glob("field-*.png"))))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
