"""The store port: what the hub needs from durable storage. :mod:`dispatcher.sql_store` implements it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from dispatcher.core.incidents import Incident
from dispatcher.core.lifecycle import IncidentStatus
from dispatcher.core.roster import UnitState


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    """An event row: ``payload`` is the event encoded as JSON text (see :mod:`dispatcher.core.events`)."""

    seq: int
    incident_id: int
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


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentFilter:
    status: Sequence[IncidentStatus] = ()
    team: str | None = None
    module: str | None = None
    open_only: bool = False
    exercise: bool | None = None  # None: both real and drill incidents


class DuplicateReport(Exception):
    """The batch holds a ``report_id`` that is already stored; nothing of the batch was written."""


class StoreUnavailable(Exception):
    """The store could not commit; nothing of the batch was written."""


class IncidentStore(Protocol):
    async def open(self) -> None:
        """Connect and bring the schema up to date (migrations)."""
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

    async def load(self, incident_ids: Collection[int]) -> dict[int, Incident]: ...

    async def find_reports(self, report_ids: Collection[str]) -> dict[str, int]:
        """Map each already-known ``report_id`` to its incident id."""
        ...

    async def commit(self, changes: Changes) -> None:
        """Write a whole batch atomically, or nothing.

        Raises :class:`DuplicateReport` when a new incident's ``report_id`` is already stored, and
        :class:`StoreUnavailable` on any other failure.
        """
        ...

    async def get(self, incident_id: int) -> Incident | None: ...

    async def list_incidents(self, where: IncidentFilter, *, limit: int, offset: int) -> tuple[list[Incident], int]:
        """A page of incidents, newest first, and the count of all that match."""
        ...

    async def timeline(self, incident_id: int) -> list[StoredEvent]: ...

    async def events_since(self, seq: int, *, limit: int) -> list[StoredEvent]: ...

    async def ping(self) -> bool: ...

    async def load_units(self) -> dict[str, UnitState]:
        """Every officer's last stored status and position (task counts are rebuilt from incidents)."""
        ...

    async def latest_roster(self) -> tuple[str, str] | None:
        """The newest roster as (version, JSON body), or ``None`` before the first was loaded."""
        ...

    async def save_roster(self, version: str, body: str, loaded_by: str | None) -> None: ...

    async def save_handover(self, handover: HandoverRecord) -> int:
        """Store a shift handover; returns its id."""
        ...

    async def acknowledge_handover(self, handover_id: int, by: str, at: datetime) -> HandoverRecord | None:
        """Mark a handover taken over; ``None`` when there is no such handover. Idempotent per handover."""
        ...

    async def handovers(self, *, team: str | None, limit: int) -> list[HandoverRecord]: ...

    async def events_of_type(self, type_name: str, *, limit: int) -> list[StoredEvent]: ...


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
