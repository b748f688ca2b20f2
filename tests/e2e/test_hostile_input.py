"""Hostile input: schemathesis generates requests from the OpenAPI schema against a real server process.

Each operation gets a few generated requests (bounded: ``max_examples``, no deadline) with an
administrator's token, so they reach the handlers. None may answer 500, and afterwards every incident
listed can be read whole (no half-written incident). Routes that would revoke the test's own token are
left out: signing out, revoking tokens, and changing accounts (the admin could disable itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from dispatcher.app import create_app
from dispatcher.settings import Settings
from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

schema = (
    schemathesis.openapi.from_dict(create_app(Settings(database_url="sqlite+aiosqlite:///:memory:")).openapi())
    .exclude(path="/api/v1/auth/logout")
    .exclude(path="/api/v1/tokens/{token_id}")
    .exclude(method="PATCH", path="/api/v1/accounts/{name}")
)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("hostile")
    env = {**PLAIN, "DISPATCHER_RATE_PER_S": "0", "DISPATCHER_SIGN_IN_PER_MIN": "0"}
    process = ServerProcess(f"sqlite+aiosqlite:///{folder / 'd.db'}", folder / "server.log", env=env).start()
    try:
        yield process
    finally:
        process.stop()


@schema.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_generated_request_gets_a_server_error(case: Any, target: ServerProcess) -> None:
    response = case.call(base_url=target.base_url, headers=target.headers, timeout=30)
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:500])


def test_after_the_storm_every_incident_reads_whole(target: ServerProcess) -> None:
    with httpx.Client(base_url=target.base_url, headers=target.headers, timeout=30) as http:
        listed = http.get("/api/v1/incidents", params={"limit": 500}).json()
        for incident in listed["data"]:
            whole = http.get(f"/api/v1/incidents/{incident['id']}")
            assert whole.status_code == 200, whole.text
            assert whole.json()["timeline"], f"incident {incident['id']} has no events"
        assert http.get("/readyz").status_code == 200


def test_log_has_no_traceback(target: ServerProcess) -> None:
    log = Path(target.log_path).read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-4000:]
