"""A busy township's month as a scenario: every category of the bundled table in turn, one team in twenty silent.

The reports cycle through the catalogue (with the zone a rule names, where one does), so a run exercises the
joint duty station, handovers, triage and the one-stop service alike; one team in twenty never acknowledges,
so deadlines are missed and escalated too. ``benchmarks/simulate.py`` replays 5,000 incidents over 31 days;
``tests/test_simulation_figures.py`` smaller months of the same shape.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dispatcher.settings import BUNDLED_TABLE
from rules import compile_table, load_table
from simulations.scenario import Behaviour, Behaviours, ReportSpec, Scenario, Step

#: Categories whose rules name a zone, and that zone; the others are reported in the town centre.
ZONED = {"traffic.congestion": "five-way", "market.stall_encroachment": "market", "market.unlicensed_vendor": "market"}


def busy_month(incidents: int, days: int, seed: int, *, name: str | None = None) -> Scenario:
    """``incidents`` reports spread evenly over ``days`` days from 1 June 2026, the categories taken in turn."""
    book = compile_table(load_table(BUNDLED_TABLE))
    categories = [c.id for c in book.table.catalogue]
    every = timedelta(days=days) / incidents
    steps = []
    for n, category in enumerate(categories):
        times = len(range(n, incidents, len(categories)))
        if not times:
            continue
        steps.append(
            Step(
                at=f"{int((every * n).total_seconds())}s",
                repeat={"every": f"{max(1, int((every * len(categories)).total_seconds()))}s", "times": times},
                report=ReportSpec(category=category, zone=ZONED.get(category, "town-centre"), description=category),
            )
        )
    silent = {t.id: Behaviour(never_acknowledges=True) for t in book.table.teams[::20]}
    return Scenario(
        name=name or f"a busy month: {incidents} incidents in {days} days",
        start=datetime(2026, 6, 1, tzinfo=UTC),
        seed=seed,
        until=f"{days}d",
        behaviour=Behaviours(teams=silent),
        timeline=steps,
    )
