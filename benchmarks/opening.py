"""The domain work of opening an incident, without I/O: CPU per report of routing, choosing the officers,
``open_incident`` and its events' JSON (what the hub does for a report inside the writer's batch).

Run by hand from the repository root:

    .venv/bin/python benchmarks/opening.py              # the intake benchmark's four kinds of report, in turn
    .venv/bin/python benchmarks/opening.py --same-time  # every report at one instant, as a batch's are

The bundled table and roster; the reports are ``benchmarks/intake.py``'s mix (a five-team report at the
five-way intersection down to a two-team one), each at its own microsecond unless ``--same-time``. Nobody
holds a task, so every team gets an officer. Prints the median and range of ``--rounds`` rounds of process CPU
per report, overall and by kind. Bounded in count; no network, no files written.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPORT_MIX

from dispatcher.core import events as ev
from dispatcher.core.incidents import Report, open_incident
from dispatcher.core.roster import Need, Roster, UnitState, choose_officer
from dispatcher.hub import _routing_input
from dispatcher.roster_file import BUNDLED_ROSTER, build_roster, read_roster
from dispatcher.settings import BUNDLED_TABLE
from rules import RuleBook, compile_table, load_table

MIX = REPORT_MIX
START = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)  # 16:00 on a market-day Friday in Asia/Shanghai


def open_one(book: RuleBook, roster: Roster, incident_id: int, report: Report, at: datetime) -> int:
    """What the hub does for one report: route, choose an officer per team, open, serialise the events."""
    decision = book.route(_routing_input(report, at))
    units: dict[str, UnitState] = {}
    chosen: dict[str, str | None] = {}
    for team in (decision.lead, *decision.support):
        if team is None or not roster.team(team):
            continue
        need = Need(team=team, at=at, lat=report.lat, lon=report.lon, zones=decision.zones)
        chosen[team] = choose_officer(roster, units, need)
    _, events = open_incident(incident_id, report, decision, at, chosen, calendar=book.work_calendar)
    return sum(len(ev.to_json(event)) for event in events)


def cpu_per_report(book: RuleBook, roster: Roster, reports: list[Report], *, same_time: bool, repeats: int) -> float:
    """Microseconds of process CPU per report over ``repeats`` passes of ``reports``."""
    started = time.process_time()
    n = 0
    for _ in range(repeats):
        for report in reports:
            n += 1
            open_one(book, roster, n, report, START if same_time else START + timedelta(microseconds=n))
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=1000, help="reports per round (the mix in turn)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--same-time", action="store_true", help="every report at one instant (a batch)")
    args = parser.parse_args()
    if not 1 <= args.reports <= 100_000 or not 1 <= args.rounds <= 100:
        parser.error("--reports 1..100000, --rounds 1..100")

    book = compile_table(load_table(BUNDLED_TABLE))
    roster = build_roster(read_roster(BUNDLED_ROSTER), book)
    description = "x" * 120  # the intake benchmark's default size
    reports = [
        Report(report_id=f"r-{n}", category=category, zone=zone, description=description)
        for n in range(args.reports)
        for category, zone in (MIX[n % len(MIX)],)
    ]
    cpu_per_report(book, roster, reports[:100], same_time=args.same_time, repeats=1)  # warm the caches up
    overall = [cpu_per_report(book, roster, reports, same_time=args.same_time, repeats=1) for _ in range(args.rounds)]
    print(
        f"opening a report ({'one instant' if args.same_time else 'each its own time'}): "
        f"{statistics.median(overall):.1f} µs CPU median [{min(overall):.1f}–{max(overall):.1f}], {args.rounds} rounds"
    )
    for k, (category, zone) in enumerate(MIX):
        kind = reports[k :: len(MIX)]
        teams = book.route(_routing_input(kind[0], START))
        rounds = [cpu_per_report(book, roster, kind, same_time=args.same_time, repeats=1) for _ in range(args.rounds)]
        print(
            f"  {category} at {zone} ({1 + len(teams.support) if teams.lead else 0} teams): "
            f"{statistics.median(rounds):.1f} µs [{min(rounds):.1f}–{max(rounds):.1f}]"
        )


if __name__ == "__main__":
    main()
