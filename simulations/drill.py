"""Drill mode (演练): a scenario replayed live against a running dispatcher, over its HTTP API.

Operators train on the real board while the reports arrive and the simulated teams acknowledge, set
off, arrive and resolve, at real speed or faster (``speed`` virtual seconds per wall-clock second).
Every report is sent with ``exercise: true``: the dispatcher marks such incidents on the board and in
the API and keeps them out of real figures. The run is bounded by the scenario's ``until`` (scaled)
and by ``max_seconds``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import httpx

from simulations.scenario import ReportSpec, Scenario, offset

_STEPS = ("acknowledge", "en-route", "on-scene", "resolve")


@dataclass
class DrillOutcome:
    run_id: str
    reports: int = 0
    moves: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    incident_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0


async def run_drill(
    scenario: Scenario,
    client: httpx.AsyncClient,
    *,
    speed: float = 1.0,
    max_seconds: float = 3600.0,
) -> DrillOutcome:
    """Play ``scenario`` against the dispatcher behind ``client`` (its ``base_url``); returns what was sent."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    outcome = DrillOutcome(run_id=uuid.uuid4().hex[:8])
    rng = random.Random(scenario.seed)
    agenda: list[tuple[float, int, Callable[[], Awaitable[None]]]] = []
    order = itertools.count()
    started = time.monotonic()

    def at(virtual: timedelta, action: Callable[[], Awaitable[None]]) -> None:
        heapq.heappush(agenda, (virtual.total_seconds(), next(order), action))

    def report_action(spec: ReportSpec, number: int, when: timedelta) -> Callable[[], Awaitable[None]]:
        async def send() -> None:
            body = spec.model_dump(exclude_none=True, exclude={"lat", "lon"})
            if spec.lat is not None and spec.lon is not None:
                body["location"] = {"lat": spec.lat, "lon": spec.lon}
            body |= {"report_id": f"drill-{outcome.run_id}-{number}", "exercise": True}
            answer = await client.post("/api/v1/incidents", json=body)
            if answer.status_code not in (200, 201):
                outcome.errors.append(f"report {number}: HTTP {answer.status_code} {answer.text[:200]}")
                return
            incident = answer.json()
            outcome.reports += 1
            outcome.incident_ids.append(incident["id"])
            plan_units(incident, when)

        return send

    def plan_units(incident: dict[str, object], when: timedelta) -> None:
        assignments = incident.get("assignments")
        assert isinstance(assignments, list)
        for assignment in assignments:
            behaviour = scenario.behaviour.of(assignment["team"])
            if behaviour.never_acknowledges or behaviour.ack_after is None:
                continue
            acked = when + behaviour.ack_after.draw(rng)
            travel = behaviour.arrive_after.draw(rng) if behaviour.arrive_after else timedelta(0)
            arrived = acked + max(travel, timedelta(seconds=2))
            resolved = arrived + (behaviour.resolve_after.draw(rng) if behaviour.resolve_after else timedelta(0))
            times = (acked, acked + timedelta(seconds=1), arrived, resolved)
            for step, moment in zip(_STEPS, times, strict=True):
                at(moment, move_action(incident["id"], assignment["team"], step))
            if assignment["role"] == "lead":
                at(resolved + scenario.behaviour.close_after.draw(rng), close_action(incident["id"]))

    def move_action(incident_id: object, team: str, step: str) -> Callable[[], Awaitable[None]]:
        async def move() -> None:
            path = f"/api/v1/incidents/{incident_id}/assignments/{team}/{step}"
            await send_move(path, {"actor": f"drill:{team}"})

        return move

    def close_action(incident_id: object) -> Callable[[], Awaitable[None]]:
        async def close() -> None:
            path = f"/api/v1/incidents/{incident_id}/close"
            answer = await client.post(path, json={"actor": "drill:operator"})
            if answer.status_code == 409 and answer.json().get("incident_status") == "verifying":
                # The rule asks for 核查: the drill's verifier passes it instead of the operator closing it.
                path = f"/api/v1/incidents/{incident_id}/verification"
                answer = await client.post(path, json={"passed": True, "actor": "drill:verifier"})
            count(path, answer)

        return close

    async def send_move(path: str, body: dict[str, str]) -> None:
        count(path, await client.post(path, json=body))

    def count(path: str, answer: httpx.Response) -> None:
        if answer.status_code == 200:
            outcome.moves += 1
        elif answer.status_code == 409:
            outcome.refused += 1
        else:
            outcome.errors.append(f"{path}: HTTP {answer.status_code}")

    number = itertools.count(1)
    for step in scenario.timeline:
        every = offset(step.repeat.every) if step.repeat else timedelta(0)
        for k in range(step.repeat.times if step.repeat else 1):
            when = offset(step.at) + k * every
            at(when, report_action(step.report, next(number), when))

    horizon = offset(scenario.until).total_seconds()
    while agenda:
        virtual, _, action = agenda[0]
        if virtual > horizon:
            break
        wait = started + virtual / speed - time.monotonic()
        if time.monotonic() - started + max(wait, 0) > max_seconds:
            outcome.errors.append(f"stopped after max_seconds={max_seconds}")
            break
        if wait > 0:
            await asyncio.sleep(wait)
        heapq.heappop(agenda)
        await action()
    outcome.seconds = time.monotonic() - started
    return outcome
