"""``dispatcher drill`` against a real server: progress while it runs, and at the end what was refused and why."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from server.cli import app, drill_summary
from simulations.drill import DrillOutcome, run_drill
from simulations.scenario import load_scenario
from tests.e2e.server import ADMIN_PASSWORD, ServerProcess

pytestmark = pytest.mark.e2e
SIGN_IN = ["--user", "admin", "--password", ADMIN_PASSWORD]

#: The lead resolves after 6.5 minutes; the police station acknowledges after 20: the operator closes once
#: both are done (closing after the lead alone refused every later move of the station).
SCENARIO = """\
name: a drill with late support
start: 2026-06-12T09:00:00+08:00
until: 40m
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


def test_the_drill_shows_progress_and_ends_at_100_percent(server: ServerProcess, tmp_path: Path) -> None:
    scenario = tmp_path / "late.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    result = CliRunner().invoke(
        app, ["drill", str(scenario), "--url", server.base_url, "--speed", "600", "--max-seconds", "60", *SIGN_IN]
    )
    assert result.exit_code == 0, result.output + result.stderr
    errors = result.stderr.splitlines()
    assert errors[0].startswith("drill 'a drill with late support' against http://127.0.0.1:")
    assert errors[0].endswith("40m of scenario at speed 600, about 0.1 min")
    # Not a terminal: a line a minute (none in a 4 s run) and the last one at 100 %.
    assert errors[-1] == "drill: 100% (1 reports, 21 moves, 0 refused)"
    assert re.fullmatch(
        r"drill [0-9a-f]{8}: 1 reports \(0 joined an open incident\), 21 unit moves, 0 refused, 0 errors in [\d.]+ s",
        result.stdout.strip(),
    ), result.stdout


async def test_moves_refused_after_an_operator_cancelled_are_counted_with_their_reason(
    server: ServerProcess, tmp_path: Path
) -> None:
    scenario = tmp_path / "late.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    cancelled: list[int] = []

    def operator_cancels(outcome: DrillOutcome) -> None:
        # After the first move an operator cancels the drill's incident (a synchronous call: the drill waits).
        if outcome.moves == 1 and not cancelled:
            incident_id = outcome.incident_ids[0]
            answer = httpx.post(
                f"{server.base_url}/api/v1/incidents/{incident_id}/cancel",
                json={"reason": "演练中止", "actor": "operator:王芳"},
                headers=server.headers,
            )
            assert answer.status_code == 200, answer.text
            cancelled.append(incident_id)

    async with server.client() as http:
        outcome = await run_drill(load_scenario(scenario), http, speed=600, max_seconds=60, tick=operator_cancels)
    assert cancelled and outcome.finished and outcome.errors == []
    # 5 teams x 4 moves and the close were planned; one move went through before the cancel.
    assert (outcome.moves, outcome.refused) == (1, 20)
    summary = drill_summary(outcome).splitlines()
    assert summary[1] == "refused (the incident was no longer where the plan expected; nothing changed):"
    assert summary[2:] == [
        "  5 × en-route: cannot en-route a finished incident: it is cancelled (illegal-transition)",
        "  5 × on-scene: cannot on-scene a finished incident: it is cancelled (illegal-transition)",
        "  5 × resolve: cannot resolve a finished incident: it is cancelled (illegal-transition)",
        "  4 × acknowledge: cannot acknowledge a finished incident: it is cancelled (illegal-transition)",
        "  1 × close: cannot close the incident: it is cancelled (illegal-transition)",
    ]
