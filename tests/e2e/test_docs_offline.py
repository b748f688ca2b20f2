"""The API docs on an intranet without internet: Swagger UI draws every operation from the server alone."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.browser import chromium
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_docs_draw_with_every_request_outside_the_server_refused(server: ServerProcess) -> None:
    outside: list[str] = []

    async def only_the_server(route: Any) -> None:
        if route.request.url.startswith(server.base_url):
            await route.continue_()
        else:  # a CDN: the township's intranet has none
            outside.append(route.request.url)
            await route.abort()

    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1600, "height": 900})
        await page.route("**/*", only_the_server)
        await page.goto(f"{server.base_url}/docs")
        await page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)
        operations = await page.locator(".swagger-ui .opblock").count()
        await page.close()

    assert outside == []
    assert operations > 40  # every documented route, drawn from /openapi.json
