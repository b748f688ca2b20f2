"""The roster, the duty schedule and the choice of a unit: pure functions, exact answers."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from dispatcher.core.roster import (
    DutyOverride,
    Need,
    Officer,
    OfficerKind,
    Roster,
    Shift,
    UnitState,
    UnitStatus,
    choose_officer,
    choose_officers,
    distance_m,
    rank,
)
from dispatcher.roster_file import BUNDLED_ROSTER, RosterError, build_roster, parse_roster, read_roster
from rules import RuleBook

# 2026-06-12 is a Friday and a market day (the 12th); 08:00 UTC is 16:00 in Asia/Shanghai.
FRIDAY_4PM = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)
FIVE_WAY = (28.8480, 118.9120)


def officer(oid: str, team: str = "t", zone: str | None = None) -> Officer:
    return Officer(
        id=oid, name=oid, team=team, module="m", post="p", department="d", kind=OfficerKind.STAFFED, zone=zone
    )


def crew(*officers: Officer, shifts: tuple[Shift, ...] = (), overrides: tuple[DutyOverride, ...] = ()) -> Roster:
    return Roster(
        version="t",
        timezone="Asia/Shanghai",
        officers={o.id: o for o in officers},
        shifts=shifts,
        overrides=overrides,
        max_tasks=2,
    )


def need(**kw: object) -> Need:
    base: dict[str, object] = {"team": "t", "at": FRIDAY_4PM, "lat": FIVE_WAY[0], "lon": FIVE_WAY[1]}
    base.update(kw)
    return Need(**base)  # type: ignore[arg-type]


def test_distance_is_straight_line_in_metres() -> None:
    # One thousandth of a degree of latitude is about 111 m anywhere.
    assert distance_m(28.0, 118.0, 28.001, 118.0) == pytest.approx(111.2, abs=0.5)
    assert distance_m(*FIVE_WAY, *FIVE_WAY) == 0


def test_posted_at_the_incident_zone_comes_before_a_nearer_officer() -> None:
    roster = crew(officer("a"), officer("b", zone="five-way"))
    units = {"a": UnitState(lat=FIVE_WAY[0], lon=FIVE_WAY[1]), "b": UnitState(lat=28.86, lon=118.93)}
    assert choose_officer(roster, units, need(zones=("five-way",))) == "b"
    assert choose_officer(roster, units, need(zones=())) == "a"  # elsewhere the nearest wins


def test_free_before_busy_then_nearest_then_least_busy_then_id() -> None:
    roster = crew(officer("a"), officer("b"), officer("c"), officer("d"))
    near, far = (28.8481, 118.9120), (28.8600, 118.9120)
    units = {
        "a": UnitState(lat=near[0], lon=near[1], tasks=1, status=UnitStatus.ASSIGNED),
        "b": UnitState(lat=far[0], lon=far[1]),
        "c": UnitState(),  # position unknown: after every known one
        "d": UnitState(lat=far[0], lon=far[1]),
    }
    ranked = rank(roster, units, need())
    assert [o for o, _ in ranked] == ["b", "d", "c", "a"]
    assert ranked[2][1] == math.inf


def test_off_duty_tried_and_full_officers_are_never_chosen() -> None:
    roster = crew(officer("a"), officer("b"), officer("c"))
    units = {"a": UnitState(status=UnitStatus.OFF_DUTY), "b": UnitState(tasks=2, status=UnitStatus.ASSIGNED)}
    assert choose_officer(roster, units, need(exclude=frozenset({"c"}))) is None
    assert choose_officer(roster, units, need()) == "c"


def test_the_choice_is_always_the_first_of_the_ranking() -> None:
    """Every mix of zone, tasks, position, status and exclusion for four officers of a team: ``choose_officer``
    (one loop) names the officer :func:`rank` (sorted) puts first, or nobody when the ranking is empty."""
    roster = crew(officer("a", zone="five-way"), officer("b"), officer("c", zone="market"), officer("d"))
    places = (None, (28.8481, 118.9120), (28.8600, 118.9120))
    states = [
        UnitState(status=status, tasks=tasks, lat=place[0] if place else None, lon=place[1] if place else None)
        for status in (UnitStatus.AVAILABLE, UnitStatus.ASSIGNED, UnitStatus.OFF_DUTY)
        for tasks in (0, 1, 2)
        for place in places
    ]
    compared = 0
    for k in range(len(states) ** 2):
        units = {"a": states[k % len(states)], "c": states[k // len(states)], "d": states[(k * 7) % len(states)]}
        for zones, exclude in (((), frozenset()), (("five-way",), frozenset({"b"})), (("market",), frozenset("d"))):
            for point in ({"lat": None, "lon": None}, {}):
                wanted = need(zones=zones, exclude=exclude, **point)
                ranked = rank(roster, units, wanted)
                assert choose_officer(roster, units, wanted) == (ranked[0][0] if ranked else None)
                compared += 1
    assert compared == len(states) ** 2 * 6


def test_a_reports_teams_are_each_given_the_officer_choose_officer_names() -> None:
    """``choose_officers`` (one call for a new report's teams) answers as ``choose_officer`` for each team with a
    roster, nobody excluded; teams without a roster and ``None`` are left out."""
    roster = crew(officer("a", "t", zone="five-way"), officer("b", "t"), officer("c", "u"), officer("d", "w"))
    units = {"a": UnitState(tasks=1, status=UnitStatus.ASSIGNED), "c": UnitState(tasks=2, status=UnitStatus.ASSIGNED)}
    for zones in ((), ("five-way",)):
        for lat, lon in ((None, None), FIVE_WAY):
            chosen = choose_officers(roster, units, ("t", None, "u", "none", "w"), FRIDAY_4PM, lat, lon, zones)
            assert chosen == {
                team: choose_officer(roster, units, need(team=team, zones=zones, lat=lat, lon=lon))
                for team in ("t", "u", "w")
            }
    assert chosen == {"t": "a", "u": None, "w": "d"}


def test_a_night_shift_runs_past_midnight_and_belongs_to_the_day_it_began() -> None:
    night = Shift(id="n", team="t", start=time(20), end=time(8), officers=("a",), weekdays=frozenset({4}))  # Fri
    roster = crew(officer("a"), shifts=(night,))
    friday_21 = datetime(2026, 6, 12, 13, 0, tzinfo=UTC)  # 21:00 local
    saturday_02 = datetime(2026, 6, 12, 18, 0, tzinfo=UTC)  # 02:00 local on Saturday: Friday's night
    saturday_21 = datetime(2026, 6, 13, 13, 0, tzinfo=UTC)
    assert roster.duty("t", friday_21) == {"a": None}
    assert roster.duty("t", saturday_02) == {"a": None}
    assert roster.duty("t", saturday_21) == {}
    assert roster.duty("t", FRIDAY_4PM) == {}


def test_market_day_shift_posts_its_officers_at_the_joint_duty_station() -> None:
    station = Shift(
        id="s",
        team="t",
        start=time(5, 30),
        end=time(13),
        officers=("a",),
        days_of_month=frozenset({12}),
        zone="five-way",
    )
    roster = crew(officer("a"), shifts=(station,))
    market_morning = datetime(2026, 6, 12, 1, 0, tzinfo=UTC)  # 09:00 local on the 12th
    assert roster.duty("t", market_morning) == {"a": "five-way"}
    assert roster.duty("t", market_morning + timedelta(days=1)) == {}


def test_overrides_take_an_officer_off_or_put_one_on_for_a_day() -> None:
    day = Shift(id="d", team="t", start=time(8), end=time(20), officers=("a", "b"))
    overrides = (
        DutyOverride(officer="a", day=date(2026, 6, 12), on_duty=False),
        DutyOverride(officer="c", day=date(2026, 6, 12), on_duty=True, zone="five-way"),
    )
    roster = crew(officer("a"), officer("b"), officer("c"), shifts=(day,), overrides=overrides)
    assert roster.duty("t", FRIDAY_4PM) == {"b": None, "c": "five-way"}
    assert roster.duty("t", FRIDAY_4PM + timedelta(days=1)) == {"a": None, "b": None}


def test_the_duty_kept_by_minute_changes_on_the_minute_a_shift_does() -> None:
    # Asked again and again in any order, around the shift's start and end, the kept answers stay exact.
    day = Shift(id="d", team="t", start=time(8), end=time(20), officers=("a",))
    roster = crew(officer("a"), officer("b"), shifts=(day,))
    start = datetime(2026, 6, 12, 0, 0, tzinfo=UTC)  # 08:00 local
    end = datetime(2026, 6, 12, 12, 0, tzinfo=UTC)  # 20:00 local
    asked = [
        (start - timedelta(microseconds=1), {}),
        (start, {"a": None}),
        (start + timedelta(seconds=59, microseconds=999_999), {"a": None}),
        (start - timedelta(seconds=59), {}),
        (end - timedelta(microseconds=1), {"a": None}),
        (end, {}),
        (end - timedelta(seconds=30), {"a": None}),
        (end + timedelta(seconds=30), {}),
    ]
    for _ in range(2):
        for at, on in asked:
            assert roster.duty("t", at) == on, at
            assert roster.duty("t", at.astimezone(roster.tz)) == on, at  # the same instant in local time


def test_the_same_instant_asked_for_every_team_and_then_another_gets_each_its_own_duty() -> None:
    # The minute of the last instant is kept (a report's teams share it): another instant, even of the same
    # minute or an equal one in another zone, is answered for itself.
    day = Shift(id="d", team="t", start=time(8), end=time(20), officers=("a",))
    roster = crew(officer("a"), officer("b", "u"), shifts=(day,))
    start = datetime(2026, 6, 12, 0, 0, tzinfo=UTC)  # 08:00 local
    before = start - timedelta(seconds=1)
    shanghai = start.astimezone(timezone(timedelta(hours=8)))
    for at, wanted in ((before, {}), (before, {}), (start, {"a": None}), (shanghai, {"a": None}), (before, {})):
        assert roster.duty("t", at) == wanted
        assert roster.duty("u", at) == {"b": None}


def test_a_shift_that_starts_within_a_minute_is_answered_to_the_second() -> None:
    odd = Shift(id="o", team="t", start=time(8, 0, 30), end=time(20), officers=("a",))
    roster = crew(officer("a"), shifts=(odd,))
    start = datetime(2026, 6, 12, 0, 0, 30, tzinfo=UTC)  # 08:00:30 local
    for _ in range(2):
        assert roster.duty("t", start - timedelta(seconds=1)) == {}
        assert roster.duty("t", start) == {"a": None}


def test_a_team_without_shifts_is_on_duty_around_the_clock() -> None:
    roster = crew(officer("a", zone="market"))
    assert roster.duty("t", datetime(2026, 6, 12, 19, 0, tzinfo=UTC)) == {"a": "market"}


def test_the_bundled_roster_fits_the_bundled_table(bundled_rules: RuleBook) -> None:
    roster = build_roster(read_roster(BUNDLED_ROSTER), bundled_rules)
    assert len(roster.officers) == 54
    assert {o.team for o in roster.officers.values()} == {t.id for t in bundled_rules.table.teams}
    # On a market-day morning the joint duty station has one officer of each of the five teams.
    morning = datetime(2026, 6, 12, 1, 0, tzinfo=UTC)
    posted = {
        team: [o for o, zone in roster.duty(team, morning).items() if zone == "five-way"]
        for team in ("traffic-police", "police-station", "market-supervision", "law-enforcement", "market-town-office")
    }
    assert all(len(found) >= 1 for found in posted.values()), posted


def test_a_roster_that_does_not_fit_the_table_is_refused_with_every_reason(bundled_rules: RuleBook) -> None:
    source = parse_roster(
        {
            "roster": 1,
            "version": "bad",
            "officers": [
                {"id": "x-1", "name": "甲", "team": "no-such-team", "post": "p"},
                {"id": "tp-9", "name": "乙", "team": "traffic-police", "post": "p", "zone": "moon"},
                {"id": "tp-9", "name": "丙", "team": "traffic-police", "post": "p"},
                {"id": "ps-9", "name": "丁", "team": "police-station", "post": "p"},
            ],
            "shifts": [
                {"id": "s", "team": "traffic-police", "start": "08:00", "end": "20:00", "officers": ["ps-9", "ghost"]}
            ],
        }
    )
    with pytest.raises(RosterError) as refused:
        build_roster(source, bundled_rules)
    text = " | ".join(refused.value.problems)
    for expected in ("no-such-team", "zone 'moon'", "used twice", "belongs to team police-station", "'ghost'"):
        assert expected in text, text


def test_schema_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("roster: 1\nversion: v\nshifts: [{id: s, team: t, start: '25:00', end: '08:00', officers: [a]}]\n")
    with pytest.raises(RosterError) as refused:
        read_roster(bad)
    assert any(p.startswith("shifts.0.start") for p in refused.value.problems)


@pytest.mark.timeout(30)  # without a budget, validation walks the 9^9 expanded values for minutes
def test_a_roster_file_that_stands_for_too_much_is_refused_with_its_line(tmp_path: Path) -> None:
    bomb = tmp_path / "roster.yaml"
    bomb.write_text(
        "version: x\nofficers: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)),
        encoding="utf-8",
    )
    with pytest.raises(RosterError) as refused:
        read_roster(bomb)
    assert refused.value.problems == [
        f"{bomb}:7: the document stands for more than 250000 values once its aliases are expanded"
    ]
