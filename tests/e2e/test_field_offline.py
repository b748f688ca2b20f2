"""The field app with no signal: the app shell and the last task list open from the phone, and what the officer
did meanwhile waits in the outbox and is delivered exactly once when the network is back."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.e2e.phone import dispatch_task, incidents, make_officer, open_app, phone, photo_file, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


async def test_the_app_opens_with_the_server_gone_and_sends_the_report_when_it_is_back(
    database_url: str, tmp_path: Path
) -> None:
    server = start_server(database_url, tmp_path)
    try:
        token = await make_officer(server)
        await dispatch_task(server, "shell-1", "五岔口拥堵，地下车库无信号")
        async with phone(server, token, service_workers="allow") as context:
            page = await open_app(context, server)
            await expect(page.locator("#task-list .task")).to_have_count(1)
            await page.wait_for_function("() => !!navigator.serviceWorker.controller")

            server.stop()  # no network at all: not an emulation, nothing answers on the port
            await page.reload()
            await page.wait_for_selector("body[data-ready=true]")
            await expect(page.locator("#task-list .task .desc")).to_have_text("五岔口拥堵，地下车库无信号")

            await page.locator("#nav button[data-go=report]").tap()
            await page.fill("#report-form textarea[name=description]", "集贸市场门口占道经营")
            await page.select_option("#report-form select[name=zone]", "market")
            await page.locator("#report-form button[type=submit]").tap()
            await expect(page.locator("#outbox-badge")).to_have_text("待发送 1")

            server.start(timeout_s=120)  # same port, same database: the outbox's retry finds it
            await expect(page.locator("#outbox-badge")).to_be_hidden(timeout=60_000)
        reported = [i for i in await incidents(server) if i["description"] == "集贸市场门口占道经营"]
        assert len(reported) == 1 and reported[0]["zone"] == "market"
    finally:
        server.stop()


async def test_a_report_typed_offline_with_a_photo_is_delivered_exactly_once(database_url: str, tmp_path: Path) -> None:
    server = start_server(database_url, tmp_path)
    try:
        token = await make_officer(server)
        async with phone(server, token) as context:
            page = await open_app(context, server)
            await context.set_offline(True)
            await expect(page.locator("#net")).to_have_text("离线")
            await page.locator("#nav button[data-go=report]").tap()
            await page.fill("#report-form textarea[name=description]", "五岔口护栏被撞倒")
            await page.locator("#report-gps").tap()
            await expect(page.locator("#report-position")).to_contain_text("±12 米")
            await page.set_input_files("#report-photos", [photo_file()])
            await expect(page.locator("#report-thumbs img")).to_have_count(1)
            # Made for a 390 px phone: nothing on the form is wider than the screen.
            assert await page.evaluate("() => document.documentElement.scrollWidth") == 390
            await page.locator("#report-form button[type=submit]").tap()
            await expect(page.locator("#outbox-badge")).to_have_text("待发送 1")
            await page.locator("#nav button[data-go=me]").tap()
            await expect(page.locator("#outbox-list li")).to_contain_text("1 张照片")
            # Kept on the phone (IndexedDB), the photo as its bytes: closing the app loses nothing.
            stored = await page.evaluate(
                """() => new Promise((done) => {
                  indexedDB.open('dispatcher-field').onsuccess = (e) => {
                    const get = e.target.result.transaction('outbox').objectStore('outbox').getAll();
                    get.onsuccess = () => done(get.result.map((i) => [i.kind, i.photos.map((p) => p.blob.size)]));
                  };
                })"""
            )
            assert stored == [["report", [len(photo_file()["buffer"])]]]

            await context.set_offline(False)
            await expect(page.locator("#outbox-badge")).to_be_hidden()
            await page.evaluate("() => window.dispatchEvent(new Event('online'))")  # a second wake-up sends nothing
        reported = [i for i in await incidents(server) if i["description"] == "五岔口护栏被撞倒"]
        assert len(reported) == 1
        incident = reported[0]
        assert incident["location"] == {"lat": 28.8481, "lon": 118.9121} and incident["accuracy_m"] == 12
        assert len(incident["photos"]) == 1
        async with server.client() as admin:
            photo = await admin.get(f"/api/v1/media/{incident['photos'][0]}")
            assert photo.status_code == 200 and photo.content[:3] == b"\xff\xd8\xff"
    finally:
        server.stop()
