"""Accounts, real sign-ins and two townships in one real server process: nothing crosses between them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from dispatcher.settings import BUNDLED_TABLE
from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

PASSWORD = "a long enough password"
REPORT = {
    "report_id": "e-1",
    "category": "traffic.congestion",
    "zone": "five-way",
    "description": "堵",
    "reporter": "张三 13900000000",
}


async def _sign_in(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    answer = await http.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def test_two_townships_with_real_tokens(database_url: str, tmp_path: Path, repo_root: Path) -> None:
    quick_table = repo_root / "tests" / "fixtures" / "quick-township.yaml"
    townships = f"ershili={BUNDLED_TABLE}:{database_url};quick={quick_table}:sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    server = ServerProcess(database_url, tmp_path / "server.log", env={**PLAIN, "DISPATCHER_TOWNSHIPS": townships})
    server.start()
    try:
        async with server.client() as admin:
            for name, role, township in (
                ("op-e", "operator", "ershili"),
                ("op-q", "operator", "quick"),
                ("sv-e", "supervision", "ershili"),
                ("fo-e", "field_officer", "ershili"),
            ):
                body = {"name": name, "role": role, "township": township, "password": PASSWORD, "officer_id": "tp-01"}
                made = await admin.post("/api/v1/accounts", json=body)
                assert made.status_code == 201, made.text
            operator_e = await _sign_in(admin, "op-e")
            operator_q = await _sign_in(admin, "op-q")
            supervision = await _sign_in(admin, "sv-e")

            officer = await _sign_in(admin, "fo-e")

        with pytest.raises(InvalidStatus):
            async with websockets.connect(server.ws_url):
                pass
        with pytest.raises(InvalidStatus):  # a field officer has no board
            async with websockets.connect(server.ws_url, additional_headers=officer):
                pass
        token_sv = supervision["Authorization"].removeprefix("Bearer ")
        token_q = operator_q["Authorization"].removeprefix("Bearer ")
        async with (
            httpx.AsyncClient(base_url=server.base_url, timeout=10) as http,
            websockets.connect(
                server.ws_url,
                subprotocols=[Subprotocol("dispatcher.bearer"), Subprotocol(f"dispatcher.bearer.{token_q}")],
            ) as board_q,
            websockets.connect(f"{server.ws_url}?token={token_sv}") as board_sv,
        ):
            assert json.loads(await board_q.recv())["incidents"] == []
            assert json.loads(await board_sv.recv())["kind"] == "snapshot"
            made = await http.post("/api/v1/incidents", json=REPORT, headers=operator_e)
            assert made.status_code == 201 and made.json()["reporter"] == REPORT["reporter"]
            seen = json.loads(await board_sv.recv())
            assert seen["type"] == "IncidentReported" and seen["data"]["reporter"] == "***"
            quick = {"report_id": "q-1", "category": "order.noise", "zone": "square", "description": "吵"}
            assert (await http.post("/api/v1/incidents", json=quick, headers=operator_q)).status_code in (200, 201)
            # The quick board's first event is its own report: the other township's never came.
            first = json.loads(await board_q.recv())
            assert first["type"] == "IncidentReported" and first["data"]["report_id"] == "q-1"
            assert (await http.get("/api/v1/incidents", headers=operator_q)).json()["count"] == 1
            refused = await http.get("/api/v1/incidents", params={"township": "ershili"}, headers=operator_q)
            assert refused.status_code == 403
            audit = await http.get("/api/v1/audit", headers=supervision)
            rows = [json.loads(line) for line in audit.text.splitlines()]
            reported = [r for r in rows if r["action"] == "POST /api/v1/incidents"]
            assert [(r["actor"], r["source"], r["outcome"]) for r in reported] == [("op-e", "127.0.0.1", 201)]
            assert all(r["township"] == "ershili" for r in rows)
            subscribed = [r["actor"] for r in rows if r["action"] == "GET /ws/board"]
            assert subscribed == ["sv-e"]  # the quick operator's subscription is quick's
    finally:
        server.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_cli_signs_in_to_put_a_table_in_force(server: ServerProcess) -> None:
    from typer.testing import CliRunner

    from server.cli import app
    from tests.e2e.server import ADMIN_PASSWORD

    runner = CliRunner()
    load = ["rules", "load", str(BUNDLED_TABLE), "--url", server.base_url]
    refused = runner.invoke(app, load)
    assert refused.exit_code == 1 and "sign in" in refused.output
    wrong = runner.invoke(app, [*load, "--user", "admin", "--password", "not the password"])
    assert wrong.exit_code == 2 and "signing in as admin failed" in wrong.output
    signed = runner.invoke(app, [*load, "--user", "admin", "--password", ADMIN_PASSWORD])
    assert signed.exit_code == 0, signed.output
    assert runner.invoke(app, [*load, "--token", server.token]).exit_code == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_first_run_prints_a_password_that_signs_in_and_the_cli_resets_it(database_url: str, tmp_path: Path) -> None:
    """A newcomer's first hour: no DISPATCHER_ADMIN_PASSWORD, the printed password, then a reset on the machine."""
    import re
    import subprocess
    import sys

    first = ServerProcess(database_url, tmp_path / "first.log", env=PLAIN, admin_password=None).start()
    try:
        box = re.search(r"shown this once: (\S+)", (tmp_path / "first.log").read_text())
        assert box is not None, (tmp_path / "first.log").read_text()
        assert first.sign_in(password=box.group(1))
        reset = subprocess.run(
            [sys.executable, "-m", "server", "accounts", "set-password", "admin", "--password-stdin",
             "--database-url", database_url],
            input="a new admin password\n", capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert reset.returncode == 0, reset.stderr
        assert first.sign_in(password="a new admin password")  # counts at once on the running dispatcher
        with pytest.raises(httpx.HTTPStatusError):
            first.sign_in(password=box.group(1))
    finally:
        first.stop()

    # Starting again with the variable set on the same database says why it is not applied.
    second = ServerProcess(database_url, tmp_path / "second.log", env=PLAIN, admin_password="ignored password 1")
    second.admin_password = None  # do not sign in with it: it is not admin's password
    second.start()
    try:
        assert (
            "DISPATCHER_ADMIN_PASSWORD is set but this database has accounts already"
            in (tmp_path / "second.log").read_text()
        )
        assert second.sign_in(password="a new admin password")
    finally:
        second.stop()
