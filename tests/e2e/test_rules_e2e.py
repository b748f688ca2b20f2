"""Putting a rule table in force on a real server process: hostile tables cost it nothing.

The client's timeout bounds each request: on a server that parsed without a budget, on its event
loop, the bomb would hold every request for minutes, and the test fails at the timeout instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

# Under 400 bytes: each line holds nine aliases of the line before, 9^9 values once expanded.
BOMB = "table: 1\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    # Parsing does not touch the store: one backend is enough.
    process = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", tmp_path / "server.log", env=PLAIN).start()
    try:
        yield process
    finally:
        process.stop()


async def test_alias_bombs_are_refused_and_the_server_keeps_answering(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=10) as http:
        bombs = [http.put("/api/v1/rules", content=BOMB.encode()) for _ in range(4)]
        others = [http.get("/api/v1/rules/catalogue") for _ in range(4)]
        answers = await asyncio.gather(*bombs, *others)

        assert [a.status_code for a in answers] == [422] * 4 + [200] * 4
        problem = answers[0].json()["problems"][0]
        assert problem["line"] == 7 and "once its aliases are expanded" in problem["message"]
        report = {"report_id": "after-bombs", "category": "traffic.congestion", "description": "堵", "zone": "five-way"}
        made = await http.post("/api/v1/incidents", json=report)
        assert made.status_code == 201 and made.json()["routing"]["table_version"] == "ershili-2026.11-1"
