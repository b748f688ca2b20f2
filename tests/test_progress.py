"""Progress of long commands: a bar on a terminal that ends at 100 %, a line a minute otherwise; a scenario's
progress reaches its end."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from server.progress import Progress
from simulations.runner import run_scenario
from simulations.scenario import load_scenario


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_not_on_a_terminal_a_line_a_minute_and_a_last_one_at_100_percent() -> None:
    out, clock = io.StringIO(), FakeClock()
    with Progress("drill", out, clock=clock, describe=lambda: "3 reports") as progress:
        for second in range(0, 150, 10):
            clock.now = float(second)
            progress(second / 200)  # the work stops at 70 %: the end is still 100 %
    assert out.getvalue().splitlines() == [
        "drill: 30% (3 reports)",
        "drill: 60% (3 reports)",
        "drill: 100% (3 reports)",
    ]


def test_on_a_terminal_a_bar_that_ends_at_100_percent_and_stays_put_after_an_error() -> None:
    out = Terminal()
    with Progress("simulating", out) as progress:
        progress(0.79)
    assert "79%" in out.getvalue() and "100%" in out.getvalue().split("\r")[-1]  # the bar as last drawn
    broken = Terminal()
    with pytest.raises(RuntimeError), Progress("simulating", broken) as progress:
        progress(0.5)
        raise RuntimeError("stop")
    assert "100%" not in broken.getvalue() and "50%" in broken.getvalue()


def test_a_scenario_s_progress_reaches_its_horizon(tmp_path: Path) -> None:
    """The last action of a scenario comes before its horizon: its progress used to stop there (79-99 %)."""
    scenario = tmp_path / "short.yaml"
    scenario.write_text(
        """\
name: short
start: 2026-06-12T09:00:00+08:00
until: 2h
behaviour:
  default:
    ack_after: {dist: fixed, value: 1m}
    arrive_after: {dist: fixed, value: 5m}
    resolve_after: {dist: fixed, value: 20m}
timeline:
  - at: 0s
    report: {category: traffic.congestion, zone: five-way, description: 五岔口拥堵}
""",
        encoding="utf-8",
    )
    shares: list[float] = []
    asyncio.run(run_scenario(scenario, load_scenario(scenario), progress=shares.append))
    assert shares and shares == sorted(shares) and shares[-1] == 1.0
    # The last action was a fifth of the way in: the 1.0 comes from the horizon itself.
    assert [s for s in shares if s < 1.0][-1] < 0.5
