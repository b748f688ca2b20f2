"""Replaying a scenario on a virtual clock through the production hub.

The hub, the rule book, the store (SQLite in a temporary folder) and the deadline logic are the
ones the server runs; only the clock (:class:`~dispatcher.clock.VirtualClock`) and the alarm
(:class:`~dispatcher.alarm.ManualAlarm`) differ. The runner keeps an agenda of what people will do
(report, acknowledge, arrive, resolve, close) and jumps the clock from one moment to the next,
ringing the deadline alarm whenever it falls due in between. Same scenario, same seed: the same
event log.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import itertools
import random
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from dispatcher.alarm import ManualAlarm
from dispatcher.briefing import Briefing, Unit
from dispatcher.clock import VirtualClock
from dispatcher.core.events import DeadlineKind
from dispatcher.core.incidents import Incident, Refused, Report, RequestKind
from dispatcher.core.lifecycle import (
    AssignmentState,
    IllegalTransition,
    IncidentAction,
    IncidentStatus,
    Role,
    UnitAction,
)
from dispatcher.core.roster import Roster
from dispatcher.feed import EventFeed
from dispatcher.hub import Hub
from dispatcher.roster_file import BUNDLED_ROSTER, build_roster, read_roster
from dispatcher.settings import BUNDLED_TABLE
from dispatcher.sql_store import SqlIncidentStore
from dispatcher.store import IncidentFilter, StoredEvent
from rules import RuleBook, compile_table, load_table
from rules.table import RuleTable
from simulations.scenario import ReportSpec, Scenario, offset

Action = Callable[[], Awaitable[None]]
_MAX_INFLIGHT = 2_000
_FREEZE_EVERY = 1_000  # steps of the agenda between two freezes of the heap (see _drive)


@dataclass(repr=False)
class RunResult:
    scenario: Scenario
    events: list[StoredEvent]
    incidents: list[Incident]
    started: datetime
    ended: datetime
    refused: int = 0  # moves the lifecycle refused (e.g. a unit acting after the incident was closed)
    rules_version: str = ""
    notes: list[str] = field(default_factory=list)
    #: The rule table of the run: module and team names (``name`` / ``name_en``) for reports.
    table: RuleTable | None = None
    #: The briefing's figures of the run (by module and by team) computed by dispatcher.briefing, the same
    #: SQL as ``dispatcher report`` over a real month, for the period from the start to just after the end.
    briefing: dict[Unit, Briefing] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Short: asyncio.run() formats the repr of its finished main task, result included, when it restores
        # the SIGINT handler; the dataclass's own repr of a month's events and incidents took a second.
        return (
            f"<RunResult {self.scenario.name!r}: {len(self.incidents)} incidents, {len(self.events)} events, "
            f"{self.started.isoformat()} to {self.ended.isoformat()}>"
        )


class Simulation:
    """One run of a scenario. ``run`` may be called once."""

    def __init__(
        self,
        scenario: Scenario,
        rules: RuleBook,
        *,
        workdir: Path | None = None,
        progress: Callable[[float], None] | None = None,
        roster: Roster | None = None,
    ) -> None:
        self.scenario = scenario
        self.roster = roster
        self._progress = progress
        self.rules = rules
        self.clock = VirtualClock(scenario.start)
        self.alarm = ManualAlarm()
        self._workdir = workdir
        self._rng = random.Random(scenario.seed)
        self._agenda: list[tuple[datetime, int, Action]] = []
        self._order = itertools.count()
        self._refused = 0
        self._inflight: list[asyncio.Task[object]] = []
        self.hub: Hub | None = None

    @classmethod
    def from_file(
        cls, path: Path, scenario: Scenario, *, progress: Callable[[float], None] | None = None
    ) -> Simulation:
        table = scenario.table_path(path.parent, BUNDLED_TABLE)
        rules = compile_table(load_table(table))
        roster_file = scenario.roster_path(path.parent, BUNDLED_ROSTER)
        roster = build_roster(read_roster(roster_file), rules) if roster_file is not None else None
        return cls(scenario, rules, progress=progress, roster=roster)

    def at(self, when: datetime, action: Action) -> None:
        heapq.heappush(self._agenda, (when, next(self._order), action))

    async def run(self) -> RunResult:
        with tempfile.TemporaryDirectory(dir=self._workdir) as folder:
            # The loop serves the replay alone: commits run on it (no thread hops), and nothing is synced.
            store = SqlIncidentStore(
                f"sqlite+aiosqlite:///{Path(folder) / 'simulation.db'}", durable=False, inline_writes=True
            )
            hub = self.hub = Hub(
                store=store,
                rules=self.rules,
                clock=self.clock,
                alarm=self.alarm,
                feed=EventFeed(queue_size=1),
                roster=self.roster,
                duplicate_radius_m=0,  # a scenario's reports are its stream: each one counts
            )
            await hub.start()
            try:
                self._plan_timeline()
                await self._drive(self.scenario.horizon())
                await self._settle()
                events = await hub.events_since(0, limit=10_000_000)
                incidents, _ = await hub.list_incidents(IncidentFilter(), limit=10_000_000, offset=0)
                until = self.clock.now() + timedelta(seconds=1)  # the period excludes its end: keep the last moves
                briefing = {
                    by: await hub.briefing(start=self.scenario.start, end=until, by=by)
                    for by in (Unit.MODULE, Unit.TEAM)
                }
            finally:
                gc.unfreeze()
                await hub.stop()
        return RunResult(
            scenario=self.scenario,
            events=events,
            incidents=sorted(incidents, key=lambda i: i.id),
            started=self.scenario.start,
            ended=self.clock.now(),
            refused=self._refused,
            rules_version=self.rules.version,
            table=self.rules.table,
            briefing=briefing,
        )

    async def _drive(self, horizon: datetime) -> None:
        for step in itertools.count():
            if step % _FREEZE_EVERY == 0:
                # What lives on (the loaded modules, the open incidents, the agenda) leaves the collector's
                # passes, which took about a fifth of a month's CPU walking it. A replay makes no reference
                # cycles (a refusal's traceback did: dispatcher/writer.py); should something, its garbage waits
                # for the thaw at the end of the run. (The thaw also thaws whatever the caller had frozen.)
                gc.freeze()
            next_action = self._agenda[0][0] if self._agenda else None
            alarm = self.alarm.when
            upcoming = [t for t in (next_action, alarm) if t is not None and t <= horizon]
            if not upcoming:
                # The horizon is reached when nothing is left before it: say so, or a display stops at the share
                # of the last action (79-99 %).
                self.clock.advance_to(horizon)
                if self._progress is not None:
                    self._progress(1.0)
                return
            now = self.clock.advance_to(min(upcoming))
            if self._progress is not None:
                self._progress((now - self.scenario.start) / (horizon - self.scenario.start))
            if alarm is not None and alarm <= now:
                await self._flush()
                await self.alarm.ring()
                continue
            _, _, action = heapq.heappop(self._agenda)
            await action()

    async def _flush(self) -> None:
        """Let every move submitted so far take its place in the hub's queue, in submission order.

        Moves are not awaited one by one (the writer then commits them in groups); anything that must
        come after them in time (a report, the alarm) first yields once so that their queue puts run.
        """
        await asyncio.sleep(0)

    async def _submit(self, command: Awaitable[object]) -> None:
        self._inflight.append(asyncio.ensure_future(command))
        if len(self._inflight) >= _MAX_INFLIGHT:
            # Far below the hub's queue size, so a queue put never waits and submission order holds.
            await self._settle()

    async def _settle(self) -> None:
        results = await asyncio.gather(*self._inflight, return_exceptions=True)
        self._inflight.clear()
        for outcome in results:
            if isinstance(outcome, IllegalTransition | Refused):
                self._refused += 1
            elif isinstance(outcome, BaseException):
                raise outcome

    def _plan_timeline(self) -> None:
        number = itertools.count(1)
        for step in self.scenario.timeline:
            first = self.scenario.start + offset(step.at)
            times = step.repeat.times if step.repeat else 1
            every = offset(step.repeat.every) if step.repeat else timedelta(0)
            for k in range(times):
                self.at(first + k * every, self._reporter(step.report, next(number)))

    def _reporter(self, spec: ReportSpec, number: int) -> Action:
        async def report() -> None:
            assert self.hub is not None
            await self._flush()
            now = self.clock.now()
            outcome = await self.hub.report(
                Report(
                    report_id=f"sim-{self.scenario.seed}-{number}",
                    category=spec.category,
                    description=spec.description,
                    zone=spec.zone,
                    lat=spec.lat,
                    lon=spec.lon,
                    severity=spec.severity,
                    reporter=spec.reporter,
                    reporter_kind=spec.reporter_kind,
                    occurred_at=now,
                ),
                now,
            )
            self._plan_units(outcome.incident, now)

        return report

    def _plan_units(self, incident: Incident, now: datetime, *, rework: bool = False) -> None:
        behaviours = self.scenario.behaviour
        for assignment in incident.assignments:
            if assignment.state is not AssignmentState.DISPATCHED:
                continue  # a rework gives back only the resolved teams' parts
            behaviour = behaviours.of(assignment.team)
            if behaviour.never_acknowledges or behaviour.ack_after is None:
                continue
            acked = now + behaviour.ack_after.draw(self._rng)
            travel = behaviour.arrive_after.draw(self._rng) if behaviour.arrive_after else timedelta(0)
            arrived = acked + max(travel, timedelta(seconds=2))  # after setting off, one second after acknowledging
            resolved = arrived + (behaviour.resolve_after.draw(self._rng) if behaviour.resolve_after else timedelta(0))
            team, iid = assignment.team, incident.id
            due = assignment.deadline(DeadlineKind.RESOLVE)
            # Drawn only when the scenario models extensions, so that other scenarios replay as before.
            if (
                assignment.role is Role.LEAD
                and not rework
                and behaviours.extension_rate > 0
                and due is not None
                and self._rng.random() < behaviours.extension_rate
            ):
                more = behaviours.extension_by.draw(self._rng)
                asked = acked + timedelta(seconds=30)
                self.at(asked, self._ask_extension(iid, team, due.due_at + more))
                self.at(asked + behaviours.approve_after.draw(self._rng), self._approve(iid))
                resolved += more
            self.at(acked, self._move(iid, team, UnitAction.ACKNOWLEDGE))
            self.at(acked + timedelta(seconds=1), self._move(iid, team, UnitAction.DEPART))
            self.at(arrived, self._move(iid, team, UnitAction.ARRIVE))
            self.at(resolved, self._move(iid, team, UnitAction.RESOLVE))
            if assignment.role is Role.LEAD and incident.loop.verify_within is None:
                self.at(resolved + behaviours.close_after.draw(self._rng), self._close(iid))

    def _move(self, incident_id: int, team: str, action: UnitAction) -> Action:
        async def move() -> None:
            assert self.hub is not None
            command = self.hub.move_unit(incident_id, team, action, self.clock.now(), actor=f"sim:{team}")
            if action is UnitAction.RESOLVE:
                command = self._then_verify(command)
            await self._submit(command)

        return move

    async def _then_verify(self, resolving: Awaitable[Incident]) -> Incident:
        """A resolution that left the incident waiting for 核查 brings the verifier (or a rework) later."""
        incident = await resolving
        if incident.status is IncidentStatus.VERIFYING:
            behaviours = self.scenario.behaviour
            after = (behaviours.verify_after or behaviours.close_after).draw(self._rng)
            fails = behaviours.verify_fails > 0 and self._rng.random() < behaviours.verify_fails
            self.at(incident.updated_at + after, self._verify(incident.id, passed=not fails))
        return incident

    def _verify(self, incident_id: int, *, passed: bool) -> Action:
        async def verify() -> None:
            assert self.hub is not None
            now = self.clock.now()
            reason = "" if passed else "sim: not done"
            try:
                checked = await self.hub.verify(incident_id, passed, now, verifier="sim:verifier", reason=reason)
            except IllegalTransition:
                self._refused += 1
                return
            if not passed:
                self._plan_units(checked, now, rework=True)

        return verify

    def _ask_extension(self, incident_id: int, team: str, due_at: datetime) -> Action:
        async def ask() -> None:
            assert self.hub is not None
            command = self.hub.request_extension(
                incident_id, team, "sim: needs more time", due_at, self.clock.now(), actor=f"sim:{team}"
            )
            await self._submit(command)

        return ask

    def _approve(self, incident_id: int) -> Action:
        async def approve() -> None:
            assert self.hub is not None
            await self._settle()
            incident = await self.hub.get(incident_id)
            waiting = [r for r in incident.loop.requests if r.is_open and r.kind is RequestKind.EXTENSION]
            for request in waiting:
                command = self.hub.decide_request(
                    incident_id, request.id, True, self.clock.now(), role="module_lead", actor="sim:module_lead"
                )
                await self._submit(command)

        return approve

    def _close(self, incident_id: int) -> Action:
        async def close() -> None:
            assert self.hub is not None
            command = self.hub.finish(incident_id, IncidentAction.CLOSE, self.clock.now(), actor="sim:operator")
            await self._submit(command)

        return close


async def run_scenario(
    path: Path, scenario: Scenario, *, progress: Callable[[float], None] | None = None
) -> dict[str, RunResult]:
    """Run a scenario file: once, or once per variant (the same stream, seed and timeline each time).

    The key is the variant's name (``"run"`` for a scenario without variants). ``progress`` gets the
    share of the whole work done so far (0 to 1).
    """
    variants = [(v.name, scenario.variant(v)) for v in scenario.variants] or [("run", scenario)]
    results = {}
    for index, (name, variant) in enumerate(variants):

        def report(share: float, index: int = index) -> None:
            if progress is not None:
                progress((index + share) / len(variants))

        results[name] = await Simulation.from_file(path, variant, progress=report).run()
    return results
