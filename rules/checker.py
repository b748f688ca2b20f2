"""``rules check``: the defects of a boundary list that validation alone cannot see.

For each catalogue category the checker splits the inputs into the finitely many *situations*
that the category's rules can tell apart (each zone a rule names, and each pair of such zones
that share an area, not only an edge; the weekdays, hour ranges and calendar days the rules
name; each severity a rule names; each reporter kind a rule names) and routes one concrete example of each through the
compiled table, exactly as the server would. From that it reports:

* **gap**: a situation in which no rule gives the category an owner (it would go to admission
  review); one finding per category, with a concrete example input and how many situations;
* **overlap**: two or more rules of equal precedence and equal specificity that hold together and
  name different owners (the table's file order would decide: a hidden choice);
* **unreachable**: a rule that never decides anything, because others always win before it;
* **chain**: an escalation chain that does not end at the party secretary, or goes backwards or
  repeats a level (a cycle);
* **organisation**: a township should choose 3 to 5 sub-modules;
* **calendar** (only when the caller says what day it is): rules that promise working time (``5wd``)
  while the working-day calendar ends within :data:`CALENDAR_NOTICE` of that day, so that reports
  would soon be refused for want of next year's holidays.

Every finding names the rule(s) and the file and line. Pure: no I/O, no clock (``today`` is given).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from rules import geo
from rules.loader import LoadedTable
from rules.matcher import CompiledRule, RuleBook, after_duration
from rules.table import EscalationStep
from rules.workdays import WorkSpan

Kind = Literal["gap", "overlap", "unreachable", "chain", "organisation", "calendar"]
#: Findings that stop a table from going live (start-up and reload): hidden choices and broken
#: escalation. Gaps (admission review catches them), unreachable rules and the organisation are
#: reported but do not block.
BLOCKING: frozenset[str] = frozenset({"overlap", "chain"})
REPORTER_KINDS = ("officer", "device", "citizen", "hotline")
_REFERENCE = date(2026, 1, 5)  # a Monday; example times are searched in the year after it
_CHAIN_ORDER = {"module_lead": 0, "party_secretary": 1}
#: How long before the working-day calendar runs out ``check`` says so: a deadline of ``Nwd`` counted
#: near the year's end needs days of the next year, and the State Council publishes them in the autumn.
CALENDAR_NOTICE = timedelta(days=45)


@dataclass(frozen=True)
class Finding:
    kind: Kind
    message: str
    file: str
    line: int
    rules: tuple[str, ...] = ()
    example: dict[str, Any] | None = None

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}: {self.kind}: {self.message}"
        if self.example is not None:
            text += f"\n    example input: {self.example}"
        return text


@dataclass
class _RuleStats:
    won: int = 0
    beaten_by: set[str] = field(default_factory=set)


class TableRefused(Exception):
    """A valid table whose check found blocking defects; ``findings`` lists them all."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = list(findings)
        super().__init__("\n".join(str(f) for f in self.findings))


def check_for_service(book: RuleBook, source: LoadedTable, *, today: date | None = None) -> list[Finding]:
    """The findings of :func:`check`; raises :class:`TableRefused` when any of them is blocking."""
    findings = check(book, source, today=today)
    if any(f.kind in BLOCKING for f in findings):
        raise TableRefused(findings)
    return findings


def check(book: RuleBook, source: LoadedTable, *, today: date | None = None) -> list[Finding]:
    """Every finding for the table; an empty list means the table is clean.

    ``today`` (the township's local date) adds the ``calendar`` finding; without it the result
    depends on the table alone.
    """
    findings: list[Finding] = []
    if today is not None:
        findings.extend(_calendar(book, source, today))
    findings.extend(_organisation(book, source))
    findings.extend(_chains(book, source))
    stats = {r.index: _RuleStats() for r in book.rules}
    overlaps: dict[tuple[str, ...], tuple[str, dict[str, Any]]] = {}
    zones_meet: dict[tuple[str, str], bool] = {}  # geometry is the slow part: each pair once per check
    for category in book.table.catalogue:
        findings.extend(_check_category(book, source, category.id, stats, overlaps, zones_meet))
    for names, (message, example) in overlaps.items():
        first = next(r for r in book.rules if r.id == names[0])
        file, line = source.where("rules", first.index)
        findings.append(Finding("overlap", message, file, line, names, example))
    for rule in book.rules:
        if stats[rule.index].won == 0:
            file, line = source.where("rules", rule.index)
            beaten = sorted(stats[rule.index].beaten_by)
            why = f"rules {beaten} always win first" if beaten else "no catalogue category and situation reach it"
            findings.append(
                Finding("unreachable", f"rule {rule.id!r} never decides anything: {why}", file, line, (rule.id,))
            )
    return findings


def _check_category(
    book: RuleBook,
    source: LoadedTable,
    category: str,
    stats: dict[int, _RuleStats],
    overlaps: dict[tuple[str, ...], tuple[str, dict[str, Any]]],
    zones_meet: dict[tuple[str, str], bool],
) -> Iterator[Finding]:
    rules = book.candidates(category)
    gaps = 0
    first_gap: dict[str, Any] | None = None
    for zones, at, severity, reporter in _situations(book, rules, zones_meet):
        situation = book.situation(at)
        holding = [
            r for r in rules if (r.zones is None or r.zones & set(zones)) and r.accepts(situation, severity, reporter)
        ]
        if not holding:
            gaps += 1
            if first_gap is None:
                first_gap = _example(category, zones, at, severity, reporter, book)
            continue
        ranked = sorted(holding, key=lambda r: r.rank(category))
        winner = ranked[0]
        stats[winner.index].won += 1
        for loser in ranked[1:]:
            stats[loser.index].beaten_by.add(winner.id)
        tied = [r for r in ranked if r.rank(category)[:2] == winner.rank(category)[:2]]
        owners = {r.decision.owner for r in tied}
        if len(owners) > 1:
            names = tuple(r.id for r in tied)
            if names not in overlaps:
                overlaps[names] = (
                    f"rules {list(names)} have equal precedence and specificity, hold together for "
                    f"{category!r} and name different owners {sorted(owners)}; file order would decide",
                    _example(category, zones, at, severity, reporter, book),
                )
    if gaps:
        file, line = source.where("catalogue", _catalogue_index(book, category))
        yield Finding(
            "gap",
            f"category {category!r} has no owner in {gaps} situation(s): such reports would wait in admission review",
            file,
            line,
            (),
            first_gap,
        )


def _catalogue_index(book: RuleBook, category: str) -> int:
    for index, entry in enumerate(book.table.catalogue):
        if entry.id == category:
            return index
    return 0


def _example(
    category: str, zones: Sequence[str], at: datetime, severity: int | None, reporter: str | None, book: RuleBook
) -> dict[str, Any]:
    example: dict[str, Any] = {"category": category, "occurred_at": at.isoformat()}
    if zones:
        example["zone"] = zones[0]
        if len(zones) > 1:
            example["also_in_zones"] = list(zones[1:])
    if severity is not None:
        example["severity"] = severity
    if reporter is not None:
        example["reporter_kind"] = reporter
    return example


def _situations(
    book: RuleBook, rules: Sequence[CompiledRule], zones_meet: dict[tuple[str, str], bool]
) -> Iterable[tuple[tuple[str, ...], datetime, int | None, str | None]]:
    zone_atoms = _zone_atoms(book, rules, zones_meet)
    time_atoms = _time_atoms(book, rules)
    severities: list[int | None] = [None]
    if any(r.min_severity is not None for r in rules):
        severities += [1, 2, 3, 4, 5]
    reporters: list[str | None] = [None]
    if any(r.reporter_kinds is not None for r in rules):
        reporters += list(REPORTER_KINDS)
    return itertools.product(zone_atoms, time_atoms, severities, reporters)


def _zone_atoms(
    book: RuleBook, rules: Sequence[CompiledRule], zones_meet: dict[tuple[str, str], bool]
) -> list[tuple[str, ...]]:
    named = sorted({z for r in rules if r.zones is not None for z in r.zones})
    atoms: list[tuple[str, ...]] = [()]
    atoms += [(z,) for z in named]
    for a, b in itertools.combinations(named, 2):
        if (a, b) not in zones_meet:
            shape_a, shape_b = book.shape(a), book.shape(b)
            zones_meet[a, b] = shape_a is not None and shape_b is not None and geo.overlaps(shape_a, shape_b)
        if zones_meet[a, b]:
            atoms.append((a, b))
    return atoms


def _time_atoms(book: RuleBook, rules: Sequence[CompiledRule]) -> list[datetime]:
    timed = [r for r in rules if r.weekdays is not None or r.hours is not None or r.calendar or r.outside_calendar]
    noon = datetime.combine(_REFERENCE, time(10, 0), tzinfo=book.tz)
    if not timed:
        return [noon]
    cuts = {0}
    for rule in timed:
        if rule.hours is not None:
            cuts.update(m % 1440 for m in rule.hours)
    minutes = sorted(cuts)
    use_weekdays = any(r.weekdays is not None for r in timed)
    calendars = sorted({c for r in timed for c in (r.calendar, r.outside_calendar) if c})
    first_date: dict[tuple[int | None, frozenset[str]], date] = {}
    for offset in range(366):
        day = _REFERENCE + timedelta(days=offset)
        membership = frozenset(
            c for c in calendars if day in book.calendars[c].dates or day.day in book.calendars[c].days_of_month
        )
        key = (day.weekday() if use_weekdays else None, membership)
        first_date.setdefault(key, day)
    atoms = []
    for key in sorted(first_date, key=lambda k: (k[0] if k[0] is not None else -1, sorted(k[1]))):
        day = first_date[key]
        for minute in minutes:
            atoms.append(datetime.combine(day, time(minute // 60, minute % 60), tzinfo=book.tz))
    return atoms


def _calendar(book: RuleBook, source: LoadedTable, today: date) -> Iterator[Finding]:
    working = [
        rule
        for rule in book.rules
        if isinstance(rule.decision.resolve_within, WorkSpan) or isinstance(rule.decision.verify_within, WorkSpan)
    ]
    if not working:
        return
    horizon = today + CALENDAR_NOTICE
    known = book.work_calendar.years
    missing = [year for year in range(today.year, horizon.year + 1) if year not in known]
    if not missing:
        return
    first = missing[0]
    file, line = source.where("rules", working[0].index)
    names = tuple(rule.id for rule in working)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    yield Finding(
        "calendar",
        f"rules {shown} promise working time, and the working-day calendar does not know {first}: "
        f"reports whose deadline needs a day of {first} are refused until its public holidays and make-up "
        f"working days are added to working_days (today is {today.isoformat()})",
        file,
        line,
        names,
    )


def _organisation(book: RuleBook, source: LoadedTable) -> Iterator[Finding]:
    subs = [m for m in book.table.modules if m.kind == "sub"]
    if not 3 <= len(subs) <= 5:
        file, line = source.where("modules")
        yield Finding(
            "organisation",
            f"the township chose {len(subs)} sub-module(s); the modular reform has each township choose 3 to 5",
            file,
            line,
        )


def _chains(book: RuleBook, source: LoadedTable) -> Iterator[Finding]:
    problem = _chain_problem(book.table.defaults.escalation)
    if problem:
        file, line = source.where("defaults", "escalation")
        yield Finding("chain", f"the default escalation chain {problem}", file, line)
    for index, rule in enumerate(book.table.rules):
        steps = rule.then.escalation
        if steps is None:
            continue
        problem = _chain_problem(steps)
        if problem:
            file, line = source.where("rules", index, "then", "escalation")
            yield Finding("chain", f"rule {rule.id!r}: its escalation chain {problem}", file, line, (rule.id,))


def _chain_problem(steps: Sequence[EscalationStep]) -> str | None:
    if not steps:
        return "is empty: it must end at the party secretary"
    levels = [s.to for s in steps]
    order = [_CHAIN_ORDER[level] for level in levels]
    if len(set(levels)) != len(levels):
        return f"repeats a level {levels}: a cycle"
    if order != sorted(order):
        return f"goes back down the chain {levels}"
    afters = [s.after for s in steps]
    if levels[-1] != "party_secretary":
        return f"ends at {levels[-1]}, not at the party secretary"
    if [after_duration(a) for a in afters] != sorted(after_duration(a) for a in afters):
        return f"has steps out of time order {afters}"
    return None
