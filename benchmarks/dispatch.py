"""Dispatch benchmark: choosing units under load, and re-arming deadlines at start.

Run by hand from the repository root:

    .venv/bin/python benchmarks/dispatch.py
    .venv/bin/python benchmarks/dispatch.py --database-url postgresql+asyncpg://root@127.0.0.1:5432/test
    .venv/bin/python benchmarks/dispatch.py --officers 1000 --open 5000 --deadlines 100000 --json out.json

1. **Choosing units.** A roster of ``--officers`` officers in 20 teams (day and night shifts,
   a few posted at the joint duty station, positions scattered over the town), with the load of
   ``--open`` open incidents spread over them. Measured: the whole choice for a new incident —
   one officer for each of the five teams of the five-way decision, as the hub makes it
   (:func:`dispatcher.core.roster.choose_officer`, shifts and positions included) — repeated for
   ``--choices`` incidents at random places. Target: median under 1 ms.
2. **Re-arming at start.** A database holding open incidents with ``--deadlines`` pending
   deadlines in all (five teams × three deadlines each), written through the real hub and
   store; then a fresh hub is started on it and timed from ``start()`` until every deadline is
   in its heap and the writer runs (load, hydrate, count officers' tasks, heapify). Target: under 5 s.

Bounded in count and time; the only network traffic is to PostgreSQL on 127.0.0.1 when asked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import create_database, drop_database, machine_info, make_tempdir, run_async  # noqa: E402

from dispatcher.alarm import ManualAlarm  # noqa: E402
from dispatcher.clock import VirtualClock  # noqa: E402
from dispatcher.core.incidents import Report  # noqa: E402
from dispatcher.core.roster import (  # noqa: E402
    Need,
    Officer,
    OfficerKind,
    Roster,
    Shift,
    UnitState,
    UnitStatus,
    choose_officer,
)
from dispatcher.feed import EventFeed  # noqa: E402
from dispatcher.hub import Hub  # noqa: E402
from dispatcher.settings import BUNDLED_TABLE  # noqa: E402
from dispatcher.sql_store import SqlIncidentStore  # noqa: E402
from rules import compile_table, load_table  # noqa: E402

START = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)  # 16:00 on a market-day Friday in Asia/Shanghai
FIVE_WAY = (28.8480, 118.9120)
TEAMS = [f"team-{n:02d}" for n in range(20)]
FIVE = TEAMS[:5]


def big_roster(officers: int, rng: random.Random) -> tuple[Roster, dict[str, UnitState]]:
    people: dict[str, Officer] = {}
    per_team = officers // len(TEAMS)
    shifts = []
    for team in TEAMS:
        ids = [f"{team}-{n:03d}" for n in range(per_team)]
        for n, oid in enumerate(ids):
            people[oid] = Officer(
                id=oid,
                name=oid,
                team=team,
                module="m",
                post="p",
                department="d",
                kind=OfficerKind.STAFFED,
                zone="five-way" if n < 2 else None,
            )
        half = len(ids) // 2
        shifts.append(Shift(id=f"{team}-day", team=team, start=_t(8), end=_t(20), officers=tuple(ids[:half])))
        shifts.append(Shift(id=f"{team}-night", team=team, start=_t(20), end=_t(8), officers=tuple(ids[half:])))
    units = {
        oid: UnitState(
            status=UnitStatus.AVAILABLE,
            lat=28.840 + rng.random() * 0.016,
            lon=118.900 + rng.random() * 0.025,
            position_at=START,
        )
        for oid in people
    }
    return Roster(version="bench", timezone="Asia/Shanghai", officers=people, shifts=tuple(shifts), max_tasks=8), units


def _t(hour: int) -> Any:
    from datetime import time as clock

    return clock(hour)


def load_units(roster: Roster, units: dict[str, UnitState], open_incidents: int, rng: random.Random) -> None:
    """Spread the tasks of ``open_incidents`` open incidents (two teams each) over the officers on duty."""
    on_duty = {team: list(roster.duty(team, START)) for team in TEAMS}
    for _ in range(open_incidents):
        for team in rng.sample(TEAMS, 2):
            officer = rng.choice(on_duty[team])
            unit = units[officer]
            units[officer] = UnitState(
                status=UnitStatus.ASSIGNED,
                lat=unit.lat,
                lon=unit.lon,
                position_at=unit.position_at,
                tasks=min(unit.tasks + 1, roster.max_tasks),
            )


def bench_choice(officers: int, open_incidents: int, choices: int, seconds: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    roster, units = big_roster(officers, rng)
    load_units(roster, units, open_incidents, rng)
    timings: list[float] = []
    chosen = 0
    stop_at = time.perf_counter() + seconds
    for n in range(choices):
        if time.perf_counter() > stop_at:
            break
        lat = 28.840 + rng.random() * 0.016
        lon = 118.900 + rng.random() * 0.025
        zones = ("five-way",) if n % 10 == 0 else ()
        at = START + timedelta(seconds=n)
        began = time.perf_counter()
        for team in FIVE:
            if choose_officer(roster, units, Need(team=team, at=at, lat=lat, lon=lon, zones=zones)) is not None:
                chosen += 1
        timings.append(time.perf_counter() - began)
    timings.sort()
    return {
        "officers": len(roster.officers),
        "officers_per_team": len(roster.officers) // len(TEAMS),
        "open_incidents_load": open_incidents,
        "incidents_chosen_for": len(timings),
        "teams_per_incident": len(FIVE),
        "officers_chosen": chosen,
        "median_ms": round(statistics.median(timings) * 1000, 4),
        "p99_ms": round(timings[int(len(timings) * 0.99) - 1] * 1000, 4),
        "max_ms": round(timings[-1] * 1000, 4),
        "target_ms": 1.0,
    }


async def bench_rearm(database_url: str | None, deadlines: int, keep: bool) -> dict[str, Any]:
    rules = compile_table(load_table(BUNDLED_TABLE))
    incidents = -(-deadlines // 15)  # five teams, three deadlines each
    db = await create_database(database_url, make_tempdir(), keep=keep)
    try:
        filled = time.perf_counter()
        hub = _hub(db.url, rules, durable=False)
        await hub.start()
        # Reports at places 300 m apart or more so none joins another (duplicates off anyway).
        batch = 500
        for first in range(0, incidents, batch):
            await asyncio.gather(
                *(
                    hub.report(
                        Report(
                            report_id=f"bench-{n}",
                            category="traffic.congestion",
                            description="bench",
                            zone="five-way",
                        ),
                        START,
                    )
                    for n in range(first, min(first + batch, incidents))
                )
            )
        await hub.stop()
        filled = time.perf_counter() - filled
        await db.analyze()

        runs = []
        for _ in range(3):
            fresh = _hub(db.url, rules, durable=True)
            began, cpu = time.perf_counter(), time.process_time()
            await fresh.start()
            took, cpu = time.perf_counter() - began, time.process_time() - cpu
            armed = fresh.armed_deadlines
            await fresh.stop()
            runs.append((took, armed, cpu))
        return {
            "backend": db.backend,
            "server_version": db.server_version,
            "open_incidents": incidents,
            "deadline_marks": runs[0][1],
            "fill_seconds": round(filled, 1),
            "start_seconds": [round(t, 2) for t, _, _ in runs],
            "median_start_seconds": round(statistics.median(t for t, _, _ in runs), 2),
            # This process's CPU time for the start (the database's own work on PostgreSQL is not in it):
            # steadier than wall time on a machine that other work shares.
            "start_cpu_seconds": [round(c, 2) for _, _, c in runs],
            "target_seconds": 5.0,
        }
    finally:
        await drop_database(db)


def _hub(url: str, rules: Any, *, durable: bool) -> Hub:
    return Hub(
        store=SqlIncidentStore(url, durable=durable),
        rules=rules,
        clock=VirtualClock(START),
        alarm=ManualAlarm(),
        feed=EventFeed(queue_size=10),
        duplicate_radius_m=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--officers", type=int, default=1000)
    parser.add_argument("--open", type=int, default=5000, help="open incidents whose tasks load the officers")
    parser.add_argument("--choices", type=int, default=20_000, help="new incidents to choose units for (bounded)")
    parser.add_argument("--seconds", type=float, default=30.0, help="time bound for the choice loop")
    parser.add_argument("--deadlines", type=int, default=100_000, help="pending deadlines to re-arm at start")
    parser.add_argument("--database-url", default=None, help="PostgreSQL on 127.0.0.1 (default: a SQLite file)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database afterwards")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    choice = bench_choice(args.officers, args.open, args.choices, args.seconds, args.seed)
    print(
        f"choose units: {choice['officers']} officers, {choice['open_incidents_load']} open incidents: "
        f"median {choice['median_ms']} ms, p99 {choice['p99_ms']} ms per incident "
        f"(5 teams; {choice['incidents_chosen_for']} incidents)"
    )
    rearm = run_async(bench_rearm(args.database_url, args.deadlines, args.keep))
    print(
        f"re-arm at start ({rearm['backend']}): {rearm['deadline_marks']} deadline marks for "
        f"{rearm['open_incidents']} open incidents: {rearm['start_seconds']} s "
        f"(median {rearm['median_start_seconds']} s; CPU {rearm['start_cpu_seconds']} s)"
    )
    result = {"choice": choice, "rearm": rearm, "machine": machine_info()}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
