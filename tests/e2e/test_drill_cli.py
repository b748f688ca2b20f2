"""``dispatcher drill`` against a real server: progress while it runs, and at the end what was refused and why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from server.cli import app
from tests.e2e.server import ADMIN_PASSWORD, ServerProcess

pytestmark = pytest.mark.e2e
SIGN_IN = ["--user", "admin", "--password", ADMIN_PASSWORD]

#: The lead resolves and the operator closes after 7 minutes; the police station acknowledges after 20, when the
#: incident is closed: each of its four moves is refused (409), nothing else.
SCENARIO = """\
name: a drill with late support
start: 2026-06-12T09:00:00+08:00
until: 30m
behaviour:
  default:
    ack_after: {dist: fixed, value: 30s}
    arrive_after: {dist: fixed, value: 1m}
    resolve_after: {dist: fixed, value: 5m}
  teams:
    police-station: {ack_after: {dist: fixed, value: 20m}}
  close_after: {dist: fixed, value: 30s}
timeline:
  - at: 0s
    report: {category: traffic.congestion, zone: five-way, description: 演练：五岔口拥堵}
"""


def test_the_drill_shows_progress_and_says_what_was_refused_and_why(server: ServerProcess, tmp_path: Path) -> None:
    scenario = tmp_path / "late.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    result = CliRunner().invoke(
        app,
        ["drill", str(scenario), "--url", server.base_url, "--speed", "600", "--max-seconds", "60", *SIGN_IN],
    )
    assert result.exit_code == 0, result.output + result.stderr
    # Not a terminal: a line a minute (none in a 3 s run) and the last one at 100 %.
    assert result.stderr.splitlines()[-1].startswith("drill: 100% (1 reports, ")
    lines = result.stdout.splitlines()
    # Four teams' four moves and the close; the police station's four refused.
    assert re.fullmatch(
        r"drill [0-9a-f]{8}: 1 reports \(0 joined an open incident\), 17 unit moves, 4 refused, 0 errors in [\d.]+ s",
        lines[0],
    ), lines[0]
    assert lines[1].startswith("refused (the incident was no longer where the plan expected")
    refused = sorted(lines[2:])
    assert refused == sorted(
        f"  1 × {step}: cannot {action} a finished incident: it is closed (illegal-transition)"
        for step, action in [
            ("acknowledge", "acknowledge"),
            ("en-route", "en-route"),
            ("on-scene", "on-scene"),
            ("resolve", "resolve"),
        ]
    )
