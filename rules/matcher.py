"""The compiled rule table: immutable, indexed by category and zone, and pure.

Precedence (table schema 1): **the first rule in file order whose conditions all hold wins**,
as in Alertmanager's routing tree. A category no catalogue entry knows goes to the triage queue;
a known category that no rule covers goes to admission review (准入): both to the triage module,
with no team, so that nothing reported is dropped or silently pushed onto a team.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from rules.durations import parse_duration
from rules.geo import Circle, Polygon, Shape
from rules.table import RuleTable


class Queue(StrEnum):
    """Why a matter went to the command room instead of a team."""

    TRIAGE = "triage"  # the category is not in the catalogue
    ADMISSION = "admission"  # in the catalogue, but the boundary list names no owner


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingInput:
    category: str
    zone: str | None = None
    lat: float | None = None
    lon: float | None = None
    severity: int | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Leader:
    name: str
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Where a matter goes and what is promised; the same input always gives the same decision."""

    table_version: str
    rule_id: str | None
    module: str
    queue: Queue | None
    zones: tuple[str, ...]
    priority: int
    lead: str | None
    support: tuple[str, ...]
    ack_within: timedelta | None
    arrive_within: timedelta | None
    resolve_within: timedelta | None
    escalate_to: Leader


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    index: int
    id: str
    min_severity: int | None
    decision: Decision

    def accepts(self, severity: int | None) -> bool:
        return self.min_severity is None or (severity is not None and severity >= self.min_severity)


@dataclass(frozen=True, slots=True)
class _CategoryIndex:
    any_zone: tuple[_CompiledRule, ...]
    by_zone: Mapping[str, tuple[_CompiledRule, ...]]


@dataclass(frozen=True)
class RuleBook:
    """A compiled table. ``route`` is pure and safe to call from any thread."""

    table: RuleTable
    _shapes: tuple[tuple[str, Shape], ...] = field(repr=False)
    _index: Mapping[str, _CategoryIndex] = field(repr=False)
    _fallback: Mapping[Queue, Decision] = field(repr=False)

    @property
    def version(self) -> str:
        return self.table.version

    @property
    def township_id(self) -> str:
        return self.table.township.id

    def has_zone(self, zone_id: str) -> bool:
        return any(zone_id == z for z, _ in self._shapes)

    def zones_at(self, lat: float, lon: float) -> tuple[str, ...]:
        """The ids of every zone that contains the point, in table order."""
        return tuple(zone_id for zone_id, shape in self._shapes if shape.contains(lat, lon))

    def route(self, item: RoutingInput) -> Decision:
        zones = self._zones_of(item)
        index = self._index.get(item.category)
        if index is None:
            return _with_zones(self._fallback[Queue.TRIAGE], zones)
        best: _CompiledRule | None = _first(index.any_zone, item.severity)
        for zone_id in zones:
            candidate = _first(index.by_zone.get(zone_id, ()), item.severity)
            if candidate is not None and (best is None or candidate.index < best.index):
                best = candidate
        if best is None:
            return _with_zones(self._fallback[Queue.ADMISSION], zones)
        return _with_zones(best.decision, zones)

    def _zones_of(self, item: RoutingInput) -> tuple[str, ...]:
        placed = self.zones_at(item.lat, item.lon) if item.lat is not None and item.lon is not None else ()
        if item.zone is None:
            return placed
        return (item.zone, *(z for z in placed if z != item.zone))


def _first(rules: tuple[_CompiledRule, ...], severity: int | None) -> _CompiledRule | None:
    for rule in rules:
        if rule.accepts(severity):
            return rule
    return None


def _with_zones(decision: Decision, zones: tuple[str, ...]) -> Decision:
    if decision.zones == zones:
        return decision
    return Decision(
        table_version=decision.table_version,
        rule_id=decision.rule_id,
        module=decision.module,
        queue=decision.queue,
        zones=zones,
        priority=decision.priority,
        lead=decision.lead,
        support=decision.support,
        ack_within=decision.ack_within,
        arrive_within=decision.arrive_within,
        resolve_within=decision.resolve_within,
        escalate_to=decision.escalate_to,
    )


def _duration(value: str | None, default: str | None) -> timedelta | None:
    chosen = value if value is not None else default
    return parse_duration(chosen) if chosen is not None else None


def _category_matches(pattern: str, category: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return category.startswith(pattern[:-1])
    return pattern == category


def compile_table(table: RuleTable) -> RuleBook:
    """Compile a validated table (see :func:`rules.loader.load_table`) into a :class:`RuleBook`."""
    leads = {m.id: Leader(name=m.lead.name, title=m.lead.title) for m in table.modules}
    defaults = table.defaults

    compiled: list[tuple[_CompiledRule, tuple[str, ...], tuple[str | None, ...]]] = []
    for index, rule in enumerate(table.rules):
        then = rule.then
        decision = Decision(
            table_version=table.version,
            rule_id=rule.id,
            module=then.module,
            queue=None,
            zones=(),
            priority=then.priority if then.priority is not None else defaults.priority,
            lead=then.lead,
            support=tuple(then.support),
            ack_within=_duration(then.ack_within, defaults.ack_within),
            arrive_within=_duration(then.arrive_within, defaults.arrive_within),
            resolve_within=_duration(then.resolve_within, defaults.resolve_within),
            escalate_to=leads[then.module],
        )
        categories = rule.when.category if isinstance(rule.when.category, list) else [rule.when.category]
        zones = rule.when.zone if isinstance(rule.when.zone, list) else [rule.when.zone]
        compiled.append(
            (_CompiledRule(index, rule.id, rule.when.severity_at_least, decision), tuple(categories), tuple(zones))
        )

    index_by_category: dict[str, _CategoryIndex] = {}
    for category in table.catalogue:
        any_zone: list[_CompiledRule] = []
        by_zone: dict[str, list[_CompiledRule]] = {}
        for compiled_rule, patterns, rule_zones in compiled:
            if not any(_category_matches(p, category.id) for p in patterns):
                continue
            for zone_id in rule_zones:
                if zone_id is None:
                    any_zone.append(compiled_rule)
                else:
                    by_zone.setdefault(zone_id, []).append(compiled_rule)
        index_by_category[category.id] = _CategoryIndex(
            any_zone=tuple(any_zone),
            by_zone=MappingProxyType({z: tuple(rs) for z, rs in by_zone.items()}),
        )

    shapes: list[tuple[str, Shape]] = []
    for zone in table.zones:
        geometry = zone.geometry
        if geometry.type == "Point":
            lon, lat = geometry.coordinates
            shapes.append((zone.id, Circle(lat, lon, zone.radius_m or 0.0)))
        else:
            shapes.append((zone.id, Polygon(tuple(geometry.coordinates[0]))))

    def fallback(queue: Queue) -> Decision:
        return Decision(
            table_version=table.version,
            rule_id=None,
            module=table.triage_module,
            queue=queue,
            zones=(),
            priority=defaults.priority,
            lead=None,
            support=(),
            ack_within=None,
            arrive_within=None,
            resolve_within=None,
            escalate_to=leads[table.triage_module],
        )

    return RuleBook(
        table=table,
        _shapes=tuple(shapes),
        _index=MappingProxyType(index_by_category),
        _fallback=MappingProxyType({q: fallback(q) for q in Queue}),
    )
