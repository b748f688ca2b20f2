"""Loading a rule table: YAML → schema check → cross-reference check, every finding with its line.

This is the only place that reports a table author's mistakes. It never lets a traceback
through: whatever is wrong with a file comes back as a :class:`RuleTableError` listing each
problem as ``file:line: what is wrong``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rules.table import RuleTable


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


def load_table(path: str | Path) -> RuleTable:
    """Read and validate the table at ``path``; raises :class:`RuleTableError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleTableError([Problem(str(path), 0, f"cannot read the table: {exc}")]) from None
    return load_table_text(text, source=str(path))


def load_table_text(text: str, *, source: str = "<table>") -> RuleTable:
    """Validate a table given as YAML text; raises :class:`RuleTableError`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise RuleTableError([Problem(source, line, f"not valid YAML: {problem}")]) from None
    if node is None or not isinstance(data, dict):
        raise RuleTableError([Problem(source, 1, "the table must be a YAML mapping")])

    located = _Locator(source, node)
    problems = list(located.duplicate_keys())
    if problems:
        raise RuleTableError(problems)
    try:
        table = RuleTable.model_validate(data)
    except ValidationError as exc:
        raise RuleTableError([located.problem(err["loc"], _pydantic_message(err)) for err in exc.errors()]) from None
    problems = list(_cross_references(table, located))
    if problems:
        raise RuleTableError(problems)
    return table


def _pydantic_message(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    return f"{where}: {err['msg']}"


class _Locator:
    """Finds the line of a value in the YAML node tree by its path of keys and indexes."""

    def __init__(self, source: str, root: yaml.Node) -> None:
        self.source = source
        self.root = root

    def line(self, loc: Iterable[str | int]) -> int:
        node = self.root
        for part in loc:
            child = _child(node, part)
            if child is None:
                break
            node = child
        return node.start_mark.line + 1

    def problem(self, loc: Iterable[str | int], message: str) -> Problem:
        return Problem(self.source, self.line(loc), message)

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
        ("zones", table.zones),
        ("catalogue", table.catalogue),
        ("rules", table.rules),
    ):
        for index, dup in _duplicates(item.id for item in items):
            yield at.problem((section, index, "id"), f"{section}: id {dup!r} is used twice")

    modules = {m.id for m in table.modules}
    teams = {t.id for t in table.teams}
    zones = {z.id for z in table.zones}
    categories = {c.id for c in table.catalogue}

    if table.triage_module not in modules:
        yield at.problem(("triage_module",), f"triage_module {table.triage_module!r} is not a module")
    for i, team in enumerate(table.teams):
        if team.module not in modules:
            yield at.problem(("teams", i, "module"), f"team {team.id!r}: unknown module {team.module!r}")
    for i, zone in enumerate(table.zones):
        if zone.geometry.type == "Point" and zone.radius_m is None:
            yield at.problem(("zones", i), f"zone {zone.id!r}: a Point needs radius_m")
        if zone.geometry.type == "Polygon" and zone.radius_m is not None:
            yield at.problem(("zones", i, "radius_m"), f"zone {zone.id!r}: a Polygon takes no radius_m")

    for i, rule in enumerate(table.rules):
        where = ("rules", i)
        patterns = rule.when.category if isinstance(rule.when.category, list) else [rule.when.category]
        for pattern in patterns:
            if pattern == "*":
                continue
            if pattern.endswith(".*"):
                prefix = pattern[:-1]
                if not any(c.startswith(prefix) for c in categories):
                    yield at.problem(
                        (*where, "when", "category"),
                        f"rule {rule.id!r}: no catalogue category falls under {pattern!r}",
                    )
            elif pattern not in categories:
                yield at.problem(
                    (*where, "when", "category"),
                    f"rule {rule.id!r}: category {pattern!r} is not in the catalogue",
                )
        rule_zones = rule.when.zone if isinstance(rule.when.zone, list) else [rule.when.zone]
        for zone_id in rule_zones:
            if zone_id is not None and zone_id not in zones:
                yield at.problem((*where, "when", "zone"), f"rule {rule.id!r}: unknown zone {zone_id!r}")
        if rule.then.module not in modules:
            yield at.problem((*where, "then", "module"), f"rule {rule.id!r}: unknown module {rule.then.module!r}")
        if rule.then.lead not in teams:
            yield at.problem((*where, "then", "lead"), f"rule {rule.id!r}: unknown team {rule.then.lead!r}")
        for j, team_id in enumerate(rule.then.support):
            if team_id not in teams:
                yield at.problem((*where, "then", "support", j), f"rule {rule.id!r}: unknown team {team_id!r}")
            elif team_id == rule.then.lead:
                yield at.problem(
                    (*where, "then", "support", j),
                    f"rule {rule.id!r}: the lead team {team_id!r} is also listed as support",
                )
        for j, dup in _duplicates(rule.then.support):
            yield at.problem((*where, "then", "support", j), f"rule {rule.id!r}: team {dup!r} is listed twice")
