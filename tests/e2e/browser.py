"""Debian's Chromium driven by Playwright for the board's browser tests (Playwright downloads no browser here)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.conftest import IN_CI

CHROMIUM = os.environ.get("DISPATCHER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FOUND = os.path.exists(CHROMIUM) or shutil.which(CHROMIUM) is not None
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium; skips without one on a developer's machine, fails under ``CI=true``."""
    if not CHROMIUM_FOUND:
        message = f"Chromium not found at {CHROMIUM}"
        if IN_CI:
            pytest.fail(message + "; CI=true requires it (.ci/run installs Debian's chromium)")
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def signed_in_context(browser: Any, server: Any, **options: Any) -> Any:
    """A browser context at 1600x900 whose board starts signed in as the server's administrator.

    The board keeps its session token in ``sessionStorage`` (``board.token``) after signing in through its
    form; the tests put the server's admin token there before the page loads, as a signed-in tab would have it.
    """
    context = await browser.new_context(viewport={"width": 1600, "height": 900}, **options)
    await context.add_init_script(f"sessionStorage.setItem('board.token', {server.token!r});")
    return context
