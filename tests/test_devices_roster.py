"""The simulated phones' officers: the roster's by default, every team covered first (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.roster_file import BUNDLED_ROSTER, read_roster
from rules import RuleBook, compile_table, load_table
from simulations.devices import DeviceConfig, DeviceFleet, TooManyPhones, phones_of, roster_officers, zone_points

URL = "mqtt://127.0.0.1:1883"


def test_by_default_every_phone_is_an_officer_of_the_bundled_roster(bundled_rules: RuleBook) -> None:
    roster = read_roster(BUNDLED_ROSTER)
    fleet = DeviceFleet(DeviceConfig(mqtt_url=URL), bundled_rules)
    assert sorted(o.id for o in fleet.officers) == sorted(o.id for o in roster.officers)
    teams = {o.id: o.team for o in roster.officers}
    assert all(teams[o.id] == o.team for o in fleet.officers)
    assert fleet.summary.officers == len(roster.officers)


def test_a_few_phones_cover_the_teams_in_the_table_s_order(bundled_rules: RuleBook) -> None:
    fleet = DeviceFleet(DeviceConfig(mqtt_url=URL, officers=5), bundled_rules)
    table_teams = [t.id for t in bundled_rules.table.teams]
    assert [o.team for o in fleet.officers] == table_teams[:5]
    assert [o.id for o in fleet.officers] == ["tp-01", "ps-01", "ms-01", "le-01", "mt-01"]
    teams_with_officers = {o.team for o in read_roster(BUNDLED_ROSTER).officers}
    one_each = DeviceFleet(DeviceConfig(mqtt_url=URL, officers=len(teams_with_officers)), bundled_rules)
    assert sorted(o.team for o in one_each.officers) == sorted(teams_with_officers)
    assert all(o.id.endswith("-01") for o in one_each.officers)


def test_a_phone_starts_at_its_officer_s_post(bundled_rules: RuleBook) -> None:
    fleet = {o.id: o for o in DeviceFleet(DeviceConfig(mqtt_url=URL), bundled_rules).officers}
    five_way = zone_points(bundled_rules)["five-way"]
    posted = [o.id for o in read_roster(BUNDLED_ROSTER).officers if o.zone == "five-way"]
    assert len(posted) >= 5 and all((fleet[i].lat, fleet[i].lon) == five_way for i in posted)


def test_more_phones_than_officers_is_refused_and_no_roster_means_made_up_ids(bundled_rules: RuleBook) -> None:
    with pytest.raises(TooManyPhones, match="the roster has 54 officers"):
        phones_of(roster_officers(), [t.id for t in bundled_rules.table.teams], 55)
    made_up = DeviceFleet(DeviceConfig(mqtt_url=URL, roster=(), officers=3), bundled_rules)
    assert [o.id for o in made_up.officers] == ["officer-000", "officer-001", "officer-002"]


def test_a_table_the_bundled_roster_does_not_fit_gets_made_up_ids() -> None:
    other = compile_table(load_table(Path(__file__).parent / "fixtures" / "quick-township.yaml"))
    fleet = DeviceFleet(DeviceConfig(mqtt_url=URL), other)
    assert len(fleet.officers) == 20 and all(o.id.startswith("officer-") for o in fleet.officers)
