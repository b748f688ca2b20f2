"""Take ``docs/board.png`` and ``docs/board-detail.png``: the board while the five-way intersection drill runs.

    .venv/bin/python docs/screenshot.py                  # about 3.5 minutes; docs/board.png, docs/board-detail.png
    .venv/bin/python docs/screenshot.py --out /tmp/b.png --wait 20   # quicker, without a missed deadline
    .venv/bin/python docs/screenshot.py --out docs/board-3840x2160.png --size 3840x2160   # a 4K wall

It starts ``dispatcher serve`` on a fresh SQLite database (bundled rule table, free loopback port), sends a
few ordinary reports (a five-way accident whose lead team never acknowledges, a wage dispute, a pollution
report handed over to the county, one the catalogue does not know), plays
``simulations/scenarios/five_way_market_day.yaml`` with ``dispatcher drill`` (20 virtual seconds per second),
waits ``--wait`` seconds (by default long enough for the 3-minute acknowledgement to be missed, so an
alarm shows) and photographs the page at 1600x900 (``--size``) in Debian's Chromium; then opens the
escalated incident's detail panel and photographs it again (``-detail`` added to the file name). Chinese
labels need a CJK font (Debian ``fonts-noto-cjk``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.e2e.server import ServerProcess  # noqa: E402

SCENARIO = ROOT / "simulations" / "scenarios" / "five_way_market_day.yaml"
REPORTS = [
    {
        "report_id": "shot-accident",
        "category": "traffic.accident",
        "location": {"lat": 28.84812, "lon": 118.91185},
        "severity": 3,
        "reporter": "巡逻民警 张伟",
        "reporter_kind": "officer",
        "description": "五岔口东侧两车剐蹭，占用两条车道",
    },
    {
        "report_id": "shot-wages",
        "category": "labour.wage_arrears",
        "zone": "town-centre",
        "location": {"lat": 28.8452, "lon": 118.9062},
        "reporter_kind": "citizen",
        "description": "某工地拖欠农民工工资三个月，二十余人到镇政府反映",
    },
    {
        "report_id": "shot-river",
        "category": "environment.pollution",
        "zone": "town-centre",
        "description": "河道排污，水发黑发臭",
    },
    {"report_id": "shot-triage", "zone": "market", "description": "你好，请问集市几点散场？"},
]


async def take(out: Path, wait_s: float, chromium: str, size: tuple[int, int] = (1600, 900)) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="board_shot_") as tmp:
        server = ServerProcess(f"sqlite+aiosqlite:///{tmp}/shot.db", Path(tmp) / "server.log").start()
        drill = None
        try:
            async with server.client() as http:
                for body in REPORTS:
                    (await http.post("/api/v1/incidents", json=body)).raise_for_status()
                # The supporting teams answer; the lead (traffic police) does not, and misses its 3 minutes.
                for team in ("police-station", "market-supervision", "law-enforcement"):
                    await http.post(f"/api/v1/incidents/1/assignments/{team}/acknowledge", json={"actor": team})
                await http.post("/api/v1/incidents/1/assignments/police-station/on-scene", json={"actor": "民警"})
                await http.post(
                    "/api/v1/incidents/1/notes", json={"text": "已通知交警中队，等待回复", "author": "operator:王芳"}
                )
                await http.post(
                    "/api/v1/incidents/2/assignments/labour-office/acknowledge", json={"actor": "劳动保障站"}
                )
                drill = await asyncio.create_subprocess_exec(
                    *(sys.executable, "-m", "server", "drill", str(SCENARIO), "--url", server.base_url),
                    *("--token", server.token),
                    *("--speed", "20", "--max-seconds", str(wait_s + 30)),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
                    )
                    try:
                        context = await browser.new_context(viewport={"width": size[0], "height": size[1]})
                        # The board keeps the token it signed in with for the tab: start signed in as admin.
                        await context.add_init_script(f"sessionStorage.setItem('board.token', {server.token!r});")
                        page = await context.new_page()
                        await page.goto(f"{server.base_url}/board")
                        await page.wait_for_selector("#connection[data-state=open]", timeout=10_000)
                        await page.fill("#operator", "王芳")
                        await page.wait_for_timeout(int(wait_s * 1000))
                        await page.screenshot(path=str(out))
                        await page.click('#incidents [data-incident-id="1"]')
                        await page.wait_for_selector("#detail .d-timeline li", timeout=5_000)
                        await page.wait_for_timeout(800)
                        await page.screenshot(path=str(out.with_name(f"{out.stem}-detail{out.suffix}")))
                    finally:
                        await browser.close()
        finally:
            if drill is not None and drill.returncode is None:
                drill.terminate()
                await asyncio.wait_for(drill.wait(), 10)
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "board.png")
    parser.add_argument("--wait", type=float, default=190.0, help="seconds of drill before the picture (max 600)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--size", default="1600x900", help="viewport WIDTHxHEIGHT, e.g. 1920x1080 or 3840x2160")
    args = parser.parse_args()
    width, _, height = args.size.partition("x")
    size = (int(width), int(height))
    asyncio.run(take(args.out, min(max(args.wait, 1.0), 600.0), args.chromium, size))
    print(args.out, args.out.with_name(f"{args.out.stem}-detail{args.out.suffix}"))


if __name__ == "__main__":
    main()
