"""Who can be sent: the roster, the duty schedule and the choice of a unit. Pure: no I/O, no clock.

A *unit* is one officer. The roster says who belongs to which team and where they are posted; the
schedule says who is on duty at a given local time; the units' live state (status, last position,
how many open tasks) is kept by the hub and handed in. :func:`choose_officer` then picks, for one
team of a routing decision:

1. only officers of that team who are on duty, not off duty by their own report, not already tried
   for this assignment and below their team's task limit;
2. officers posted at the incident's zone (the joint duty station) before all others;
3. then free officers (no open task) before busy ones;
4. then the nearest by straight-line distance to the incident (unknown positions last);
5. then the least busy, then the officer id (so the same input always gives the same choice).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # also cron's day_of_week names


class OfficerKind(StrEnum):
    STAFFED = "staffed"  # 在编: the township's own staff
    SECONDED = "seconded"  # 派驻: dispatched from a county department
    CONTRACT = "contract"  # 编外/协管: contract staff


class UnitStatus(StrEnum):
    AVAILABLE = "available"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    OFF_DUTY = "off_duty"


@dataclass(frozen=True, slots=True, kw_only=True)
class Officer:
    id: str
    name: str
    team: str
    module: str
    post: str  # 岗位
    department: str  # home department (the county bureau for seconded officers)
    kind: OfficerKind
    zone: str | None = None  # where the officer is posted, e.g. the five-way joint duty station
    phone: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Shift:
    """A recurring duty period of one team, in the township's local time.

    ``end`` at or before ``start`` runs past midnight (a night shift). ``days_of_month`` and
    ``weekdays`` narrow the days it runs on (both empty: every day); ``zone`` posts the shift's
    officers there while it runs (the joint duty station on market days).
    """

    id: str
    team: str
    start: time
    end: time
    officers: tuple[str, ...]
    lead: str | None = None  # the duty lead who acknowledges the handover
    weekdays: frozenset[int] = frozenset()  # 0 = Monday
    days_of_month: frozenset[int] = frozenset()
    zone: str | None = None

    def runs_on(self, day: date) -> bool:
        if self.weekdays and day.weekday() not in self.weekdays:
            return False
        return not self.days_of_month or day.day in self.days_of_month

    def covers(self, local: datetime) -> bool:
        """Whether the shift is running at ``local`` (a naive or aware local time)."""
        now = local.time()  # naive: ``time()`` drops the zone (``timetz()`` would keep it)
        if self.start < self.end:
            return self.start <= now < self.end and self.runs_on(local.date())
        # Past midnight: the evening part belongs to today, the morning part to yesterday's shift.
        if now >= self.start:
            return self.runs_on(local.date())
        return now < self.end and self.runs_on(local.date() - timedelta(days=1))


@dataclass(frozen=True, slots=True, kw_only=True)
class DutyOverride:
    """One officer on or off duty on one local date, whatever the shifts say (leave, extra duty)."""

    officer: str
    day: date
    on_duty: bool
    zone: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Roster:
    version: str
    timezone: str
    officers: Mapping[str, Officer]
    shifts: tuple[Shift, ...] = ()
    overrides: tuple[DutyOverride, ...] = ()
    max_tasks: int = 3  # open tasks an officer may hold at once
    _by_team: dict[str, tuple[Officer, ...]] = field(default_factory=dict, compare=False, repr=False)
    _shifts_by_team: dict[str, tuple[Shift, ...]] = field(default_factory=dict, compare=False, repr=False)
    _overrides: dict[tuple[str, date], DutyOverride] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        by_team: dict[str, list[Officer]] = {}
        for officer in sorted(self.officers.values(), key=lambda o: o.id):
            by_team.setdefault(officer.team, []).append(officer)
        self._by_team.update({team: tuple(found) for team, found in by_team.items()})
        shifts: dict[str, list[Shift]] = {}
        for shift in self.shifts:
            shifts.setdefault(shift.team, []).append(shift)
        self._shifts_by_team.update({team: tuple(found) for team, found in shifts.items()})
        self._overrides.update({(o.officer, o.day): o for o in self.overrides})

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def team(self, team: str) -> tuple[Officer, ...]:
        return self._by_team.get(team, ())

    def shifts_of(self, team: str) -> tuple[Shift, ...]:
        return self._shifts_by_team.get(team, ())

    def duty(self, team: str, at: datetime) -> dict[str, str | None]:
        """The team's officers on duty at ``at``, each with the zone they are posted at then.

        A team with no shifts is on duty around the clock (its officers report off duty themselves).
        """
        local = at.astimezone(self.tz)
        today = local.date()
        shifts = self.shifts_of(team)
        on: dict[str, str | None] = {}
        if not shifts:
            on = {o.id: o.zone for o in self.team(team)}
        else:
            for shift in shifts:
                if shift.covers(local):
                    for officer_id in shift.officers:
                        officer = self.officers.get(officer_id)
                        if officer is not None:
                            on[officer_id] = shift.zone or officer.zone
        for officer in self.team(team):
            override = self._overrides.get((officer.id, today))
            if override is None:
                continue
            if override.on_duty:
                on[officer.id] = override.zone or on.get(officer.id) or officer.zone
            else:
                on.pop(officer.id, None)
        return on


@dataclass(frozen=True, slots=True)
class UnitState:
    """What the hub knows of one officer right now."""

    status: UnitStatus = UnitStatus.AVAILABLE
    lat: float | None = None
    lon: float | None = None
    position_at: datetime | None = None
    tasks: int = 0  # open assignments held


EARTH_RADIUS_M = 6_371_000.0


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine); straight-line is all a township needs."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Need:
    """What an assignment needs from a unit: where the incident is and who must not be asked again."""

    team: str
    at: datetime
    lat: float | None = None
    lon: float | None = None
    zones: tuple[str, ...] = ()
    exclude: frozenset[str] = frozenset()


_IDLE = UnitState()


def rank(roster: Roster, units: Mapping[str, UnitState], need: Need) -> list[tuple[str, float]]:
    """Every eligible officer for ``need``, best first, with their distance (``inf`` when unknown)."""
    on_duty = roster.duty(need.team, need.at)
    zones = set(need.zones)
    ranked: list[tuple[tuple[int, int, float, int, str], str, float]] = []
    idle = _IDLE
    for officer_id, posted in on_duty.items():
        if officer_id in need.exclude:
            continue
        unit = units.get(officer_id, idle)
        if unit.status is UnitStatus.OFF_DUTY or unit.tasks >= roster.max_tasks:
            continue
        if need.lat is not None and need.lon is not None and unit.lat is not None and unit.lon is not None:
            distance = distance_m(need.lat, need.lon, unit.lat, unit.lon)
        else:
            distance = math.inf
        key = (0 if posted in zones else 1, 0 if unit.tasks == 0 else 1, distance, unit.tasks, officer_id)
        ranked.append((key, officer_id, distance))
    ranked.sort()
    return [(officer_id, distance) for _, officer_id, distance in ranked]


def choose_officer(roster: Roster, units: Mapping[str, UnitState], need: Need) -> str | None:
    """The best officer for ``need`` (see the module's rules), or ``None`` when nobody can go."""
    best = rank(roster, units, need)
    return best[0][0] if best else None


def status_after_task_change(current: UnitStatus, tasks: int) -> UnitStatus:
    """An officer's status once their task count changed: free again at zero, assigned otherwise."""
    if current is UnitStatus.OFF_DUTY:
        return current
    if tasks == 0:
        return UnitStatus.AVAILABLE
    return current if current in (UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE) else UnitStatus.ASSIGNED
