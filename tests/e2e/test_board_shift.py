"""A duty officer's shift on the board, in a real headless Chromium against a real server process (issue 17):
alarms grouped per incident and stage and resolved by themselves, counters equal to what the lanes show, no
raw translation key in either language, times in the table's time zone with dates for far deadlines, and
team chips inside their cells at 1920x1080. One browser per module; each test gets its own server and page."""

from __future__ import annotations

import http.server
import io
import json
import re
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from dispatcher.settings import BUNDLED_TABLE
from tests.e2e.browser import chromium
from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

I18N = Path(__file__).resolve().parents[2] / "gateways" / "static" / "i18n"
ZH = json.loads((I18N / "zh-CN.json").read_text(encoding="utf-8"))
EN = json.loads((I18N / "en.json").read_text(encoding="utf-8"))
FIVE_WAY = {"category": "traffic.congestion", "zone": "five-way", "description": "集市日五岔口拥堵"}
FIVE_WAY_TEAMS = ("traffic-police", "police-station", "market-supervision", "law-enforcement", "market-town-office")
WALL = {"width": 1920, "height": 1080}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with chromium() as launched:
        yield launched


def _start(tmp_path: Path, env: dict[str, str] | None = None) -> ServerProcess:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shift.db'}"
    return ServerProcess(url, tmp_path / "server.log", env={**PLAIN, **(env or {})}).start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = _start(tmp_path)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def quick_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server whose five-way rule gives 2 s to acknowledge, so every team misses it during the test."""
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


async def open_board(
    browser: Any, server: ServerProcess, query: str = "", *, viewport: dict[str, int] = WALL, **options: Any
) -> Any:
    context = await browser.new_context(viewport=viewport, **options)
    await context.add_init_script(f"sessionStorage.setItem('board.token', {server.token!r});")
    page = await context.new_page()
    await page.goto(f"{server.base_url}/board{query}")
    await page.wait_for_selector("#connection[data-state=open]", timeout=10_000)
    await page.fill("#operator", "王芳")
    return page


async def report(http: Any, report_id: str, body: dict[str, Any]) -> int:
    answer = await http.post("/api/v1/incidents", json={**body, "report_id": report_id})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


async def counters_and_lanes(page: Any) -> dict[str, tuple[int, int]]:
    """Each counter of the top bar beside the number of rows its lane shows."""
    pairs = await page.evaluate(
        """() => {
          const shown = (sel) => Array.from(document.querySelectorAll(sel)).filter((r) => !r.hidden).length;
          const n = (id) => Number(document.getElementById(id).textContent);
          return [
            ['open', [n('open-count'), shown('#incidents .rows > .row')]],
            ['escalated', [n('escalated-count'), shown('#main-rows > .row.flagged')]],
            ['triage', [n('triage-count'), shown('#triage-rows > .row')]],
            ['admission', [n('admission-count'), shown('#admission-rows > .row')]],
          ];
        }"""
    )
    return {key: (int(counter), int(shown)) for key, (counter, shown) in pairs}


async def test_alarms_are_grouped_per_incident_and_stage_and_resolve_when_the_teams_acknowledge(
    browser: Any, quick_server: ServerProcess
) -> None:
    page = await open_board(browser, quick_server)
    async with quick_server.client() as http:
        first = await report(http, "flood-1", FIVE_WAY)
        # Five teams miss their 2 s acknowledgement: five alarms, one strip row with its count and teams.
        group = f'#alarm-list li[data-alarm-group="{first}:ack"][data-alarm-count="5"]'
        await page.wait_for_selector(group, timeout=30_000)
        assert await page.locator("#alarm-list li[data-alarm-group]").count() == 1
        text = await page.locator(group).inner_text()
        for team in ("交警中队", "派出所"):
            assert team in text
        assert "×5" in text
        assert (await counters_and_lanes(page))["escalated"] == (1, 1)

        # Three more incidents miss theirs: the strip shows three rows and says how many are behind them.
        for n in range(2, 5):
            await report(http, f"flood-{n}", FIVE_WAY)
        await page.wait_for_selector('#alarm-list li[data-alarm-group="4:ack"][data-alarm-count="5"]', timeout=30_000)
        await page.wait_for_selector("#alarm-list li[data-alarm-more='1']", timeout=5_000)
        assert await page.locator("#alarm-list li[data-alarm-group]").count() == 3
        assert ZH["alarm.more"].replace("{n}", "1") in await page.locator("#alarm-list .alarm-more").inner_text()
        assert await page.locator("#alarm-count").inner_text() == "4"
        assert (await counters_and_lanes(page))["escalated"] == (4, 4)

        # The newest incident's lead acknowledges late: its alarm resolves by itself, the others stay.
        last = 4
        row = f'#alarm-list li[data-alarm-group="{last}:ack"]'
        await http.post(f"/api/v1/incidents/{last}/assignments/traffic-police/acknowledge", json={})
        await page.wait_for_selector(f'{row}[data-alarm-count="4"]', timeout=5_000)
        assert "交警中队" not in await page.locator(row).inner_text()
        for team in FIVE_WAY_TEAMS[1:]:
            await http.post(f"/api/v1/incidents/{last}/assignments/{team}/acknowledge", json={})
        await page.wait_for_selector(row, state="detached", timeout=5_000)
        # The group behind the first rows comes forward.
        await page.wait_for_selector("#alarm-list .alarm-more", state="detached", timeout=5_000)
        assert await page.locator("#alarm-list li[data-alarm-group]").count() == 3
        timeline = (await http.get(f"/api/v1/incidents/{last}")).json()["timeline"]
        assert [e["type"] for e in timeline].count("AlarmsResolved") == 5
        assert "AlarmAcknowledged" not in [e["type"] for e in timeline]  # nobody had to
        # Its row stays marked (its promises were broken, its leader told) and the counter counts it.
        assert await page.locator(f'#main-rows [data-incident-id="{last}"]').get_attribute("data-flagged") == "true"
        assert (await counters_and_lanes(page))["escalated"] == (4, 4)

        # Acknowledging a row acknowledges every alarm of its group, on every board.
        await page.click(f'#alarm-list li[data-alarm-group="{first}:ack"] .alarm-ack')
        await page.wait_for_selector(
            f'#alarm-list li[data-alarm-group="{first}:ack"]', state="detached", timeout=10_000
        )
        timeline = (await http.get(f"/api/v1/incidents/{first}")).json()["timeline"]
        assert [e["type"] for e in timeline].count("AlarmAcknowledged") == 5
    await page.context.close()


async def test_every_counter_counts_what_its_lane_shows_also_when_filtered(browser: Any, server: ServerProcess) -> None:
    page = await open_board(browser, server)
    async with server.client() as http:
        await report(http, "c-1", FIVE_WAY)
        await report(http, "c-2", {"category": "labour.wage_arrears", "zone": "town-centre", "description": "欠薪"})
        await report(http, "c-3", {"zone": "market", "description": "你好，请问集市几点散场？"})
        await page.wait_for_selector('#incidents [data-incident-id="3"]', timeout=5_000)
    lanes = await counters_and_lanes(page)
    assert lanes["open"] == (3, 3) and lanes["triage"] == (1, 1)
    await page.select_option("#filter-module", "enforcement")
    await page.wait_for_function("document.getElementById('open-count').textContent === '1'", timeout=5_000)
    assert all(counter == shown for counter, shown in (await counters_and_lanes(page)).values())
    await page.context.close()


KEY_PREFIXES = sorted({key.split(".", 1)[0] for key in ZH if "." in key})
#: A translation key shown as it is (``kind.manual``, ``role.account.admin``): a known prefix, a dot, a name.
RAW_KEY = re.compile(r"\b(?:" + "|".join(map(re.escape, KEY_PREFIXES)) + r")\.[A-Za-z_][\w.-]*")
LATIN_WORD = re.compile(r"[A-Za-z]{3,}")


async def shown_text(page: Any) -> str:
    """Every text a person can see or hover on the page: the text, the tooltips, the placeholders, the title."""
    return str(
        await page.evaluate(
            """() => {
          const parts = [document.title, document.body.innerText];
          for (const node of document.querySelectorAll('[title], [placeholder], [aria-label]')) {
            if (node.closest('[hidden]')) continue;
            parts.push(node.getAttribute('title') || '', node.getAttribute('placeholder') || '');
          }
          return parts.join('\\n');
        }"""
        )
    )


async def _sign_in_through_the_form(browser: Any, server: ServerProcess, lang: str) -> Any:
    """A tab with no session signs in through the board's own form (the race between sign-in and labels)."""
    context = await browser.new_context(viewport=WALL)
    page = await context.new_page()
    await page.goto(f"{server.base_url}/board?lang={lang}")
    await page.wait_for_selector("#signin:not([hidden])", timeout=10_000)
    await page.fill("#signin-user", "admin")
    await page.fill("#signin-password", server.admin_password or "")
    await page.click("#signin-submit")
    await page.wait_for_selector("#connection[data-state=open]", timeout=10_000)
    await page.fill("#operator", "王芳")
    return page


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
async def test_no_raw_key_is_shown_after_signing_in_in_either_language(
    browser: Any, quick_server: ServerProcess, lang: str
) -> None:
    page = await _sign_in_through_the_form(browser, quick_server, lang)
    dictionary = ZH if lang == "zh-CN" else EN
    async with quick_server.client() as http:
        first = await report(http, "keys-1", FIVE_WAY)
        await report(http, "keys-2", {"zone": "market", "description": "你好，请问集市几点散场？"})
        await report(
            http, "keys-3", {"category": "environment.pollution", "zone": "town-centre", "description": "河道排污"}
        )
        # A manual escalation (kind "manual") and a missed acknowledgement give alarms of both stages.
        assert (await http.post(f"/api/v1/incidents/{first}/escalate", json={})).status_code == 200
        await page.wait_for_selector(f'#alarm-list li[data-alarm-group="{first}:ack"]', timeout=30_000)
        await page.wait_for_selector(f'#alarm-list li[data-alarm-group="{first}:manual"]', timeout=5_000)
    await page.wait_for_selector("#account:not(:empty)")
    assert dictionary["role.account.admin"] in await page.locator("#account").inner_text()
    # The detail panel with the rule's explanation open.
    await page.click(f'#incidents [data-incident-id="{first}"]')
    await page.wait_for_selector("#detail .d-timeline li", timeout=5_000)
    await page.click('#detail button[data-action="explain"]')
    await page.wait_for_selector("#detail .d-conditions li[data-condition]", timeout=5_000)
    text = await shown_text(page)
    assert RAW_KEY.findall(text) == []
    if lang == "zh-CN":
        conditions = await page.locator("#detail .d-conditions").inner_text()
        assert LATIN_WORD.findall(conditions) == []  # the explanation panel in Chinese
        assert "(party secretary)" not in text
        assert ZH["detail.precedence"].split(" ")[0] in text and ZH["detail.priority"] in text
    await page.context.close()


async def test_times_are_in_the_tables_zone_and_far_deadlines_show_their_date(
    browser: Any, server: ServerProcess
) -> None:
    # A wall screen whose browser runs on New York time still shows the township's (Asia/Shanghai) hours.
    page = await open_board(browser, server, timezone_id="America/New_York")
    wages = {"category": "labour.wage_arrears", "zone": "town-centre", "description": "拖欠工资三个月"}
    async with server.client() as http:
        incident = (await http.post("/api/v1/incidents", json={**wages, "report_id": "far-1"})).json()
        for assignment in incident["assignments"]:
            for action in ("acknowledge", "on-scene"):
                url = f"/api/v1/incidents/{incident['id']}/assignments/{assignment['team']}/{action}"
                assert (await http.post(url, json={})).status_code == 200, url
        resolve = next(d["due_at"] for a in incident["assignments"] for d in a["deadlines"] if d["kind"] == "resolve")
    due = datetime.fromisoformat(resolve).astimezone(ZoneInfo("Asia/Shanghai"))
    # Only the resolution (7 days away) is left: the row gives its date, in the township's zone.
    date = page.locator(f'#main-rows [data-incident-id="{incident["id"]}"] .due-date')
    await date.wait_for(timeout=5_000)
    assert await date.get_attribute("data-due-date") == due.strftime("%Y-%m-%d")
    assert await date.inner_text() == due.strftime("%Y-%m-%d %H:%M")
    # The top clock: the hour in Shanghai, whatever the browser's zone (a second either side of reading it).
    before = datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(seconds=2)
    shown = await page.locator("#clock").inner_text()
    after = datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(seconds=2)
    assert shown[:2] in {before.strftime("%H"), after.strftime("%H")}
    zone = await page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    assert zone == "America/New_York"  # the browser really is elsewhere
    await page.context.close()


async def test_county_matters_without_forwarding_say_not_configured_and_raise_it_once(
    browser: Any, server: ServerProcess
) -> None:
    river = {"category": "environment.pollution", "zone": "town-centre", "description": "河道排污，水发黑发臭"}
    page = await open_board(browser, server)  # no DISPATCHER_COUNTY_WEBHOOK_URL
    async with server.client() as http:
        first = await report(http, "river-1", river)
        chip = page.locator(f'#main-rows [data-incident-id="{first}"] .chip.handover')
        await page.wait_for_selector(f'#main-rows [data-incident-id="{first}"] .chip[data-delivery="unconfigured"]')
        assert ZH["delivery.unconfigured"] in await chip.inner_text()
        assert "0" not in await chip.locator(".chip-meta").inner_text()  # not "forwarding, 0 tries"
        notice = page.locator("#alarm-list li[data-notice=county]")
        await notice.wait_for(timeout=5_000)
        assert ZH["delivery.notice"].replace("{n}", "1") in await notice.inner_text()

        # Dismissed once, it stays away, after a reload too ...
        await notice.locator(".notice-ok").click()
        await notice.wait_for(state="detached", timeout=5_000)
        await page.reload()
        await page.wait_for_selector(f'#main-rows [data-incident-id="{first}"] .chip[data-delivery="unconfigured"]')
        assert await page.locator("#alarm-list li[data-notice=county]").count() == 0
        assert await page.locator("#alarms").is_hidden()
        # ... until another county matter arrives.
        await report(http, "river-2", {**river, "zone": "market"})
        await page.locator("#alarm-list li[data-notice=county]").wait_for(timeout=5_000)
        assert ZH["delivery.notice"].replace("{n}", "2") in await page.locator("#alarm-list").inner_text()
    await page.context.close()


async def test_zooming_the_map_spreads_a_cluster_into_its_markers(browser: Any, server: ServerProcess) -> None:
    page = await open_board(browser, server)
    async with server.client() as http:
        ids = [await report(http, f"map-{n}", FIVE_WAY) for n in range(6)]  # zone only: placed near its centre
    wanted = " ".join(map(str, ids))
    cluster = page.locator(f'#map-clusters [data-cluster-ids="{wanted}"]')
    await cluster.wait_for(timeout=5_000)  # the whole township in view: one cluster of six
    assert await cluster.get_attribute("data-cluster-size") == "6"
    assert await page.locator("#map-markers .marker.clustered").count() == 6
    # Clicking a cluster zooms in on it; a few clicks part it into its six markers.
    for _ in range(4):
        if await page.locator("#map-clusters [data-cluster-size]").count() == 0:
            break
        zoom = await page.locator("#map").get_attribute("data-zoom")
        await page.locator("#map-clusters [data-cluster-size]").first.click()
        await page.wait_for_function(f"document.getElementById('map').dataset.zoom !== '{zoom}'")
        await page.wait_for_function("!document.querySelector('#map-clusters').dataset.pending")
    assert await page.locator("#map-clusters [data-cluster-size]").count() == 0
    assert await page.locator("#map-markers .marker:not(.clustered)").count() == 6
    # Each marker is its own again: clicking one opens its incident.
    await page.locator(f'#map-markers [data-marker-id="{ids[2]}"]').click()
    await page.wait_for_selector(f'#detail[data-incident="{ids[2]}"]', timeout=5_000)
    # Back to the whole township (the panel closed): one cluster again.
    await page.click("#detail-close")
    await page.wait_for_selector("#detail", state="hidden", timeout=5_000)
    await page.click("#map-reset")
    await cluster.wait_for(timeout=5_000)
    await page.context.close()


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
async def test_zone_names_on_the_map_do_not_cover_each_other_at_1920x1080(
    browser: Any, server: ServerProcess, lang: str
) -> None:
    # The market and the five-way junction are 170 m apart: at the whole township's view their names, each
    # above its circle, were printed over each other.
    page = await open_board(browser, server, f"?lang={lang}")
    await page.wait_for_function("document.querySelectorAll('#map-zones text').length >= 3", timeout=5_000)
    boxes = await page.evaluate(
        """() => [...document.querySelectorAll('#map-zones text')].map((t) => {
      const r = t.getBoundingClientRect();
      return [t.textContent, r.left, r.top, r.right, r.bottom];
    })"""
    )
    covered = [
        (a[0], b[0])
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]
    ]
    assert covered == [], boxes
    await page.context.close()


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
async def test_team_chips_stay_inside_their_cells_at_1920x1080(browser: Any, server: ServerProcess, lang: str) -> None:
    page = await open_board(browser, server, f"?lang={lang}")
    async with server.client() as http:
        await report(http, "chips-1", FIVE_WAY)
        await report(http, "chips-2", {"category": "labour.wage_arrears", "zone": "town-centre", "description": "欠薪"})
        await report(
            http, "chips-3", {"category": "environment.pollution", "zone": "town-centre", "description": "排污"}
        )
        await page.wait_for_selector('#main-rows [data-incident-id="3"] .chip', timeout=5_000)
        # "Acknowledged", the longest one-word status, beside the others.
        ack = await http.post("/api/v1/incidents/1/assignments/traffic-police/acknowledge", json={"actor": "交警"})
        assert ack.status_code == 200, ack.text
        await page.wait_for_selector('#main-rows [data-incident-id="1"][data-status="acknowledged"]', timeout=5_000)
    outside = await page.evaluate(
        """() => {
      const out = [];
      for (const chip of document.querySelectorAll('#main-rows .chip')) {
        const cell = chip.closest('.cell').getBoundingClientRect();
        const box = chip.getBoundingClientRect();
        if (box.left < cell.left - 0.5 || box.right > cell.right + 0.5) out.push(chip.textContent);
        for (const part of chip.children) {
          const p = part.getBoundingClientRect();
          if (p.right > box.right + 0.5) out.push(`${part.textContent} past its chip`);
        }
      }
      for (const status of document.querySelectorAll('#main-rows .status')) {
        const cell = status.closest('.cell').getBoundingClientRect();
        if (status.getBoundingClientRect().right > cell.right + 0.5) out.push(status.textContent);
        if (status.scrollWidth > status.clientWidth + 0.5) out.push(`${status.textContent} cut short`);
      }
      // A one-word English status or module is not broken inside the word (Chinese wraps between any two
      // characters, as it should).
      for (const cell of document.querySelectorAll('#main-rows .c-status, #main-rows .c-module')) {
        const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          const word = node.textContent.trim();
          if (!/^[A-Za-z-]+$/.test(word)) continue;
          const range = document.createRange();
          range.selectNodeContents(node);
          if (range.getClientRects().length > 1) out.push(`${word} broken`);
        }
      }
      return out;
    }"""
    )
    assert await page.locator("#main-rows .chip").count() >= 9
    assert outside == []
    await page.context.close()


class _TileServer:
    """A township's own tile server on loopback: answers every tile with a small PNG and records the paths."""

    def __init__(self) -> None:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (256, 256), (40, 60, 80)).save(buffer, format="PNG")
        png = buffer.getvalue()
        asked: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                asked.append(self.path)
                self.send_response(200)
                self.send_header("content-type", "image/png")
                self.send_header("content-length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)

            def log_message(self, *args: Any) -> None:
                pass

        self.asked = asked
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.template = f"http://127.0.0.1:{self.httpd.server_address[1]}/tiles/{{z}}/{{x}}/{{y}}.png"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


async def test_the_map_draws_the_townships_own_tiles_only_when_set(
    browser: Any, server: ServerProcess, tmp_path: Path
) -> None:
    # By default: no tile layer, nothing fetched from anywhere but the dispatcher.
    page = await open_board(browser, server)
    await page.wait_for_selector("#map-zones .zone", timeout=5_000)
    assert await page.locator("#map-tiles image").count() == 0
    await page.context.close()

    tiles = _TileServer()
    (tmp_path / "tiled").mkdir()
    tiled = _start(tmp_path / "tiled", env={"DISPATCHER_MAP_TILES_URL": tiles.template})
    try:
        page = await open_board(browser, tiled)
        await page.wait_for_selector("#map-tiles image", timeout=5_000)
        hrefs = await page.eval_on_selector_all(
            "#map-tiles image", "images => images.map((i) => i.getAttribute('href'))"
        )
        assert all(re.fullmatch(r"http://127\.0\.0\.1:\d+/tiles/\d+/\d+/\d+\.png", h) for h in hrefs)
        zoom_before = {h.split("/")[-3] for h in hrefs}
        # Zooming in asks for tiles of a higher zoom level.
        await page.click("#map-zoom-in")
        await page.click("#map-zoom-in")
        await page.wait_for_function(
            "z => Array.from(document.querySelectorAll('#map-tiles image')).every("
            "(i) => Number(i.dataset.tile.split('/')[0]) > z)",
            arg=max(int(z) for z in zoom_before),
            timeout=5_000,
        )
        assert any(path.startswith("/tiles/") for path in tiles.asked)
        await page.context.close()
    finally:
        tiled.stop()
        tiles.close()


async def test_the_side_lanes_show_their_rows_at_1920x1080(browser: Any, server: ServerProcess) -> None:
    page = await open_board(browser, server)
    async with server.client() as http:
        for n in range(3):
            await report(http, f"side-{n}", {"zone": "market", "description": f"你好，请问集市几点散场？第{n}次"})
        await page.wait_for_selector('#triage-rows [data-incident-id="3"]', timeout=5_000)
    cut = await page.evaluate(
        """() => {
      const lane = document.querySelector('#triage-rows').closest('.scroll').getBoundingClientRect();
      return Array.from(document.querySelectorAll('#triage-rows > .row'))
        .filter((row) => { const r = row.getBoundingClientRect(); return r.top < lane.top || r.bottom > lane.bottom + 0.5; })
        .map((row) => row.dataset.incidentId);
    }"""
    )
    assert await page.locator("#triage-rows > .row").count() == 3
    assert cut == []  # every row whole in sight, none behind the lane's edge
    await page.context.close()
