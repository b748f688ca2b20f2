"""The roster file: officers, duty shifts and overrides, validated against the rule table.

A roster is a YAML (or JSON) document; the bundled one is ``rules/tables/ershili-roster.yaml``.
It is checked the way rule tables are: schema first (pydantic, strict), then against the table
it serves (every team, module and zone must exist there; shift officers must belong to the
shift's team). A roster that fails is refused whole, with every problem listed.
"""

from __future__ import annotations

import json
from datetime import date, time
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dispatcher.core.roster import WEEKDAY_NAMES, DutyOverride, Officer, OfficerKind, Roster, Shift
from dispatcher.values import Text
from rules.matcher import RuleBook
from rules.yaml_budget import over_budget

if TYPE_CHECKING:
    from dispatcher.hub import Hub

BUNDLED_ROSTER = Path(str(files("rules").joinpath("tables", "ershili-roster.yaml")))

Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Clock = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OfficerIn(_Strict):
    id: Identifier
    name: Text = Field(min_length=1, max_length=64)
    team: Identifier
    post: Text = Field(min_length=1, max_length=64, description="岗位, e.g. 中队长, 执法队员")
    kind: OfficerKind = OfficerKind.STAFFED
    department: Text | None = Field(default=None, max_length=64, description="home department; default: the team's")
    zone: Identifier | None = Field(default=None, description="where the officer is posted")
    phone: Text | None = Field(default=None, max_length=32)


class ShiftIn(_Strict):
    id: Identifier
    team: Identifier
    start: Clock
    end: Clock
    officers: list[Identifier] = Field(min_length=1)
    lead: Identifier | None = Field(default=None, description="the duty lead, who takes over the handover")
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(default_factory=list)
    days_of_month: list[Annotated[int, Field(ge=1, le=31)]] = Field(default_factory=list)
    zone: Identifier | None = None

    @field_validator("end")
    @classmethod
    def _not_empty(cls, end: str, info: object) -> str:
        start = getattr(info, "data", {}).get("start")
        if start == end:
            raise ValueError("a shift must not start and end at the same time")
        return end


class OverrideIn(_Strict):
    officer: Identifier
    date: date
    on_duty: bool
    zone: Identifier | None = None


class RosterIn(_Strict):
    roster: Literal[1] = Field(description="version of this schema")
    version: Text = Field(min_length=1, max_length=64)
    max_tasks: int = Field(default=3, ge=1, le=50, description="open tasks one officer may hold")
    officers: list[OfficerIn] = Field(default_factory=list)
    shifts: list[ShiftIn] = Field(default_factory=list)
    overrides: list[OverrideIn] = Field(default_factory=list)


class RosterError(ValueError):
    """The roster is refused; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("roster refused: " + "; ".join(problems))
        self.problems = problems


def parse_roster(data: object) -> RosterIn:
    try:
        return RosterIn.model_validate(data)
    except ValidationError as exc:
        raise RosterError(
            [f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()]
        ) from None


def read_roster(path: Path) -> RosterIn:
    try:
        text = path.read_text(encoding="utf-8")
        too_much = over_budget(text)  # before validation walks every alias again
        if too_much is not None:
            raise RosterError([f"{path}:{too_much.line}: {too_much.message}"])
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RosterError([f"{path}: {exc}"]) from None
    return parse_roster(data)


def build_roster(source: RosterIn, rules: RuleBook) -> Roster:
    """The roster for the core, after checking it against the rule table; raises :class:`RosterError`."""
    table = rules.table
    teams = {t.id: t for t in table.teams}
    zones = {z.id for z in table.zones}
    problems: list[str] = []
    seen: set[str] = set()
    officers: dict[str, Officer] = {}
    for n, o in enumerate(source.officers):
        where = f"officers[{n}] {o.id}"
        if o.id in seen:
            problems.append(f"{where}: the id is used twice")
        seen.add(o.id)
        team = teams.get(o.team)
        if team is None:
            problems.append(f"{where}: team {o.team!r} is not in rule table {table.version}")
            continue
        if o.zone is not None and o.zone not in zones:
            problems.append(f"{where}: zone {o.zone!r} is not in the rule table")
        officers[o.id] = Officer(
            id=o.id,
            name=o.name,
            team=o.team,
            module=team.module,
            post=o.post,
            department=o.department or team.department,
            kind=o.kind,
            zone=o.zone,
            phone=o.phone,
        )
    shifts: list[Shift] = []
    shift_ids: set[str] = set()
    for n, s in enumerate(source.shifts):
        where = f"shifts[{n}] {s.id}"
        if s.id in shift_ids:
            problems.append(f"{where}: the id is used twice")
        shift_ids.add(s.id)
        if s.team not in teams:
            problems.append(f"{where}: team {s.team!r} is not in the rule table")
        if s.zone is not None and s.zone not in zones:
            problems.append(f"{where}: zone {s.zone!r} is not in the rule table")
        for officer_id in (*s.officers, *([s.lead] if s.lead else [])):
            officer = officers.get(officer_id)
            if officer is None:
                problems.append(f"{where}: officer {officer_id!r} is not on the roster")
            elif officer.team != s.team:
                problems.append(f"{where}: officer {officer_id} belongs to team {officer.team}, not {s.team}")
        shifts.append(
            Shift(
                id=s.id,
                team=s.team,
                start=time.fromisoformat(s.start),
                end=time.fromisoformat(s.end),
                officers=tuple(s.officers),
                lead=s.lead,
                weekdays=frozenset(WEEKDAY_NAMES.index(d) for d in s.weekdays),
                days_of_month=frozenset(s.days_of_month),
                zone=s.zone,
            )
        )
    overrides = []
    for n, ov in enumerate(source.overrides):
        if ov.officer not in officers:
            problems.append(f"overrides[{n}]: officer {ov.officer!r} is not on the roster")
        if ov.zone is not None and ov.zone not in zones:
            problems.append(f"overrides[{n}]: zone {ov.zone!r} is not in the rule table")
        overrides.append(DutyOverride(officer=ov.officer, day=ov.date, on_duty=ov.on_duty, zone=ov.zone))
    if problems:
        raise RosterError(problems)
    return Roster(
        version=source.version,
        timezone=table.timezone,
        officers=officers,
        shifts=tuple(shifts),
        overrides=tuple(overrides),
        max_tasks=source.max_tasks,
    )


def empty_roster(rules: RuleBook) -> Roster:
    """No officers at all: every team is dispatched as a whole (the behaviour without a roster)."""
    return Roster(version="none", timezone=rules.table.timezone, officers={})


async def install_roster(hub: Hub, source: RosterIn, loaded_by: str | None) -> Roster:
    """Check ``source`` against the hub's rule table, then put it in force through the hub's writer.

    It is stored as the newest roster with a ``RosterLoaded`` event in one transaction. Raises
    :class:`RosterError` and changes nothing when it does not fit the table; the hub's errors
    (``StoreUnavailable``...) pass through, and then nothing changed either.
    """
    roster = build_roster(source, hub.rules)
    await hub.load_roster(roster, source.model_dump_json(), hub.clock.now(), loaded_by)
    return roster


async def restore_roster(
    hub: Hub, fallback: Path | None, *, use_stored: bool = True
) -> tuple[Roster, RosterIn | None, bool]:
    """At start, before the writer runs: the newest stored roster, else ``fallback``, else none (teams sent whole).

    The roster is put in force in memory only; the third value says whether it came from
    ``fallback`` and is not stored yet: the caller then stores it with :func:`install_roster` once
    the hub runs, so that it is on the log too.
    """
    stored = await hub.store.latest_roster() if use_stored else None
    if stored is not None:
        source = parse_roster(json.loads(stored[1]))
        roster = build_roster(source, hub.rules)
        hub.replace_roster(roster)
        return roster, source, False
    if fallback is not None:
        source = read_roster(fallback)
        roster = build_roster(source, hub.rules)
        hub.replace_roster(roster)
        return roster, source, True
    roster = empty_roster(hub.rules)
    hub.replace_roster(roster)
    return roster, None, False
