"""Take ``docs/reports.png``: /reports showing a month of the synthetic township-year, as a leader reads it.

    .venv/bin/python docs/reports_screenshot.py                   # docs/reports.png, 2026-11, zh-CN
    .venv/bin/python docs/reports_screenshot.py --out /tmp/r.png --size 390x844 --lang en --full

It fills a fresh SQLite database with ``--incidents`` incidents over 2026 by ``benchmarks/reports.py``'s own
generator, then gives them the bundled rule table's ids (the generator's team, zone, rule and officer ids are
its own, so the page would show them as ids, as it does for any unit the rule table no longer names) and
categories from its catalogue; starts ``dispatcher serve`` on it (bundled rule table and roster, loopback
port), opens ``/reports?period=…`` in Debian's Chromium signed in as the administrator and photographs it.
Chinese labels need a CJK font (Debian ``fonts-noto-cjk``). Bounded: one fill, one page, 60 s per wait.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from tests.e2e.server import ServerProcess  # noqa: E402

#: The generator's ids → the bundled table's (rules/tables/ershili.yaml) and roster's (ershili-roster.yaml).
TEAMS = {"grid-team": "grid-workers", "economy-office": "economic-office", "town-management": "market-town-office"}
ZONES = {
    "market-square": "market",
    "north-road": "town-centre",
    "east-village": "town-centre",
    "west-village": "town-centre",
    "river-bank": "town-centre",
    "station": "town-centre",
}
RULES = {
    "r-jam": ("five-way-joint-enforcement", "traffic.congestion"),
    "r-wage": ("labour-one-stop", "labour.wage_arrears"),
    "r-grid": ("public-order", "public_order.dispute"),
    "r-stall": ("street-vending", "market.stall_encroachment"),
    "r-firm": ("consumer-and-commerce", "commerce.consumer_rights"),
    "r-county": ("environment-to-county", "environment.pollution"),
}
OFFICER_PREFIX = {
    "traffic-police": ("tp", 6),
    "labour-office": ("lo", 3),
    "law-enforcement": ("le", 5),
    "grid-workers": ("gw", 6),
    "economic-office": ("eo", 2),
}


async def fill(url: str, incidents: int) -> None:
    generate = importlib.import_module("reports").fill  # benchmarks/reports.py (on the path above)

    from dispatcher.sql_store import build_engine

    await generate(url, incidents, 16)
    engine = build_engine(url, durable=False)
    try:
        async with engine.begin() as conn:
            for old, new in TEAMS.items():
                await conn.execute(
                    sa.text("UPDATE assignment SET team = :new WHERE team = :old"), {"old": old, "new": new}
                )
                # the returns' events name the team that sent the incident back (team points count them)
                await conn.execute(
                    sa.text(
                        "UPDATE event SET payload = replace(payload, :old, :new) WHERE type = 'AssignmentReturned'"
                    ),
                    {"old": f'"team": "{old}"', "new": f'"team": "{new}"'},
                )
            for old, new in ZONES.items():
                await conn.execute(
                    sa.text("UPDATE incident SET zone = :new, zones = :new WHERE zone = :old"), {"old": old, "new": new}
                )
            for old, (rule, category) in RULES.items():
                await conn.execute(
                    sa.text("UPDATE incident SET rule_id = :rule, category = :category WHERE rule_id = :old"),
                    {"old": old, "rule": rule, "category": category},
                )
            await conn.execute(sa.text("UPDATE incident SET category = 'traffic.accident' WHERE id % 17 = 0"))
            # The generator's officers are "<team>-NN" (1–12): the roster's are "<prefix>-NN", fewer per team.
            for team, (prefix, count) in OFFICER_PREFIX.items():
                for n in range(1, 13):
                    await conn.execute(
                        sa.text("UPDATE assignment SET officer = :new WHERE officer = :old"),
                        {"old": f"{old_team(team)}-{n:02d}", "new": f"{prefix}-{(n - 1) % count + 1:02d}"},
                    )
    finally:
        await engine.dispose()


def old_team(team: str) -> str:
    return next((old for old, new in TEAMS.items() if new == team), team)


async def take(args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    width, _, height = args.size.partition("x")
    with tempfile.TemporaryDirectory(prefix="reports_shot_") as tmp:
        if args.database is not None:
            url = f"sqlite+aiosqlite:///{args.database}"
        else:
            url = f"sqlite+aiosqlite:///{tmp}/shot.db"
            await fill(url, args.incidents)
        server = ServerProcess(url, Path(tmp) / "server.log").start(timeout_s=120)
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=args.chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                try:
                    context = await browser.new_context(viewport={"width": int(width), "height": int(height)})
                    await context.add_init_script(f"sessionStorage.setItem('board.token', {server.token!r});")
                    page = await context.new_page()
                    lang = "&lang=en" if args.lang == "en" else ""
                    await page.goto(f"{server.base_url}/reports?period={args.period}{lang}")
                    await page.wait_for_selector("#document table[data-table='组团排名']", timeout=60_000)
                    await page.wait_for_selector("#assessment:not([hidden])", timeout=60_000)
                    await page.screenshot(path=str(args.out), full_page=args.full)
                finally:
                    await browser.close()
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reports.png")
    parser.add_argument("--incidents", type=int, default=20_000, help="over 2026 (at most 100,000)")
    parser.add_argument("--period", default="2026-11")
    parser.add_argument("--lang", choices=["zh-CN", "en"], default="zh-CN")
    parser.add_argument("--size", default="1200x1000", help="viewport WIDTHxHEIGHT, e.g. 1920x1080 or 390x844")
    parser.add_argument("--full", action="store_true", help="the whole page, not the viewport")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--database", type=Path, help="a SQLite file filled by an earlier run (--keep)")
    parser.add_argument("--keep", type=Path, help="only fill this SQLite file, for later runs, and stop")
    args = parser.parse_args()
    args.incidents = min(max(args.incidents, 100), 100_000)
    if args.keep is not None:
        asyncio.run(fill(f"sqlite+aiosqlite:///{args.keep}", args.incidents))
        print(args.keep)
        return
    asyncio.run(take(args))
    print(args.out)


if __name__ == "__main__":
    main()
