"""Loading a rule table: YAML → schema check → cross-reference check, every finding with its line.

This is the only place that reports a table author's mistakes. It never lets a traceback
through: whatever is wrong with a file comes back as a :class:`RuleTableError` listing each
problem as ``file:line: what is wrong``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from rules.table import Rule, RuleTable
from rules.yaml_budget import over_budget


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RuleTableError(Exception):
    """A table that cannot be used; ``problems`` lists every finding with file and line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Sections an included file may hold; their items are appended to the main file's.
INCLUDABLE = ("teams", "county_departments", "zones", "calendars", "catalogue", "keywords", "rules", "working_days")


#: An included file with one of these suffixes is a GeoJSON FeatureCollection whose features become zones.
GEOJSON_SUFFIXES = (".geojson", ".json")


@dataclass(frozen=True)
class LoadedTable:
    """A validated table and where each of its values was written (for findings after validation)."""

    table: RuleTable
    _locator: _Locator

    def where(self, *loc: str | int) -> tuple[str, int]:
        """The file and line of the value at ``loc``, e.g. ``where("rules", 3)``."""
        return self._locator.where(loc)


def load_table(path: str | Path) -> RuleTable:
    """Read and validate the table at ``path`` (and the files it includes); raises :class:`RuleTableError`."""
    return load_source(path).table


def load_source(path: str | Path) -> LoadedTable:
    """Like :func:`load_table`, keeping the file and line of every value."""
    path = Path(path)
    text = _read(path, str(path))
    return load_source_text(text, source=str(path), base_dir=path.parent)


def load_table_text(text: str, *, source: str = "<table>", base_dir: Path | None = None) -> RuleTable:
    """Validate a table given as YAML text; ``include`` paths are relative to ``base_dir``.

    Raises :class:`RuleTableError` listing every problem with its file and line.
    """
    return load_source_text(text, source=source, base_dir=base_dir).table


def load_source_text(text: str, *, source: str = "<table>", base_dir: Path | None = None) -> LoadedTable:
    """:func:`load_table_text`, keeping the file and line of every value."""
    node, data = _parse(text, source)
    located = _Locator(source, node)
    problems = list(located.duplicate_keys())
    includes = data.get("include") or []
    if includes and not isinstance(includes, list):
        problems.append(located.problem(("include",), "include must be a list of file names"))
        includes = []
    for index, name in enumerate(includes):
        if base_dir is None:
            problems.append(located.problem(("include", index), "include needs the table to be read from a file"))
            continue
        included_path = base_dir / str(name)
        if included_path.suffix.lower() in GEOJSON_SUFFIXES:
            try:
                geo_located, zones = _geojson_zones(included_path)
            except RuleTableError as exc:
                problems.extend(exc.problems)
                continue
            located.append("zones", data, geo_located, zones)
            continue
        try:
            inc_node, inc_data = _parse(_read(included_path, str(included_path)), str(included_path))
        except RuleTableError as exc:
            problems.extend(exc.problems)
            continue
        inc_located = _Locator(str(included_path), inc_node)
        problems.extend(inc_located.duplicate_keys())
        for key, items in inc_data.items():
            if key not in INCLUDABLE:
                problems.append(inc_located.problem((key,), f"an included file may hold only {', '.join(INCLUDABLE)}"))
            elif not isinstance(items, list):
                problems.append(inc_located.problem((key,), f"{key} must be a list"))
            else:
                located.append(key, data, inc_located, items)
    if problems:
        raise RuleTableError(problems)
    try:
        table = RuleTable.model_validate(data)
    except ValidationError as exc:
        raise RuleTableError([located.problem(err["loc"], _pydantic_message(err)) for err in exc.errors()]) from None
    problems = list(_cross_references(table, located))
    if problems:
        raise RuleTableError(problems)
    return LoadedTable(table, located)


def _geojson_zones(path: Path) -> tuple[_Locator, list[Any]]:
    """The zones of a GeoJSON FeatureCollection (e.g. service areas, or the grid cells of 网格化管理): each
    feature's ``properties.id`` (else the feature's ``id``) is the zone id, ``properties.name`` and
    ``name_en`` its labels (default: the id), its Polygon or MultiPolygon geometry its area. The file is read
    as YAML (JSON is YAML), so that mistakes are reported with their line."""
    node, data = _parse(_read(path, str(path)), str(path))
    located = _FeatureLocator(str(path), node)
    problems = list(located.duplicate_keys())
    features = data.get("features")
    if data.get("type") != "FeatureCollection" or not isinstance(features, list):
        raise RuleTableError([located.problem(("type",), "a zone file is a GeoJSON FeatureCollection with features")])
    zones: list[Any] = []
    for index, feature in enumerate(features):
        properties = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(feature, dict) or not isinstance(properties, dict):
            problems.append(located.problem(("features", index), "a feature needs properties (its id, name)"))
            continue
        zone_id = properties.get("id", feature.get("id"))
        if zone_id is None:
            problems.append(located.problem(("features", index, "properties"), "a feature needs properties.id"))
            continue
        name = properties.get("name") or str(zone_id)
        zones.append(
            {
                "id": zone_id,
                "name": name,
                "name_en": properties.get("name_en") or name,
                "geometry": feature.get("geometry"),
            }
        )
    if problems:
        raise RuleTableError(problems)
    return located, zones


M = TypeVar("M", bound=BaseModel)


def load_model(path: Path, model: type[M]) -> M:
    """Validate any YAML file against a pydantic ``model``; raises :class:`RuleTableError` with file and line."""
    node, data = _parse(_read(path, str(path)), str(path))
    located = _Locator(str(path), node)
    problems = list(located.duplicate_keys())
    if problems:
        raise RuleTableError(problems)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RuleTableError([located.problem(err["loc"], _pydantic_message(err)) for err in exc.errors()]) from None


def _read(path: Path, source: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleTableError([Problem(source, 0, f"cannot read the table: {exc}")]) from None


def _parse(text: str, source: str) -> tuple[yaml.Node, dict[str, Any]]:
    try:
        # Before anything walks the document: an alias bomb would cost minutes in what follows.
        too_much = over_budget(text)
        if too_much is not None:
            raise RuleTableError([Problem(source, too_much.line, too_much.message)])
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # a safe loader: libyaml's when present
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise RuleTableError([Problem(source, line, f"not valid YAML: {problem}")]) from None
    if node is None or not isinstance(data, dict):
        raise RuleTableError([Problem(source, 1, "the table must be a YAML mapping")])
    return node, data


def _pydantic_message(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    return f"{where}: {err['msg']}"


class _Locator:
    """Finds the file and line of a value by its path of keys and indexes, across included files."""

    def __init__(self, source: str, root: yaml.Node) -> None:
        self.source = source
        self.root = root
        # section -> for each item appended from an included file: (that file's locator, its index there)
        self._appended: dict[str, list[tuple[_Locator, int]]] = {}
        self._own: dict[str, int] = {}

    def append(self, section: str, data: dict[str, Any], other: _Locator, items: list[Any]) -> None:
        own = data.get(section)
        if not isinstance(own, list):
            own = []
        self._own.setdefault(section, len(own))
        data[section] = own + items
        self._appended.setdefault(section, []).extend((other, i) for i in range(len(items)))

    def where(self, loc: Sequence[str | int]) -> tuple[str, int]:
        if len(loc) >= 2 and isinstance(loc[0], str) and isinstance(loc[1], int) and loc[0] in self._appended:
            own = self._own[loc[0]]
            if loc[1] >= own:
                other, index = self._appended[loc[0]][loc[1] - own]
                return other.where((loc[0], index, *loc[2:]))
        node = self.root
        for part in loc:
            child = _child(node, part)
            if child is None:
                break
            node = child
        return self.source, node.start_mark.line + 1

    def line(self, loc: Sequence[str | int]) -> int:
        return self.where(loc)[1]

    def problem(self, loc: Sequence[str | int], message: str) -> Problem:
        source, line = self.where(loc)
        return Problem(source, line, message)

    def duplicate_keys(self) -> Iterable[Problem]:
        stack = [self.root]
        while stack:
            node = stack.pop()
            if isinstance(node, yaml.MappingNode):
                seen: set[str] = set()
                for key, value in node.value:
                    if key.value in seen:
                        yield Problem(self.source, key.start_mark.line + 1, f"key {key.value!r} appears twice")
                    seen.add(key.value)
                    stack.append(value)
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if key.value == part:
                found: yaml.Node = value
                return found
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item
    return None


def _duplicates(ids: Iterable[str]) -> list[tuple[int, str]]:
    seen: set[str] = set()
    found = []
    for index, value in enumerate(ids):
        if value in seen:
            found.append((index, value))
        seen.add(value)
    return found


def _cross_references(table: RuleTable, at: _Locator) -> Iterable[Problem]:
    for section, items in (
        ("modules", table.modules),
        ("teams", table.teams),
        ("county_departments", table.county_departments),
        ("zones", table.zones),
        ("calendars", table.calendars),
        ("catalogue", table.catalogue),
        ("rules", table.rules),
    ):
        for index, dup in _duplicates(item.id for item in items):
            yield at.problem((section, index, "id"), f"{section}: id {dup!r} is used twice")

    modules = {m.id for m in table.modules}
    teams = {t.id for t in table.teams}
    departments = {d.id for d in table.county_departments}
    zones = {z.id for z in table.zones}
    calendars = {c.id for c in table.calendars}
    categories = {c.id for c in table.catalogue}

    if table.triage_module not in modules:
        yield at.problem(("triage_module",), f"triage_module {table.triage_module!r} is not a module")
    for i, team in enumerate(table.teams):
        if team.module not in modules:
            yield at.problem(("teams", i, "module"), f"team {team.id!r}: unknown module {team.module!r}")
    for i, zone in enumerate(table.zones):
        if zone.geometry.type == "Point" and zone.radius_m is None:
            yield at.problem(("zones", i), f"zone {zone.id!r}: a Point needs radius_m")
        if zone.geometry.type != "Point" and zone.radius_m is not None:
            yield at.problem(("zones", i, "radius_m"), f"zone {zone.id!r}: a {zone.geometry.type} takes no radius_m")
    for i, calendar in enumerate(table.calendars):
        if not calendar.days_of_month and not calendar.dates:
            yield at.problem(("calendars", i), f"calendar {calendar.id!r} names no days")
    seen_years: set[int] = set()
    for i, year in enumerate(table.working_days):
        if year.year in seen_years:
            yield at.problem(("working_days", i, "year"), f"working_days: the year {year.year} is given twice")
        seen_years.add(year.year)
    for i, keyword in enumerate(table.keywords):
        if keyword.category not in categories:
            yield at.problem(
                ("keywords", i, "category"), f"keywords: category {keyword.category!r} is not in the catalogue"
            )

    for i, rule in enumerate(table.rules):
        yield from _rule_references(rule, ("rules", i), at, categories, zones, calendars, modules, teams, departments)


def _rule_references(
    rule: Rule,
    where: tuple[str, int],
    at: _Locator,
    categories: set[str],
    zones: set[str],
    calendars: set[str],
    modules: set[str],
    teams: set[str],
    departments: set[str],
) -> Iterable[Problem]:
    patterns = rule.when.category if isinstance(rule.when.category, list) else [rule.when.category]
    for pattern in patterns:
        if pattern == "*":
            continue
        if pattern.endswith(".*"):
            prefix = pattern[:-1]
            if not any(c.startswith(prefix) for c in categories):
                yield at.problem(
                    (*where, "when", "category"), f"rule {rule.id!r}: no catalogue category falls under {pattern!r}"
                )
        elif pattern not in categories:
            yield at.problem(
                (*where, "when", "category"), f"rule {rule.id!r}: category {pattern!r} is not in the catalogue"
            )
    rule_zones = rule.when.zone if isinstance(rule.when.zone, list) else [rule.when.zone]
    for zone_id in rule_zones:
        if zone_id is not None and zone_id not in zones:
            yield at.problem((*where, "when", "zone"), f"rule {rule.id!r}: unknown zone {zone_id!r}")
    time = rule.when.time
    if time is not None:
        for key in ("calendar", "outside_calendar"):
            name = getattr(time, key)
            if name is not None and name not in calendars:
                yield at.problem((*where, "when", "time", key), f"rule {rule.id!r}: unknown calendar {name!r}")
    then = rule.then
    if then.handover is not None:
        if then.module or then.lead or then.support:
            yield at.problem(
                (*where, "then"), f"rule {rule.id!r}: a handover names no township module, lead or support"
            )
        if then.handover not in departments:
            yield at.problem(
                (*where, "then", "handover"), f"rule {rule.id!r}: unknown county department {then.handover!r}"
            )
        return
    if then.module is None or then.lead is None:
        yield at.problem((*where, "then"), f"rule {rule.id!r}: give module and lead, or handover")
        return
    if then.module not in modules:
        yield at.problem((*where, "then", "module"), f"rule {rule.id!r}: unknown module {then.module!r}")
    if then.lead not in teams:
        yield at.problem((*where, "then", "lead"), f"rule {rule.id!r}: unknown team {then.lead!r}")
    for j, team_id in enumerate(then.support):
        if team_id not in teams:
            yield at.problem((*where, "then", "support", j), f"rule {rule.id!r}: unknown team {team_id!r}")
        elif team_id == then.lead:
            yield at.problem(
                (*where, "then", "support", j), f"rule {rule.id!r}: the lead team {team_id!r} is also listed as support"
            )
    for j, dup in _duplicates(then.support):
        yield at.problem((*where, "then", "support", j), f"rule {rule.id!r}: team {dup!r} is listed twice")


class _FeatureLocator(_Locator):
    """Lines in a GeoJSON zone file: ``zones[i].geometry…`` is ``features[i].geometry…``, the rest of a zone
    its ``properties``."""

    def where(self, loc: Sequence[str | int]) -> tuple[str, int]:
        if len(loc) >= 2 and loc[0] == "zones":
            rest = tuple(loc[2:])
            if rest and rest[0] == "geometry":
                return super().where(("features", loc[1], *rest))
            return super().where(("features", loc[1], "properties") if rest else ("features", loc[1]))
        return super().where(loc)
