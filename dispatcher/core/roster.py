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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from dispatcher.core.records import quick_init

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # also cron's day_of_week names
#: Duties a roster keeps by team and local minute (see :meth:`Roster.duty`); past this it starts afresh.
_DUTY_KEPT = 4096


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
    #: Each team's duty by minute (see :meth:`duty`); empty and unused when a shift starts or ends
    #: within a minute, and begun afresh once it holds ``_DUTY_KEPT`` entries.
    _duty: dict[tuple[str, float], Mapping[str, str | None]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    _by_minute: bool = field(default=False, init=False, compare=False, repr=False)
    _zone: ZoneInfo | None = field(default=None, init=False, compare=False, repr=False)
    #: The last instant :meth:`duty` was asked about and its minute: a report's teams, and a batch's reports,
    #: share one instant (``timestamp`` took about a quarter of a microsecond a team).
    _minute: tuple[datetime, float] | None = field(default=None, init=False, compare=False, repr=False)

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
        on_the_minute = all(t.second == 0 and t.microsecond == 0 for s in self.shifts for t in (s.start, s.end))
        object.__setattr__(self, "_by_minute", on_the_minute)

    @property
    def tz(self) -> ZoneInfo:
        zone = self._zone
        if zone is None:  # looked up once: every choice of an officer converts its time to the township's
            zone = ZoneInfo(self.timezone)
            object.__setattr__(self, "_zone", zone)
        return zone

    def team(self, team: str) -> tuple[Officer, ...]:
        return self._by_team.get(team, ())

    def shifts_of(self, team: str) -> tuple[Shift, ...]:
        return self._shifts_by_team.get(team, ())

    def duty(self, team: str, at: datetime) -> Mapping[str, str | None]:
        """The team's officers on duty at ``at``, each with the zone they are posted at then (not to be changed:
        the same mapping answers every time of the same local minute).

        A team with no shifts is on duty around the clock (its officers report off duty themselves).
        """
        if not self._by_minute or at.tzinfo is None:
            return self._duty_at(team, at.astimezone(self.tz))
        # Shifts start and end on the minute and overrides hold for whole days, so the duty is the same all
        # through a minute of local time: worked out once for the reports of that minute (every team of each).
        last = self._minute  # one read: the instant and its minute always belong together
        if last is not None and last[0] is at:
            minute = last[1]
        else:
            minute = at.timestamp() // 60
            object.__setattr__(self, "_minute", (at, minute))
        found = self._duty.get((team, minute))
        if found is None:
            found = self._duty_at(team, at.astimezone(self.tz))
            if self._one_local_minute(minute):
                if len(self._duty) >= _DUTY_KEPT:
                    self._duty.clear()
                self._duty[team, minute] = found
        return found

    def _one_local_minute(self, minute: float) -> bool:
        """Whether the UTC minute is one minute of local time too (no change of offset within it, and an offset
        of whole minutes: true of every zone today, not of the local mean times before 1900)."""
        first = datetime.fromtimestamp(minute * 60, self.tz).utcoffset()
        last = datetime.fromtimestamp(minute * 60 + 59.999999, self.tz).utcoffset()
        return first == last and first is not None and first % timedelta(minutes=1) == timedelta(0)

    def _duty_at(self, team: str, local: datetime) -> dict[str, str | None]:
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


@quick_init
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
_NOBODY: frozenset[str] = frozenset()


def rank(roster: Roster, units: Mapping[str, UnitState], need: Need) -> list[tuple[str, float]]:
    """Every eligible officer for ``need``, best first, with their distance (``inf`` when unknown)."""
    return [(officer_id, distance) for _, officer_id, distance in sorted(_eligible(roster, units, need))]


def choose_officer(roster: Roster, units: Mapping[str, UnitState], need: Need) -> str | None:
    """The best officer for ``need`` (see the module's rules), or ``None`` when nobody can go."""
    return _best(roster.duty(need.team, need.at), units, roster.max_tasks, need.zones, need.lat, need.lon, need.exclude)


def choose_officers(
    roster: Roster,
    units: Mapping[str, UnitState],
    teams: Iterable[str | None],
    at: datetime,
    lat: float | None,
    lon: float | None,
    zones: tuple[str, ...],
) -> dict[str, str | None]:
    """For each of ``teams`` that has a roster, :func:`choose_officer` of the team with nobody excluded, at one
    place and time (a new report's teams); a team without a roster (or ``None``) is left out. Nothing is recorded
    between the choices: an officer is on one team only, so no one is chosen twice."""
    chosen: dict[str, str | None] = {}
    by_team, max_tasks, duty = roster._by_team, roster.max_tasks, roster.duty
    for team in teams:
        if team is not None and by_team.get(team):
            chosen[team] = _best(duty(team, at), units, max_tasks, zones, lat, lon, _NOBODY)
    return chosen


def _best(
    duty: Mapping[str, str | None],
    units: Mapping[str, UnitState],
    max_tasks: int,
    zones: tuple[str, ...],
    lat: float | None,
    lon: float | None,
    exclude: frozenset[str],
) -> str | None:
    # The first of :func:`rank`, without sorting: :func:`_eligible`'s test and key written out in one loop (no
    # generator to resume an officer at a time; a key is made only for an officer who can go). Keys end with the
    # officer's id, so no two are equal and the smallest is the one ``min`` would pick.
    off_duty = UnitStatus.OFF_DUTY
    get = units.get
    best: tuple[int, int, float, int, str] | None = None
    for officer_id, posted in duty.items():
        if officer_id in exclude:
            continue
        unit = get(officer_id, _IDLE)
        tasks = unit.tasks
        if tasks >= max_tasks or unit.status is off_duty:
            continue
        distance = math.inf
        if lat is not None and lon is not None and unit.lat is not None and unit.lon is not None:
            distance = distance_m(lat, lon, unit.lat, unit.lon)
        key = (0 if posted in zones else 1, 0 if tasks == 0 else 1, distance, tasks, officer_id)
        if best is None or key < best:
            best = key
    return best[4] if best is not None else None


def _eligible(
    roster: Roster, units: Mapping[str, UnitState], need: Need
) -> Iterator[tuple[tuple[int, int, float, int, str], str, float]]:
    """Each eligible officer with the key that orders them (smaller first), and their distance."""
    zones = need.zones
    exclude = need.exclude
    max_tasks = roster.max_tasks
    off_duty = UnitStatus.OFF_DUTY
    lat, lon = need.lat, need.lon
    for officer_id, posted in roster.duty(need.team, need.at).items():
        if officer_id in exclude:
            continue
        unit = units.get(officer_id, _IDLE)
        tasks = unit.tasks
        if tasks >= max_tasks or unit.status is off_duty:
            continue
        distance = math.inf
        if lat is not None and lon is not None and unit.lat is not None and unit.lon is not None:
            distance = distance_m(lat, lon, unit.lat, unit.lon)
        key = (0 if posted in zones else 1, 0 if tasks == 0 else 1, distance, tasks, officer_id)
        yield key, officer_id, distance


def status_after_task_change(current: UnitStatus, tasks: int) -> UnitStatus:
    """An officer's status once their task count changed: free again at zero, assigned otherwise."""
    if current is UnitStatus.OFF_DUTY:
        return current
    if tasks == 0:
        return UnitStatus.AVAILABLE
    return current if current in (UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE) else UnitStatus.ASSIGNED
