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
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import orjson

from dispatcher.alarm import Alarm
from dispatcher.alarms import OpenAlarms
from dispatcher.clock import Clock
from dispatcher.core import events as ev
from dispatcher.core.deadlines import DeadlineWatch, DueEntry
from dispatcher.core.incidents import (
    DeadlineState,
    Incident,
    Report,
    acknowledge_alarm,
    add_note,
    finish_incident,
    miss_deadline,
    move_unit,
    open_incident,
)
from dispatcher.core.lifecycle import IncidentAction, UnitAction
from dispatcher.feed import EventFeed, FeedRecord
from dispatcher.store import Changes, DuplicateReport, IncidentFilter, IncidentStore, StoredEvent
from rules.matcher import RoutingInput, RuleBook

log = logging.getLogger(__name__)

T = TypeVar("T")


class IncidentNotFound(LookupError):
    def __init__(self, incident_id: int) -> None:
        super().__init__(f"no incident {incident_id}")
        self.incident_id = incident_id


class HubStopped(RuntimeError):
    """The hub is not running (not started yet, or shutting down)."""


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    incident: Incident
    created: bool


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

    def current(self, incident_id: int) -> Incident:
        incident = self.touched.get(incident_id) or self.hub._open.get(incident_id) or self.loaded.get(incident_id)
        if incident is None:
            raise IncidentNotFound(incident_id)
        return incident

    def record(self, incident: Incident, events: Sequence[ev.Event], *, created: bool = False) -> None:
        if not events:
            return
        if created:
            self.changes.created.append(incident)
            self.created_ids.add(incident.id)
        elif incident.id not in self.originals and incident.id not in self.created_ids:
            self.originals[incident.id] = self.current(incident.id)
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

    def finish(self) -> Changes:
        self.changes.created = [self.touched[i.id] for i in self.changes.created]
        self.changes.updated = [
            (self.originals[iid], incident) for iid, incident in self.touched.items() if iid not in self.created_ids
        ]
        return self.changes


def feed_message(seq: int, type_name: str, payload: str) -> str:
    """The JSON text a board receives for one event (the payload is spliced in, not re-encoded)."""
    return f'{{"kind":"event","seq":{seq},"type":"{type_name}","data":{payload}}}'


@dataclass(slots=True)
class _Command:
    apply: Callable[[_Batch], Any]
    future: asyncio.Future[Any]
    report_id: str | None = None
    incident_id: int | None = None


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
    ) -> None:
        self.store = store
        self.rules = rules
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
        self.alarms = OpenAlarms()  # the board's open alarms (see dispatcher/alarms.py)

    # -- life -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._writer is not None and not self._writer.done()

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    async def start(self) -> None:
        """Open the store, load open incidents, re-arm every pending deadline, start the writer.

        Deadlines that fell due while the process was down fire at once, exactly once: their
        pending state is only changed by the writer in the same transaction as the escalation.
        """
        await self.store.open()
        last_id, last_seq = await self.store.last_ids()
        self._next_id, self._next_seq = last_id + 1, last_seq + 1
        self.feed.last_seq = last_seq
        self._open = {i.id: i for i in await self.store.load_open()}
        for incident in self._open.values():
            self._arm(incident)
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
        decision = self.rules.route(
            RoutingInput(
                category=report.category,
                description=report.description,
                reporter_kind=report.reporter_kind,
                zone=report.zone,
                lat=report.lat,
                lon=report.lon,
                severity=report.severity,
                at=at,
            )
        )

        def apply(batch: _Batch) -> ReportOutcome:
            known = batch.reports.get(report.report_id)
            if known is not None:
                return ReportOutcome(batch.current(known), created=False)
            incident_id = batch.next_id
            batch.next_id += 1
            incident, events = open_incident(incident_id, report, decision, at)
            batch.reports[report.report_id] = incident_id
            batch.record(incident, events, created=True)
            return ReportOutcome(incident, created=True)

        return await self._submit(apply, report_id=report.report_id)

    async def move_unit(
        self, incident_id: int, team: str, action: UnitAction, at: datetime, actor: str | None = None
    ) -> Incident:
        """Advance one team's assignment.

        Raises ``IllegalTransition``, ``UnknownAssignment`` or :class:`IncidentNotFound`; nothing changes then.
        """

        def apply(batch: _Batch) -> Incident:
            incident, events = move_unit(batch.current(incident_id), team, action, at, actor)
            batch.record(incident, events)
            return incident

        return await self._submit(apply, incident_id=incident_id)

    async def finish(
        self, incident_id: int, action: IncidentAction, at: datetime, actor: str | None = None, reason: str = ""
    ) -> Incident:
        """Close or cancel an incident; raises ``IllegalTransition`` or :class:`IncidentNotFound`."""

        def apply(batch: _Batch) -> Incident:
            incident, events = finish_incident(batch.current(incident_id), action, at, actor, reason)
            batch.record(incident, events)
            return incident

        return await self._submit(apply, incident_id=incident_id)

    async def note(self, incident_id: int, text: str, at: datetime, author: str | None = None) -> Incident:
        def apply(batch: _Batch) -> Incident:
            incident, events = add_note(batch.current(incident_id), text, author, at)
            batch.record(incident, events)
            return incident

        return await self._submit(apply, incident_id=incident_id)

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
                incident, events = miss_deadline(current, entry.team, entry.kind, at)
                if events:
                    batch.record(incident, events)
                    missed += 1
            return missed

        return int(await self._submit(apply))

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
        """The open incidents and the sequence number they reflect, taken at one instant."""
        return self.last_seq, sorted(self._open.values(), key=lambda i: i.id)

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
        changes = batch.changes
        self._next_id, self._next_seq = batch.next_id, batch.next_seq

        for incident in batch.touched.values():
            if incident.is_open:
                self._open[incident.id] = incident
            else:
                self._open.pop(incident.id, None)
        for incident in changes.created:
            self._arm(incident)
            self._remember_report(incident.report.report_id, incident.id)
        self.feed.publish(batch.records)
        self.alarms.apply(changes.events)
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
        missing = [i for i in wanted if i not in self._open]
        loaded = await self.store.load(missing) if missing else {}

        batch = _Batch(self, loaded, reports, self._next_id, self._next_seq)
        results: list[tuple[_Command, Any, BaseException | None]] = []
        for command in commands:
            try:
                results.append((command, command.apply(batch), None))
            except Exception as exc:  # noqa: BLE001 - a refused command fails alone
                results.append((command, None, exc))

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
        deadline = next((a.deadline(entry.kind) for a in incident.assignments if a.team == entry.team), None)
        return deadline is not None and deadline.state is DeadlineState.PENDING

    def _arm(self, incident: Incident) -> None:
        for team, deadline in incident.pending_deadlines():
            self._watch.arm(incident.id, team, deadline.kind, deadline.due_at)

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
        """Rebuild the open alarms from the log of the open incidents that missed a deadline."""
        for incident in self._open.values():
            if any(d.state is DeadlineState.MISSED for a in incident.assignments for d in a.deadlines):
                self.alarms.apply(await self.store.timeline(incident.id))


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
