"""The store port: what the hub needs from durable storage. :mod:`dispatcher.sql_store` implements it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from dispatcher.assessment import Assessment
from dispatcher.audit_entries import AuditEntry
from dispatcher.briefing import Briefing, Document, Figure, IncidentLine, Period, Unit
from dispatcher.core.events import ScoringPutInForce
from dispatcher.core.incidents import Incident
from dispatcher.core.lifecycle import IncidentStatus
from dispatcher.core.records import quick_init
from dispatcher.core.roster import UnitState
from rules.scoring import ScoringTable


@quick_init  # the writer makes one per event: 0.60 µs each instead of 0.86 (benchmarks/README.md, i14-writer2)
@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    """An event row: ``payload`` is the event encoded as JSON text (see :mod:`dispatcher.core.events`).

    ``incident_id`` is ``None`` for a fact of the township's log (a handover, a roster, a rule table:
    :class:`dispatcher.core.events.TownshipEvent`); it is never 0, and no incident's timeline shows it.
    """

    seq: int
    incident_id: int | None
    type: str
    at: datetime
    payload: str


@dataclass(slots=True, kw_only=True)
class Changes:
    """Everything one writer batch changes, committed in one transaction or not at all."""

    created: list[Incident] = field(default_factory=list)
    updated: list[tuple[Incident, Incident]] = field(default_factory=list)  # (as loaded, after)
    events: list[StoredEvent] = field(default_factory=list)
    units: dict[str, UnitState] = field(default_factory=dict)  # officers whose status or position changed
    report_ids: list[str] = field(default_factory=list)  # report ids taken for the first time (new or joined)
    handovers: list[HandoverRecord] = field(default_factory=list)  # recorded in this batch (ids given)
    handover_acks: list[HandoverRecord] = field(default_factory=list)  # taken over in this batch
    rosters: list[RosterRecord] = field(default_factory=list)  # rosters put in force
    rule_tables: list[RuleTableRecord] = field(default_factory=list)  # rule tables put in force (ids given)
    audit: list[AuditEntry] = field(default_factory=list)  # audit entries of answered requests (the trail)


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentFilter:
    status: Sequence[IncidentStatus] = ()
    team: str | None = None
    module: str | None = None
    open_only: bool = False
    exercise: bool | None = None  # None: both real and drill incidents
    ids: Sequence[int] = ()  # only these incidents (empty: any)
    categories: Sequence[str] = ()  # routed category among these (empty: any)
    reporter_kinds: Sequence[str] = ()  # first report's reporter kind among these (empty: any)
    reported_from: datetime | None = None  # reported at or after (inclusive)
    reported_before: datetime | None = None  # reported before (exclusive)
    place: str | None = None  # reported from this place code (龙游通)


class DuplicateReport(Exception):
    """The batch holds a ``report_id`` that is already stored; nothing of the batch was written."""


class StoreUnavailable(Exception):
    """The database could not be reached or did not answer; nothing was written. Worth retrying.

    Its message is meant for the caller: it never carries SQL, parameters or other callers' data.
    """


class StoreLocked(StoreUnavailable):
    """Another dispatcher process already writes to this database: one writer per database.

    The writer hands out incident ids and event sequence numbers from memory, so a second one would
    collide with the first at commit. Raised by ``open``; nothing was written.
    """


class CommitRefused(Exception):
    """The database refused a value of the batch (out of range, a character it cannot store...).

    Nothing was written; retrying the same values fails again. The hub then commits the batch's
    commands apart so that only the one that carries the value is refused. Like
    :class:`StoreUnavailable`, its message carries no SQL and no parameters.
    """


class IncidentStore(Protocol):
    async def open(self) -> None:
        """Take the database's writer lock, connect and bring the schema up to date (migrations).

        Raises :class:`StoreLocked` when another process holds the lock. ``close`` gives it back.
        """
        ...

    async def close(self) -> None: ...

    async def last_ids(self) -> tuple[int, int]:
        """The highest incident id and event sequence number written so far (0 when none)."""
        ...

    async def load_open(self) -> list[Incident]:
        """Every incident that is neither closed nor cancelled, with assignments and deadlines, in id order."""
        ...

    async def events_of_incidents(self, incident_ids: Collection[int], types: Collection[str]) -> list[StoredEvent]:
        """The events of these types of these incidents, in ``seq`` order within each incident."""
        ...

    async def load(self, incident_ids: Collection[int]) -> dict[int, Incident]:
        """The incidents of these ids that exist. Raises :class:`StoreUnavailable` or :class:`CommitRefused`."""
        ...

    async def find_reports(self, report_ids: Collection[str], *, writer: bool = True) -> dict[str, int]:
        """Map each already-known ``report_id`` to the incident that holds it now.

        ``writer``: called by the writer task, between its batches (it may use the writer's own connection);
        False for any other caller, which must never share that connection with a batch being committed.

        Raises :class:`StoreUnavailable` or :class:`CommitRefused` (an id the database cannot take).
        """
        ...

    async def commit(self, changes: Changes) -> None:
        """Write a whole batch atomically, or nothing.

        Raises :class:`DuplicateReport` when one of ``changes.report_ids`` was ever taken before
        (whichever incident holds it now), :class:`CommitRefused` when the database refuses a value,
        and :class:`StoreUnavailable` when it cannot be reached.
        """
        ...

    async def get(self, incident_id: int) -> Incident | None: ...

    async def list_incidents(self, where: IncidentFilter, *, limit: int, offset: int) -> tuple[list[Incident], int]:
        """A page of incidents, newest first, and the count of all that match."""
        ...

    async def timeline(self, incident_id: int) -> list[StoredEvent]: ...

    async def events_since(self, seq: int, *, limit: int) -> list[StoredEvent]: ...

    async def briefing(self, *, start: datetime, end: datetime, by: Unit) -> Briefing:
        """The briefing's figures per unit of kind ``by`` for ``[start, end)`` (read-only; see
        :mod:`dispatcher.briefing`). Raises ``ValueError`` for an empty period or naive times."""
        ...

    async def briefing_document(self, *, township: str, period: Period) -> Document:
        """The briefing document of a named period (read-only; see :func:`dispatcher.briefing.document`)."""
        ...

    async def incidents_behind(
        self, *, start: datetime, end: datetime, by: Unit, unit: str | None, figure: Figure
    ) -> list[IncidentLine]:
        """The incidents counted in one figure of one unit (see :func:`dispatcher.briefing.incidents_behind`)."""
        ...

    async def assessment(self, *, period: Period, table: ScoringTable) -> Assessment:
        """Post, team and module scores of a period by a scoring table (see :mod:`dispatcher.assessment`)."""
        ...

    async def store_scoring_text(self, *, body: str, version: str, at: datetime) -> str:
        """Keep a scoring table's YAML under its digest, before the event naming it is logged; returns the
        digest (see :func:`dispatcher.assessment.store_scoring_text`)."""
        ...

    async def scoring_tables(self) -> list[tuple[int, ScoringPutInForce]]:
        """Every scoring table put in force, oldest first, with its seq and its text in ``body``."""
        ...

    async def ping(self) -> bool: ...

    async def load_units(self) -> dict[str, UnitState]:
        """Every officer's last stored status and position (task counts are rebuilt from incidents)."""
        ...

    async def latest_roster(self) -> tuple[str, str] | None:
        """The newest roster as (version, JSON body), or ``None`` before the first was loaded."""
        ...

    async def last_record_ids(self) -> tuple[int, int]:
        """The highest handover id and rule table id written so far (0 when none); the hub gives the next."""
        ...

    async def handover(self, handover_id: int) -> HandoverRecord | None: ...

    async def latest_rule_table(self) -> RuleTableRecord | None:
        """The rule table put in force last (with its text), or ``None`` before the first."""
        ...

    async def rule_table(self, table_id: int) -> RuleTableRecord | None:
        """One stored rule table with its text, or ``None``."""
        ...

    async def rule_tables(self, *, limit: int) -> list[RuleTableRecord]:
        """The rule tables put in force, newest first, without their text (``body`` is ``None``)."""
        ...

    async def handovers(self, *, team: str | None, limit: int) -> list[HandoverRecord]: ...

    async def events_of_type(self, type_name: str, *, limit: int, newest_first: bool = False) -> list[StoredEvent]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class HandoverRecord:
    """交接班: the summary one shift hands the next, and who took it over."""

    team: str
    shift_id: str
    at: datetime
    summary: str  # JSON: open incidents, running deadlines, what is about to breach
    incoming_lead: str | None = None
    id: int | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RosterRecord:
    """A roster put in force: its version, the checked document as JSON, who and when."""

    version: str
    body: str
    loaded_at: datetime
    loaded_by: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleTableRecord:
    """A rule table put in force: the YAML text as given (``None`` in listings), who and when."""

    id: int
    version: str
    put_at: datetime
    put_by: str | None
    body: str | None = None
