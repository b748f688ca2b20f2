"""The duplicate policy on its own: which open incident a report repeats (pure, table-driven)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dispatcher.core.duplicates import find_duplicate
from dispatcher.core.incidents import Incident, Report, finish_incident, open_incident
from dispatcher.core.lifecycle import IncidentAction
from rules import RoutingInput, RuleBook

AT = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)
LAT, LON = 28.8481, 118.9121
METRE_LON = 1 / 97_500  # about one metre of longitude at this latitude


def _incident(rules: RuleBook, incident_id: int, lon_m: float = 0, **report: object) -> Incident:
    first = Report(
        report_id=f"r-{incident_id}",
        category="traffic.congestion",
        description="jam",
        zone="five-way",
        lat=LAT,
        lon=LON + lon_m * METRE_LON,
        **report,  # type: ignore[arg-type]
    )
    decision = rules.route(RoutingInput(category=first.category, zone=first.zone))
    return open_incident(incident_id, first, decision, AT)[0]


def _new(lon_m: float = 0, *, exercise: bool = False, placed: bool = True) -> Report:
    return Report(
        report_id="new",
        category="traffic.congestion",
        description="jam again",
        lat=LAT if placed else None,
        lon=LON + lon_m * METRE_LON if placed else None,
        exercise=exercise,
    )


@pytest.mark.parametrize(
    ("case", "new", "at", "radius_m", "expected"),
    [
        ("the nearest of two within the radius", _new(30), AT, 200, 2),
        ("none within the radius", _new(-500), AT, 200, None),
        ("joining turned off", _new(0), AT, 0, None),
        ("a report without a position", _new(placed=False), AT, 200, None),
        ("a drill joins no real incident", _new(0, exercise=True), AT, 200, None),
        ("too long after the last report", _new(0), AT + timedelta(minutes=31), 200, None),
        ("just inside the window", _new(0), AT + timedelta(minutes=30), 200, 1),
    ],
)
def test_which_incident_a_report_repeats(
    bundled_rules: RuleBook, case: str, new: Report, at: datetime, radius_m: float, expected: int | None
) -> None:
    candidates = [_incident(bundled_rules, 1, 0), _incident(bundled_rules, 2, 40), _incident(bundled_rules, 3, 5_000)]
    found = find_duplicate(new, "traffic.congestion", at, candidates, radius_m=radius_m, window=timedelta(minutes=30))
    assert (found.id if found else None) == expected, case


def test_an_equal_distance_goes_to_the_lower_id_and_a_finished_incident_is_never_joined(
    bundled_rules: RuleBook,
) -> None:
    first, second = _incident(bundled_rules, 7, 10), _incident(bundled_rules, 4, 10)
    assert (
        find_duplicate(_new(10), "traffic.congestion", AT, [first, second], radius_m=200, window=timedelta(1)) is second
    )
    cancelled, _ = finish_incident(second, IncidentAction.CANCEL, AT, "op", "cleared")
    other_kind = replace(first, category="market.stall_encroachment")
    assert (
        find_duplicate(_new(10), "traffic.congestion", AT, [cancelled, other_kind], radius_m=200, window=timedelta(1))
        is None
    )
