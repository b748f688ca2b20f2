"""Working time: working days (工作日) and working hours within the township's office hours.

A duration in the rule table may be written in working days (``5wd``) or working hours (``8wh``)
beside the clock forms of :mod:`rules.durations`. Which days are working days comes from a
:class:`WorkCalendar`: China's public holidays and make-up working days (调休) from the maintained
``chinese-calendar`` package, with the township's own ``working_days`` entries (one per year, read
with the table) taking the place of the package's for the years they name, so that a year the
package does not know yet can be added by the township. A due time that needs a day of a year the
calendar does not know raises :class:`BeyondCalendar`: the calendar never guesses.

How a span is counted (the common reading of "N个工作日内", counted from the next working day):

* ``Nwd``: the N-th working day *after* the local day the clock starts on, due at the close of that
  day's office hours (the end of its last period);
* ``Nwh``: N hours of office time, starting at the start (or, outside office hours, at the next
  office period of a working day); due at the moment the N-th hour is used up (a span that ends
  exactly at a period's close is due then, not at the next opening).

Everything here is pure: no clock is read, and the package's data is a module of constants.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from rules.durations import parse_duration

WorkUnit = Literal["wd", "wh"]

_SPAN = re.compile(r"^(\d+)(wd|wh)$")

#: The township's office hours when the table names none: 08:30–12:00 and 14:00–17:30.
DEFAULT_OFFICE_HOURS = ("08:30-12:00", "14:00-17:30")


@dataclass(frozen=True, slots=True)
class WorkSpan:
    """A span of working time: ``count`` working days (``wd``) or working hours (``wh``)."""

    count: int
    unit: WorkUnit

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


#: A promised window: clock time, or working time counted by a :class:`WorkCalendar`.
Window = timedelta | WorkSpan


def parse_work_span(text: str) -> WorkSpan | None:
    """``5wd`` or ``8wh`` as a :class:`WorkSpan`; ``None`` when the text is not written in working time.

    Raises ``ValueError`` for a working span of zero.
    """
    found = _SPAN.match(text.strip().replace(" ", ""))
    if found is None:
        return None
    count = int(found.group(1))
    if count <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    unit: WorkUnit = "wd" if found.group(2) == "wd" else "wh"
    return WorkSpan(count, unit)


def parse_window(text: str) -> Window:
    """A clock duration (``90s``, ``2h``, ``7d``...) or a working span (``5wd``, ``8wh``).

    Raises ``ValueError`` naming the text when it is neither.
    """
    span = parse_work_span(text)
    if span is not None:
        return span
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration (write e.g. 90s, 5m, 2h, 7d, 1h30m, or in working time 5wd, 8wh)"
        ) from None


def format_window(window: Window) -> str:
    if isinstance(window, WorkSpan):
        return str(window)
    from rules.durations import format_duration

    return format_duration(window)


def parse_office_hours(periods: Iterable[str]) -> tuple[tuple[time, time], ...]:
    """``["08:30-12:00", "14:00-17:30"]`` as ordered periods; raises ``ValueError`` when a period is
    empty, wraps midnight, or overlaps or comes before the one written before it."""
    parsed: list[tuple[time, time]] = []
    for text in periods:
        start_text, _, end_text = text.partition("-")
        start, end = _clock(start_text), _clock(end_text)
        if end <= start:
            raise ValueError(f"office hours {text!r} must end after they start (no period across midnight)")
        if parsed and start < parsed[-1][1]:
            raise ValueError(f"office hours {text!r} overlap or come before the period written before them")
        parsed.append((start, end))
    if not parsed:
        raise ValueError("office hours need at least one period")
    return tuple(parsed)


def _clock(text: str) -> time:
    hours, _, minutes = text.strip().partition(":")
    if hours == "24" and minutes == "00":
        return time.max
    return time(int(hours), int(minutes))


class BeyondCalendar(ValueError):
    """A due time needs a day of a year the working-day calendar does not know."""

    def __init__(self, day: date, years: frozenset[int]) -> None:
        known = f"{min(years)}–{max(years)}" if years else "no year"
        super().__init__(
            f"the working-day calendar knows {known} only, and counting this deadline needs {day.isoformat()}: "
            f"add the year {day.year} (its public holidays and make-up working days) to the township's "
            "working_days before using working-time deadlines"
        )
        self.day = day
        self.years = years


@dataclass(frozen=True, slots=True, kw_only=True)
class YearDays:
    """One year's public holidays (休) and make-up working days (调休 班) as the township writes them."""

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]


class WorkCalendar:
    """Working days and office hours in one time zone. Immutable after construction; thread-safe."""

    def __init__(
        self,
        *,
        tz: ZoneInfo,
        office_hours: tuple[tuple[time, time], ...],
        holidays: frozenset[date],
        workdays: frozenset[date],
        years: frozenset[int],
    ) -> None:
        self.tz = tz
        self.office_hours = office_hours
        self._holidays = holidays
        self._workdays = workdays
        self.years = years

    @classmethod
    def build(
        cls,
        *,
        tz: ZoneInfo,
        office_hours: Iterable[str] = DEFAULT_OFFICE_HOURS,
        township_years: Iterable[YearDays] = (),
        package: bool = True,
    ) -> WorkCalendar:
        """The package's years (when ``package``), each of ``township_years`` replacing its year whole."""
        holidays: set[date] = set()
        workdays: set[date] = set()
        years: set[int] = set()
        if package:
            package_holidays, package_workdays = _package_days()
            holidays.update(package_holidays)
            workdays.update(package_workdays)
            years.update(d.year for d in package_holidays)
        for entry in township_years:
            holidays = {d for d in holidays if d.year != entry.year} | set(entry.holidays)
            workdays = {d for d in workdays if d.year != entry.year} | set(entry.workdays)
            years.add(entry.year)
        return cls(
            tz=tz,
            office_hours=parse_office_hours(office_hours),
            holidays=frozenset(holidays),
            workdays=frozenset(workdays),
            years=frozenset(years),
        )

    def is_working_day(self, day: date) -> bool:
        """Whether ``day`` is a working day; raises :class:`BeyondCalendar` for a year not known."""
        if day.year not in self.years:
            raise BeyondCalendar(day, self.years)
        if day in self._workdays:
            return True
        if day in self._holidays:
            return False
        return day.weekday() < 5

    def due(self, start: datetime, window: Window) -> datetime:
        """When ``window`` counted from ``start`` (an aware datetime) ends, in ``start``'s time zone.

        Raises :class:`BeyondCalendar` when counting needs a day of a year not known.
        """
        if isinstance(window, timedelta):
            return start + window
        if window.unit == "wd":
            return self._after_days(start, window.count).astimezone(start.tzinfo)
        return self._after_hours(start, timedelta(hours=window.count)).astimezone(start.tzinfo)

    def _at(self, day: date, clock: time) -> datetime:
        if clock == time.max:
            return datetime.combine(day + timedelta(days=1), time(0), self.tz)
        return datetime.combine(day, clock, self.tz)

    def _after_days(self, start: datetime, count: int) -> datetime:
        day = start.astimezone(self.tz).date()
        counted = 0
        while counted < count:  # ends: every step either counts or reaches an unknown year and raises
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        return self._at(day, self.office_hours[-1][1])

    def _after_hours(self, start: datetime, needed: timedelta) -> datetime:
        local = start.astimezone(self.tz)
        day = local.date()
        while True:  # ends: each day either uses some of ``needed`` or is passed, until an unknown year raises
            if self.is_working_day(day):
                for opens, closes in self.office_hours:
                    begin = max(self._at(day, opens), local)
                    end = self._at(day, closes)
                    if begin >= end:
                        continue
                    if needed <= end - begin:
                        return begin + needed
                    needed -= end - begin
            day += timedelta(days=1)


def _package_days() -> tuple[frozenset[date], frozenset[date]]:
    """The ``chinese-calendar`` package's holidays and make-up working days (constants, no I/O)."""
    from chinese_calendar import constants

    holidays: Mapping[date, object] = constants.holidays
    workdays: Mapping[date, object] = constants.workdays
    return frozenset(holidays), frozenset(workdays)
