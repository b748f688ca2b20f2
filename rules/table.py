"""The rule table as written: the schema a YAML table must follow.

Every model refuses unknown keys, so a misspelt key is reported instead of silently ignored.
Cross-references (a rule naming a team that does not exist...) are checked by
:mod:`rules.loader`, which knows the file and line of every value.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from rules.durations import parse_duration
from rules.workdays import DEFAULT_OFFICE_HOURS, parse_office_hours, parse_window


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


#: An IANA time zone name (``Asia/Shanghai``), refused at load when the system does not know it.
TimeZoneName = Annotated[str, AfterValidator(_time_zone)]

Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=64)]
CategoryPattern = Annotated[str, Field(pattern=r"^(\*|[a-z0-9][a-z0-9_.-]*(\.\*)?)$", max_length=96)]


def _storable(text: str) -> None:
    """Refuse text the store cannot hold: a table's strings end up in stored rows (its version, rule ids,
    leaders' names), and PostgreSQL refuses NUL. The same check as ``dispatcher.values.storable_text``,
    kept here so that the rule table's package stays free of the dispatcher's."""
    if "\x00" in text:
        raise ValueError("the NUL character (\\u0000) is not allowed in text")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a lone surrogate (\\ud800-\\udfff) is not valid Unicode text") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        for item in value if isinstance(value, list | tuple) else (value,):
            if isinstance(item, str):
                _storable(item)
        return value


class Labelled(_Strict):
    id: Identifier
    name: str = Field(min_length=1, description="Chinese label, shown by default")
    name_en: str = Field(min_length=1, description="English label")


class Person(_Strict):
    """A leader on an escalation chain (模块牵头人, 党委书记)."""

    name: str = Field(min_length=1)
    title: str = Field(min_length=1)


class Township(Labelled):
    pass


class Module(Labelled):
    """A module (模块) or integrated office; ``lead`` is its module lead (模块牵头人)."""

    kind: Literal["main", "sub", "office"]
    lead: Person


class Team(Labelled):
    """A team dispatched together; ``department`` is its home (county) department."""

    module: Identifier
    department: str = Field(min_length=1)


class PointGeometry(_Strict):
    type: Literal["Point"]
    coordinates: tuple[float, float] = Field(description="[lon, lat], GeoJSON order")


def _closed_rings(rings: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
    for ring in rings:
        if len(ring) < 4 or ring[0] != ring[-1]:
            raise ValueError("a polygon ring needs at least 4 positions and must end where it starts")
    return rings


class PolygonGeometry(_Strict):
    """The outer ring, then any holes (GeoJSON order: [lon, lat] positions)."""

    type: Literal["Polygon"]
    coordinates: list[list[tuple[float, float]]] = Field(min_length=1)

    @field_validator("coordinates")
    @classmethod
    def _ring_closed(cls, rings: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
        return _closed_rings(rings)


class MultiPolygonGeometry(_Strict):
    """Several polygons, each an outer ring and its holes."""

    type: Literal["MultiPolygon"]
    coordinates: list[list[list[tuple[float, float]]]] = Field(min_length=1)

    @field_validator("coordinates")
    @classmethod
    def _rings_closed(cls, polygons: list[list[list[tuple[float, float]]]]) -> list[list[list[tuple[float, float]]]]:
        for rings in polygons:
            if not rings:
                raise ValueError("a polygon needs its outer ring")
            _closed_rings(rings)
        return polygons


class Zone(Labelled):
    geometry: Annotated[PointGeometry | PolygonGeometry | MultiPolygonGeometry, Field(discriminator="type")]
    radius_m: float | None = Field(default=None, gt=0, description="required for a Point")


#: The 15 top-level classes (一级分类) of a Chinese government message board's classification of
#: citizen matters (shared/data/cn_categories/classification_tree_3level.csv, TipDM 2020 data).
#: Every catalogue category names one, so routings can be compared with real message data.
BoardClass = Literal[
    "城乡建设",
    "农村农业",
    "政法",
    "教育文体",
    "劳动和社会保障",
    "民政",
    "党务政务",
    "经济管理",
    "卫生计生",
    "商贸旅游",
    "环境保护",
    "交通运输",
    "纪检监察",
    "国土资源",
    "科技与信息产业",
]
BOARD_CLASSES: tuple[str, ...] = get_args(BoardClass)


class Category(Labelled):
    """A kind of matter. ``gbt_code``: the GB/T 47678.5 (formerly 30428.2) part or matter code, where one fits."""

    board_class: BoardClass
    gbt_code: str | None = Field(default=None, pattern=r"^\d{5,6}$")


Keyword = Annotated[str, Field(min_length=1, max_length=32)]


class KeywordRule(_Strict):
    """Words in a description that point to ``category``: Chinese words match as substrings,
    words in Latin letters as whole words, case-insensitively. Each distinct word found adds
    ``weight`` to the category's score."""

    category: Identifier
    words: list[Keyword] = Field(min_length=1)
    weight: int = Field(default=1, ge=1, le=100)


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, Field(min_length=2, max_length=32)]


def _check_clock_duration(value: str) -> str:
    """A clock duration; working time (``5wd``, ``8wh``) is refused with the reason."""
    try:
        parse_duration(value)
    except ValueError:
        if value.strip().endswith(("wd", "wh")):
            raise ValueError(
                f"{value!r}: acknowledging and arriving are counted in clock time; "
                "working days and hours (wd, wh) are for resolve_within"
            ) from None
        raise
    return value


def _check_window(value: str) -> str:
    parse_window(value)
    return value


class Deadlines(_Strict):
    """``resolve_within`` may be written in working time (``5wd``, ``8wh``; see :mod:`rules.workdays`)."""

    ack_within: Duration | None = None
    arrive_within: Duration | None = None
    resolve_within: Duration | None = None
    verify_within: Duration | None = Field(
        default=None, description="核查: the resolved matter must be verified within this (absent: no verification)"
    )

    @field_validator("ack_within", "arrive_within")
    @classmethod
    def _durations(cls, value: str | None) -> str | None:
        return None if value is None else _check_clock_duration(value)

    @field_validator("resolve_within", "verify_within")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        return None if value is None else _check_window(value)


EscalationLevel = Literal["module_lead", "party_secretary"]


class EscalationStep(_Strict):
    """``after`` a deadline is missed (``0s``: at once), the matter goes ``to`` this level."""

    after: Duration
    to: EscalationLevel

    @field_validator("after")
    @classmethod
    def _after(cls, value: str) -> str:
        if value.strip() not in {"0", "0s", "0m"}:
            _check_duration(value)
        return value


class Defaults(Deadlines):
    priority: int = Field(default=3, ge=1, le=5)
    max_extensions: int = Field(default=1, ge=0, le=10, description="延期: approved extensions per incident")
    extension_approver: Literal["module_lead", "party_secretary"] = "module_lead"
    escalation: list[EscalationStep] = Field(
        default_factory=lambda: [
            EscalationStep(after="0s", to="module_lead"),
            EscalationStep(after="30m", to="party_secretary"),
        ]
    )


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ReporterKind = Literal["officer", "device", "citizen", "hotline"]
HoursRange = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")]


class Calendar(Labelled):
    """Named days, e.g. market days (集日): days of the month and/or explicit dates."""

    days_of_month: list[Annotated[int, Field(ge=1, le=31)]] = Field(default_factory=list)
    dates: list[date] = Field(default_factory=list)


class TimeCondition(_Strict):
    """Local time (the table's ``timezone``). ``hours`` may wrap midnight: ``22:00-06:00``."""

    weekdays: list[Weekday] | None = None
    hours: HoursRange | None = None
    calendar: Identifier | None = None
    outside_calendar: Identifier | None = None


class When(_Strict):
    category: CategoryPattern | list[CategoryPattern] = "*"
    zone: Identifier | list[Identifier] | None = None
    time: TimeCondition | None = None
    severity_at_least: int | None = Field(default=None, ge=1, le=5)
    reporter_kind: ReporterKind | list[ReporterKind] | None = None


class Then(Deadlines):
    """Either a township owner (``module`` with a ``lead`` team and ``support`` teams) or
    ``handover`` to a county department."""

    module: Identifier | None = None
    lead: Identifier | None = None
    support: list[Identifier] = Field(default_factory=list)
    handover: Identifier | None = None
    priority: int | None = Field(default=None, ge=1, le=5)
    escalation: list[EscalationStep] | None = None


class Rule(_Strict):
    id: Identifier
    description: str | None = None
    precedence: int = Field(default=0, ge=-1000, le=1000, description="higher wins; then the more specific rule")
    when: When
    then: Then


class WorkingDays(_Strict):
    """One year's public holidays and make-up working days (调休) as the township writes them; it
    replaces that year of the ``chinese-calendar`` package (or adds a year the package does not know)."""

    year: int = Field(ge=2000, le=2200)
    holidays: list[date] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list, description="weekend days worked (调休)")

    @model_validator(mode="after")
    def _in_year(self) -> WorkingDays:
        for day in (*self.holidays, *self.workdays):
            if day.year != self.year:
                raise ValueError(f"{day.isoformat()} is not in {self.year}")
        both = sorted(set(self.holidays) & set(self.workdays))
        if both:
            raise ValueError(f"{both[0].isoformat()} is both a holiday and a working day")
        return self


def _office_hours(value: list[str]) -> list[str]:
    parse_office_hours(value)
    return value


class CountyDepartment(Labelled):
    """A county department that the boundary list hands matters to (not a township team)."""


class Duplicates(_Strict):
    """How the table places reports for joining (see docs/dispatch.md: duplicates)."""

    small_zone_m: float = Field(
        default=0,
        ge=0,
        description="a zone whose every point lies within this many metres of its centre (a Point zone: its radius) "
        "is one place: reports placed only by it join an open incident of the same category in it (0: none)",
    )


class RuleTable(_Strict):
    """A whole table. ``triage_module`` receives what no rule owns (分拨/准入 review)."""

    table: Literal[1] = Field(description="version of this schema")
    version: str = Field(min_length=1, max_length=64, description="version of this table's content")
    include: list[str] = Field(default_factory=list, description="files whose sections are appended")
    township: Township
    timezone: TimeZoneName = "Asia/Shanghai"
    party_secretary: Person
    triage_module: Identifier = "command-room"
    defaults: Defaults = Defaults()
    keyword_min_score: int = Field(default=2, ge=1)
    duplicates: Duplicates = Duplicates()
    modules: list[Module] = Field(min_length=1)
    teams: list[Team] = Field(min_length=1)
    county_departments: list[CountyDepartment] = Field(default_factory=list)
    zones: list[Zone] = Field(default_factory=list)
    calendars: list[Calendar] = Field(default_factory=list)
    catalogue: list[Category] = Field(min_length=1)
    keywords: list[KeywordRule] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    office_hours: Annotated[list[HoursRange], AfterValidator(_office_hours)] = Field(
        default_factory=lambda: list(DEFAULT_OFFICE_HOURS), description="for working hours (wh), local time"
    )
    working_days: list[WorkingDays] = Field(
        default_factory=list, description="the township's own years of holidays and make-up working days"
    )
