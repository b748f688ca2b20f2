"""Scenario files: a start time, a seed, the rule table, how people behave, a timeline, expectations.

Validated like rule tables (unknown keys refused, every mistake with file and line: the same loader
machinery). See docs/simulations.md for the format with examples.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from rules.durations import parse_duration
from rules.loader import load_model


def _duration(value: str) -> timedelta:
    return timedelta(0) if value.strip() in {"0", "0s"} else parse_duration(value)


def _checked(value: str) -> str:
    _duration(value)
    return value


#: A duration as written (``0s``, ``90s``, ``5m``, ``2h``, ``7d``), refused at load when it is not one.
Duration = Annotated[str, Field(min_length=1, max_length=32), AfterValidator(_checked)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Delay(_Strict):
    """A random delay: ``fixed``; ``uniform`` between ``low`` and ``high``; ``exponential`` with ``mean``;
    ``lognormal`` with ``median`` and ``p90`` (the usual shape of human response times)."""

    dist: Literal["fixed", "uniform", "exponential", "lognormal"]
    value: Duration | None = None
    low: Duration | None = None
    high: Duration | None = None
    mean: Duration | None = None
    median: Duration | None = None
    p90: Duration | None = None

    def draw(self, rng: random.Random) -> timedelta:
        """One delay; the same ``rng`` state always gives the same delay."""
        if self.dist == "fixed":
            return _duration(_need(self.value, "value"))
        if self.dist == "uniform":
            low = _duration(_need(self.low, "low")).total_seconds()
            high = _duration(_need(self.high, "high")).total_seconds()
            return timedelta(seconds=rng.uniform(low, high))
        if self.dist == "exponential":
            return timedelta(seconds=rng.expovariate(1 / _duration(_need(self.mean, "mean")).total_seconds()))
        median = _duration(_need(self.median, "median")).total_seconds()
        p90 = _duration(_need(self.p90, "p90")).total_seconds()
        sigma = max(math.log(p90 / median) / 1.2815515655446004, 1e-9)  # z of the 90th percentile
        return timedelta(seconds=rng.lognormvariate(math.log(median), sigma))


def _need(value: str | None, name: str) -> str:
    if value is None:
        raise ValueError(f"this distribution needs {name}")
    return value


class Behaviour(_Strict):
    """How a team (or everyone, by default) answers an assignment."""

    ack_after: Delay | None = None
    arrive_after: Delay | None = None
    resolve_after: Delay | None = None
    never_acknowledges: bool = False


class Behaviours(_Strict):
    default: Behaviour = Behaviour(
        ack_after=Delay(dist="lognormal", median="90s", p90="4m"),
        arrive_after=Delay(dist="lognormal", median="8m", p90="20m"),
        resolve_after=Delay(dist="lognormal", median="40m", p90="2h"),
    )
    teams: dict[str, Behaviour] = Field(default_factory=dict)
    close_after: Delay = Delay(dist="fixed", value="2m")
    # Closing the loop: when the rule asks for 核查, the verifier comes ``verify_after`` (default:
    # ``close_after``) once every team resolved, and fails it with probability ``verify_fails`` (返工).
    verify_after: Delay | None = None
    verify_fails: float = Field(default=0.0, ge=0.0, le=1.0)
    # 延期: the share of lead teams that, soon after acknowledging, ask for ``extension_by`` more time (the
    # module lead approves it ``approve_after`` later, within the table's limit) and take that much longer.
    extension_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    extension_by: Delay = Delay(dist="fixed", value="2d")
    approve_after: Delay = Delay(dist="fixed", value="30m")

    def of(self, team: str) -> Behaviour:
        own = self.teams.get(team)
        if own is None:
            return self.default
        return Behaviour(
            ack_after=own.ack_after or self.default.ack_after,
            arrive_after=own.arrive_after or self.default.arrive_after,
            resolve_after=own.resolve_after or self.default.resolve_after,
            never_acknowledges=own.never_acknowledges,
        )


class ReportSpec(_Strict):
    category: str | None = None
    description: str = Field(min_length=1, max_length=4000)
    zone: str | None = None
    lat: float | None = None
    lon: float | None = None
    severity: int | None = Field(default=None, ge=1, le=5)
    reporter: str | None = None
    reporter_kind: Literal["officer", "device", "citizen", "hotline"] | None = None


class Repeat(_Strict):
    every: Duration
    times: int = Field(ge=1, le=100_000)


class Step(_Strict):
    """``report`` at offset ``at`` from the start (optionally repeated)."""

    at: Duration
    report: ReportSpec
    repeat: Repeat | None = None


class Expectation(_Strict):
    """A check on the finished run; the optional filters (category, a branch like ``labour.*``, module)
    choose the incidents it speaks of."""

    name: str | None = None
    category: str | None = None
    module: str | None = None
    dispatched_within: Duration | None = None
    lead_acknowledged_within: Duration | None = None
    none_open_after: Duration | None = None
    escalations_at_least: int | None = Field(default=None, ge=0)
    escalated_to: Literal["module_lead", "party_secretary"] | None = None
    teams_dispatched: list[str] | None = None
    reworks_at_least: int | None = Field(default=None, ge=0, description="failed verifications (返工), all together")
    extensions_at_least: int | None = Field(default=None, ge=0, description="approved extensions (延期), all together")
    variant: str | None = Field(default=None, description="the variant it speaks of (default: every run)")


class Variant(_Strict):
    """The same stream under another organisation: its own rule table and behaviour (the assumptions)."""

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    table: str | None = None
    behaviour: Behaviours | None = None


class Scenario(_Strict):
    name: str = Field(min_length=1)
    description: str | None = None
    start: AwareDatetime
    seed: int = 0
    table: str | None = Field(default=None, description="rule table, relative to the scenario file")
    roster: str | None = Field(
        default=None,
        description="roster (officers and shifts), relative to the scenario file, or 'bundled'; "
        "without one every team is sent whole",
    )
    until: Duration = Field(default="1d", description="how long after the start the run goes on")
    behaviour: Behaviours = Behaviours()
    timeline: list[Step] = Field(min_length=1)
    expectations: list[Expectation] = Field(default_factory=list)
    variants: list[Variant] = Field(default_factory=list, description="run the stream under each, side by side")

    def variant(self, variant: Variant) -> Scenario:
        """This scenario with the variant's table and behaviour."""
        update: dict[str, object] = {"variants": []}
        if variant.table is not None:
            update["table"] = variant.table
        if variant.behaviour is not None:
            update["behaviour"] = variant.behaviour
        return self.model_copy(update=update)

    def table_path(self, scenario_dir: Path, bundled: Path) -> Path:
        return (scenario_dir / self.table).resolve() if self.table else bundled

    def roster_path(self, scenario_dir: Path, bundled: Path) -> Path | None:
        if self.roster is None:
            return None
        return bundled if self.roster == "bundled" else (scenario_dir / self.roster).resolve()

    def horizon(self) -> datetime:
        return self.start + _duration(self.until)


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario; raises ``RuleTableError`` with file and line for every mistake."""
    return load_model(path, Scenario)


def offset(step_at: str) -> timedelta:
    return _duration(step_at)
