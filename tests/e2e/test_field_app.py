"""The field officer's app (/field) on a phone-sized Chromium against a real server: signing in, tasks, steps,
the outbox's guarantees (one step per double tap, a refusal shown), and data shown as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.e2e.phone import (
    ACCOUNT,
    PASSWORD,
    dispatch_task,
    events_of,
    make_officer,
    moves,
    open_app,
    phone,
    photo_file,
    start_server,
)


def jpeg_bytes(name: str) -> bytes:
    return bytes(photo_file(name)["buffer"])


pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


async def test_sign_in_survives_a_restart_of_the_browser_and_a_revoked_session_asks_again(
    database_url: str, tmp_path: Path
) -> None:
    server = start_server(database_url, tmp_path)
    try:
        await make_officer(server)
        await dispatch_task(server, "sign-1", "五岔口早高峰拥堵")
        async with phone(server) as context:
            page = await open_app(context, server)
            await expect(page.locator("#view-signin")).to_be_visible()
            await page.fill("#signin-form input[name=username]", ACCOUNT)
            await page.fill("#signin-form input[name=password]", PASSWORD)
            await page.locator("#signin-form button[type=submit]").tap()
            await expect(page.locator("#task-list .task")).to_have_count(1)
            await expect(page.locator("#task-list .task .desc")).to_have_text("五岔口早高峰拥堵")
            # The running deadline counts down (acknowledge within 3 minutes).
            await expect(page.locator("#task-list .due")).to_contain_text("接单剩余")
            await page.close()

            # Closing the app and opening it again: still signed in (the token is kept on the phone).
            again = await open_app(context, server)
            await expect(again.locator("#task-list .task")).to_have_count(1)
            assert await again.locator("#view-signin").is_hidden()

            # An administrator revokes the lost phone's session: the app asks for the password again (told at once
            # by its live feed closing with 4401; a request would be refused with 401 just the same).
            async with server.client() as admin:
                tokens = (await admin.get(f"/api/v1/accounts/{ACCOUNT}/tokens")).json()["data"]
                for token in tokens:
                    assert (await admin.delete(f"/api/v1/tokens/{token['id']}")).status_code == 204
            await expect(again.locator("#view-signin")).to_be_visible()
            await expect(again.locator("#signin-why")).to_contain_text("请重新输入密码")
            assert await again.locator("#signin-form input[name=username]").input_value() == ACCOUNT
            assert again.errors == []
    finally:
        server.stop()


async def test_one_tap_per_step_from_acknowledge_to_resolved_with_a_note_and_a_photo(
    database_url: str, tmp_path: Path
) -> None:
    server = start_server(database_url, tmp_path)
    try:
        token = await make_officer(server)
        incident = await dispatch_task(server, "steps-1", "五岔口两车剐蹭堵路")
        async with phone(server, token) as context:
            page = await open_app(context, server)
            await page.locator(f'#task-list .task[data-id="{incident}"]').tap()
            await expect(page.locator("#view-task")).to_be_visible()
            for action, state in (("acknowledge", "已接单"), ("en-route", "已出发"), ("on-scene", "已到场")):
                await page.locator(f"#task-detail [data-action={action}]").tap()
                await expect(page.locator("#task-state")).to_have_text(state)
            await page.fill("#resolve-form textarea[name=note]", "已疏导，两车移至路边")
            await page.set_input_files("#resolve-form input[type=file]", [photo_file("after.jpg")])
            await expect(page.locator("#resolve-form .thumbs img")).to_have_count(1)
            await page.locator("#resolve-form [data-action=resolve]").tap()
            await expect(page.locator("#task-state")).to_have_text("已办结")
            await expect(page.locator("#outbox-badge")).to_be_hidden()
            timeline = await events_of(server, incident)
            assert moves(timeline) == ["acknowledged", "en_route", "on_scene", "resolved"]
            resolved = [e["data"] for e in timeline if e["type"] == "UnitMoved" and e["data"]["to_state"] == "resolved"]
            assert len(resolved[0]["photos"]) == 1
            async with server.client() as admin:
                photo = await admin.get(f"/api/v1/media/{resolved[0]['photos'][0]}")
                assert photo.status_code == 200 and photo.content == jpeg_bytes("after.jpg")
            assert "已疏导，两车移至路边" in str(timeline)
            assert page.errors == []
    finally:
        server.stop()


async def test_a_double_tap_sends_one_step(database_url: str, tmp_path: Path) -> None:
    server = start_server(database_url, tmp_path)
    try:
        token = await make_officer(server)
        incident = await dispatch_task(server, "double-1", "五岔口拥堵")
        async with phone(server, token) as context:
            page = await open_app(context, server)
            await page.locator(f'#task-list .task[data-id="{incident}"]').tap()
            button = page.locator("#task-detail [data-action=acknowledge]")
            box = await button.bounding_box()
            assert box is not None
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            # Two taps on the same spot, the second not waiting for anything (a thumb's double tap).
            await page.touchscreen.tap(x, y)
            await page.touchscreen.tap(x, y)
            # And twice more from the page itself in one turn, as a bouncing button would fire.
            await page.evaluate(
                "() => { const b = document.querySelector('#task-detail [data-action=acknowledge]');"
                " if (b) { b.disabled = false; b.click(); b.disabled = false; b.click(); } }"
            )
            await expect(page.locator("#task-state")).to_have_text("已接单")
            await expect(page.locator("#outbox-badge")).to_be_hidden()
            await expect(page.locator("#refused")).to_be_hidden()
            assert moves(await events_of(server, incident)) == ["acknowledged"]
    finally:
        server.stop()


async def test_a_step_refused_on_return_is_shown_with_its_reason(database_url: str, tmp_path: Path) -> None:
    server = start_server(database_url, tmp_path)
    try:
        token = await make_officer(server)
        incident = await dispatch_task(server, "refused-1", "五岔口拥堵")
        async with phone(server, token) as context:
            page = await open_app(context, server)
            await page.locator(f'#task-list .task[data-id="{incident}"]').tap()
            await context.set_offline(True)
            await expect(page.locator("#net")).to_have_text("离线")
            await page.locator("#task-detail [data-action=acknowledge]").tap()
            await expect(page.locator("#outbox-badge")).to_have_text("待发送 1")
            await expect(page.locator("#task-pending")).to_have_text("待发送 1 条")

            # Meanwhile the command room gives the traffic police's part to the grid workers.
            async with server.client() as admin:
                moved = await admin.post(
                    f"/api/v1/incidents/{incident}/assignments/traffic-police/reassign",
                    json={"to_team": "grid-workers"},
                )
                assert moved.status_code == 200, moved.text

            await context.set_offline(False)
            refused = page.locator("#refused .item")
            await expect(refused).to_have_count(1)
            await expect(refused.locator(".reason")).to_contain_text("409")
            await expect(page.locator("#outbox-badge")).to_be_hidden()
            # Kept until the officer has read it.
            await page.locator("#nav button[data-go=me]").tap()
            await expect(page.locator('#outbox-list li[data-state="refused"]')).to_have_count(1)
            await refused.locator("button").tap()
            await expect(page.locator("#refused")).to_be_hidden()
            assert moves(await events_of(server, incident)) == []
    finally:
        server.stop()


async def test_a_hostile_description_and_note_stay_text(database_url: str, tmp_path: Path) -> None:
    server = start_server(database_url, tmp_path)
    hostile = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>堵'
    try:
        token = await make_officer(server)
        incident = await dispatch_task(server, "xss-1", hostile)
        async with server.client() as admin:
            noted = await admin.post(f"/api/v1/incidents/{incident}/notes", json={"text": hostile})
            assert noted.status_code == 201, noted.text
        async with phone(server, token) as context:
            page = await open_app(context, server)
            card = page.locator(f'#task-list .task[data-id="{incident}"]')
            await expect(card.locator(".desc")).to_have_text(hostile)
            await card.tap()
            await expect(page.locator("#task-detail h2.desc")).to_have_text(hostile)
            await expect(page.locator("#task-detail .note-text")).to_have_text(hostile)
            assert await page.locator("main img, main script").count() == 0
            assert await page.evaluate("() => window.__xss") is None
    finally:
        server.stop()


async def test_a_dispatched_task_arrives_live_with_sound_and_vibration_and_the_feed_resumes_by_seq(
    database_url: str, tmp_path: Path
) -> None:
    server = start_server(database_url, tmp_path)
    try:
        token = await make_officer(server)
        async with phone(server, token) as context:
            # Record what the app asks of the phone: a vibration pattern, a tone.
            await context.add_init_script(
                "window.__vibrated = []; navigator.vibrate = (p) => { window.__vibrated.push(p); return true; };"
                "window.__tones = 0; const start = OscillatorNode.prototype.start;"
                "OscillatorNode.prototype.start = function (...a) { window.__tones += 1; return start.apply(this, a); };"
            )
            page = await open_app(context, server)
            await expect(page.locator("#tasks-empty")).to_be_visible()
            await page.wait_for_function("() => socket && socket.readyState === WebSocket.OPEN")
            first = await dispatch_task(server, "live-1", "五岔口突发拥堵")
            await expect(page.locator(f'#task-list .task[data-id="{first}"]')).to_be_visible()
            await expect(page.locator("#toast")).to_have_text("有新任务")
            assert await page.evaluate("() => window.__vibrated") == [[200, 100, 200]]
            assert await page.evaluate("() => window.__tones") == 1
            seen = await page.evaluate("() => state.lastSeq")
            assert seen > 0

            # The feed drops (the phone's socket is cut); what happens meanwhile arrives on the resumed feed.
            await page.evaluate(
                "() => { socket.onclose = null; socket.close(); socket = null; clearInterval(pollTimer); }"
            )
            second = await dispatch_task(server, "live-2", "市场口车辆乱停")
            await page.evaluate("() => connect()")
            await page.wait_for_function(f"() => state.lastSeq > {seen}")
            await expect(page.locator(f'#task-list .task[data-id="{second}"]')).to_be_visible()
            await expect(page.locator("#task-list .task")).to_have_count(2)
    finally:
        server.stop()


async def test_my_status_and_shared_position_reach_the_roster_and_english_is_one_tap_away(
    database_url: str, tmp_path: Path
) -> None:
    server = start_server(database_url, tmp_path)

    async def unit() -> dict[str, object]:
        async with server.client() as admin:
            units = (await admin.get("/api/v1/units")).json()["data"]
            found: dict[str, object] = next(u for u in units if u["id"] == "tp-01")
            return found

    try:
        token = await make_officer(server)
        async with phone(server, token) as context:
            page = await open_app(context, server)
            await page.locator("#nav button[data-go=me]").tap()

            def status_posted(response: Any) -> bool:
                return bool(response.request.method == "POST" and response.request.url.endswith("/units/tp-01/status"))

            async with page.expect_response(status_posted) as off_posted:  # the button turns before the answer
                await page.locator("#status-off").tap()
            assert (await off_posted.value).status == 200
            await expect(page.locator("#status-off")).to_have_attribute("aria-pressed", "true")
            await expect(page.locator("#outbox-badge")).to_be_hidden()
            assert (await unit())["status"] == "off_duty"

            await page.locator("#status-available").tap()
            await expect(page.locator("#outbox-badge")).to_be_hidden()

            def position_posted(response: Any) -> bool:
                request = response.request
                return (
                    request.method == "POST"
                    and request.url.endswith("/units/tp-01/status")
                    and ("location" in (request.post_data or ""))
                )

            async with page.expect_response(position_posted) as posted:
                await page.locator("#share-position").check()
            assert (await posted.value).status == 200
            await expect(page.locator("#me-position")).to_contain_text("±12 米")
            mine = await unit()
            assert mine["status"] == "available" and mine["location"] == {"lat": 28.8481, "lon": 118.9121}

            await page.locator("#lang").tap()
            await expect(page.locator("#nav button[data-go=me]")).to_contain_text("Me")
            await expect(page.locator("#status-available")).to_have_text("Available")
            await page.reload()
            await page.wait_for_selector("body[data-ready=true]")
            await expect(page.locator("#nav button[data-go=tasks]")).to_contain_text("Tasks")
            assert await page.evaluate("() => document.documentElement.lang") == "en"
    finally:
        server.stop()


async def test_team_tasks_are_one_tap_away_and_another_officers_part_offers_no_steps(
    database_url: str, tmp_path: Path
) -> None:
    server = start_server(database_url, tmp_path)
    try:
        token = await make_officer(server)
        mine = await dispatch_task(server, "team-1", "五岔口拥堵（我的）")
        theirs = await dispatch_task(server, "team-2", "市场口拥堵（同事的）", officer_id="tp-03")
        async with phone(server, token) as context:
            page = await open_app(context, server)
            await expect(page.locator("#task-list .task")).to_have_count(1)
            await expect(page.locator(f'#task-list .task[data-id="{mine}"]')).to_be_visible()
            await page.locator("#scope-team").tap()
            await expect(page.locator(f'#task-list .task[data-id="{theirs}"]')).to_be_visible()
            await expect(page.locator("#task-list .task")).to_have_count(2)
            await page.locator(f'#task-list .task[data-id="{theirs}"]').tap()
            await expect(page.locator("#task-detail .steps")).to_contain_text("由 tp-03 处理")
            assert await page.locator("#task-detail [data-action]").count() == 0
            await page.locator("#view-task .back").tap()
            await page.locator(f'#task-list .task[data-id="{mine}"]').tap()
            await expect(page.locator("#task-detail [data-action=acknowledge]")).to_be_visible()
    finally:
        server.stop()


async def test_a_tasks_map_keeps_the_zones_names_inside_it_and_no_empty_field_is_shown_in_english(
    database_url: str, tmp_path: Path
) -> None:
    server = start_server(database_url, tmp_path)
    try:
        token = await make_officer(server)
        incident = await dispatch_task(server, "map-1", "五岔口拥堵")  # by the command room: no reporter named
        async with phone(server, token) as context:
            page = await open_app(context, server)
            await page.locator("#lang").tap()
            await expect(page.locator("#nav button[data-go=tasks]")).to_contain_text("Tasks")
            await page.locator(f'#task-list .task[data-id="{incident}"]').tap()
            names = page.locator("#task-detail svg.map.wide text")
            await expect(names.first).to_be_visible()
            outside = await page.evaluate(
                """() => {
              const map = document.querySelector('#task-detail svg.map.wide').getBoundingClientRect();
              return [...document.querySelectorAll('#task-detail svg.map.wide text')]
                .map((t) => [t.textContent, t.getBoundingClientRect()])
                .filter(([, r]) => r.left < map.left - 0.5 || r.right > map.right + 0.5)
                .map(([name]) => name);
            }"""
            )
            assert await names.count() >= 3 and outside == []
            assert "Five-way intersection" in await names.all_text_contents()
            empty = await page.evaluate(
                "() => [...document.querySelectorAll('#task-detail dl.kv dd')]"
                ".filter((dd) => !dd.textContent.trim()).map((dd) => dd.previousElementSibling.textContent)"
            )
            assert empty == []
    finally:
        server.stop()
