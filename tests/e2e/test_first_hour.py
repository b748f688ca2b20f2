"""A newcomer's first hour, through a real ``dispatcher serve``: the README's curl session word for word (the
second report of the jam joins), the start-up log and the access log, and refusals in one shape."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ADMIN_PASSWORD, ServerProcess

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_bodies() -> list[str]:
    """The JSON bodies of the README's curl session (the five-way report), as written there."""
    text = README.read_text(encoding="utf-8")
    session = text.split("## Try the five-way intersection case", 1)[1].split("```", 2)[1]
    return re.findall(r"-d '(\{.*?\})'", session, flags=re.S)


def test_the_readme_session_works_and_a_second_report_of_the_jam_joins(tmp_path: Path) -> None:
    bodies = _readme_bodies()
    assert len(bodies) == 1 and '"zone": "five-way"' in bodies[0]
    # As the README runs it: the bundled table and roster, duplicates on (no test-only settings).
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'readme.db'}", tmp_path / "server.log", log_level="info")
    server.start()
    try:
        base = server.base_url
        token = httpx.post(f"{base}/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}", "content-type": "application/json"}
        first = httpx.post(f"{base}/api/v1/incidents", headers=headers, content=bodies[0].encode())
        assert first.status_code == 201, first.text
        incident = first.json()
        assert incident["id"] == 1 and incident["routing"]["rule_id"] == "five-way-joint-enforcement"
        for team in ("traffic-police", "police-station"):
            ack = httpx.post(f"{base}/api/v1/incidents/1/assignments/{team}/acknowledge", headers=headers)
            assert ack.status_code == 200, ack.text
        again = bodies[0].replace("ershili-0612-0001", "ershili-0612-0002")
        second = httpx.post(f"{base}/api/v1/incidents", headers=headers, content=again.encode())
        assert (second.status_code, second.headers["X-Report-Outcome"]) == (200, "joined"), second.text
        assert (second.json()["id"], second.json()["report_count"]) == (1, 2)
        early = httpx.post(f"{base}/api/v1/incidents/1/close?token=not-for-the-log", headers=headers)
        assert early.headers["content-type"] == "application/problem+json"
        assert early.json()["code"] == "illegal-transition" and "close" not in early.json()["allowed"]
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text(encoding="utf-8")
    # One line per request, no query string, no token; the quiet start-up: no line per scheduler job.
    assert re.search(r"dispatcher\.access: POST /api/v1/incidents 201 \d+\.\dms admin$", log, flags=re.M), log
    assert re.search(r"dispatcher\.access: POST /api/v1/incidents/1/close 409 \d+\.\dms admin$", log, flags=re.M)
    assert "not-for-the-log" not in log and "dsp_" not in log
    assert "Added job" not in log and "alembic" not in log
    assert len(re.findall(r"shift changes: \d+ cron jobs armed", log)) == 1
    assert len(re.findall(r"database schema upgraded from nothing \(a new database\) to \d{4}", log)) == 1
