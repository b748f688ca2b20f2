"""The rule table as written: the schema a YAML table must follow.

Every model refuses unknown keys, so a misspelt key is reported instead of silently ignored.
Cross-references (a rule naming a team that does not exist...) are checked by
:mod:`rules.loader`, which knows the file and line of every value.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rules.durations import parse_duration

Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=64)]
CategoryPattern = Annotated[str, Field(pattern=r"^(\*|[a-z0-9][a-z0-9_.-]*(\.\*)?)$", max_length=96)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class PolygonGeometry(_Strict):
    type: Literal["Polygon"]
    coordinates: list[list[tuple[float, float]]] = Field(min_length=1)

    @field_validator("coordinates")
    @classmethod
    def _ring_closed(cls, rings: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
        ring = rings[0]
        if len(ring) < 4 or ring[0] != ring[-1]:
            raise ValueError("a polygon ring needs at least 4 positions and must end where it starts")
        return rings


class Zone(Labelled):
    geometry: Annotated[PointGeometry | PolygonGeometry, Field(discriminator="type")]
    radius_m: float | None = Field(default=None, gt=0, description="required for a Point")


class Category(Labelled):
    pass


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, Field(min_length=2, max_length=32)]


class Deadlines(_Strict):
    ack_within: Duration | None = None
    arrive_within: Duration | None = None
    resolve_within: Duration | None = None

    @field_validator("ack_within", "arrive_within", "resolve_within")
    @classmethod
    def _durations(cls, value: str | None) -> str | None:
        return None if value is None else _check_duration(value)


class Defaults(Deadlines):
    priority: int = Field(default=3, ge=1, le=5)


class When(_Strict):
    category: CategoryPattern | list[CategoryPattern] = "*"
    zone: Identifier | list[Identifier] | None = None
    severity_at_least: int | None = Field(default=None, ge=1, le=5)


class Then(Deadlines):
    module: Identifier
    lead: Identifier
    support: list[Identifier] = Field(default_factory=list)
    priority: int | None = Field(default=None, ge=1, le=5)


class Rule(_Strict):
    id: Identifier
    description: str | None = None
    when: When
    then: Then


class RuleTable(_Strict):
    """A whole table. ``triage_module`` receives what no rule owns (分拨/准入 review)."""

    table: Literal[1] = Field(description="version of this schema")
    version: str = Field(min_length=1, max_length=64, description="version of this table's content")
    township: Township
    party_secretary: Person
    triage_module: Identifier = "command-room"
    defaults: Defaults = Defaults()
    modules: list[Module] = Field(min_length=1)
    teams: list[Team] = Field(min_length=1)
    zones: list[Zone] = Field(default_factory=list)
    catalogue: list[Category] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)
