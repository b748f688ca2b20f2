"""The hub: owns the store, the deadline alarm and the event feed around the pure domain core.

Every change goes through **one writer task**. Commands queue up (bounded, so intake slows down
instead of growing memory); the writer takes whatever has queued, applies the pure domain
functions to each in order, commits the whole group in one transaction, and only then answers
the callers, updates its cache of open incidents and publishes the events. A command the
lifecycle refuses fails on its own and leaves no trace; a failed commit fails the whole group
and changes nothing. Nothing is published before it is committed.

Runs on one asyncio event loop; call every method from that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import operator
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson

from dispatcher.alarm import Alarm
from dispatcher.alarms import ALARM_EVENTS, OpenAlarms
from dispatcher.clock import Clock
from dispatcher.core import events as ev
from dispatcher.core.deadlines import DeadlineWatch, DueEntry
from dispatcher.core.incidents import (
    DeadlineState,
    DeliveryState,
    EscalationState,
    Incident,
    Refused,
    Report,
    acknowledge_alarm,
    add_note,
    add_team,
    assign_officer,
    attach_report,
    change_priority,
    check_version,
    detach_report,
    escalate_now,
    finish_incident,
    merge_incidents,
    miss_deadline,
    move_unit,
    open_incident,
    raise_escalation,
    reassign_team,
    record_delivery,
)
from dispatcher.core.lifecycle import JOINABLE_STATUSES, AssignmentState, IncidentAction, UnitAction
from dispatcher.core.roster import (
    Need,
    Roster,
    UnitState,
    UnitStatus,
    choose_officer,
    distance_m,
    status_after_task_change,
)
from dispatcher.feed import EventFeed, FeedRecord
from dispatcher.store import Changes, DuplicateReport, IncidentFilter, IncidentStore, StoredEvent
from rules.matcher import RoutingInput, RuleBook

log = logging.getLogger(__name__)

T = TypeVar("T")


class IncidentNotFound(LookupError):
    def __init__(self, incident_id: int) -> None:
        super().__init__(f"no incident {incident_id}")
        self.incident_id = incident_id


class UnknownOfficer(LookupError):
    def __init__(self, officer_id: str) -> None:
        super().__init__(f"officer {officer_id!r} is not on the roster")
        self.officer_id = officer_id


class HubStopped(RuntimeError):
    """The hub is not running (not started yet, or shutting down)."""


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """``created``: a new incident; ``joined``: the report attached to an open duplicate; neither: a retry."""

    incident: Incident
    created: bool
    joined: bool = False


@dataclass(slots=True)
class _Batch:
    """The working state of one writer batch: what it read, changed and will publish."""

    hub: Hub
    loaded: dict[int, Incident]
    reports: dict[str, int]
    next_id: int
    next_seq: int
    changes: Changes = field(default_factory=Changes)
    touched: dict[int, Incident] = field(default_factory=dict)
    originals: dict[int, Incident] = field(default_factory=dict)
    records: list[FeedRecord] = field(default_factory=list)
    popped: list[DueEntry] = field(default_factory=list)
    created_ids: set[int] = field(default_factory=set)
    units: dict[str, UnitState] = field(default_factory=dict)  # officers changed in this batch
    freed: set[str] = field(default_factory=set)  # teams where an officer may have become free

    def current(self, incident_id: int) -> Incident:
        incident = self.touched.get(incident_id) or self.hub._open.get(incident_id) or self.loaded.get(incident_id)
        if incident is None:
            raise IncidentNotFound(incident_id)
        return incident

    def unit(self, officer_id: str) -> UnitState:
        return self.units.get(officer_id) or self.hub.units.get(officer_id) or UnitState()

    def all_units(self) -> _Units:
        return _Units(self)

    def choose(
        self, team: str, incident: Incident | Report, at: datetime, exclude: frozenset[str] = frozenset()
    ) -> str | None:
        report = incident.report if isinstance(incident, Incident) else incident
        zones = incident.zones if isinstance(incident, Incident) else ()
        need = Need(team=team, at=at, lat=report.lat, lon=report.lon, zones=zones, exclude=exclude)
        return choose_officer(self.hub.roster, self.all_units(), need)

    def record(self, incident: Incident, events: Sequence[ev.Event], *, created: bool = False) -> None:
        if not events:
            return
        before: Incident | None = None
        if created:
            self.changes.created.append(incident)
            self.created_ids.add(incident.id)
        else:
            before = self.current(incident.id)
            if incident.id not in self.originals and incident.id not in self.created_ids:
                self.originals[incident.id] = before
        self._count_tasks(before, incident, events)
        self.touched[incident.id] = incident
        for event in events:
            seq = self.next_seq
            self.next_seq += 1
            type_name = type(event).__name__
            payload = ev.to_json(event)
            self.changes.events.append(
                StoredEvent(seq=seq, incident_id=event.incident_id, type=type_name, at=event.at, payload=payload)
            )
            self.records.append(FeedRecord(seq, event.incident_id, feed_message(seq, type_name, payload)))

    def _count_tasks(self, before: Incident | None, after: Incident, events: Sequence[ev.Event]) -> None:
        """Keep each officer's open-task count and status in step with the assignments they hold."""
        held_before = before.held_by() if before is not None else {}
        held_after = after.held_by()
        for officer in held_before.keys() | held_after.keys():
            delta = held_after.get(officer, 0) - held_before.get(officer, 0)
            if delta == 0:
                continue
            unit = self.unit(officer)
            tasks = max(0, unit.tasks + delta)
            self.set_unit(officer, replace(unit, tasks=tasks, status=status_after_task_change(unit.status, tasks)))
            if delta < 0:
                self.freed.add(self.hub.team_of(officer))
        for event in events:
            if isinstance(event, ev.UnitMoved) and event.to_state in _MOVING:
                mover = after.assignment(event.team).officer
                if mover is not None:
                    unit = self.unit(mover)
                    if unit.status is not UnitStatus.OFF_DUTY:
                        self.set_unit(mover, replace(unit, status=_MOVING[event.to_state]), persist=True)

    def set_unit(self, officer: str, unit: UnitState, *, persist: bool = False) -> None:
        """Change an officer's state in this batch; ``persist`` what a device reported or a move showed.

        Statuses that only follow the task count (assigned, available again) are not written: the
        count and with it the status are rebuilt from the open incidents at start.
        """
        self.units[officer] = unit
        if persist:
            self.changes.units[officer] = unit

    def finish(self) -> Changes:
        self.changes.created = [self.touched[i.id] for i in self.changes.created]
        self.changes.updated = [
            (self.originals[iid], incident) for iid, incident in self.touched.items() if iid not in self.created_ids
        ]
        return self.changes


_MOVING = {AssignmentState.EN_ROUTE: UnitStatus.EN_ROUTE, AssignmentState.ON_SCENE: UnitStatus.ON_SCENE}


class _Units(Mapping[str, UnitState]):
    """A read-only mapping view over the hub's units with the batch's changes on top."""

    def __init__(self, batch: _Batch) -> None:
        self._batch = batch

    def __getitem__(self, officer_id: str) -> UnitState:
        found = self._batch.units.get(officer_id) or self._batch.hub.units.get(officer_id)
        if found is None:
            raise KeyError(officer_id)
        return found

    def get(self, officer_id: str, default: Any = None) -> Any:  # without raising: most officers are idle
        return self._batch.units.get(officer_id) or self._batch.hub.units.get(officer_id) or default

    def __iter__(self) -> Iterator[str]:
        return iter(self._batch.hub.units.keys() | self._batch.units.keys())

    def __len__(self) -> int:
        return len(self._batch.hub.units.keys() | self._batch.units.keys())


def _routing_input(report: Report, at: datetime) -> RoutingInput:
    return RoutingInput(
        category=report.category,
        description=report.description,
        reporter_kind=report.reporter_kind,
        zone=report.zone,
        lat=report.lat,
        lon=report.lon,
        severity=report.severity,
        at=at,
    )


def _due_entries(incident: Incident) -> list[DueEntry]:
    """Every pending deadline and waiting escalation step of an incident, as heap entries."""
    entries = [DueEntry(d.due_at, incident.id, team, d.kind) for team, d in incident.pending_deadlines()]
    entries.extend(
        DueEntry(e.due_at, incident.id, team, ev.DeadlineKind(e.kind), e.step)
        for team, e in incident.pending_escalations()
        if e.kind in _DEADLINE_KINDS
    )
    return entries


_DEADLINE_KINDS = frozenset(k.value for k in ev.DeadlineKind)
_by_id = operator.attrgetter("id")


def feed_message(seq: int, type_name: str, payload: str) -> str:
    """The JSON text a board receives for one event (the payload is spliced in, not re-encoded)."""
    return f'{{"kind":"event","seq":{seq},"type":"{type_name}","data":{payload}}}'


@dataclass(slots=True)
class _Command:
    apply: Callable[[_Batch], Any]
    future: asyncio.Future[Any]
    report_id: str | None = None
    incident_id: int | None = None
    also: tuple[int, ...] = ()  # further incidents the command reads (a merge's target)


class Hub:
    def __init__(
        self,
        *,
        store: IncidentStore,
        rules: RuleBook,
        clock: Clock,
        alarm: Alarm,
        feed: EventFeed,
        queue_size: int = 10_000,
        batch_max: int = 512,
        recent_reports: int = 100_000,
        roster: Roster | None = None,
        duplicate_radius_m: float = 200.0,
        duplicate_window: timedelta = timedelta(minutes=30),
    ) -> None:
        self.store = store
        self.rules = rules
        self.roster = roster or Roster(version="none", timezone=rules.table.timezone, officers={})
        #: Each officer's live state; changed only by the writer after a commit.
        self.units: dict[str, UnitState] = {}
        self.duplicate_radius_m = duplicate_radius_m
        self.duplicate_window = duplicate_window
        self.clock = clock
        self.feed = feed
        self._alarm = alarm
        self._queue_size = queue_size
        self._batch_max = batch_max
        self._queue: asyncio.Queue[_Command | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._open: dict[int, Incident] = {}
        self._watch = DeadlineWatch()
        self._next_id = 1
        self._next_seq = 1
        self._armed_for: datetime | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # report_id -> incident id of the newest reports: a phone's retry is answered without a query.
        self._recent_reports: OrderedDict[str, int] = OrderedDict()
        self._recent_reports_max = recent_reports
        # Open incidents by routed category, for finding the one a new report duplicates.
        self._by_category: dict[str, set[int]] = {}
        # Waiting assignments (a roster team with nobody free) by team: incident ids.
        self._waiting: dict[str, set[int]] = {}
        self.alarms = OpenAlarms()  # the board's open alarms (see dispatcher/alarms.py)

    # -- life -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._writer is not None and not self._writer.done()

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    async def start(self, prepare: Callable[[], Awaitable[None]] | None = None) -> None:
        """Open the store, load open incidents, re-arm every pending deadline, start the writer.

        Deadlines that fell due while the process was down fire at once, exactly once: their
        pending state is only changed by the writer in the same transaction as the escalation.
        ``prepare`` runs once the store is open and before any deadline can fire: the composition
        root restores the roster there, so a re-dispatch at start has officers to choose from.
        """
        await self.store.open()
        if prepare is not None:
            await prepare()
        last_id, last_seq = await self.store.last_ids()
        self._next_id, self._next_seq = last_id + 1, last_seq + 1
        self.feed.last_seq = last_seq
        # Loading builds millions of long-lived objects and frees nothing: the collector's passes over
        # them would find nothing and cost a quarter of the start.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._open = {i.id: i for i in await self.store.load_open()}
            self.units = await self.store.load_units()
            self._restore_indexes()
        finally:
            if collecting:
                gc.enable()
        await self._load_alarms()
        self._queue = asyncio.Queue(maxsize=self._queue_size)
        self._writer = asyncio.create_task(self._run_writer(), name="hub-writer")
        self._alarm.start(self._on_alarm)
        self._rearm_alarm()
        log.info(
            "hub started: %d open incidents, %d deadlines armed, last event %d",
            len(self._open),
            len(self._watch),
            last_seq,
        )

    def _restore_indexes(self) -> None:
        """After loading the open incidents: officers' task counts, the duplicate and waiting indexes, the heap.

        What :meth:`_index` and :func:`_due_entries` do for one incident, done in one pass over all of
        them (a restart may find 100,000 open incidents holding a million pending deadlines).
        """
        pending, step_pending = DeadlineState.PENDING, EscalationState.PENDING
        make_entry = DueEntry._make
        entries: list[DueEntry] = []
        tasks: dict[str, int] = {}
        for incident in self._open.values():
            incident_id = incident.id
            if incident.category is not None and incident.status in JOINABLE_STATUSES:
                self._by_category.setdefault(incident.category, set()).add(incident_id)
            for officer, count in incident.held_by().items():
                tasks[officer] = tasks.get(officer, 0) + count
            for a in incident.assignments:
                team = a.team
                if a.waiting and incident.is_open:
                    self._waiting.setdefault(team, set()).add(incident_id)
                for d in a.deadlines:
                    if d.state is pending:
                        entries.append(make_entry((d.due_at, incident_id, team, d.kind, 0)))
                for e in a.escalations:
                    if e.state is step_pending and e.kind in _DEADLINE_KINDS:
                        entries.append(make_entry((e.due_at, incident_id, team, ev.DeadlineKind(e.kind), e.step)))
        for officer, count in tasks.items():
            unit = self.units.get(officer, UnitState())
            self.units[officer] = replace(unit, tasks=unit.tasks + count)
        for officer, unit in self.units.items():
            if unit.tasks and unit.status is UnitStatus.AVAILABLE:
                self.units[officer] = replace(unit, status=UnitStatus.ASSIGNED)
        self._watch.arm_many(entries)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Finish what is queued (up to ``timeout_s``), then stop the writer and close the store."""
        self._alarm.stop()
        if self._queue is not None and self._writer is not None:
            await self._queue.put(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), timeout_s)
            except TimeoutError:
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._writer
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._writer = None
        await self.store.close()

    async def settle(self) -> None:
        """Wait until every command queued so far is committed (tests: act, then settle)."""
        if self._queue is not None:
            await self._submit(lambda batch: None)

    # -- commands -------------------------------------------------------------------------

    async def report(self, report: Report, at: datetime) -> ReportOutcome:
        """Route and dispatch a report, or return the incident it already made (same ``report_id``)."""
        decision = self.rules.route(_routing_input(report, at))

        def apply(batch: _Batch) -> ReportOutcome:
            known = batch.reports.get(report.report_id)
            if known is not None:
                return ReportOutcome(batch.current(known), created=False)
            same = self._duplicate_of(batch, report, decision.category, at)
            if same is not None:
                joined, events = attach_report(same, report, at)
                batch.reports[report.report_id] = joined.id
                batch.record(joined, events)
                return ReportOutcome(joined, created=False, joined=True)
            incident_id = batch.next_id
            batch.next_id += 1
            officers = self._officers_for(batch, report, decision.zones, (decision.lead, *decision.support), at)
            incident, events = open_incident(incident_id, report, decision, at, officers)
            batch.reports[report.report_id] = incident_id
            batch.record(incident, events, created=True)
            return ReportOutcome(incident, created=True)

        return await self._submit(apply, report_id=report.report_id)

    async def move_unit(
        self,
        incident_id: int,
        team: str,
        action: UnitAction,
        at: datetime,
        actor: str | None = None,
        *,
        reason: str = "",
        expected_version: int | None = None,
    ) -> Incident:
        """Advance one team's assignment (or return it, with a reason).

        Raises ``IllegalTransition``, ``UnknownAssignment``, ``StaleVersion``, ``Refused`` or
        :class:`IncidentNotFound`; nothing changes then.
        """

        def decide(current: Incident, batch: _Batch) -> tuple[Incident, list[ev.Event]]:
            return move_unit(current, team, action, at, actor, reason=reason)

        return await self._change(incident_id, decide, expected_version)

    async def finish(
        self,
        incident_id: int,
        action: IncidentAction,
        at: datetime,
        actor: str | None = None,
        reason: str = "",
        *,
        expected_version: int | None = None,
    ) -> Incident:
        """Close or cancel an incident; raises ``IllegalTransition``, ``StaleVersion`` or :class:`IncidentNotFound`."""

        def decide(current: Incident, batch: _Batch) -> tuple[Incident, list[ev.Event]]:
            return finish_incident(current, action, at, actor, reason)

        return await self._change(incident_id, decide, expected_version)

    async def note(self, incident_id: int, text: str, at: datetime, author: str | None = None) -> Incident:
        return await self._change(incident_id, lambda current, _: add_note(current, text, author, at))

    async def fire_due(self, at: datetime) -> int:
        """Record every deadline due at ``at`` that is still pending; returns how many were missed."""

        def apply(batch: _Batch) -> int:
            missed = 0
            entries = self._watch.pop_due(at)
            batch.popped.extend(entries)
            for entry in entries:
                try:
                    current = batch.current(entry.incident_id)
                except IncidentNotFound:
                    continue  # closed or cancelled since: nothing to escalate
                if entry.step:
                    incident, events = raise_escalation(current, entry.team, entry.kind.value, entry.step, at)
                else:
                    incident, events = miss_deadline(
                        current, entry.team, entry.kind, at, replacement=self._replacement(batch, current, entry, at)
                    )
                if events:
                    batch.record(incident, events)
                    missed += 1
            return missed

        return int(await self._submit(apply))

    # -- dispatch: officers, overrides, duplicates ----------------------------------------

    async def assign(
        self,
        incident_id: int,
        team: str,
        officer: str | None,
        at: datetime,
        actor: str | None = None,
        *,
        expected_version: int | None = None,
    ) -> Incident:
        """An operator hands a team's assignment to ``officer`` (``None``: the best free one now)."""

        def decide(current: Incident, batch: _Batch) -> tuple[Incident, list[ev.Event]]:
            chosen = officer
            if chosen is None:
                held = current.assignment(team)
                exclude = frozenset((*held.tried, *([held.officer] if held.officer else [])))
                chosen = batch.choose(team, current, at, exclude)
                if chosen is None:
                    raise Refused(f"nobody of team {team} is on duty and free")
            elif self.roster.officers.get(chosen) is None or self.roster.officers[chosen].team != team:
                raise Refused(f"officer {chosen!r} is not on team {team}'s roster")
            return assign_officer(current, team, chosen, at, reason="reassign", actor=actor)

        return await self._change(incident_id, decide, expected_version)

    async def add_team(
        self,
        incident_id: int,
        team: str,
        at: datetime,
        actor: str | None = None,
        *,
        expected_version: int | None = None,
    ) -> Incident:
        """Send one more team (the best free officer of it, or it waits)."""
        self._known_team(team)

        def decide(current: Incident, batch: _Batch) -> tuple[Incident, list[ev.Event]]:
            officers = self._officers_for(batch, current.report, current.zones, (team,), at)
            return add_team(current, team, at, officer=officers.get(team), actor=actor, waiting=team in officers)

        return await self._change(incident_id, decide, expected_version)

    async def reassign_team(
        self,
        incident_id: int,
        from_team: str,
        to_team: str,
        at: datetime,
        actor: str | None = None,
        *,
        expected_version: int | None = None,
    ) -> Incident:
        """Move a team's part to another team (the way a returned matter is re-dispatched)."""
        self._known_team(to_team)

        def decide(current: Incident, batch: _Batch) -> tuple[Incident, list[ev.Event]]:
            officers = self._officers_for(batch, current.report, current.zones, (to_team,), at)
            return reassign_team(
                current, from_team, to_team, at, officer=officers.get(to_team), actor=actor, waiting=to_team in officers
            )

        return await self._change(incident_id, decide, expected_version)

    async def escalate(
        self,
        incident_id: int,
        at: datetime,
        actor: str | None = None,
        team: str | None = None,
        *,
        expected_version: int | None = None,
    ) -> Incident:
        """Escalate now: the next level of the chain not yet reached hears of it at once."""

        def decide(current: Incident, batch: _Batch) -> tuple[Incident, list[ev.Event]]:
            return escalate_now(current, at, actor, team)

        return await self._change(incident_id, decide, expected_version)

    async def set_priority(
        self,
        incident_id: int,
        priority: int,
        at: datetime,
        actor: str | None = None,
        *,
        expected_version: int | None = None,
    ) -> Incident:
        def decide(current: Incident, batch: _Batch) -> tuple[Incident, list[ev.Event]]:
            return change_priority(current, priority, at, actor)

        return await self._change(incident_id, decide, expected_version)

    async def merge(self, source_id: int, target_id: int, at: datetime, actor: str | None = None) -> Incident:
        """Fold incident ``source_id`` into ``target_id``; returns the target."""

        def apply(batch: _Batch) -> Incident:
            folded, target, events = merge_incidents(batch.current(source_id), batch.current(target_id), at, actor)
            batch.record(folded, [e for e in events if e.incident_id == source_id])
            batch.record(target, [e for e in events if e.incident_id == target_id])
            for report_id in (folded.report.report_id, *(r.report.report_id for r in folded.reports)):
                batch.reports[report_id] = target.id
            return target

        keys = {"incident_id": source_id}
        return await self._submit(apply, also=(target_id,), **keys)

    async def split(self, incident_id: int, report_id: str, at: datetime, actor: str | None = None) -> Incident:
        """Split an attached report off into an incident of its own, routed afresh; returns the new one."""

        def apply(batch: _Batch) -> Incident:
            new_id = batch.next_id
            remaining, report, events = detach_report(batch.current(incident_id), report_id, new_id, at, actor)
            batch.next_id += 1
            decision = self.rules.route(_routing_input(report, at))
            officers = self._officers_for(batch, report, decision.zones, (decision.lead, *decision.support), at)
            opened, opened_events = open_incident(new_id, report, decision, at, officers)
            batch.record(remaining, events)
            batch.record(opened, opened_events, created=True)
            batch.reports[report.report_id] = new_id
            return opened

        return await self._submit(apply, incident_id=incident_id)

    async def report_unit(
        self,
        officer_id: str,
        at: datetime,
        *,
        status: UnitStatus | None = None,
        lat: float | None = None,
        lon: float | None = None,
    ) -> UnitState:
        """An officer's device reports status and/or position. Off duty takes them out of the choice."""
        if officer_id not in self.roster.officers:
            raise UnknownOfficer(officer_id)

        def apply(batch: _Batch) -> UnitState:
            unit = batch.unit(officer_id)
            if status is not None:
                if status is UnitStatus.OFF_DUTY:
                    unit = replace(unit, status=status)
                elif status is UnitStatus.AVAILABLE:
                    unit = replace(unit, status=status_after_task_change(UnitStatus.AVAILABLE, unit.tasks))
                else:
                    unit = replace(unit, status=status)
                batch.freed.add(self.team_of(officer_id))
            if lat is not None and lon is not None:
                unit = replace(unit, lat=lat, lon=lon, position_at=at)
            batch.set_unit(officer_id, unit, persist=True)
            return unit

        await self._submit(apply)
        return self.units.get(officer_id, UnitState())  # after any waiting work it took in the same batch

    async def offer_waiting(self, team: str, at: datetime) -> int:
        """Give waiting assignments of ``team`` to officers who are free now (a shift began); returns how many."""

        def apply(batch: _Batch) -> int:
            batch.freed.add(team)
            return self._fill_waiting(batch, at)

        return int(await self._submit(apply))

    async def record_delivery(
        self,
        incident_id: int,
        at: datetime,
        *,
        ok: bool,
        status_code: int | None,
        error: str | None,
        max_attempts: int,
    ) -> Incident:
        """Record one try at forwarding a county matter (see :mod:`gateways.county`)."""

        def decide(current: Incident, batch: _Batch) -> tuple[Incident, list[ev.Event]]:
            return record_delivery(current, at, ok=ok, status_code=status_code, error=error, max_attempts=max_attempts)

        return await self._change(incident_id, decide)

    def pending_deliveries(self) -> list[Incident]:
        """Open county matters not yet forwarded, oldest first."""
        return sorted(
            (i for i in self._open.values() if i.delivery is not None and i.delivery.state is DeliveryState.PENDING),
            key=lambda i: i.id,
        )

    def waiting(self) -> list[tuple[Incident, str]]:
        """Assignments waiting for an officer, most urgent first: (incident, team)."""
        found = [(self._open[i], team) for team, ids in self._waiting.items() for i in ids if i in self._open]
        return sorted(found, key=lambda it: (it[0].priority, it[0].reported_at, it[0].id, it[1]))

    def team_of(self, officer_id: str) -> str:
        officer = self.roster.officers.get(officer_id)
        return officer.team if officer is not None else ""

    def replace_roster(self, roster: Roster) -> Roster:
        """Dispatch by ``roster`` from now on; open assignments keep their officers."""
        previous, self.roster = self.roster, roster
        return previous

    def _known_team(self, team: str) -> None:
        if team not in {t.id for t in self.rules.table.teams}:
            raise Refused(f"team {team!r} is not in rule table {self.rules.version}")

    def _officers_for(
        self, batch: _Batch, report: Report, zones: tuple[str, ...], teams: Sequence[str | None], at: datetime
    ) -> dict[str, str | None]:
        """The chosen officer of each team that has a roster; teams without one are left out (sent whole)."""
        chosen: dict[str, str | None] = {}
        for team in teams:
            if team is None or not self.roster.team(team):
                continue
            need = Need(team=team, at=at, lat=report.lat, lon=report.lon, zones=zones)
            officer = choose_officer(self.roster, batch.all_units(), need)
            chosen[team] = officer  # an officer is on one team only: no one is chosen twice here
        return chosen

    def _replacement(self, batch: _Batch, incident: Incident, entry: DueEntry, at: datetime) -> str | None:
        if entry.kind is not ev.DeadlineKind.ACK or not self.roster.team(entry.team):
            return None
        held = incident.assignment(entry.team)
        exclude = frozenset((*held.tried, *([held.officer] if held.officer else [])))
        return batch.choose(entry.team, incident, at, exclude)

    def _duplicate_of(self, batch: _Batch, report: Report, category: str | None, at: datetime) -> Incident | None:
        """The open incident this report repeats: same category, close by, recent; the nearest wins."""
        if category is None or report.lat is None or report.lon is None or self.duplicate_radius_m <= 0:
            return None
        candidates = set(self._by_category.get(category, ()))
        candidates.update(i for i, inc in batch.touched.items() if inc.category == category)
        best: tuple[float, int] | None = None
        for incident_id in candidates:
            incident = batch.current(incident_id)
            r = incident.report
            if (
                incident.status not in JOINABLE_STATUSES
                or incident.category != category
                or r.exercise != report.exercise
                or r.lat is None
                or r.lon is None
                or at - incident.last_reported_at > self.duplicate_window
            ):
                continue
            distance = distance_m(report.lat, report.lon, r.lat, r.lon)
            if distance <= self.duplicate_radius_m and (best is None or (distance, incident_id) < best):
                best = (distance, incident_id)
        return batch.current(best[1]) if best else None

    def _fill_waiting(self, batch: _Batch, at: datetime) -> int:
        """After the batch's commands: hand waiting assignments of teams with a freed officer to them."""
        filled = 0
        teams = batch.freed
        batch.freed = set()
        for team in sorted(teams):
            ids = set(self._waiting.get(team, ())) | {
                i for i, inc in batch.touched.items() if any(a.team == team and a.waiting for a in inc.assignments)
            }
            queue = sorted(
                (batch.current(i) for i in ids),
                key=lambda inc: (inc.priority, inc.reported_at, inc.id),
            )
            for incident in queue:
                if not incident.is_open or not incident.has_team(team) or not incident.assignment(team).waiting:
                    continue
                officer = batch.choose(team, incident, at)
                if officer is None:
                    break
                updated, events = assign_officer(incident, team, officer, at, reason="available")
                batch.record(updated, events)
                filled += 1
        return filled

    def replace_rules(self, rules: RuleBook) -> RuleBook:
        """Route new reports by ``rules`` from now on; returns the table it replaces.

        Open incidents keep the deadlines and escalation chain they were dispatched with: those are
        stored with each incident, not looked up in the table again.
        """
        previous, self.rules = self.rules, rules
        return previous

    async def _on_alarm(self) -> None:
        # Forget what was armed: should the alarm ring a hair early, the re-arm must set it again.
        self._armed_for = None
        if self.running:
            await self.fire_due(self.clock.now())

    # -- reads ----------------------------------------------------------------------------

    def open_incidents(self) -> tuple[int, list[Incident]]:
        """The open incidents by id and the sequence number they reflect, taken at one instant.

        The incidents are immutable: the list stays the state as of that sequence number however
        long its reader takes (a board's paged snapshot). The open incidents are usually kept in id
        order already, so the sort only checks it.
        """
        return self.last_seq, sorted(self._open.values(), key=_by_id)

    async def get(self, incident_id: int) -> Incident:
        incident = self._open.get(incident_id) or await self.store.get(incident_id)
        if incident is None:
            raise IncidentNotFound(incident_id)
        return incident

    async def timeline(self, incident_id: int) -> list[StoredEvent]:
        return await self.store.timeline(incident_id)

    async def list_incidents(self, where: IncidentFilter, *, limit: int, offset: int) -> tuple[list[Incident], int]:
        return await self.store.list_incidents(where, limit=limit, offset=offset)

    async def events_since(self, seq: int, *, limit: int) -> list[StoredEvent]:
        return await self.store.events_since(seq, limit=limit)

    # -- the writer -----------------------------------------------------------------------

    async def _change(
        self,
        incident_id: int,
        decide: Callable[[Incident, _Batch], tuple[Incident, list[ev.Event]]],
        expected_version: int | None = None,
    ) -> Incident:
        """The common shape of a command on one incident: check the version the caller saw, let the pure
        core decide, record what it decided. Raises what ``decide`` raises; nothing changes then."""

        def apply(batch: _Batch) -> Incident:
            current = batch.current(incident_id)
            check_version(current, expected_version)
            incident, events = decide(current, batch)
            batch.record(incident, events)
            return incident

        return await self._submit(apply, incident_id=incident_id)

    async def _submit(self, apply: Callable[[_Batch], T], **keys: Any) -> T:
        if self._queue is None or not self.running:
            raise HubStopped("the hub is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Command(apply, future, **keys))
        return await future

    async def _run_writer(self) -> None:
        assert self._queue is not None
        queue = self._queue
        stopping = False
        while not stopping:
            first = await queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._batch_max and not queue.empty():
                command = queue.get_nowait()
                if command is None:
                    stopping = True
                    break
                batch.append(command)
            try:
                await self._process(batch)
            except Exception as exc:
                log.exception("writer batch failed")
                for command in batch:
                    if not command.future.done():
                        command.future.set_exception(exc)
        # Fail whatever arrived after the stop marker rather than leaving callers waiting.
        while not queue.empty():
            leftover = queue.get_nowait()
            if leftover is not None and not leftover.future.done():
                leftover.future.set_exception(HubStopped("the hub stopped"))

    async def _process(self, commands: list[_Command]) -> None:
        try:
            batch, results = await self._attempt(commands, look_up_reports=False)
        except DuplicateReport:
            # A report_id older than the in-memory window came back: redo the batch with a lookup.
            batch, results = await self._attempt(commands, look_up_reports=True)
        self._next_id, self._next_seq = batch.next_id, batch.next_seq

        for incident in batch.touched.values():
            before = batch.originals.get(incident.id)
            if incident.is_open:
                self._open[incident.id] = incident
            else:
                self._open.pop(incident.id, None)
            self._index(incident, before)
            armed = set(_due_entries(before)) if before is not None else set()
            for entry in _due_entries(incident):
                if entry not in armed:
                    self._watch.arm(*entry[1:4], due_at=entry.due_at, step=entry.step)
        self.units.update(batch.units)
        for report_id, incident_id in batch.reports.items():  # new, joined, merged or split reports
            if self._recent_reports.get(report_id) != incident_id:
                self._remember_report(report_id, incident_id)
        self.feed.publish(batch.records)
        self.alarms.apply(batch.changes.events)
        for command, result, error in results:
            if command.future.done():
                continue
            if error is not None:
                command.future.set_exception(error)
            else:
                command.future.set_result(result)
        self._rearm_alarm()

    async def _attempt(
        self, commands: list[_Command], *, look_up_reports: bool
    ) -> tuple[_Batch, list[tuple[_Command, Any, BaseException | None]]]:
        """Apply the commands and commit them as one transaction; raises and changes nothing on failure.

        Report ids are first checked against the recent ones in memory; the store's unique
        constraint catches an older duplicate (``DuplicateReport``), and the batch is then redone
        with ``look_up_reports`` (one ``SELECT ... IN`` for the batch).
        """
        report_ids = [c.report_id for c in commands if c.report_id is not None]
        if look_up_reports and report_ids:
            reports = await self.store.find_reports(report_ids)
        else:
            reports = {r: self._recent_reports[r] for r in report_ids if r in self._recent_reports}
        wanted = {c.incident_id for c in commands if c.incident_id is not None} | set(reports.values())
        wanted.update(i for c in commands for i in c.also)
        missing = [i for i in wanted if i not in self._open]
        loaded = await self.store.load(missing) if missing else {}

        batch = _Batch(self, loaded, reports, self._next_id, self._next_seq)
        results: list[tuple[_Command, Any, BaseException | None]] = []
        for command in commands:
            try:
                results.append((command, command.apply(batch), None))
            except Exception as exc:  # noqa: BLE001 - a refused command fails alone
                results.append((command, None, exc))
        if batch.freed:
            try:
                self._fill_waiting(batch, self.clock.now())
            except Exception:  # the batch's own commands stand; waiting ones wait on
                log.exception("could not hand waiting assignments to free officers")

        changes = batch.finish()
        if changes.events:
            try:
                await self.store.commit(changes)
            except Exception:
                for entry in batch.popped:  # they were not recorded: watch them again
                    self._watch.arm(entry.incident_id, entry.team, entry.kind, entry.due_at)
                raise
        return batch, results

    def _remember_report(self, report_id: str, incident_id: int) -> None:
        self._recent_reports[report_id] = incident_id
        if len(self._recent_reports) > self._recent_reports_max:
            self._recent_reports.popitem(last=False)

    def _still_pending(self, entry: DueEntry) -> bool:
        incident = self._open.get(entry.incident_id)
        if incident is None:
            return False
        assignment = next((a for a in incident.assignments if a.team == entry.team), None)
        if assignment is None:
            return False
        if entry.step:
            step = assignment.escalation(entry.kind.value, entry.step)
            return step is not None and step.state is EscalationState.PENDING and step.due_at == entry.due_at
        deadline = assignment.deadline(entry.kind)
        return deadline is not None and deadline.state is DeadlineState.PENDING and deadline.due_at == entry.due_at

    def _index(self, incident: Incident, before: Incident | None = None) -> None:
        """Keep the duplicate and waiting indexes in step with an incident's latest state."""
        if incident.category is not None:
            ids = self._by_category.setdefault(incident.category, set())
            if incident.status in JOINABLE_STATUSES:
                ids.add(incident.id)
            else:
                ids.discard(incident.id)
        teams = {a.team for a in incident.assignments}
        if before is not None:
            teams.update(a.team for a in before.assignments)
        for team in teams:
            waiting = incident.is_open and incident.has_team(team) and incident.assignment(team).waiting
            if waiting:
                self._waiting.setdefault(team, set()).add(incident.id)
            elif team in self._waiting:
                self._waiting[team].discard(incident.id)

    def _rearm_alarm(self) -> None:
        # Drop entries whose deadline was kept or voided since: the alarm then wakes only for live ones.
        while (entry := self._watch.peek()) is not None and not self._still_pending(entry):
            self._watch.drop_first()
        due = self._watch.next_due()
        if due != self._armed_for:
            self._armed_for = due
            self._alarm.set(due)

    # -- alarms (the board's shared acknowledgement) ----------------------------------------

    async def acknowledge_alarm(self, incident_id: int, alarm_seq: int, at: datetime, actor: str | None) -> Incident:
        """Acknowledge the open alarm raised by event ``alarm_seq``; every board clears it.

        Idempotent: an alarm already acknowledged is answered with the incident and nothing is
        recorded. Raises :class:`UnknownAlarm` when ``alarm_seq`` raised no alarm of this incident
        still open (an unknown seq, or the incident was finished since), or
        :class:`IncidentNotFound`.
        """

        def apply(batch: _Batch) -> Incident:
            current = batch.current(incident_id)
            if self.alarms.was_acknowledged(incident_id, alarm_seq) or _acknowledged_in(batch, incident_id, alarm_seq):
                return current
            if not self.alarms.is_open(incident_id, alarm_seq):
                raise UnknownAlarm(incident_id, alarm_seq)
            incident, events = acknowledge_alarm(current, alarm_seq, at, actor)
            batch.record(incident, events)
            return incident

        return await self._submit(apply, incident_id=incident_id)

    async def _load_alarms(self) -> None:
        """Rebuild the open alarms from the alarm events of every open incident.

        Every open incident, not only those holding a missed deadline: an acknowledgement missed and
        then re-sent to the next officer leaves a pending deadline and an open alarm.
        """
        if self._open:
            self.alarms.apply(await self.store.events_of_incidents(list(self._open), ALARM_EVENTS))


class UnknownAlarm(LookupError):
    def __init__(self, incident_id: int, alarm_seq: int) -> None:
        super().__init__(f"incident {incident_id} has no open alarm {alarm_seq}")
        self.incident_id = incident_id
        self.alarm_seq = alarm_seq


def _acknowledged_in(batch: _Batch, incident_id: int, alarm_seq: int) -> bool:
    """Whether this very batch already acknowledges the alarm (two boards clicking at once)."""
    return any(
        orjson.loads(e.payload)["alarm_seq"] == alarm_seq
        for e in batch.changes.events
        if e.type == "AlarmAcknowledged" and e.incident_id == incident_id
    )
