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


def _zone_only(report_id: str, zone: str | None, *, exercise: bool = False) -> Report:
    return Report(report_id=report_id, category="traffic.congestion", description="堵", zone=zone, exercise=exercise)


def _placed_by_zone(rules: RuleBook, incident_id: int, zone: str | None) -> Incident:
    first = _zone_only(f"r-{incident_id}", zone)
    return open_incident(incident_id, first, rules.route(RoutingInput(category=first.category, zone=zone)), AT)[0]


@pytest.mark.parametrize(
    ("case", "new", "candidate_zone", "candidate_placed", "radius_m", "expected"),
    [
        ("both name the same small zone", _zone_only("new", "five-way"), "five-way", False, 200, 1),
        (
            "a zone-only report joins a positioned incident of its small zone",
            _zone_only("new", "five-way"),
            "five-way",
            True,
            200,
            1,
        ),
        ("another small zone", _zone_only("new", "market"), "five-way", False, 200, None),
        ("a large zone is not one place", _zone_only("new", "town-centre"), "town-centre", False, 200, None),
        ("no zone and no position", _zone_only("new", None), None, False, 200, None),
        ("joining turned off", _zone_only("new", "five-way"), "five-way", False, 0, None),
        ("a drill joins no real incident", _zone_only("new", "five-way", exercise=True), "five-way", False, 200, None),
    ],
)
def test_reports_placed_only_by_a_small_zone_join_in_it(
    bundled_rules: RuleBook,
    case: str,
    new: Report,
    candidate_zone: str | None,
    candidate_placed: bool,
    radius_m: float,
    expected: int | None,
) -> None:
    assert bundled_rules.small_zones == {"five-way", "market"}
    candidate = _incident(bundled_rules, 1) if candidate_placed else _placed_by_zone(bundled_rules, 1, candidate_zone)
    found = find_duplicate(
        new,
        "traffic.congestion",
        AT,
        [candidate],
        radius_m=radius_m,
        window=timedelta(minutes=30),
        small_zones=bundled_rules.small_zones,
    )
    assert (found.id if found else None) == expected, case


def test_a_positioned_report_joins_a_zone_only_incident_of_its_small_zone(bundled_rules: RuleBook) -> None:
    zone_only = _placed_by_zone(bundled_rules, 5, "five-way")
    positioned = replace(_new(0), zone="five-way")
    small = bundled_rules.small_zones
    assert (
        find_duplicate(
            positioned, "traffic.congestion", AT, [zone_only], radius_m=200, window=timedelta(1), small_zones=small
        )
        is zone_only
    )
    # Without the zone named, a position alone does not place it in a zone-only incident's zone.
    assert (
        find_duplicate(
            _new(0), "traffic.congestion", AT, [zone_only], radius_m=200, window=timedelta(1), small_zones=small
        )
        is None
    )
