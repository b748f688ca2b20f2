"""The access log (one line per request on ``dispatcher.access``) and the quieter start-up, in process."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from dispatcher.migrations import upgrade_to_head
from dispatcher.settings import Settings
from server.app import create_app
from server.logs import QUIET, configure
from tests.conftest import HubRig, api_client

LINE = re.compile(r"^(GET|POST) (\S+) (\d{3}) (\d+\.\d)ms (\S+)$")


async def test_one_line_per_request_without_the_query_string(crew: HubRig, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Settings(database_url=crew.url, rate_per_s=0, body_limit_bytes=2048), hub=crew.hub)
    caplog.set_level(logging.INFO, logger="dispatcher.access")
    async with api_client(app) as http:
        await http.get("/api/v1/incidents", params={"token": "s3cret-query-token", "limit": 5})
        await http.get("/api/v1/incidents", headers={"Authorization": "Bearer dsp_not-a-real-token"})
        await http.post("/api/v1/incidents", content=b"x" * 4096, headers={"content-type": "application/json"})
        await http.get("/api/v1/incidents/%0aGET%20/forged%20200%200.1ms%20admin")
    lines = [r.getMessage() for r in caplog.records if r.name == "dispatcher.access"]
    assert len(lines) == 4, lines
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    (first, unsigned, large, forged) = [m.groups() for m in parsed if m]
    assert first[:3] == ("GET", "/api/v1/incidents", "200") and first[4].startswith("admin-")
    assert unsigned[2:3] == ("401",) and unsigned[4] == "-"
    assert large[:3] == ("POST", "/api/v1/incidents", "413")
    assert forged[1] == "/api/v1/incidents/%0AGET%20/forged%20200%200.1ms%20admin" and "\n" not in lines[3]
    assert not any("s3cret" in line or "dsp_" in line for line in lines)


async def test_the_operator_silences_it(crew: HubRig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dispatcher.access")
    quiet = create_app(Settings(database_url=crew.url, access_log=False), hub=crew.hub)
    async with api_client(quiet) as http:
        assert (await http.get("/api/v1/incidents")).status_code == 200
    assert [r for r in caplog.records if r.name == "dispatcher.access"] == []
    caplog.set_level(logging.WARNING, logger="dispatcher.access")
    loud = create_app(Settings(database_url=crew.url), hub=crew.hub)
    async with api_client(loud) as http:
        assert (await http.get("/api/v1/incidents")).status_code == 200
    assert [r for r in caplog.records if r.name == "dispatcher.access"] == []


async def test_the_schema_upgrade_is_one_line_and_only_when_it_upgraded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dispatcher.migrations")
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}")
    try:
        for _ in range(2):
            async with engine.begin() as conn:
                await conn.run_sync(upgrade_to_head)
    finally:
        await engine.dispose()
    lines = [r.getMessage() for r in caplog.records if r.name == "dispatcher.migrations"]
    assert len(lines) == 1 and re.fullmatch(
        r"database schema upgraded from nothing \(a new database\) to \d{4}", lines[0]
    )


def test_the_libraries_chatter_is_kept_down_unless_debugging() -> None:
    saved = {name: logging.getLogger(name).level for name in ("", *QUIET)}
    handlers = logging.getLogger().handlers[:]
    try:
        configure("info")
        assert [logging.getLogger(n).getEffectiveLevel() for n in QUIET] == [logging.WARNING] * len(QUIET)
        assert logging.getLogger("dispatcher.access").isEnabledFor(logging.INFO)
        configure("debug")
        assert [logging.getLogger(n).getEffectiveLevel() for n in QUIET] == [logging.DEBUG] * len(QUIET)
    finally:
        logging.getLogger().handlers[:] = handlers
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
