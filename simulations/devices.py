"""Officers' phones over MQTT: N simulated devices against a running dispatcher and its broker.

The phones are the roster's officers (by default the bundled roster of the bundled table: the ids the
dispatcher knows, so their positions reach the map and the roster): taken one team at a time (the first
officer of each team, then the second...), so that a few phones cover every team. Without a roster
(``roster=()``) they are ``officer-000``... round-robin over the rule table's teams, for a dispatcher run
with ``DISPATCHER_NO_ROSTER``. Each walks at random near its zone and publishes its position, listens on
its team's dispatch topic and its own tasks topic, and works the incidents it is given (with a roster:
those whose notice names its officer, as the roster chose or a re-dispatch or an operator moved them;
without: one phone of the team per incident): acknowledge after a delay drawn
(seeded) from a log-normal distribution, go en route, arrive, resolve. Some officers also report incidents.

    python -m simulations.devices --mqtt-url mqtt://127.0.0.1:1883 --officers 20 --duration 60
    dispatcher devices --mqtt-url mqtt://127.0.0.1:1883 --officers 20 --duration 60

Talks to the broker only (loopback or wherever ``--mqtt-url`` points). Every wait is bounded: the run by
``duration_s``, each MQTT call by the client's timeout, the stop by a grace period and then by cancelling
(see :meth:`DeviceFleet.run`). Wall-clock delays are the simulator's own business: it is a device, not the hub.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import orjson

from dispatcher.roster_file import BUNDLED_ROSTER, RosterError, build_roster, read_roster
from dispatcher.settings import BUNDLED_TABLE
from gateways.mqtt import BrokerAddress, Topics, default_prefix
from gateways.mqtt.gateway import NO_DELAY, end_tasks
from rules import RuleBook, compile_table, load_table
from rules.table import MultiPolygonGeometry, PointGeometry

#: What simulated officers report, as (category, zone): the five-way case and the market.
DEFAULT_REPORTS: tuple[tuple[str, str], ...] = (
    ("traffic.congestion", "five-way"),
    ("market.stall_encroachment", "market"),
    ("traffic.accident", "town-centre"),
)
_METRES_PER_DEGREE = 111_320.0
#: The notices that give an officer work: a dispatch, and an officer (re)assigned by a re-dispatch or an operator.
_TASKS = ("UnitsDispatched", "OfficerAssigned")
#: Each MQTT call of a phone (connect, subscribe, publish, disconnect) fails after this long.
_CLIENT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceConfig:
    mqtt_url: str
    prefix: str | None = None
    officers: int | None = None  # how many phones; None: every officer of the roster (20 without a roster)
    duration_s: float = 60.0
    seed: int = 1
    ack_median_s: float = 2.0  # log-normal: median and spread (sigma) of the time to acknowledge
    ack_sigma: float = 0.5
    step_s: float = 1.0  # mean time between en route, on scene and resolved
    position_every_s: float = 5.0
    walk_m: float = 30.0  # standard deviation of one step of the random walk
    reports: int = 0  # how many reports the officers send in all (spread over the run)
    report_kinds: tuple[tuple[str, str], ...] = DEFAULT_REPORTS
    report_within_s: float | None = None  # reports go out within this time (default: the first half of the run)
    work_tasks: bool = True  # False: phones only walk and send positions (background load), no team topics
    stop_after_resolved: int | None = None  # end early once this many tasks were resolved
    #: The roster's officers as (id, team, zone or None), in the roster's order; None: the bundled roster (with
    #: the bundled table); (): made-up ids ``officer-NNN`` (a dispatcher without a roster).
    roster: tuple[tuple[str, str, str | None], ...] | None = None


class TooManyPhones(ValueError):
    """More phones asked for than the roster has officers."""


class PhonesDidNotStop(RuntimeError):
    """Phones still running after the stop's grace period and every round of cancelling."""


def roster_officers(path: Path = BUNDLED_ROSTER) -> tuple[tuple[str, str, str | None], ...]:
    """(id, team, zone) of every officer of a roster file, in its order."""
    return tuple((o.id, o.team, o.zone) for o in read_roster(path).officers)


def phones_of(
    roster: tuple[tuple[str, str, str | None], ...], teams: list[str], count: int
) -> list[tuple[str, str, str | None]]:
    """``count`` officers of ``roster``, one team at a time in the table's order (every team's first officer,
    then every team's second...); raises :class:`TooManyPhones` when the roster has fewer."""
    by_team: dict[str, list[tuple[str, str, str | None]]] = {}
    for officer in roster:
        by_team.setdefault(officer[1], []).append(officer)
    order = [t for t in teams if t in by_team] + [t for t in by_team if t not in teams]
    interleaved = [
        by_team[team][n]
        for n in range(max(map(len, by_team.values()), default=0))
        for team in order
        if n < len(by_team[team])
    ]
    if count > len(interleaved):
        raise TooManyPhones(f"the roster has {len(interleaved)} officers: ask for at most that many phones")
    return interleaved[:count]


@dataclass(slots=True)
class DeviceSummary:
    officers: int = 0
    positions: int = 0
    reports: int = 0
    notices: int = 0
    tasks_taken: int = 0
    moves: int = 0
    resolved: int = 0
    seconds: float = 0.0
    report_ids: list[str] = field(default_factory=list)
    cancelled: int = 0  # phones that did not end on their own once the run was over, and were cancelled

    def line(self) -> str:
        return (
            f"{self.officers} officers, {self.seconds:.1f} s: {self.positions} positions, {self.reports} reports, "
            f"{self.notices} notices, {self.tasks_taken} tasks taken, {self.moves} moves, {self.resolved} resolved"
            + (f", {self.cancelled} phones cancelled at the end" if self.cancelled else "")
        )


def zone_points(rules: RuleBook) -> dict[str, tuple[float, float]]:
    """(lat, lon) of each zone by id: a point zone's centre, a polygon's mean vertex."""
    centres = {}
    for zone in rules.table.zones:
        geometry = zone.geometry
        if isinstance(geometry, PointGeometry):
            lon, lat = geometry.coordinates
        elif isinstance(geometry, MultiPolygonGeometry):
            ring = geometry.coordinates[0][0][:-1]  # the first polygon's outer ring
            lon, lat = sum(p[0] for p in ring) / len(ring), sum(p[1] for p in ring) / len(ring)
        else:
            ring = geometry.coordinates[0][:-1]
            lon, lat = sum(p[0] for p in ring) / len(ring), sum(p[1] for p in ring) / len(ring)
        centres[zone.id] = (lat, lon)
    return centres


def zone_centres(rules: RuleBook) -> list[tuple[float, float]]:
    """(lat, lon) of each zone, in the table's order."""
    return list(zone_points(rules).values())


def default_roster(rules: RuleBook) -> tuple[tuple[str, str, str | None], ...]:
    """The bundled roster's officers when it fits ``rules`` (the bundled table), else none."""
    try:
        build_roster(read_roster(BUNDLED_ROSTER), rules)
    except RosterError:
        return ()
    return roster_officers(BUNDLED_ROSTER)


async def stop_tasks(tasks: Iterable[asyncio.Task[object]], *, grace_s: float, rounds: int, round_s: float) -> int:
    """Wait up to ``grace_s`` for ``tasks`` (told to stop by other means) to end, then cancel those left, again each
    round (``rounds`` of up to ``round_s``); returns how many had to be cancelled. Runs on the tasks' loop.

    Raises :class:`PhonesDidNotStop`, naming the tasks, when some are still running after the last round.

    Cancelling is the fallback, not the way to stop a phone: on Python 3.11 ``asyncio.wait_for``, which every
    aiomqtt call awaits, swallows a cancel that lands as the call completes (fixed in 3.12), and the task goes on
    with nothing left to cancel it. A single cancel of every phone did hang the fleet that way (a walk publishing
    forever, or a phone waiting for the others to listen), and with it the e2e test awaiting the fleet.
    """
    left = set(tasks)
    if left:
        _, left = await asyncio.wait(left, timeout=grace_s)
    cancelled = len(left)
    left = await end_tasks(left, rounds=rounds, round_s=round_s)
    if left:
        names = ", ".join(sorted(task.get_name() for task in left))
        waited = grace_s + rounds * round_s
        raise PhonesDidNotStop(f"{len(left)} phones still running {waited:g} s after the run ended: {names}")
    return cancelled


class Officer:
    def __init__(
        self, officer_id: str, team: str, team_mates: list[str], rng: random.Random, home: tuple[float, float]
    ):
        self.id = officer_id
        self.team = team
        self.team_mates = team_mates  # every officer of the team, this one included, in a fixed order
        self.rng = rng
        self.lat, self.lon = home
        self.status = "available"
        self.taken: set[int] = set()
        self.working: set[int] = set()

    def mine(self, incident_id: int) -> bool:
        """Of the team's officers, exactly one takes each incident."""
        return self.team_mates[incident_id % len(self.team_mates)] == self.id

    def walk(self, sigma_m: float) -> None:
        self.lat += self.rng.gauss(0, sigma_m) / _METRES_PER_DEGREE
        self.lon += self.rng.gauss(0, sigma_m) / (_METRES_PER_DEGREE * math.cos(math.radians(self.lat)))


class DeviceFleet:
    #: Once the run is over, how long the phones have to end on their own: at worst a phone still connecting
    #: (connect, the subscription in flight, disconnect: one client timeout each); on a healthy broker, milliseconds.
    stop_grace_s: float = 3 * _CLIENT_TIMEOUT_S
    #: Then the phones still running are cancelled, again each round (a cancel can be lost, see :func:`stop_tasks`).
    cancel_rounds: int = 10
    cancel_round_s: float = 1.0

    def __init__(self, config: DeviceConfig, rules: RuleBook) -> None:
        self.config = config
        self.topics = Topics(config.prefix or default_prefix(rules.township_id))
        self.address = BrokerAddress.parse(config.mqtt_url)
        self.summary = DeviceSummary()
        self.run_id = uuid.uuid4().hex[:8]
        teams = [t.id for t in rules.table.teams]
        zones = zone_points(rules)
        centres = list(zones.values())
        roster = default_roster(rules) if config.roster is None else config.roster
        self.on_roster = bool(roster)
        if roster:
            phones = phones_of(roster, teams, len(roster) if config.officers is None else config.officers)
        else:
            count = 20 if config.officers is None else config.officers
            phones = [(f"officer-{n:03d}", teams[n % len(teams)], None) for n in range(count)]
        self.officers = [
            Officer(
                officer_id,
                team,
                [o for o, t, _ in phones if t == team],
                random.Random(config.seed * 100_003 + n),
                zones.get(zone or "", centres[n % len(centres)]),
            )
            for n, (officer_id, team, zone) in enumerate(phones)
        ]
        self.summary.officers = len(self.officers)
        # Set when the run is over: every loop of a phone watches it, so phones stop without being cancelled.
        self._stopping = asyncio.Event()
        # Nobody reports before every phone listens: a notice sent to a phone still connecting is lost.
        self._listening = 0
        self._all_listening = asyncio.Event()

    async def run(self) -> DeviceSummary:
        """Run until ``duration_s`` passed, ``stop_after_resolved`` tasks were resolved or a phone failed; then
        stop every phone (bounded, see :func:`stop_tasks`) and re-raise the first phone's error, if any.

        Raises :class:`PhonesDidNotStop` rather than wait without end for a phone that does not stop."""
        started = time.monotonic()
        phones = [asyncio.create_task(self._device(o), name=o.id) for o in self.officers]
        over = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait([*phones, over], timeout=self.config.duration_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._stopping.set()
            over.cancel()
            self.summary.cancelled = await stop_tasks(
                phones, grace_s=self.stop_grace_s, rounds=self.cancel_rounds, round_s=self.cancel_round_s
            )
        self.summary.seconds = time.monotonic() - started
        for phone in phones:
            error = None if phone.cancelled() else phone.exception()
            if isinstance(error, Exception):
                raise error
        return self.summary

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if the run ends meanwhile; whether the phone goes on (the run is not over)."""
        if not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._stopping.wait()
        return not self._stopping.is_set()

    async def _everyone_listens(self) -> bool:
        """Wait until every phone listens, or the run ends (then False)."""
        waits = [asyncio.create_task(self._all_listening.wait()), asyncio.create_task(self._stopping.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return not self._stopping.is_set()

    async def _stopping_on_error(self, work: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run one of a phone's tasks, ``work(*args)``; if it fails, the run is over (:meth:`run` re-raises the error).

        Called here rather than by the caller: a task cancelled before it starts leaves no coroutine never awaited."""
        try:
            await work(*args)
        except Exception:
            # Its task group cancels its siblings, which can swallow that cancel (see stop_tasks): they end on the flag.
            self._stopping.set()
            raise

    async def _device(self, officer: Officer) -> None:
        async with aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=self.address.username,
            password=self.address.password,
            identifier=f"device-{self.run_id}-{officer.id}",
            protocol=aiomqtt.ProtocolVersion.V5,
            timeout=_CLIENT_TIMEOUT_S,
            socket_options=NO_DELAY,
        ) as client:
            topics = [self.topics.officer_tasks(officer.id)]
            if self.config.work_tasks:  # a phone that only walks need not take its team's traffic
                topics.insert(0, self.topics.team_dispatch(officer.team))
            for topic in topics:
                if self._stopping.is_set():
                    return  # connected after the run ended: disconnect at once
                await client.subscribe(topic, qos=1)
            self._listening += 1
            if self._listening == len(self.officers):
                self._all_listening.set()
            async with asyncio.TaskGroup() as group:
                listener = group.create_task(self._stopping_on_error(self._listen, client, officer, group))
                group.create_task(self._stopping_on_error(self._walk, client, officer))
                group.create_task(self._stopping_on_error(self._report, client, officer))
                await self._stopping.wait()
                # The walk, the report and the work end on the flag at their next pause. The listener waits on the
                # broker: it is cancelled, which cannot be lost there (it awaits no asyncio.wait_for).
                listener.cancel()

    async def _listen(self, client: aiomqtt.Client, officer: Officer, group: asyncio.TaskGroup) -> None:
        async for message in client.messages:
            self.summary.notices += 1
            body = orjson.loads(message.payload if isinstance(message.payload, bytes) else b"{}")
            incident_id = body.get("incident_id")
            kind = body.get("type")
            if not self.config.work_tasks or kind not in _TASKS or not isinstance(incident_id, int):
                continue
            # With a roster a task is the named officer's (the roster's choice, a re-dispatch, an operator's): one
            # waiting for an officer on duty is nobody's yet. Without one, one phone of the team takes each.
            mine = body.get("officer") == officer.id if self.on_roster else officer.mine(incident_id)
            if body.get("team") != officer.team or not mine or incident_id in officer.taken:
                continue  # a re-sent notice (same seq, or on the team's topic and the officer's) or another's
            officer.taken.add(incident_id)
            self.summary.tasks_taken += 1
            group.create_task(self._stopping_on_error(self._work, client, officer, incident_id))

    async def _work(self, client: aiomqtt.Client, officer: Officer, incident_id: int) -> None:
        config = self.config
        rng = officer.rng
        if not await self._pause(rng.lognormvariate(math.log(config.ack_median_s), config.ack_sigma)):
            return
        steps = (("acknowledge", "assigned"), ("en_route", "en_route"), ("on_scene", "on_scene"), ("resolve", None))
        officer.working.add(incident_id)
        for n, (action, status) in enumerate(steps):
            if n and not await self._pause(rng.expovariate(1 / config.step_s)):
                return
            body = {"officer_id": officer.id, "incident_id": incident_id, "team": officer.team, "action": action}
            await client.publish(self.topics.officer_acks(officer.id), orjson.dumps(body), qos=1)
            self.summary.moves += 1
            if status is None:
                officer.working.discard(incident_id)
            officer.status = status or ("assigned" if officer.working else "available")
            await self._position(client, officer)
        self.summary.resolved += 1
        if self.config.stop_after_resolved is not None and self.summary.resolved >= self.config.stop_after_resolved:
            self._stopping.set()

    async def _walk(self, client: aiomqtt.Client, officer: Officer) -> None:
        # Spread the first positions so N phones do not all speak in the same millisecond.
        pause = officer.rng.uniform(0, self.config.position_every_s)
        while await self._pause(pause):
            officer.walk(self.config.walk_m)
            await self._position(client, officer)
            pause = self.config.position_every_s

    async def _position(self, client: aiomqtt.Client, officer: Officer) -> None:
        body = {
            "officer_id": officer.id,
            "status": officer.status,
            "lat": round(officer.lat, 6),
            "lon": round(officer.lon, 6),
        }
        await client.publish(self.topics.officer_status(officer.id), orjson.dumps(body), qos=1)
        self.summary.positions += 1

    async def _report(self, client: aiomqtt.Client, officer: Officer) -> None:
        config = self.config
        if config.reports <= 0:
            return
        index = self.officers.index(officer)
        mine = len(range(index, config.reports, len(self.officers)))
        if not mine:
            return
        if not await self._everyone_listens():
            return
        within = config.report_within_s if config.report_within_s is not None else config.duration_s / 2
        pause = within / (mine + 1)
        for n in range(mine):
            if not await self._pause(officer.rng.uniform(0.5, 1.5) * pause):
                return
            category, zone = config.report_kinds[officer.rng.randrange(len(config.report_kinds))]
            report_id = f"sim-{self.run_id}-{officer.id}-{n}"
            body = {
                "report_id": report_id,
                "category": category,
                "zone": zone,
                "description": f"{category} reported by {officer.id} (device simulation)",
                "location": {"lat": round(officer.lat, 6), "lon": round(officer.lon, 6)},
                "reporter": officer.id,
                "reporter_kind": "officer",
                "exercise": True,
            }
            await client.publish(self.topics.reports, orjson.dumps(body), qos=1)
            self.summary.reports += 1
            self.summary.report_ids.append(report_id)


async def run_devices(config: DeviceConfig, rules: RuleBook | None = None) -> DeviceSummary:
    """Run the fleet for ``config.duration_s`` (or until ``stop_after_resolved`` tasks are resolved)."""
    return await DeviceFleet(config, rules or compile_table(load_table(BUNDLED_TABLE))).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--prefix", default=None, help="topic prefix (default township/<township-id>/)")
    parser.add_argument("--officers", type=int, default=None, help="phones (default: every officer of the roster)")
    parser.add_argument("--no-roster", action="store_true", help="made-up officer ids (a dispatcher without roster)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--reports", type=int, default=10, help="reports the officers send in all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ack-median", type=float, default=2.0, help="median seconds to acknowledge")
    parser.add_argument("--position-every", type=float, default=5.0, help="seconds between positions")
    args = parser.parse_args(argv)
    config = DeviceConfig(
        mqtt_url=args.mqtt_url,
        prefix=args.prefix,
        officers=args.officers,
        roster=() if args.no_roster else None,
        duration_s=args.duration,
        reports=args.reports,
        seed=args.seed,
        ack_median_s=args.ack_median,
        position_every_s=args.position_every,
    )
    print(asyncio.run(run_devices(config)).line())


if __name__ == "__main__":
    main()
