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
import functools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from dispatcher.core.incidents import Incident
from dispatcher.core.lifecycle import Role
from rules import RuleBook, compile_table, load_table
from rules.keywords import KeywordClassifier
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
_DESCRIPTION_MAX = 4000
_TOP = 15


T = TypeVar("T")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextColumn(_Strict):
    """A column whose text goes into the report's description; ``weight`` scales what the table's keywords
    find in it when the row has no mapped category (0: shown in the description, not classified)."""

    column: str = Field(min_length=1)
    weight: int = Field(default=1, ge=0, le=10)


class Columns(_Strict):
    """The CSV's column names; ``None`` for one the file does not have (then empty in every row).

    ``category``, ``request_type`` and ``details`` are the built-in category-like fields (their defaults are
    DataSF's names); ``fields`` names more of them (``{complaint: Complaint Type}``), for ``when`` entries.
    The location is one ``point`` column (``"(lat, lon)"``) or ``latitude`` + ``longitude``. ``text`` lists
    the columns of the description, in order (default: category, request type, details, each weight 1).
    """

    opened: str = "Opened"
    category: str | None = "Category"
    closed: str | None = "Closed"
    request_type: str | None = "Request.Type"
    details: str | None = "Request.Details"
    agency: str | None = "Responsible.Agency"
    point: str | None = "Point"
    latitude: str | None = None
    longitude: str | None = None
    zone: str | None = None
    source: str | None = "Source"
    case_id: str | None = "CaseID"
    fields: dict[Identifier, str] = Field(default_factory=dict)
    text: list[TextColumn] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _location(self) -> Columns:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude go together")
        clash = {"category", "request_type", "details"} & set(self.fields)
        if clash:
            raise ValueError(f"fields: {sorted(clash)} are built-in field names")
        return self

    def named(self) -> list[str]:
        """Every column the mapping names (each must be in the CSV's header)."""
        single = [
            self.opened,
            self.category,
            self.closed,
            self.request_type,
            self.details,
            self.agency,
            self.point,
            self.latitude,
            self.longitude,
            self.zone,
            self.source,
            self.case_id,
        ]
        found = [c for c in single if c is not None] + list(self.fields.values())
        found += [t.column for t in self.text or ()]
        return list(dict.fromkeys(found))

    def field_columns(self) -> dict[str, str | None]:
        """Category-like field name -> column: the built-in three, then ``fields``."""
        return {"category": self.category, "request_type": self.request_type, "details": self.details} | dict(
            self.fields
        )

    def text_columns(self) -> list[TextColumn]:
        if self.text is not None:
            return list(self.text)
        return [TextColumn(column=c) for c in (self.category, self.request_type, self.details) if c is not None]


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


def _check_pattern(written: str) -> str:
    if written.startswith("re:"):
        try:
            re.compile(written[3:])
        except re.error as exc:
            raise ValueError(f"{written!r} is not a regular expression: {exc}") from None
    return written


Pattern = Annotated[str, Field(min_length=1, max_length=300), AfterValidator(_check_pattern)]
#: A key of ``agencies`` or ``reporter_kinds``: exact text, ``prefix*`` or ``re:regular expression``.
PatternKey = Annotated[str, Field(min_length=1, max_length=300), AfterValidator(_check_pattern)]


class CategoryEntry(_Strict):
    """Rows whose fields match become reports of our category ``ours``.

    ``sf_category`` (the ``category`` field, exactly), ``request_type`` and ``details`` are the historical
    San Francisco-shaped keys; ``when`` names any category-like field (built-in or from ``columns.fields``)
    with its patterns. Every condition given must hold; one of a field's patterns is enough.
    """

    sf_category: Pattern | None = None
    request_type: list[Pattern] | None = Field(default=None, min_length=1)
    details: list[Pattern] | None = Field(default=None, min_length=1)
    when: dict[Identifier, list[Pattern]] | None = Field(default=None, min_length=1)
    ours: Identifier

    @model_validator(mode="after")
    def _something(self) -> CategoryEntry:
        if self.sf_category is None and self.when is None:
            raise ValueError("an entry needs sf_category or when")
        given = {"category": self.sf_category, "request_type": self.request_type, "details": self.details}
        twice = sorted(k for k in self.when or {} if given.get(k) is not None)
        if twice:
            raise ValueError(f"when repeats {twice}, given by their own keys too")
        return self

    def conditions(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        if self.sf_category is not None:
            found["category"] = [self.sf_category]
        if self.request_type is not None:
            found["request_type"] = list(self.request_type)
        if self.details is not None:
            found["details"] = list(self.details)
        for name, patterns in (self.when or {}).items():
            found[name] = list(patterns)
        return found


class MappingFile(_Strict):
    """The mapping file as written (``simulations/examples/sf311/mapping.yaml`` documents each key)."""

    mapping: Literal[1] = Field(description="version of this schema")
    name: str = Field(min_length=1, max_length=64)
    table: str | None = Field(default=None, description="rule table, relative to the mapping file")
    timezone: TimeZoneName = "America/Los_Angeles"
    time_format: str = Field(default="%m/%d/%Y %I:%M:%S %p", min_length=2)
    time_formats: list[Annotated[str, Field(min_length=2)]] | None = Field(default=None, min_length=1)
    null_markers: list[str] = Field(default_factory=list, description="cells that mean 'empty', e.g. NA")
    columns: Columns = Columns()
    bounds: Bounds | None = None
    unmapped_category: Literal["keywords", "reject"] = "keywords"
    reporter_kinds: dict[PatternKey, ReporterKind] = Field(default_factory=dict)
    categories: list[CategoryEntry] = Field(min_length=1)
    agencies: dict[PatternKey, Owner] = Field(default_factory=dict)
    agency_prefixes: dict[str, Owner] = Field(default_factory=dict)
    zones: dict[PatternKey, Identifier] = Field(
        default_factory=dict, description="zone column value -> a zone of the table"
    )

    def formats(self) -> tuple[str, ...]:
        """The time formats, tried in order: ``time_formats`` when given, else ``time_format``."""
        return tuple(self.time_formats) if self.time_formats else (self.time_format,)


def normalise(text: str) -> str:
    """How mapping texts are compared: runs of whitespace collapsed, stripped, case folded."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True, slots=True)
class _Pattern:
    """``text`` exactly, ``prefix*`` by prefix, ``re:expression`` searched (case-insensitive; anchor with ^ $)."""

    text: str
    prefix: bool
    regex: re.Pattern[str] | None = None

    @classmethod
    def of(cls, written: str) -> _Pattern:
        if written.startswith("re:"):
            return cls(written, False, re.compile(written[3:], re.IGNORECASE))
        if written.endswith("*"):
            return cls(normalise(written[:-1]), True)
        return cls(normalise(written), False)

    @property
    def exact(self) -> bool:
        return self.regex is None and not self.prefix

    def matches(self, value: str) -> bool:
        """``value`` is already :func:`normalise`-d."""
        if self.regex is not None:
            return self.regex.search(value) is not None
        return value.startswith(self.text) if self.prefix else value == self.text


#: How many answers a lookup remembers (then it starts again): bounded memory on any file.
_MEMO_SIZE = 50_000


@dataclass(frozen=True, slots=True)
class _Lookup(Generic[T]):
    """Keys that are patterns: an exact key wins, then the longest prefix, then regular expressions in order."""

    exact: dict[str, T]
    prefixes: tuple[tuple[str, T], ...]
    regexes: tuple[tuple[re.Pattern[str], T], ...]
    _seen: dict[str, T | None] = field(default_factory=dict, compare=False)  # texts repeat: answered once

    @classmethod
    def of(cls, items: MappingABC[str, T], prefixes: MappingABC[str, T] | None = None) -> _Lookup[T]:
        exact: dict[str, T] = {}
        prefix: list[tuple[str, T]] = [(normalise(k), v) for k, v in (prefixes or {}).items()]
        regexes: list[tuple[re.Pattern[str], T]] = []
        for key, value in items.items():
            pattern = _Pattern.of(key)
            if pattern.regex is not None:
                regexes.append((pattern.regex, value))
            elif pattern.prefix:
                prefix.append((pattern.text, value))
            else:
                exact[pattern.text] = value
        prefix.sort(key=lambda p: -len(p[0]))
        return cls(exact, tuple(prefix), tuple(regexes))

    def get(self, text: str) -> T | None:
        if text in self._seen:
            return self._seen[text]
        found = self._find(text)
        if len(self._seen) >= _MEMO_SIZE:
            self._seen.clear()
        self._seen[text] = found
        return found

    def _find(self, text: str) -> T | None:
        key = normalise(text)
        if not key:
            return None
        found = self.exact.get(key)
        if found is not None:
            return found
        for prefix, value in self.prefixes:
            if key.startswith(prefix):
                return value
        return next((value for regex, value in self.regexes if regex.search(key)), None)


@dataclass(frozen=True, slots=True)
class _Entry:
    ours: str
    conditions: tuple[tuple[str, tuple[_Pattern, ...]], ...]

    def matches(self, values: MappingABC[str, str]) -> bool:
        return all(any(p.matches(values.get(name, "")) for p in patterns) for name, patterns in self.conditions)


@dataclass(frozen=True)
class Mapping:
    """A validated mapping, with its lookups compiled: categories, agencies, sources, zones."""

    spec: MappingFile
    source: Path | None = None
    tz: ZoneInfo = field(init=False, repr=False)
    _entries: tuple[_Entry, ...] = field(init=False, repr=False)
    _by_category: dict[str, tuple[_Entry, ...]] = field(init=False, repr=False)
    _agencies: _Lookup[str] = field(init=False, repr=False)
    _sources: _Lookup[ReporterKind] = field(init=False, repr=False)
    _zones: _Lookup[str] = field(init=False, repr=False)
    _nulls: frozenset[str] = field(init=False, repr=False)
    #: What every row reads, worked out once (per row it was a third of a dry run's time).
    formats: tuple[str, ...] = field(init=False, repr=False)
    field_columns: tuple[tuple[str, str | None], ...] = field(init=False, repr=False)
    text_columns: tuple[tuple[str, int], ...] = field(init=False, repr=False)
    _categories_seen: dict[tuple[tuple[str, str], ...], str | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        spec = self.spec
        object.__setattr__(self, "formats", spec.formats())
        object.__setattr__(self, "_categories_seen", {})
        object.__setattr__(self, "field_columns", tuple(spec.columns.field_columns().items()))
        object.__setattr__(self, "text_columns", tuple((t.column, t.weight) for t in spec.columns.text_columns()))
        entries = tuple(
            _Entry(
                ours=entry.ours,
                conditions=tuple((name, tuple(map(_Pattern.of, ps))) for name, ps in entry.conditions().items()),
            )
            for entry in spec.categories
        )
        # Entries whose category condition is one exact text are also filed under it, so that a row looks
        # only at its own category's entries and those without an exact category condition, in file order.
        by_category: dict[str, list[_Entry]] = defaultdict(list)
        loose = [e for e in entries if not self._exact_category(e)]
        for entry in entries:
            exact = self._exact_category(entry)
            if exact is not None:
                by_category[exact].append(entry)
        ordered = {e: i for i, e in enumerate(entries)}
        object.__setattr__(self, "tz", ZoneInfo(spec.timezone))
        object.__setattr__(self, "_entries", tuple(loose))
        object.__setattr__(
            self,
            "_by_category",
            {k: tuple(sorted([*v, *loose], key=ordered.__getitem__)) for k, v in by_category.items()},
        )
        object.__setattr__(self, "_agencies", _Lookup.of(spec.agencies, spec.agency_prefixes))
        object.__setattr__(self, "_sources", _Lookup.of(spec.reporter_kinds))
        object.__setattr__(self, "_zones", _Lookup.of(spec.zones))
        object.__setattr__(self, "_nulls", frozenset(m.strip() for m in spec.null_markers))

    @staticmethod
    def _exact_category(entry: _Entry) -> str | None:
        for name, patterns in entry.conditions:
            if name == "category" and len(patterns) == 1 and patterns[0].exact:
                return patterns[0].text
        return None

    @property
    def name(self) -> str:
        return self.spec.name

    def table_path(self) -> Path | None:
        """The mapping's rule table, resolved against the mapping file's folder."""
        if self.spec.table is None:
            return None
        base = self.source.parent if self.source is not None else Path.cwd()
        return (base / self.spec.table).resolve()

    def is_null(self, cell: str) -> bool:
        return cell in self._nulls

    def category_of(self, fields: MappingABC[str, str]) -> str | None:
        """Our category for a row's category-like fields (name -> text): the first entry that matches."""
        key = tuple(fields.items())
        seen = self._categories_seen
        if key in seen:
            return seen[key]
        if len(seen) >= _MEMO_SIZE:
            seen.clear()
        seen[key] = found = self._category_of(fields)
        return found

    def _category_of(self, fields: MappingABC[str, str]) -> str | None:
        values = {name: normalise(value) for name, value in fields.items()}
        entries = self._by_category.get(values.get("category", ""), self._entries)
        return next((entry.ours for entry in entries if entry.matches(values)), None)

    def category_for(self, sf_category: str, request_type: str = "", details: str = "") -> str | None:
        """:meth:`category_of` with the three built-in fields."""
        return self.category_of({"category": sf_category, "request_type": request_type, "details": details})

    def owner_for(self, agency: str) -> str | None:
        """The owner a real agency stands for: an exact entry, else the longest matching prefix, else the first
        matching regular expression, else ``None``."""
        return self._agencies.get(agency)

    def reporter_kind(self, source: str) -> ReporterKind | None:
        return self._sources.get(source)

    def zone_for(self, value: str) -> str | None:
        return self._zones.get(value)

    def problems(self, book: RuleBook) -> list[str]:
        """What in the mapping the table does not know: categories, teams, departments, the triage module,
        zones; and ``when`` fields the columns do not name."""
        table = book.table
        catalogue = {c.id for c in table.catalogue}
        teams = {t.id for t in table.teams}
        departments = {d.id for d in table.county_departments}
        fields = set(self.spec.columns.field_columns())
        found = [
            f"categories[{i}]: {entry.ours!r} is not in the catalogue of table {table.version}"
            for i, entry in enumerate(self.spec.categories)
            if entry.ours not in catalogue
        ]
        found += [
            f"categories[{i}]: field {name!r} is not a column (columns.fields)"
            for i, entry in enumerate(self.spec.categories)
            for name in entry.conditions()
            if name not in fields
        ]
        found += [
            f"zones[{key!r}]: zone {zone!r} is not in table {table.version}"
            for key, zone in self.spec.zones.items()
            if not book.has_zone(zone)
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

    ``row`` counts the file's data rows from 1 (the header is not counted); ``line`` is the file's line where
    the row ends (a quoted cell may span lines). ``category`` is ours (``None``: the mapping matched none and
    keywords will decide).
    """

    row: int
    at: datetime
    report: ReportSpec
    real_owner: str | None
    category: str | None
    case_id: str = ""
    agency: str = ""
    sf_kind: str = ""  # the category-like fields but details, joined by " / ": where disagreements come from
    line: int = 0


@dataclass(frozen=True)
class Rejected:
    """A row that is not replayed; ``reason`` is ``"kind: detail"`` (kinds are tallied by :func:`run_from_csv`).
    ``line`` is the file's line where the row ends (0 when not known)."""

    row: int
    reason: str
    line: int = 0

    @property
    def kind(self) -> str:
        return self.reason.split(":", 1)[0]


def parse_local_time(text: str, time_format: str | Sequence[str], tz: ZoneInfo) -> datetime:
    """A local time as written (e.g. ``04/30/2014 02:51:52 PM``) as an aware UTC time; ``ValueError`` if not one.

    ``time_format`` is one ``strptime`` format or several, tried in order; the first that reads the whole
    text wins. A format with ``%z`` gives its own offset; any other is read as local time in ``tz``.
    """
    formats = (time_format,) if isinstance(time_format, str) else tuple(time_format)
    stripped = text.strip()
    for candidate in formats:
        try:
            parsed = _time_reader(candidate)(stripped)
        except ValueError:
            continue
        local = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)
        return local.astimezone(UTC)
    raise ValueError(f"{text!r} matches none of the time formats {list(formats)}")


#: The ``strptime`` directives read by a regular expression (numbers and AM/PM, the formats of exports);
#: a format with any other directive is read by ``strptime`` itself.
_DIRECTIVES = {
    "Y": r"(?P<Y>\d{4})",
    "m": r"(?P<m>\d{1,2})",
    "d": r"(?P<d>\d{1,2})",
    "H": r"(?P<H>\d{1,2})",
    "I": r"(?P<I>\d{1,2})",
    "M": r"(?P<M>\d{1,2})",
    "S": r"(?P<S>\d{1,2})",
    "p": r"(?P<p>[AaPp][Mm])",
}


@functools.lru_cache(maxsize=64)
def _time_reader(time_format: str) -> Callable[[str], datetime]:
    """A reader of ``time_format`` that gives what ``datetime.strptime`` gives, five times faster for the
    usual directives (``strptime`` was a quarter of a dry run); ``ValueError`` for a text it does not read."""
    parts: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(time_format):
        char = time_format[i]
        if char == "%" and i + 1 < len(time_format):
            directive = time_format[i + 1]
            if directive == "%":
                parts.append("%")
            elif directive in _DIRECTIVES and directive not in seen and not (directive == "p" and "H" in seen):
                parts.append(_DIRECTIVES[directive])
                seen.add(directive)
            else:
                return lambda text: datetime.strptime(text, time_format)
            i += 2
            continue
        parts.append(r"\s+" if char.isspace() else re.escape(char))
        i += 1
    if not {"Y", "m", "d"} <= seen or ("p" in seen) != ("I" in seen) or ("H" in seen and "I" in seen):
        return lambda text: datetime.strptime(text, time_format)
    pattern = re.compile("".join(parts) + r"\Z")

    def read(text: str) -> datetime:
        found = pattern.match(text)
        if found is None:
            raise ValueError(f"{text!r} does not match {time_format!r}")
        g = found.groupdict()
        if "I" in g:
            hour = int(g["I"])
            if not 1 <= hour <= 12:
                raise ValueError(f"{text!r}: hour {hour} is not on a 12-hour clock")
            hour = hour % 12 + (12 if g["p"].lower() == "pm" else 0)
        else:
            hour = int(g.get("H") or 0)
        # datetime() refuses a day, month, hour, minute or second out of range, as strptime does.
        return datetime(int(g["Y"]), int(g["m"]), int(g["d"]), hour, int(g.get("M") or 0), int(g.get("S") or 0))

    return read


_POINT = re.compile(r"^\(?\s*([-+]?\d+(?:\.\d*)?)\s*,\s*([-+]?\d+(?:\.\d*)?)\s*\)?$")


def parse_point(text: str) -> tuple[float, float] | None:
    """``"(lat, lon)"`` as ``(lat, lon)``; ``None`` for an empty cell; ``ValueError`` for anything else."""
    stripped = text.strip()
    if not stripped:
        return None
    match = _POINT.match(stripped)
    if match is None:
        raise ValueError(f"{text!r} is not (lat, lon)")
    return _on_earth(float(match.group(1)), float(match.group(2)), text)


def _on_earth(lat: float, lon: float, text: str) -> tuple[float, float]:
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"{text!r} is not a position on Earth")
    return lat, lon


def parse_lat_lon(lat_text: str, lon_text: str) -> tuple[float, float] | None:
    """Two cells as ``(lat, lon)``; ``None`` when both are empty; ``ValueError`` for one alone or a non-number."""
    lat_text, lon_text = lat_text.strip(), lon_text.strip()
    if not lat_text and not lon_text:
        return None
    shown = f"{lat_text}, {lon_text}"
    if not lat_text or not lon_text:
        raise ValueError(f"{shown!r} has only one of latitude and longitude")
    try:
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise ValueError(f"{shown!r} is not a latitude and a longitude") from None
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ValueError(f"{shown!r} is not a latitude and a longitude")
    return _on_earth(lat, lon, shown)


def _description(*parts: str) -> str:
    seen: list[str] = []
    for part in parts:
        if part and part not in seen:
            seen.append(part)
    return (": ".join(seen) or "(no description)")[:_DESCRIPTION_MAX]


def weighted_category(classifier: KeywordClassifier, texts: Sequence[tuple[str, int]]) -> str | None:
    """The category the keywords find in weighted texts: each text's scores times its weight, summed; the
    highest sum wins (a tie: the classifier's tie-break order); ``None`` below the classifier's ``min_score``."""
    totals: Counter[str] = Counter()
    for text, weight in texts:
        if weight and text:
            for hit in classifier.classify(text).hits:
                totals[hit.category] += hit.weight * weight
    if not totals:
        return None
    order = {c: i for i, c in enumerate(classifier.categories)}
    best, score = min(totals.items(), key=lambda kv: (-kv[1], order.get(kv[0], len(order))))
    return best if score >= classifier.min_score else None


class _Row:
    """A CSV row read through the mapping: cells stripped, null markers read as empty."""

    __slots__ = ("nulls", "row")

    def __init__(self, row: MappingABC[str | None, Any], mapping: Mapping) -> None:
        self.row = row
        self.nulls = mapping._nulls

    def __getitem__(self, column: str | None) -> str:
        if column is None:
            return ""
        value = self.row.get(column)
        text = value.strip() if isinstance(value, str) else ""
        return "" if text in self.nulls else text


def _record(
    number: int,
    raw: MappingABC[str | None, Any],
    mapping: Mapping,
    classifier: KeywordClassifier | None = None,
    line: int = 0,
) -> Record | Rejected:
    columns, spec = mapping.spec.columns, mapping.spec
    row = _Row(raw, mapping)
    formats = mapping.formats
    opened_text = row[columns.opened]
    try:
        at = parse_local_time(opened_text, formats, mapping.tz)
    except ValueError:
        return Rejected(number, f"bad opened time: {opened_text!r}", line)
    closed_text = row[columns.closed]
    if closed_text:
        try:
            closed = parse_local_time(closed_text, formats, mapping.tz)
        except ValueError:
            return Rejected(number, f"bad closed time: {closed_text!r}", line)
        if closed < at:
            return Rejected(number, f"closed before opened: closed {closed_text}, opened {opened_text}", line)
    try:
        point = parse_point(row[columns.point])
        if point is None and columns.latitude is not None:
            point = parse_lat_lon(row[columns.latitude], row[columns.longitude])
    except ValueError as exc:
        return Rejected(number, f"unparseable point: {exc}", line)
    if point is not None and spec.bounds is not None and not spec.bounds.contains(*point):
        return Rejected(number, f"point outside bounds: {point[0]}, {point[1]}", line)
    fields = {name: row[column] for name, column in mapping.field_columns}
    category = mapping.category_of(fields)
    kind = " / ".join(v for name, v in fields.items() if v and name != "details")
    if category is None and spec.unmapped_category == "reject":
        return Rejected(number, f"unmapped category: {kind!r}", line)
    texts = [(row[column], weight) for column, weight in mapping.text_columns]
    if category is None and classifier is not None and any(w != 1 for _, w in texts):
        category = weighted_category(classifier, texts)
    zone_text = row[columns.zone]
    zone = mapping.zone_for(zone_text) if zone_text else None  # a value not listed: no zone, the point decides
    agency = row[columns.agency]
    report = ReportSpec(
        category=category,
        description=_description(*(text for text, _ in texts)),
        zone=zone,
        lat=point[0] if point is not None else None,
        lon=point[1] if point is not None else None,
        reporter_kind=mapping.reporter_kind(row[columns.source]),
    )
    return Record(
        row=number,
        at=at,
        report=report,
        real_owner=mapping.owner_for(agency),
        category=category,
        case_id=row[columns.case_id],
        agency=agency,
        sf_kind=kind,
        line=line,
    )


def read_records(
    csv_path: str | Path,
    mapping: Mapping,
    *,
    limit: int | None = None,
    classifier: KeywordClassifier | None = None,
) -> tuple[list[Record], list[Rejected]]:
    """The usable rows of a CSV and the rejected ones, in file order; ``limit``: read at most that many rows.

    ``classifier`` (the table's keywords) chooses the category of an unmapped row from its weighted text
    columns when a weight other than 1 is given (:func:`weighted_category`); otherwise such a row goes
    without a category and the table's keywords read its description at routing time.
    A bad row never stops the reading; a file that is not CSV or lacks a named column raises ``ValueError``.
    """
    path = Path(csv_path)
    records: list[Record] = []
    rejected: list[Rejected] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []
            missing = [c for c in mapping.spec.columns.named() if c not in header]
            if missing:
                raise ValueError(f"{path}: the CSV has no column {', '.join(map(repr, missing))}")
            for number, row in enumerate(reader, 1):
                if limit is not None and number > limit:
                    break
                outcome = _record(number, row, mapping, classifier, reader.line_num)
                if isinstance(outcome, Record):
                    records.append(outcome)
                else:
                    rejected.append(outcome)
        except csv.Error as exc:
            raise ValueError(f"{path}:{reader.line_num}: not readable as CSV: {exc}") from None
    return records, rejected


def rejection_report(rejected: Sequence[Rejected], *, examples: int = 10) -> dict[str, Any]:
    """Rejected rows tallied by reason (most frequent first) and the first ``examples`` with their lines."""
    return {
        "rejected": len(rejected),
        "rejected_reasons": dict(Counter(r.kind for r in rejected).most_common()),
        "rejected_examples": [{"row": r.row, "line": r.line, "reason": r.reason} for r in rejected[:examples]],
    }


def rejection_text(rejected: Sequence[Rejected], *, examples: int = 5) -> str:
    """The same in words, for a terminal or an error message."""
    if not rejected:
        return "no row rejected"
    found = rejection_report(rejected, examples=examples)
    lines = [f"{found['rejected']} rejected: " + ", ".join(f"{k} {n}" for k, n in found["rejected_reasons"].items())]
    lines += [f"  line {e['line']} (row {e['row']}): {e['reason']}" for e in found["rejected_examples"]]
    return "\n".join(lines)


def dry_run(
    csv_path: str | Path, mapping_path: str | Path, table_path: str | Path | None = None, *, limit: int | None = None
) -> dict[str, Any]:
    """Check a mapping against a CSV without replaying: the mapping and table are loaded and compared, every
    row is read; the counts, rejections (by reason, with lines), rows without a category, agencies without an
    owner and the categories found; ``limit`` reads at most that many rows.
    Raises like :func:`run_from_csv` for a bad mapping, table or file."""
    mapping, book, table = _mapping_and_book(mapping_path, table_path)
    records, rejected = read_records(csv_path, mapping, limit=limit, classifier=book.classifier)
    no_owner = Counter(r.agency or "(empty)" for r in records if r.real_owner is None)
    no_category = Counter(r.sf_kind or "(empty)" for r in records if r.category is None)
    return {
        "source": str(csv_path),
        "mapping": str(mapping_path),
        "table": str(table),
        "rows_read": len(records) + len(rejected),
        "usable": len(records),
        **rejection_report(rejected),
        "without_category": sum(no_category.values()),
        "without_category_top": dict(no_category.most_common(_TOP)),
        "agency_without_owner": sum(no_owner.values()),
        "agencies_without_owner": dict(no_owner.most_common(_TOP)),
        "categories": dict(Counter(r.category or "(keywords)" for r in records).most_common()),
        "from": min(r.at for r in records).isoformat() if records else None,
        "to": max(r.at for r in records).isoformat() if records else None,
    }


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


def _mapping_and_book(mapping_path: str | Path, table_path: str | Path | None) -> tuple[Mapping, RuleBook, Path]:
    mapping = load_mapping(mapping_path)
    table = Path(table_path) if table_path is not None else mapping.table_path()
    if table is None:
        raise ValueError(f"{mapping_path}: no table given and the mapping names none")
    book = compile_table(load_table(table))
    problems = mapping.problems(book)
    if problems:
        raise ValueError(f"{mapping_path} does not fit {table}:\n" + "\n".join(problems))
    return mapping, book, table


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
    mapping, book, table = _mapping_and_book(mapping_path, table_path)
    records, rejected = read_records(csv_path, mapping, limit=limit, classifier=book.classifier)
    if not records:
        raise ValueError(f"{csv_path}: no usable record ({rejection_text(rejected)})")
    scenario = scenario_from_records(records, name=f"replay of {Path(csv_path).name}", table=table)
    result = await Simulation(scenario, book, progress=progress).run()
    report: dict[str, Any] = {
        "source": str(csv_path),
        "mapping": str(mapping_path),
        "table": str(table),
        "rows_read": len(records) + len(rejected),
        "replayed": len(records),
        **rejection_report(rejected),
        "from": scenario.start.isoformat(),
        "to": in_time_order(records)[-1].at.isoformat(),
        "agreement": agreement(result, records, mapping),
        "summary": summarise(result),
    }
    return result, report
