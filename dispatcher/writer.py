"""The writer: the one task through which every change goes, a batch at a time.

Commands queue up (bounded, so intake slows down instead of growing memory); the writer takes
whatever has queued, applies each command to a :class:`Batch` in order, commits the whole group in
one transaction, and only then lets the hub follow (cache, deadlines, feed) and answers the callers.
While one batch commits, the next batch of new reports is applied on top of it (see ``_next``).
A command the lifecycle refuses fails on its own and leaves no trace. When the database refuses a
value of the group, the group is committed again in halves until only the command that carries it
is refused; when the database cannot be reached, the group fails and changes nothing. Nothing is
published before it is committed, and the writer outlives whatever a command does.

Runs on one asyncio event loop; call every method from that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from dispatcher.core import events as ev
from dispatcher.core.deadlines import DueEntry
from dispatcher.core.incidents import Incident, Refused, Report
from dispatcher.core.lifecycle import AssignmentState, IllegalTransition
from dispatcher.core.roster import Need, Roster, UnitState, UnitStatus, choose_officer, status_after_task_change
from dispatcher.feed import FeedRecord, feed_message
from dispatcher.open_incidents import OpenIncidents
from dispatcher.stats import HubStats
from dispatcher.store import Changes, CommitRefused, DuplicateReport, IncidentStore, StoredEvent, StoreUnavailable
from rules.matcher import RuleBook

log = logging.getLogger(__name__)

T = TypeVar("T")


class IncidentNotFound(LookupError):
    def __init__(self, incident_id: int) -> None:
        super().__init__(f"no incident {incident_id}")
        self.incident_id = incident_id


class HubStopped(RuntimeError):
    """The hub is not running (not started yet, or shutting down)."""


@dataclass(slots=True)
class Batch:
    """The working state of one writer batch: what it read, changed and will publish.

    Commands read incidents through :meth:`current` (this batch's version first, then the open
    index, then what the writer loaded for it) and record what the core decided with :meth:`record`.
    """

    open: OpenIncidents
    roster: Roster
    loaded: dict[int, Incident]
    reports: dict[str, int]
    next_id: int
    next_seq: int
    changes: Changes = field(default_factory=Changes)
    touched: dict[int, Incident] = field(default_factory=dict)
    originals: dict[int, Incident] = field(default_factory=dict)
    records: list[FeedRecord] = field(default_factory=list)
    #: The batch's events as the core made them, with their seq: after the commit they stay typed for the
    #: hub's own readers; ``changes.events`` and ``records`` are their stored and published encodings.
    facts: list[tuple[int, ev.Event | ev.TownshipEvent]] = field(default_factory=list)
    popped: list[DueEntry] = field(default_factory=list)  # deadlines taken off the watch by this batch
    created_ids: set[int] = field(default_factory=set)
    units: dict[str, UnitState] = field(default_factory=dict)  # officers changed in this batch
    freed: set[str] = field(default_factory=set)  # teams where an officer may have become free
    roster_in_force: Roster | None = None  # a roster this batch puts in force (the hub takes it after the commit)
    rules_in_force: RuleBook | None = None  # a rule table this batch puts in force (likewise)
    #: The batch being committed while this one was applied (see :class:`Writer`): what it changed is read
    #: first, as the index will hold it once it lands. ``None`` when the index already holds everything.
    prior: Batch | None = None

    def current(self, incident_id: int) -> Incident:
        incident = self.touched.get(incident_id)
        if incident is None and self.prior is not None:
            incident = self.prior.touched.get(incident_id)
        incident = incident or self.open.get(incident_id) or self.loaded.get(incident_id)
        if incident is None:
            raise IncidentNotFound(incident_id)
        return incident

    def unit(self, officer_id: str) -> UnitState:
        found = self.units.get(officer_id)
        if found is None and self.prior is not None:
            found = self.prior.units.get(officer_id)
        return found or self.open.units.get(officer_id) or UnitState()

    def pending(self) -> Iterator[tuple[int, Incident]]:
        """The incidents changed but not yet in the index: the prior batch's, then this one's (which win)."""
        if self.prior is not None:
            yield from ((i, inc) for i, inc in self.prior.touched.items() if i not in self.touched)
        yield from self.touched.items()

    def all_units(self) -> _Units:
        return _Units(self)

    def team_of(self, officer_id: str) -> str:
        officer = self.roster.officers.get(officer_id)
        return officer.team if officer is not None else ""

    def choose(
        self, team: str, incident: Incident | Report, at: datetime, exclude: frozenset[str] = frozenset()
    ) -> str | None:
        """The officer of ``team`` the roster would send now (see :func:`choose_officer`), or ``None``."""
        report = incident.report if isinstance(incident, Incident) else incident
        zones = incident.zones if isinstance(incident, Incident) else ()
        need = Need(team=team, at=at, lat=report.lat, lon=report.lon, zones=zones, exclude=exclude)
        return choose_officer(self.roster, self.all_units(), need)

    def record(self, incident: Incident, events: Sequence[ev.Event], *, created: bool = False) -> None:
        """Take the incident as the core left it, with the events that say why (nothing when none)."""
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
        seq = self.next_seq
        store, publish, keep = self.changes.events.append, self.records.append, self.facts.append
        for event in events:
            type_name = type(event).__name__
            payload = ev.to_json(event)
            incident_id = event.incident_id
            store(StoredEvent(seq=seq, incident_id=incident_id, type=type_name, at=event.at, payload=payload))
            publish(FeedRecord(seq, incident_id, feed_message(seq, type_name, payload)))
            keep((seq, event))
            seq += 1
        self.next_seq = seq

    def record_township(self, event: ev.TownshipEvent) -> None:
        """Log a fact of the township's log (no incident): same log, same ``seq``, ``incident_id`` None."""
        seq = self.next_seq
        self.next_seq += 1
        type_name = type(event).__name__
        payload = ev.to_json(event)
        self.changes.events.append(StoredEvent(seq=seq, incident_id=None, type=type_name, at=event.at, payload=payload))
        self.records.append(FeedRecord(seq, None, feed_message(seq, type_name, payload)))
        self.facts.append((seq, event))

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
                self.freed.add(self.team_of(officer))
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


#: A command's expected refusals (the lifecycle's, the core's), answered to its caller without a traceback.
_REFUSALS = (IllegalTransition, Refused)

_NO_UNITS: dict[str, UnitState] = {}

#: Commands applied beside a commit between two turns of the event loop (see ``Writer._overlapping``).
_TURN = 64

_MOVING = {AssignmentState.EN_ROUTE: UnitStatus.EN_ROUTE, AssignmentState.ON_SCENE: UnitStatus.ON_SCENE}


class _Units(Mapping[str, UnitState]):
    """A read-only mapping view over the index's units with the batch's changes on top."""

    __slots__ = ("_changed", "_known", "_prior")

    def __init__(self, batch: Batch) -> None:
        # The maps themselves (each is changed in place, never replaced): read once an officer while choosing.
        self._changed = batch.units
        self._prior: dict[str, UnitState] = batch.prior.units if batch.prior is not None else _NO_UNITS
        self._known = batch.open.units

    def __getitem__(self, officer_id: str) -> UnitState:
        found: UnitState | None = self.get(officer_id)
        if found is None:
            raise KeyError(officer_id)
        return found

    def get(self, officer_id: str, default: Any = None) -> Any:  # without raising: most officers are idle
        return self._changed.get(officer_id) or self._prior.get(officer_id) or self._known.get(officer_id) or default

    def __iter__(self) -> Iterator[str]:
        return iter(self._known.keys() | self._prior.keys() | self._changed.keys())

    def __len__(self) -> int:
        return len(self._known.keys() | self._prior.keys() | self._changed.keys())


@dataclass(slots=True)
class Command:
    """One caller's change: ``apply`` runs inside a batch; the keys say what it reads from the store."""

    apply: Callable[[Batch], Any]
    future: asyncio.Future[Any]
    report_id: str | None = None
    incident_id: int | None = None
    also: tuple[int, ...] = ()  # further incidents the command reads (a merge's target)
    #: Needs no commit of its own (an audit entry): a batch of only such commands waits up to ``light_hold_s`` for
    #: a command to ride with, so that a lone report's audit entry costs no second commit (nor its sync).
    light: bool = False
    #: Reads nothing but what a batch carries (a new report: the open index and the report ids through the
    #: batch, the officers' states): may be applied while the batch before it is still being committed.
    overlaps: bool = False


Outcome = tuple[Command, Any, BaseException | None]


@dataclass(slots=True)
class _InFlight:
    """A batch applied and handed to the store; its commit (``None``: nothing to store) runs as the writer goes on."""

    commands: list[Command]
    batch: Batch
    results: list[Outcome]
    commit: asyncio.Task[None] | None


class Writer:
    """The single writer task over ``store``; the hub gives it three steps of its own.

    ``roster`` is read when a batch starts; ``before_commit(batch)`` runs after the batch's commands
    (the hub hands freed officers their waiting work there); ``after_commit(batch)`` runs once the
    batch is committed, before any caller hears (the hub's index, deadlines and feed follow there);
    ``restore(entries)`` gets back the deadlines a batch that was not committed had taken.
    """

    def __init__(
        self,
        *,
        store: IncidentStore,
        open_incidents: OpenIncidents,
        roster: Callable[[], Roster],
        before_commit: Callable[[Batch], None],
        after_commit: Callable[[Batch], None],
        restore: Callable[[list[DueEntry]], None],
        queue_size: int = 10_000,
        batch_max: int = 512,
        light_hold_s: float = 0.05,
        stats: HubStats | None = None,
    ) -> None:
        self._store = store
        self._open = open_incidents
        self._roster = roster
        self._before_commit = before_commit
        self._after_commit = after_commit
        self._restore = restore
        self._queue_size = queue_size
        self._batch_max = batch_max
        self._light_hold_s = light_hold_s
        self.stats = stats or HubStats()
        self._queue: asyncio.Queue[Command | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.next_id = 1
        self.next_seq = 1

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def may_exist(self, incident_id: int) -> bool:
        """Ids are handed out in order from 1: any other cannot name an incident (nor reach the database)."""
        return 0 < incident_id < self.next_id

    def start(self, last_id: int, last_seq: int) -> None:
        self.next_id, self.next_seq = last_id + 1, last_seq + 1
        self._queue = asyncio.Queue(maxsize=self._queue_size)
        self._stopping = False
        self._start_task()

    async def stop(self, timeout_s: float) -> None:
        """Finish what is queued (up to ``timeout_s``), then end the task; later submissions get HubStopped."""
        self._stopping = True
        if self._queue is not None and self._task is not None:
            await self._queue.put(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._task = None

    async def submit(self, apply: Callable[[Batch], T], **keys: Any) -> T:
        """Queue a command and wait until its batch is committed; raises what ``apply`` raised, or the store's error."""
        if self._queue is None or not self.running:
            raise HubStopped("the hub is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(Command(apply, future, **keys))
        try:
            return await future
        finally:
            # A refused command's exception, raised here, has this frame in its traceback: holding the future
            # (which holds the exception) too would make a cycle, freed only by a full garbage collection.
            del future

    async def submit_many(
        self, commands: Sequence[tuple[Callable[[Batch], T], dict[str, Any]]]
    ) -> list[T | BaseException]:
        """Queue ``commands`` (each ``(apply, keys)`` as :meth:`submit` takes them) one after another, then wait
        for all: they ride in one batch when it has room (``batch_max``), else in consecutive ones.

        Answers in order what each ``apply`` returned, or the exception it or its commit raised (the store
        refusing a value fails only the command carrying it). Raises HubStopped before queueing anything.
        """
        if self._queue is None or not self.running:
            raise HubStopped("the hub is not running")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[T]] = []
        for apply, keys in commands:
            future: asyncio.Future[T] = loop.create_future()
            await self._queue.put(Command(apply, future, **keys))
            futures.append(future)
        return await asyncio.gather(*futures, return_exceptions=True)

    # -- the task ---------------------------------------------------------------------------

    def _start_task(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hub-writer")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Start the task again should it ever end other than by :meth:`stop` (a defect, logged loudly)."""
        if self._stopping or task.cancelled():
            return
        log.critical("the hub's writer ended unexpectedly; starting it again", exc_info=task.exception())
        self._start_task()

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        stopping = False
        flight: _InFlight | None = None  # the batch being committed, answered when the next one is applied
        current: list[Command] = []  # the batch being applied
        try:
            while not stopping:
                if flight is not None and queue.empty():  # nothing to apply meanwhile: answer it now
                    await self._land(flight)
                    flight = None
                first = await queue.get()
                if first is None:
                    break
                batch = [first]
                stopping = self._take_queued(queue, batch)
                while not stopping and len(batch) < self._batch_max and all(c.light for c in batch):
                    # Only audit entries: wait a little for a command to commit with (the next report, at 50 a
                    # second), then take what queued behind it; alone after the hold.
                    if flight is not None:
                        await self._land(flight)
                        flight = None
                    try:
                        async with asyncio.timeout(self._light_hold_s):
                            command = await queue.get()  # (a cancelled get loses no item)
                    except TimeoutError:
                        break
                    if command is None:
                        stopping = True
                        break
                    batch.append(command)
                    stopping = self._take_queued(queue, batch)
                current = batch
                flight = await self._next(batch, flight)
                current = []
            if flight is not None:
                await self._land(flight)
                flight = None
        except asyncio.CancelledError:
            if flight is not None:  # stopped past its timeout: the batch in flight is not answered as stored
                if flight.commit is not None:
                    flight.commit.cancel()
                self._restore(flight.batch.popped)
                _fail(flight.commands, lambda: HubStopped("the hub stopped"))
            _fail(current, lambda: HubStopped("the hub stopped"))
            raise
        # Fail whatever arrived after the stop marker rather than leaving callers waiting.
        while not queue.empty():
            leftover = queue.get_nowait()
            if leftover is not None and not leftover.future.done():
                leftover.future.set_exception(HubStopped("the hub stopped"))

    def _take_queued(self, queue: asyncio.Queue[Command | None], batch: list[Command]) -> bool:
        """Add what is queued to ``batch`` (up to ``batch_max``); whether the stop marker came."""
        while len(batch) < self._batch_max and not queue.empty():
            command = queue.get_nowait()
            if command is None:
                return True
            batch.append(command)
        return False

    # -- one batch after another, two at a time --------------------------------------------
    #
    # A batch is applied (on this loop, holding the GIL) and then committed (on the store's thread or
    # connection). While batch k commits, batch k+1 of new reports and audit entries is applied on top of
    # it (``Batch.prior``: k's changes are read first); k+1's commit starts only once k is committed and
    # answered. Should k fail, k+1 is dropped unapplied (its deadlines given back) and applied again after
    # k's commands were committed apart, refused or failed, as a lone batch would have been. Any other
    # command, or a batch that needs the store read first, waits for k to land: it sees only committed state.

    async def _next(self, commands: list[Command], flight: _InFlight | None) -> _InFlight | None:
        """Apply ``commands`` as the next batch and start its commit; ``flight`` is answered on the way."""
        try:
            if flight is not None:
                await asyncio.sleep(0)  # the flight's commit starts (its thread or connection works from now)
                try:
                    overlapped = await self._overlapping(commands, flight)
                except Exception:  # a defect: apply them again once the flight landed, where it is answered
                    log.exception("could not apply a batch beside the one being committed")
                    overlapped = None
                try:
                    landed = await self._land(flight)
                except BaseException:
                    if overlapped is not None:
                        self._restore(overlapped[0].popped)
                    raise
                flight = None
                if overlapped is not None:
                    if landed:
                        self.stats.batches_applied["overlapped"] += 1
                        return self._launch(commands, *overlapped)
                    self.stats.batches_applied["again"] += 1
                    self._restore(overlapped[0].popped)  # applied on a batch that was not committed: again
            try:
                batch, results = await self._apply(commands, look_up_reports=False)
            except Exception as exc:  # noqa: BLE001 - the store could not be read: answered by _recover
                await self._recover(commands, exc, looked_up=False)
                return None
            self.stats.batches_applied["after"] += 1
            return self._launch(commands, batch, results)
        except Exception:  # a defect of the hub itself: its callers fail, the writer goes on
            log.exception("writer batch failed")
            for failed in (flight.commands if flight is not None else [], commands):
                _fail(failed, lambda: RuntimeError("the command failed inside the dispatcher; see the server log"))
            return None

    async def _overlapping(self, commands: list[Command], flight: _InFlight) -> tuple[Batch, list[Outcome]] | None:
        """Apply ``commands`` on top of ``flight`` while it commits, when they may be (else ``None``, nothing done).

        The loop gets a turn every :data:`_TURN` commands: a commit on the loop itself (PostgreSQL's) goes on
        meanwhile, and so do the requests. Nothing another task does can change what the batch reads: the
        index changes only when a batch lands, and this task lands them.
        """
        prior = flight.batch
        if flight.commit is None or prior.roster_in_force is not None or prior.rules_in_force is not None:
            return None
        if not all(c.overlaps or c.light for c in commands):
            return None
        reports = self._known_reports(commands, prior)
        loaded = self._from_memory(set(reports.values()), prior)
        if loaded is None:  # an incident only the store holds: read it once the batch in flight landed
            return None
        batch = Batch(self._open, self._roster(), loaded, reports, prior.next_id, prior.next_seq, prior=prior)
        results: list[Outcome] = []
        try:
            for start in range(0, len(commands), _TURN):
                if start:
                    await asyncio.sleep(0)
                self._apply_each(commands[start : start + _TURN], batch, results)
            self._ready(batch)
        except BaseException:
            self._restore(batch.popped)  # not recorded: watched again, chain steps included
            raise
        return batch, results

    def _launch(self, commands: list[Command], batch: Batch, results: list[Outcome]) -> _InFlight:
        """Start the commit of an applied batch (none when it has nothing to store)."""
        batch.prior = None  # landed; and the batches applied on this one read only this one's changes
        changes = batch.changes
        commit = None
        if changes.events or changes.units or changes.audit:  # a device's status or position makes no event
            commit = asyncio.ensure_future(self._commit(changes, len(commands)))
        return _InFlight(commands, batch, results, commit)

    async def _commit(self, changes: Changes, size: int) -> None:
        started = time.perf_counter()
        await self._store.commit(changes)
        self.stats.commit_seconds.observe(time.perf_counter() - started)
        self.stats.batch_size.observe(size)

    async def _land(self, flight: _InFlight) -> bool:
        """Wait for ``flight``'s commit, then let the hub follow and answer its callers; whether it was committed.

        A batch that could not be committed whole is handled as :meth:`_process` does (and ``False``).
        """
        if flight.commit is not None:
            try:
                await flight.commit
            except Exception as exc:  # noqa: BLE001 - every failure of a commit is answered to its callers
                self._restore(flight.batch.popped)  # not recorded: watched again, chain steps included
                await self._recover(flight.commands, exc, looked_up=False)
                return False
        self._answer(flight.batch, flight.results)
        return True

    async def _process(self, commands: list[Command], *, look_up_reports: bool = False) -> None:
        """Commit ``commands`` as one batch and answer them; on a refused value, commit them apart.

        Each caller gets an exception object of its own: a caller (the alarm's scheduler, for one)
        may clear the frames of the traceback it receives, and a shared one would reach the writer's.
        """
        try:
            batch, results = await self._attempt(commands, look_up_reports=look_up_reports)
        except Exception as exc:  # noqa: BLE001 - answered to the callers by _recover
            await self._recover(commands, exc, looked_up=look_up_reports)
            return
        self._answer(batch, results)

    async def _recover(self, commands: list[Command], exc: Exception, *, looked_up: bool) -> None:
        """``commands`` were not committed together (``exc``): fail them, redo them with a lookup, or apart."""
        if isinstance(exc, StoreUnavailable):
            self.stats.commit_failures["unavailable"] += 1
            log.warning("batch of %d commands not stored: %s", len(commands), exc)
            reason = str(exc)
            _fail(commands, lambda: StoreUnavailable(reason))
            return
        if isinstance(exc, DuplicateReport) and not looked_up:
            # A report_id older than the in-memory window came back: redo the batch with a lookup.
            await self._process(commands, look_up_reports=True)
            return
        # A value the database refused, or a defect: isolate it.
        if len(commands) == 1:
            self.stats.commit_failures["refused"] += 1
            log.warning("command refused by the store: %s: %s", type(exc).__name__, exc, exc_info=exc)
            message = str(exc) if isinstance(exc, CommitRefused) else "the command could not be stored"
            _fail(commands, lambda: CommitRefused(message))
            return
        middle = len(commands) // 2
        await self._process(commands[:middle])
        await self._process(commands[middle:])

    def _answer(self, batch: Batch, results: list[Outcome]) -> None:
        """A batch is committed: the writer's counters and the index follow, then the hub, then the callers hear."""
        self.next_id, self.next_seq = batch.next_id, batch.next_seq
        for report_id, incident_id in batch.reports.items():  # new, joined, merged or split reports
            self._open.remember_report(report_id, incident_id)
        self._after_commit(batch)
        for command, result, error in results:
            if command.future.done():
                continue
            if error is not None:
                command.future.set_exception(error)
            else:
                command.future.set_result(result)

    async def _attempt(self, commands: list[Command], *, look_up_reports: bool) -> tuple[Batch, list[Outcome]]:
        """Apply the commands and commit them as one transaction; raises and changes nothing on failure."""
        batch, results = await self._apply(commands, look_up_reports=look_up_reports)
        changes = batch.changes
        try:
            if changes.events or changes.units or changes.audit:
                await self._commit(changes, len(commands))
        except BaseException:
            self._restore(batch.popped)
            raise
        return batch, results

    async def _apply(self, commands: list[Command], *, look_up_reports: bool) -> tuple[Batch, list[Outcome]]:
        """Read what the commands need and apply them to a new batch (on the committed state).

        Report ids are first checked against the recent ones in memory; the store's unique key on
        every report id ever taken catches an older one (``DuplicateReport``), and the batch is then
        redone with ``look_up_reports`` (one ``SELECT ... IN`` for the batch).
        """
        report_ids = [c.report_id for c in commands if c.report_id is not None]
        if look_up_reports and report_ids:
            reports = await self._store.find_reports(report_ids)
        else:
            reports = self._known_reports(commands, None)
        wanted = {c.incident_id for c in commands if c.incident_id is not None} | set(reports.values())
        wanted.update(i for c in commands for i in c.also)
        loaded: dict[int, Incident] = {}
        missing = []
        for i in wanted:
            if self._open.get(i) is None and self.may_exist(i):
                finished = self._open.finished(i)
                if finished is not None:
                    loaded[i] = finished
                else:
                    missing.append(i)
        if missing:
            loaded.update(await self._store.load(missing))
        batch = Batch(self._open, self._roster(), loaded, reports, self.next_id, self.next_seq)
        return self._apply_to(commands, batch)

    def _known_reports(self, commands: list[Command], prior: Batch | None) -> dict[str, int]:
        """The commands' report ids already taken, as memory knows them (the batch in flight's first)."""
        known: dict[str, int] = {}
        for command in commands:
            report_id = command.report_id
            if report_id is None:
                continue
            found = prior.reports.get(report_id) if prior is not None else None
            if found is None:
                found = self._open.recent_report(report_id)
            if found is not None:
                known[report_id] = found
        return known

    def _from_memory(self, wanted: set[int], prior: Batch) -> dict[int, Incident] | None:
        """The incidents of ``wanted`` not open nor in ``prior``, from the recently finished (``None``: one is not)."""
        loaded: dict[int, Incident] = {}
        for i in wanted:
            if i in prior.touched or self._open.get(i) is not None or not self.may_exist(i):
                continue
            finished = self._open.finished(i)
            if finished is None:
                return None
            loaded[i] = finished
        return loaded

    def _apply_to(self, commands: list[Command], batch: Batch) -> tuple[Batch, list[Outcome]]:
        """Apply each command to ``batch`` in order (a refused one fails alone), then ready its changes."""
        results: list[Outcome] = []
        try:
            self._apply_each(commands, batch, results)
            self._ready(batch)
        except BaseException:
            self._restore(batch.popped)  # not recorded: watched again, chain steps included
            raise
        return batch, results

    @staticmethod
    def _apply_each(commands: list[Command], batch: Batch, results: list[Outcome]) -> None:
        for command in commands:
            try:
                results.append((command, command.apply(batch), None))
            except Exception as exc:  # noqa: BLE001 - a refused command fails alone
                if isinstance(exc, _REFUSALS):
                    # The lifecycle's answer needs no traceback, and its traceback (these frames, which hold
                    # the batch and the results, which hold the exception) was a reference cycle: each refusal
                    # kept its batch alive until a full collection of the garbage collector. So was a hidden
                    # context's (``raise ... from None`` after a KeyError: its frames reach this one).
                    exc = exc.with_traceback(None)
                    if exc.__suppress_context__:
                        exc.__context__ = None
                results.append((command, None, exc))

    def _ready(self, batch: Batch) -> None:
        """After the commands: freed officers take waiting work (the hub's step), and the changes are made."""
        if batch.freed:
            try:
                self._before_commit(batch)
            except Exception:  # the batch's own commands stand; waiting ones wait on
                log.exception("could not hand waiting assignments to free officers")
        batch.finish()


def _fail(commands: Sequence[Command], error: Callable[[], BaseException]) -> None:
    """Fail every command still waiting, each with an exception object of its own."""
    for command in commands:
        if not command.future.done():
            command.future.set_exception(error())
