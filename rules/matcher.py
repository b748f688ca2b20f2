"""The compiled rule table: immutable, indexed by category and zone, and pure.

**Precedence.** Of the rules whose conditions all hold, the one with the highest ``precedence``
wins; among equal precedence, the most *specific* rule wins; among equally specific rules, the one
written first (``rules check`` reports such ties when their owners differ). Specificity counts the
conditions a rule sets: an exact category counts 2, a branch (``traffic.*``) 1, ``*`` 0; a zone,
a time condition, a severity and a reporter kind count 1 each.

A report without a category is classified by the table's keywords first. A category no catalogue
entry knows (or no keyword claims) goes to the triage queue; a catalogue category that no rule
covers goes to admission review (准入): both to the triage module with no team, so that nothing
reported is dropped or silently pushed onto a township team.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from rules.durations import parse_duration
from rules.geo import Area, Circle, Polygon, Shape
from rules.table import Calendar, Rule, RuleTable
from rules.workdays import Window, WorkCalendar, YearDays, parse_window

if TYPE_CHECKING:
    from rules.keywords import Classification, KeywordClassifier
    from rules.messages import MessageModel, MessageVerdict

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Routing decisions a book keeps for reuse (see :meth:`RuleBook.route`); past this it starts afresh.
_DECISIONS_KEPT = 4096


class Queue(StrEnum):
    """Why a matter went to the command room instead of a team."""

    TRIAGE = "triage"  # no category, or one the catalogue does not know
    ADMISSION = "admission"  # in the catalogue, but the boundary list names no owner
    HANDOVER = "handover"  # the boundary list gives it to a county department


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingInput:
    category: str | None = None
    description: str = ""
    zone: str | None = None
    lat: float | None = None
    lon: float | None = None
    severity: int | None = None
    reporter_kind: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Leader:
    name: str
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationTarget:
    """``after`` a deadline is missed, the matter goes to ``level`` (the named leader)."""

    after: timedelta
    level: str
    name: str
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Where a matter goes and what is promised; the same input always gives the same decision."""

    table_version: str
    rule_id: str | None
    category: str | None
    module: str
    queue: Queue | None
    handover: str | None
    zones: tuple[str, ...]
    priority: int
    lead: str | None
    support: tuple[str, ...]
    ack_within: timedelta | None
    arrive_within: timedelta | None
    resolve_within: Window | None  # clock time, or working time (``5wd``) counted by the table's calendar
    escalation: tuple[EscalationTarget, ...]
    classification: Classification | None = None
    message: MessageVerdict | None = None  # how keywords, model and threshold decided a message's category
    verify_within: Window | None = None  # 核查 needed within this after every team resolved; None: not needed
    max_extensions: int = 1
    extension_approver: str = "module_lead"

    @property
    def escalate_to(self) -> Leader:
        first = self.escalation[0]
        return Leader(name=first.name, title=first.title)

    @property
    def owner(self) -> str:
        """A short name of the owner, for reports and diffs: ``module/lead+support``, ``county:dept`` or the queue."""
        if self.handover is not None:
            return f"county:{self.handover}"
        if self.lead is None:
            return f"{self.module}:{self.queue}"
        return f"{self.module}/{'+'.join((self.lead, *self.support))}"


class Situation:
    """The local time of a report, worked out at most once per routing, and only when a candidate rule
    has a time condition (most have none): weekday, minute, calendars."""

    def __init__(self, at: datetime | None, tz: ZoneInfo, calendars: Mapping[str, Calendar]) -> None:
        self._at = at
        self._tz = tz
        self._calendars = calendars

    @cached_property
    def local(self) -> datetime | None:
        return self._at.astimezone(self._tz) if self._at is not None else None

    @cached_property
    def weekday(self) -> int:
        return self._known_local.weekday()

    @cached_property
    def minute(self) -> int:
        local = self._known_local
        return local.hour * 60 + local.minute

    @cached_property
    def day(self) -> date:
        return self._known_local.date()

    @property
    def _known_local(self) -> datetime:
        local = self.local
        if local is None:
            raise ValueError("the report gave no time")
        return local

    @cached_property
    def calendar_days(self) -> frozenset[str]:
        if self.local is None:
            return frozenset()
        return frozenset(
            cid for cid, cal in self._calendars.items() if self.day in cal.dates or self.day.day in cal.days_of_month
        )


class _Instant:
    """One instant reports are routed at, and what is worked out once for it: its :class:`Situation` (never
    changed once made, so shared), and the decisions of reports placed by their zone alone, by category, zone,
    severity and reporter kind (at most one per distinct such report of the instant). A plain class: one is made
    for each report of the single door."""

    __slots__ = ("at", "routed", "situation")

    def __init__(self, at: datetime | None, situation: Situation) -> None:
        self.at = at
        self.situation = situation
        self.routed: dict[tuple[str, str | None, int | None, str | None], Decision] = {}


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition of a rule and whether it held, for ``explain``."""

    name: str
    held: bool
    detail: str


@dataclass(frozen=True, slots=True)
class CompiledRule:
    index: int
    id: str
    precedence: int
    conditions_set: int  # conditions other than the category (zone, time, severity, reporter)
    categories: tuple[str, ...]
    zones: frozenset[str] | None
    weekdays: frozenset[int] | None
    hours: tuple[int, int] | None
    calendar: str | None
    outside_calendar: str | None
    min_severity: int | None
    reporter_kinds: frozenset[str] | None
    decision: Decision
    source: Rule = field(repr=False, compare=False)

    def category_points(self, category: str) -> int:
        """2 for an exact category, 1 for a branch, 0 for ``*``; -1 when none of its patterns matches."""
        best = -1
        for pattern in self.categories:
            if pattern == category:
                return 2
            if pattern.endswith(".*") and category.startswith(pattern[:-1]):
                best = max(best, 1)
            elif pattern == "*":
                best = max(best, 0)
        return best

    def rank(self, category: str) -> tuple[int, int, int]:
        """Sort key among candidates for ``category``: smaller wins."""
        return (-self.precedence, -(self.category_points(category) + self.conditions_set), self.index)

    def accepts(self, situation: Situation, severity: int | None, reporter_kind: str | None) -> bool:
        """The conditions other than category and zone (those are settled by the index)."""
        if self.min_severity is not None and (severity is None or severity < self.min_severity):
            return False
        if self.reporter_kinds is not None and reporter_kind not in self.reporter_kinds:
            return False
        if self.weekdays is None and self.hours is None and self.calendar is None and self.outside_calendar is None:
            return True
        if situation.local is None:
            return False
        if self.weekdays is not None and situation.weekday not in self.weekdays:
            return False
        if self.hours is not None and not _in_hours(situation.minute, self.hours):
            return False
        if self.calendar is not None and self.calendar not in situation.calendar_days:
            return False
        return not (self.outside_calendar is not None and self.outside_calendar in situation.calendar_days)

    def conditions(
        self, category: str | None, zones: tuple[str, ...], situation: Situation, item: RoutingInput
    ) -> list[Condition]:
        """Every condition of the rule, each with whether it held for this input."""
        found = [
            Condition(
                "category",
                category is not None and self.category_points(category) >= 0,
                f"{category!r} against {list(self.categories)}",
            )
        ]
        if self.zones is not None:
            found.append(
                Condition("zone", bool(self.zones & set(zones)), f"{list(zones)} against {sorted(self.zones)}")
            )
        if self.min_severity is not None:
            found.append(
                Condition(
                    "severity",
                    item.severity is not None and item.severity >= self.min_severity,
                    f"{item.severity} against at least {self.min_severity}",
                )
            )
        if self.reporter_kinds is not None:
            found.append(
                Condition(
                    "reporter_kind",
                    item.reporter_kind in self.reporter_kinds,
                    f"{item.reporter_kind!r} against {sorted(self.reporter_kinds)}",
                )
            )
        local = situation.local
        when = local.isoformat() if local is not None else "no time given"
        if self.weekdays is not None:
            held = local is not None and situation.weekday in self.weekdays
            names = [WEEKDAYS[d] for d in sorted(self.weekdays)]
            found.append(Condition("weekday", held, f"{when} against {names}"))
        if self.hours is not None:
            held = local is not None and _in_hours(situation.minute, self.hours)
            found.append(Condition("hours", held, f"{when} against {_hours_text(self.hours)}"))
        if self.calendar is not None:
            held = self.calendar in situation.calendar_days
            found.append(Condition("calendar", held, f"{when} in calendar {self.calendar!r}"))
        if self.outside_calendar is not None:
            held = local is not None and self.outside_calendar not in situation.calendar_days
            found.append(Condition("outside_calendar", held, f"{when} outside calendar {self.outside_calendar!r}"))
        return found


def _in_hours(minute: int, hours: tuple[int, int]) -> bool:
    start, end = hours
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end  # wraps midnight


def _hours_text(hours: tuple[int, int]) -> str:
    return "{:02d}:{:02d}-{:02d}:{:02d}".format(*divmod(hours[0], 60), *divmod(hours[1], 60))


@dataclass(frozen=True, slots=True)
class _CategoryIndex:
    """Candidates for one category, each list in rank order."""

    any_zone: tuple[tuple[tuple[int, int, int], CompiledRule], ...]
    by_zone: Mapping[str, tuple[tuple[tuple[int, int, int], CompiledRule], ...]]

    def all_rules(self) -> list[CompiledRule]:
        seen: dict[int, CompiledRule] = {r.index: r for _, r in self.any_zone}
        for entries in self.by_zone.values():
            seen.update((r.index, r) for _, r in entries)
        return [seen[i] for i in sorted(seen)]


@dataclass(frozen=True)
class RuleBook:
    """A compiled table. ``route`` is pure and safe to call from any thread."""

    table: RuleTable
    tz: ZoneInfo
    classifier: KeywordClassifier | None
    rules: tuple[CompiledRule, ...] = field(repr=False)
    calendars: Mapping[str, Calendar] = field(repr=False)
    work_calendar: WorkCalendar = field(repr=False)  # working days and office hours, for ``5wd``/``8wh``
    _shapes: tuple[tuple[str, Shape], ...] = field(repr=False)
    _index: Mapping[str, _CategoryIndex] = field(repr=False)
    _fallback: Mapping[Queue, Decision] = field(repr=False)
    #: Zones small enough to be one place (``duplicates.small_zone_m``): reports placed only by one join.
    small_zones: frozenset[str] = frozenset()
    messages: MessageModel | None = field(default=None, repr=False)
    #: Decisions already made, by (winning rule or queue, category, zones): see :meth:`route`.
    _decided: dict[tuple[int | str, str | None, tuple[str, ...]], Decision] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    #: The instant :meth:`route` last routed at, in a list of one (empty until the first): see :class:`_Instant`.
    _last: list[_Instant] = field(default_factory=list, init=False, repr=False, compare=False)

    def with_messages(self, model: MessageModel | None) -> RuleBook:
        """This book with a message model (:mod:`rules.messages`) deciding where the keywords are weak."""
        return replace(self, messages=model)

    @cached_property
    def board_classes(self) -> Mapping[str, str]:
        """Each catalogue category's message-board class."""
        return MappingProxyType({c.id: c.board_class for c in self.table.catalogue})

    @property
    def version(self) -> str:
        return self.table.version

    @property
    def township_id(self) -> str:
        return self.table.township.id

    @cached_property
    def _zone_ids(self) -> frozenset[str]:
        return frozenset(z for z, _ in self._shapes)

    def has_zone(self, zone_id: str) -> bool:
        return zone_id in self._zone_ids

    def shape(self, zone_id: str) -> Shape | None:
        for z, shape in self._shapes:
            if z == zone_id:
                return shape
        return None

    def zones_at(self, lat: float, lon: float) -> tuple[str, ...]:
        """The ids of every zone that contains the point, in table order."""
        return tuple(zone_id for zone_id, shape in self._shapes if shape.contains(lat, lon))

    def zones_of(self, item: RoutingInput) -> tuple[str, ...]:
        """The zone the report names, then every other zone its location falls in."""
        zone = item.zone
        if item.lat is None or item.lon is None:
            return (zone,) if zone is not None else ()
        placed = self.zones_at(item.lat, item.lon)
        if zone is None:
            return placed
        return (zone, *(z for z in placed if z != zone))

    def situation(self, at: datetime | None) -> Situation:
        return Situation(at, self.tz, self.calendars)

    def _instant(self, at: datetime | None) -> _Instant:
        """The last instant routed at when ``at`` is it (a batch's reports are routed at one), else a new one."""
        last = self._last
        if last and last[0].at == at:
            return last[0]
        made = _Instant(at, Situation(at, self.tz, self.calendars))
        last[:] = [made]
        return made

    def candidates(self, category: str) -> list[CompiledRule]:
        """Every rule whose category condition can hold for ``category``, in file order."""
        index = self._index.get(category)
        return index.all_rules() if index is not None else []

    def route(self, item: RoutingInput) -> Decision:
        category = item.category
        if category is None or (item.lat is not None and item.lon is not None):
            return self._route(item)
        # Placed by its zone alone (a hotline's import, most of a batch): the decision depends on nothing but
        # the key and the instant, so an equal report of the same instant is routed once.
        instant = self._instant(item.at)
        key = (category, item.zone, item.severity, item.reporter_kind)
        decision = instant.routed.get(key)
        if decision is None:
            decision = instant.routed[key] = self._route(item, instant.situation)
        return decision

    def _route(self, item: RoutingInput, situation: Situation | None = None) -> Decision:
        """:meth:`route` worked out; ``situation``: the one of ``item.at`` when the caller has it."""
        category = item.category
        classification = None
        message = None
        if category is None:
            classification = self.classifier.classify(item.description) if self.classifier else None
            category = classification.category if classification is not None else None
            if self.messages is not None:
                from rules.messages import decide

                message = decide(item.description, classification, self.messages, board_class=self.board_classes)
                category = message.category
        zones = self.zones_of(item)
        index = self._index.get(category) if category is not None else None
        key: int | str
        if index is None:
            key, base = Queue.TRIAGE, self._fallback[Queue.TRIAGE]
        else:
            best = self.winner(index, zones, situation or self._instant(item.at).situation, item)
            if best is None:
                key, base = Queue.ADMISSION, self._fallback[Queue.ADMISSION]
            else:
                key, base = best.index, best.decision
        if classification is not None or message is not None:
            return replace(base, category=category, zones=zones, classification=classification, message=message)
        # A decision depends only on the rule that won, the category and the zones once no classification
        # rides along: an equal one is handed out again rather than copied from the rule each time (the
        # copy was about a tenth of a report's routing). Bounded: zones and categories come from reports.
        decided = self._decided.get((key, category, zones))
        if decided is None:
            if len(self._decided) >= _DECISIONS_KEPT:
                self._decided.clear()
            decided = replace(base, category=category, zones=zones, classification=None, message=None)
            self._decided[key, category, zones] = decided
        return decided

    def winner(
        self, index: _CategoryIndex, zones: tuple[str, ...], situation: Situation, item: RoutingInput
    ) -> CompiledRule | None:
        best: CompiledRule | None = None
        best_rank: tuple[int, int, int] | None = None
        for entries in (index.any_zone, *(index.by_zone.get(z, ()) for z in zones)):
            for rank, rule in entries:
                if best_rank is not None and rank >= best_rank:
                    break
                if rule.accepts(situation, item.severity, item.reporter_kind):
                    best, best_rank = rule, rank
                    break
        return best

    def index_for(self, category: str) -> _CategoryIndex | None:
        return self._index.get(category)


def _duration(value: str | None, default: str | None) -> timedelta | None:
    chosen = value if value is not None else default
    return parse_duration(chosen) if chosen is not None else None


def _window(value: str | None, default: str | None) -> Window | None:
    chosen = value if value is not None else default
    return parse_window(chosen) if chosen is not None else None


def after_duration(value: str) -> timedelta:
    """An escalation step's ``after``: a duration, or ``0``/``0s`` for at once."""
    return timedelta(0) if value.strip() in {"0", "0s", "0m"} else parse_duration(value)


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]


def compile_table(table: RuleTable, *, messages: MessageModel | None = None) -> RuleBook:
    """Compile a validated table (see :func:`rules.loader.load_table`) into a :class:`RuleBook`; ``messages``:
    a message model that decides where the keywords are weak (:mod:`rules.messages`, loaded at the edge)."""
    leads = {m.id: m.lead for m in table.modules}
    defaults = table.defaults

    def chain(rule: Rule | None, module: str) -> tuple[EscalationTarget, ...]:
        steps = (rule.then.escalation if rule and rule.then.escalation is not None else None) or defaults.escalation
        targets = []
        for step in steps:
            person = leads[module] if step.to == "module_lead" else table.party_secretary
            targets.append(
                EscalationTarget(after=after_duration(step.after), level=step.to, name=person.name, title=person.title)
            )
        return tuple(targets)

    compiled: list[CompiledRule] = []
    for index, rule in enumerate(table.rules):
        then, when = rule.then, rule.when
        module = then.module if then.handover is None and then.module else table.triage_module
        decision = Decision(
            table_version=table.version,
            rule_id=rule.id,
            category=None,
            module=module,
            queue=Queue.HANDOVER if then.handover is not None else None,
            handover=then.handover,
            zones=(),
            priority=then.priority if then.priority is not None else defaults.priority,
            lead=then.lead if then.handover is None else None,
            support=tuple(then.support) if then.handover is None else (),
            ack_within=_duration(then.ack_within, defaults.ack_within) if then.handover is None else None,
            arrive_within=_duration(then.arrive_within, defaults.arrive_within) if then.handover is None else None,
            resolve_within=_window(then.resolve_within, defaults.resolve_within),
            escalation=chain(rule, module),
            verify_within=_window(then.verify_within, defaults.verify_within) if then.handover is None else None,
            max_extensions=defaults.max_extensions,
            extension_approver=defaults.extension_approver,
        )
        time = when.time
        hours = None
        if time is not None and time.hours is not None:
            start, end = time.hours.split("-")
            hours = (_minutes(start), _minutes(end))
        zones = frozenset(str(z) for z in _as_list(when.zone)) if when.zone is not None else None
        kinds = frozenset(str(k) for k in _as_list(when.reporter_kind)) if when.reporter_kind is not None else None
        conditions_set = sum(
            (
                zones is not None,
                time is not None,
                when.severity_at_least is not None,
                kinds is not None,
            )
        )
        compiled.append(
            CompiledRule(
                index=index,
                id=rule.id,
                precedence=rule.precedence,
                conditions_set=conditions_set,
                categories=tuple(str(c) for c in _as_list(when.category)),
                zones=zones,
                weekdays=frozenset(WEEKDAYS.index(d) for d in time.weekdays) if time and time.weekdays else None,
                hours=hours,
                calendar=time.calendar if time else None,
                outside_calendar=time.outside_calendar if time else None,
                min_severity=when.severity_at_least,
                reporter_kinds=kinds,
                decision=decision,
                source=rule,
            )
        )

    # Rules by the patterns they name, so that each category looks only at its own candidates.
    exact: dict[str, list[CompiledRule]] = {}
    branch: dict[str, list[CompiledRule]] = {}
    anything: list[CompiledRule] = []
    for known in compiled:
        for pattern in known.categories:
            if pattern == "*":
                anything.append(known)
            elif pattern.endswith(".*"):
                branch.setdefault(pattern[:-1], []).append(known)
            else:
                exact.setdefault(pattern, []).append(known)

    index_by_category: dict[str, _CategoryIndex] = {}
    for category in table.catalogue:
        cid = category.id
        parts = cid.split(".")
        prefixes = [".".join(parts[:n]) + "." for n in range(1, len(parts))]
        pool = {r.index: r for r in exact.get(cid, ())}
        for prefix in prefixes:
            pool.update((r.index, r) for r in branch.get(prefix, ()))
        pool.update((r.index, r) for r in anything)
        any_zone: list[tuple[tuple[int, int, int], CompiledRule]] = []
        by_zone: dict[str, list[tuple[tuple[int, int, int], CompiledRule]]] = {}
        for candidate in (pool[i] for i in sorted(pool)):
            if candidate.category_points(cid) < 0:
                continue
            entry = (candidate.rank(cid), candidate)
            if candidate.zones is None:
                any_zone.append(entry)
            else:
                for zone_id in candidate.zones:
                    by_zone.setdefault(zone_id, []).append(entry)
        index_by_category[cid] = _CategoryIndex(
            any_zone=tuple(sorted(any_zone, key=lambda e: e[0])),
            by_zone=MappingProxyType({z: tuple(sorted(rs, key=lambda e: e[0])) for z, rs in by_zone.items()}),
        )

    shapes: list[tuple[str, Shape]] = []
    for zone in table.zones:
        geometry = zone.geometry
        if geometry.type == "Point":
            lon, lat = geometry.coordinates
            shapes.append((zone.id, Circle(lat, lon, zone.radius_m or 0.0)))
        elif geometry.type == "Polygon":
            shapes.append((zone.id, _polygon(geometry.coordinates)))
        else:
            shapes.append((zone.id, Area(tuple(_polygon(rings) for rings in geometry.coordinates))))

    def fallback(queue: Queue) -> Decision:
        return Decision(
            table_version=table.version,
            rule_id=None,
            category=None,
            module=table.triage_module,
            queue=queue,
            handover=None,
            zones=(),
            priority=defaults.priority,
            lead=None,
            support=(),
            ack_within=None,
            arrive_within=None,
            resolve_within=None,
            escalation=chain(None, table.triage_module),
        )

    classifier = None
    if table.keywords:
        from rules.keywords import KeywordClassifier

        classifier = KeywordClassifier.compile(table.keywords, min_score=table.keyword_min_score)
    return RuleBook(
        table=table,
        tz=ZoneInfo(table.timezone),
        classifier=classifier,
        rules=tuple(compiled),
        calendars=MappingProxyType({c.id: c for c in table.calendars}),
        work_calendar=WorkCalendar.build(
            tz=ZoneInfo(table.timezone),
            office_hours=table.office_hours,
            township_years=[
                YearDays(year=y.year, holidays=frozenset(y.holidays), workdays=frozenset(y.workdays))
                for y in table.working_days
            ],
        ),
        _shapes=tuple(shapes),
        _index=MappingProxyType(index_by_category),
        _fallback=MappingProxyType({q: fallback(q) for q in (Queue.TRIAGE, Queue.ADMISSION)}),
        small_zones=frozenset(zone_id for zone_id, shape in shapes if shape.reach_m() <= table.duplicates.small_zone_m),
        messages=messages,
    )


def _polygon(rings: list[list[tuple[float, float]]]) -> Polygon:
    return Polygon(tuple(rings[0]), tuple(tuple(hole) for hole in rings[1:]))


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)
