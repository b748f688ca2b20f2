"""Replaying real 311 records through the dispatcher and measuring how often it routes as the city did.

A *mapping* file (see ``simulations/examples/sf311/mapping.yaml``) says how a row of a 311 CSV becomes a
report (which of our categories, where, who reported it) and which of our owners each real work queue
(``Responsible.Agency``) stands for. :func:`read_records` turns the CSV into :class:`Record` objects and
:class:`Rejected` rows (each with its reason); :func:`scenario_from_records` makes a scenario of them, one
step per record at its own time; the run goes through the production hub (:class:`~simulations.runner.
Simulation`); :func:`agreement` compares the lead team (or handover) our table chose with the owner the real
agency maps to. :func:`run_from_csv` does all of it.

Nothing here reads a clock or writes anything; only the CSV, the mapping and the table are read.

**Owners** are compared as strings: the incident's lead team id (a decision's owner is written
``"{module}/{lead}+{support...}"``; only the lead counts), ``county:{department}`` for a handover, or
``{triage_module}:{queue}`` (``command-room:triage``) when no team and no department took the matter.

**Rejected rows**: an unreadable Opened or Closed time, Closed before Opened, a Point that does not parse or
lies outside the mapping's ``bounds``, and (only with ``unmapped_category: reject``) a row no category entry
matches. By default such a row is replayed without a category, so that the table's keywords (else the
triage queue) decide, as for a hotline transcript. An empty Point is not a mistake: the report has no
location.

**Times** are the local time of the mapping's ``timezone``. A time that occurs twice (the hour the clocks go
back) is read as the first of the two; a time that does not exist (the hour the clocks go forward) is read
with the offset before the change (02:30 is 03:30 daylight time).
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dispatcher.core.incidents import Incident
from dispatcher.core.lifecycle import Role
from rules import RuleBook, compile_table, load_table
from rules.loader import load_model
from rules.table import Identifier, TimeZoneName
from simulations.report import summarise
from simulations.runner import RunResult, Simulation
from simulations.scenario import ReportSpec, Scenario, Step

ReporterKind = Literal["officer", "device", "citizen", "hotline"]
#: ``team-id``, ``county:department-id`` or ``module-id:queue`` (``command-room:triage``).
Owner = Annotated[
    str,
    Field(pattern=r"^(county:[a-z0-9][a-z0-9_.-]*|[a-z0-9][a-z0-9_.-]*(:(triage|admission))?)$", max_length=96),
]
Pattern = Annotated[str, Field(min_length=1, max_length=300)]
_DESCRIPTION_MAX = 4000
_TOP = 15


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Columns(_Strict):
    """The CSV's column names; ``None`` for one the file does not have (then empty in every row)."""

    opened: str = "Opened"
    category: str = "Category"
    closed: str | None = "Closed"
    request_type: str | None = "Request.Type"
    details: str | None = "Request.Details"
    agency: str | None = "Responsible.Agency"
    point: str | None = "Point"
    source: str | None = "Source"
    case_id: str | None = "CaseID"


class Bounds(_Strict):
    """A point outside this box is rejected (a location far from the city is a bad record)."""

    south: float = Field(ge=-90, le=90)
    north: float = Field(ge=-90, le=90)
    west: float = Field(ge=-180, le=180)
    east: float = Field(ge=-180, le=180)

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.south >= self.north or self.west >= self.east:
            raise ValueError("bounds need south < north and west < east")
        return self

    def contains(self, lat: float, lon: float) -> bool:
        return self.south <= lat <= self.north and self.west <= lon <= self.east


class CategoryEntry(_Strict):
    """Rows of ``sf_category`` (whose Request.Type and Request.Details match the patterns, when given)
    become reports of our category ``ours``. A pattern ending in ``*`` matches by prefix."""

    sf_category: str = Field(min_length=1)
    request_type: list[Pattern] | None = Field(default=None, min_length=1)
    details: list[Pattern] | None = Field(default=None, min_length=1)
    ours: Identifier


class MappingFile(_Strict):
    """The mapping file as written (``simulations/examples/sf311/mapping.yaml`` documents each key)."""

    mapping: Literal[1] = Field(description="version of this schema")
    name: str = Field(min_length=1, max_length=64)
    table: str | None = Field(default=None, description="rule table, relative to the mapping file")
    timezone: TimeZoneName = "America/Los_Angeles"
    time_format: str = Field(default="%m/%d/%Y %I:%M:%S %p", min_length=2)
    columns: Columns = Columns()
    bounds: Bounds | None = None
    unmapped_category: Literal["keywords", "reject"] = "keywords"
    reporter_kinds: dict[str, ReporterKind] = Field(default_factory=dict)
    categories: list[CategoryEntry] = Field(min_length=1)
    agencies: dict[str, Owner] = Field(default_factory=dict)
    agency_prefixes: dict[str, Owner] = Field(default_factory=dict)


def normalise(text: str) -> str:
    """How mapping texts are compared: runs of whitespace collapsed, stripped, case folded."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True, slots=True)
class _Pattern:
    text: str
    prefix: bool

    @classmethod
    def of(cls, written: str) -> _Pattern:
        if written.endswith("*"):
            return cls(normalise(written[:-1]), True)
        return cls(normalise(written), False)

    def matches(self, value: str) -> bool:
        return value.startswith(self.text) if self.prefix else value == self.text


def _any(patterns: tuple[_Pattern, ...] | None, value: str) -> bool:
    return patterns is None or any(p.matches(value) for p in patterns)


@dataclass(frozen=True, slots=True)
class _Entry:
    ours: str
    request_type: tuple[_Pattern, ...] | None
    details: tuple[_Pattern, ...] | None


@dataclass(frozen=True)
class Mapping:
    """A validated mapping, with its lookups compiled: categories by SF Category, agencies, sources."""

    spec: MappingFile
    source: Path | None = None
    tz: ZoneInfo = field(init=False, repr=False)
    _categories: dict[str, tuple[_Entry, ...]] = field(init=False, repr=False)
    _agencies: dict[str, str] = field(init=False, repr=False)
    _prefixes: tuple[tuple[str, str], ...] = field(init=False, repr=False)
    _sources: dict[str, ReporterKind] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        spec = self.spec
        categories: dict[str, list[_Entry]] = defaultdict(list)
        for entry in spec.categories:
            categories[normalise(entry.sf_category)].append(
                _Entry(
                    ours=entry.ours,
                    request_type=tuple(map(_Pattern.of, entry.request_type)) if entry.request_type else None,
                    details=tuple(map(_Pattern.of, entry.details)) if entry.details else None,
                )
            )
        prefixes = sorted(((normalise(k), v) for k, v in spec.agency_prefixes.items()), key=lambda p: -len(p[0]))
        object.__setattr__(self, "tz", ZoneInfo(spec.timezone))
        object.__setattr__(self, "_categories", {k: tuple(v) for k, v in categories.items()})
        object.__setattr__(self, "_agencies", {normalise(k): v for k, v in spec.agencies.items()})
        object.__setattr__(self, "_prefixes", tuple(prefixes))
        object.__setattr__(self, "_sources", {normalise(k): v for k, v in spec.reporter_kinds.items()})

    @property
    def name(self) -> str:
        return self.spec.name

    def table_path(self) -> Path | None:
        """The mapping's rule table, resolved against the mapping file's folder."""
        if self.spec.table is None:
            return None
        base = self.source.parent if self.source is not None else Path.cwd()
        return (base / self.spec.table).resolve()

    def category_for(self, sf_category: str, request_type: str = "", details: str = "") -> str | None:
        """Our category for a row: the first entry of its SF Category whose patterns match, else ``None``."""
        entries = self._categories.get(normalise(sf_category), ())
        kind, detail = normalise(request_type), normalise(details)
        for entry in entries:
            if _any(entry.request_type, kind) and _any(entry.details, detail):
                return entry.ours
        return None

    def owner_for(self, agency: str) -> str | None:
        """The owner a real agency stands for: an exact entry, else the longest matching prefix, else ``None``."""
        key = normalise(agency)
        if not key:
            return None
        exact = self._agencies.get(key)
        if exact is not None:
            return exact
        return next((owner for prefix, owner in self._prefixes if key.startswith(prefix)), None)

    def reporter_kind(self, source: str) -> ReporterKind | None:
        return self._sources.get(normalise(source))

    def problems(self, book: RuleBook) -> list[str]:
        """What in the mapping the table does not know: categories, teams, departments, the triage module."""
        table = book.table
        catalogue = {c.id for c in table.catalogue}
        teams = {t.id for t in table.teams}
        departments = {d.id for d in table.county_departments}
        found = [
            f"categories[{i}]: {entry.ours!r} is not in the catalogue of table {table.version}"
            for i, entry in enumerate(self.spec.categories)
            if entry.ours not in catalogue
        ]
        for section, owners in (("agencies", self.spec.agencies), ("agency_prefixes", self.spec.agency_prefixes)):
            for agency, owner in owners.items():
                if owner.startswith("county:"):
                    known = owner.removeprefix("county:") in departments
                elif ":" in owner:
                    known = owner.split(":", 1)[0] == table.triage_module
                else:
                    known = owner in teams
                if not known:
                    found.append(f"{section}[{agency!r}]: owner {owner!r} is not in table {table.version}")
        return found


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a mapping file; raises :class:`~rules.RuleTableError` with file and line."""
    path = Path(path)
    return Mapping(load_model(path, MappingFile), source=path.resolve())


@dataclass(frozen=True)
class Record:
    """A usable row: its time (``at``, aware, UTC), the report it makes, and the owner of its real agency.

    ``row`` counts the file's data rows from 1 (the header is not counted). ``category`` is ours (``None``:
    the mapping matched none and keywords will decide).
    """

    row: int
    at: datetime
    report: ReportSpec
    real_owner: str | None
    category: str | None
    case_id: str = ""
    agency: str = ""
    sf_kind: str = ""  # "Category / Request.Type", to show where disagreements come from


@dataclass(frozen=True)
class Rejected:
    """A row that is not replayed; ``reason`` is ``"kind: detail"`` (kinds are tallied by :func:`run_from_csv`)."""

    row: int
    reason: str

    @property
    def kind(self) -> str:
        return self.reason.split(":", 1)[0]


def parse_local_time(text: str, time_format: str, tz: ZoneInfo) -> datetime:
    """A local time as written (e.g. ``04/30/2014 02:51:52 PM``) as an aware UTC time; ``ValueError`` if not one."""
    parsed = datetime.strptime(text.strip(), time_format)
    local = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)
    return local.astimezone(UTC)


_POINT = re.compile(r"^\(?\s*([-+]?\d+(?:\.\d*)?)\s*,\s*([-+]?\d+(?:\.\d*)?)\s*\)?$")


def parse_point(text: str) -> tuple[float, float] | None:
    """``"(lat, lon)"`` as ``(lat, lon)``; ``None`` for an empty cell; ``ValueError`` for anything else."""
    stripped = text.strip()
    if not stripped:
        return None
    match = _POINT.match(stripped)
    if match is None:
        raise ValueError(f"{text!r} is not (lat, lon)")
    lat, lon = float(match.group(1)), float(match.group(2))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"{text!r} is not a position on Earth")
    return lat, lon


def _cell(row: MappingABC[str | None, Any], column: str | None) -> str:
    if column is None:
        return ""
    value = row.get(column)
    return value.strip() if isinstance(value, str) else ""


def _description(*parts: str) -> str:
    seen: list[str] = []
    for part in parts:
        if part and part not in seen:
            seen.append(part)
    return (": ".join(seen) or "(no description)")[:_DESCRIPTION_MAX]


def _record(number: int, row: MappingABC[str | None, Any], mapping: Mapping) -> Record | Rejected:
    columns, spec = mapping.spec.columns, mapping.spec
    opened_text = _cell(row, columns.opened)
    try:
        at = parse_local_time(opened_text, spec.time_format, mapping.tz)
    except ValueError:
        return Rejected(number, f"bad opened time: {opened_text!r}")
    closed_text = _cell(row, columns.closed)
    if closed_text:
        try:
            closed = parse_local_time(closed_text, spec.time_format, mapping.tz)
        except ValueError:
            return Rejected(number, f"bad closed time: {closed_text!r}")
        if closed < at:
            return Rejected(number, f"closed before opened: closed {closed_text}, opened {opened_text}")
    point_text = _cell(row, columns.point)
    try:
        point = parse_point(point_text)
    except ValueError as exc:
        return Rejected(number, f"unparseable point: {exc}")
    if point is not None and spec.bounds is not None and not spec.bounds.contains(*point):
        return Rejected(number, f"point outside bounds: {point_text}")
    sf_category = _cell(row, columns.category)
    request_type = _cell(row, columns.request_type)
    details = _cell(row, columns.details)
    category = mapping.category_for(sf_category, request_type, details)
    if category is None and spec.unmapped_category == "reject":
        return Rejected(number, f"unmapped category: {sf_category!r} / {request_type!r}")
    agency = _cell(row, columns.agency)
    report = ReportSpec(
        category=category,
        description=_description(sf_category, request_type, details),
        lat=point[0] if point is not None else None,
        lon=point[1] if point is not None else None,
        reporter_kind=mapping.reporter_kind(_cell(row, columns.source)),
    )
    return Record(
        row=number,
        at=at,
        report=report,
        real_owner=mapping.owner_for(agency),
        category=category,
        case_id=_cell(row, columns.case_id),
        agency=agency,
        sf_kind=f"{sf_category} / {request_type}",
    )


def read_records(
    csv_path: str | Path, mapping: Mapping, *, limit: int | None = None
) -> tuple[list[Record], list[Rejected]]:
    """The usable rows of a CSV and the rejected ones, in file order; ``limit``: read at most that many rows.

    A bad row never stops the reading; a file that is not CSV or lacks a named column raises ``ValueError``.
    """
    path = Path(csv_path)
    records: list[Record] = []
    rejected: list[Rejected] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []
            named = [c for c in mapping.spec.columns.model_dump().values() if c is not None]
            missing = [c for c in named if c not in header]
            if missing:
                raise ValueError(f"{path}: the CSV has no column {', '.join(map(repr, missing))}")
            for number, row in enumerate(reader, 1):
                if limit is not None and number > limit:
                    break
                outcome = _record(number, row, mapping)
                if isinstance(outcome, Record):
                    records.append(outcome)
                else:
                    rejected.append(outcome)
        except csv.Error as exc:
            raise ValueError(f"{path}:{reader.line_num}: not readable as CSV: {exc}") from None
    return records, rejected


def in_time_order(records: Sequence[Record]) -> list[Record]:
    """The replay order: by time, then by row. Report ``sim-{seed}-{n}`` is the n-th record of this list."""
    return sorted(records, key=lambda r: (r.at, r.row))


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    return f"{seconds}s" if seconds > 0 else "0s"


def scenario_from_records(
    records: Sequence[Record],
    *,
    name: str,
    table: str | Path | None = None,
    tail: timedelta = timedelta(hours=1),
) -> Scenario:
    """One step per record at its offset (whole seconds) from the first record's time, in :func:`in_time_order`;
    the run goes on ``tail`` past the last record; seed 0, the default behaviour of every team."""
    ordered = in_time_order(records)
    if not ordered:
        raise ValueError("there is no record to replay")
    if tail < timedelta(seconds=1):
        raise ValueError("tail must be at least one second")
    start = ordered[0].at
    return Scenario(
        name=name,
        description=f"{len(ordered)} real records replayed",
        start=start,
        seed=0,
        table=str(table) if table is not None else None,
        until=_duration(ordered[-1].at - start + tail),
        timeline=[Step(at=_duration(r.at - start), report=r.report) for r in ordered],
    )


def routed_owner(incident: Incident) -> str:
    """What our table chose, comparable with a mapped agency: the lead team, ``county:{id}`` or ``module:queue``."""
    lead = next((a.team for a in incident.assignments if a.role is Role.LEAD), None)
    if lead is not None:
        return lead
    if incident.handover is not None:
        return f"county:{incident.handover}"
    return f"{incident.module}:{incident.queue or 'triage'}"


def _share(agreed: int, compared: int) -> float | None:
    return round(agreed / compared, 4) if compared else None


def agreement(result: RunResult, records: Sequence[Record], mapping: Mapping) -> dict[str, Any]:
    """How often our routing chose the owner the city chose, overall and per category (ours; ``(none)``
    for records without one), with the most frequent disagreements (our owner vs the real one).

    Records are matched to incidents by report id (``sim-{seed}-{n}``, n in :func:`in_time_order`). A record
    whose agency maps to no owner is not compared; those agencies are listed. ``ceiling`` is what a table
    routing each of our categories to its most frequent real owner would reach: the best possible without
    finer categories, zones or times.
    """
    ours_by_report = {i.report.report_id: routed_owner(i) for i in result.incidents}
    seed = result.scenario.seed
    compared = agreed = no_incident = 0
    unmapped: Counter[str] = Counter()
    by_category: dict[str, Counter[str]] = defaultdict(Counter)
    real_by_category: dict[str, Counter[str]] = defaultdict(Counter)
    ours_by_category: dict[str, Counter[str]] = defaultdict(Counter)
    by_real: dict[str, Counter[str]] = defaultdict(Counter)
    pairs: Counter[tuple[str, str]] = Counter()
    pair_kinds: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for number, record in enumerate(in_time_order(records), 1):
        ours = ours_by_report.get(f"sim-{seed}-{number}")
        if ours is None:
            no_incident += 1
            continue
        real = record.real_owner
        if real is None:
            unmapped[record.agency or "(empty)"] += 1
            continue
        key = record.category or "(none)"
        same = ours == real
        compared += 1
        agreed += same
        by_category[key].update(compared=1, agreed=int(same))
        by_real[real].update(compared=1, agreed=int(same))
        real_by_category[key][real] += 1
        ours_by_category[key][ours] += 1
        if not same:
            pairs[(ours, real)] += 1
            pair_kinds[(ours, real)][record.sf_kind] += 1
    ceiling = sum(c.most_common(1)[0][1] for c in real_by_category.values())
    categories = sorted(by_category, key=lambda k: (-by_category[k]["compared"], k))
    return {
        "mapping": mapping.name,
        "rules_version": result.rules_version,
        "records": len(records),
        "compared": compared,
        "agreed": agreed,
        "overall": _share(agreed, compared),
        "ceiling": _share(ceiling, compared),
        "not_compared": {"agency_without_owner": sum(unmapped.values()), "no_incident": no_incident},
        "agencies_without_owner": dict(unmapped.most_common(_TOP)),
        "by_category": {
            key: {
                "compared": by_category[key]["compared"],
                "agreed": by_category[key]["agreed"],
                "share": _share(by_category[key]["agreed"], by_category[key]["compared"]),
                "ours": ours_by_category[key].most_common(1)[0][0],
                "real_top": dict(real_by_category[key].most_common(3)),
            }
            for key in categories
        },
        "by_real_owner": {
            owner: {"compared": c["compared"], "agreed": c["agreed"], "share": _share(c["agreed"], c["compared"])}
            for owner, c in sorted(by_real.items(), key=lambda kv: (-kv[1]["compared"], kv[0]))
        },
        "top_disagreements": [
            {"ours": ours, "real": real, "count": count, "sf_kinds": dict(pair_kinds[(ours, real)].most_common(3))}
            for (ours, real), count in pairs.most_common(_TOP)
        ],
    }


async def run_from_csv(
    csv_path: str | Path,
    mapping_path: str | Path,
    table_path: str | Path | None = None,
    *,
    limit: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> tuple[RunResult, dict[str, Any]]:
    """Read a CSV through a mapping, replay it on the virtual clock through the real hub, and report.

    A coroutine (the hub is asynchronous): ``asyncio.run(run_from_csv(...))`` from synchronous code.
    ``table_path`` defaults to the mapping's ``table``; ``limit`` reads at most that many rows; ``progress``
    gets the share of the virtual time replayed so far (0 to 1), as :class:`Simulation` gives it.

    Raises :class:`~rules.RuleTableError` for a bad mapping or table, ``ValueError`` when the mapping names
    what the table lacks, the CSV cannot be read or no row is usable. The report holds the counts, the
    rejection reasons tallied by kind (with the first examples), :func:`agreement` and
    :func:`~simulations.report.summarise` of the run.
    """
    mapping = load_mapping(mapping_path)
    table = Path(table_path) if table_path is not None else mapping.table_path()
    if table is None:
        raise ValueError(f"{mapping_path}: no table given and the mapping names none")
    book = compile_table(load_table(table))
    problems = mapping.problems(book)
    if problems:
        raise ValueError(f"{mapping_path} does not fit {table}:\n" + "\n".join(problems))
    records, rejected = read_records(csv_path, mapping, limit=limit)
    if not records:
        raise ValueError(f"{csv_path}: no usable record ({len(rejected)} rejected)")
    scenario = scenario_from_records(records, name=f"replay of {Path(csv_path).name}", table=table)
    result = await Simulation(scenario, book, progress=progress).run()
    report: dict[str, Any] = {
        "source": str(csv_path),
        "mapping": str(mapping_path),
        "table": str(table),
        "rows_read": len(records) + len(rejected),
        "replayed": len(records),
        "rejected": len(rejected),
        "rejected_reasons": dict(Counter(r.kind for r in rejected).most_common()),
        "rejected_examples": [{"row": r.row, "reason": r.reason} for r in rejected[:10]],
        "from": scenario.start.isoformat(),
        "to": in_time_order(records)[-1].at.isoformat(),
        "agreement": agreement(result, records, mapping),
        "summary": summarise(result),
    }
    return result, report
