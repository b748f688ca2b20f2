"""The hub: the command room's one write path, around the pure domain core.

It is the facade the gateways call (every command and read below), built from three rooms with one
job each:

- the **writer** (:mod:`dispatcher.writer`): the queue, the batch, the commit, the answers;
- the **open-incident index** (:mod:`dispatcher.open_incidents`): the cache of open incidents, the
  officers' live state, and what duplicates and waiting assignments are looked up by;
- the **deadline scheduler** (:mod:`dispatcher.deadline_scheduler`): the heap of pending deadlines and
  escalation steps, and the alarm clock set for the earliest.

Each command here is a closure that reads a :class:`~dispatcher.writer.Batch`, lets the pure core
decide (:mod:`dispatcher.core.incidents`; duplicates in :mod:`dispatcher.core.duplicates`, the choice
of an officer in :mod:`dispatcher.core.roster`) and records what it decided; the writer commits it. After
each commit the hub lets the index, the scheduler, the feed and the board's alarms follow.

Runs on one asyncio event loop; call every method from that loop.
"""

from __future__ import annotations

import gc
import heapq
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from dispatcher.alarm import Alarm
from dispatcher.alarms import ALARM_EVENTS, OpenAlarms
from dispatcher.assessment import (
    UNIT_KINDS,
    Assessment,
    Bonus,
    BonusRefused,
    approval_refusal,
    bonuses_from,
    with_bonuses,
)
from dispatcher.audit_entries import AuditEntry
from dispatcher.briefing import Briefing, Document, Figure, IncidentLine, Period, Unit
from dispatcher.clock import Clock
from dispatcher.core import closing
from dispatcher.core import events as ev
from dispatcher.core.deadlines import DueEntry
from dispatcher.core.duplicates import find_duplicate
from dispatcher.core.handover import summarise
from dispatcher.core.incidents import (
    NO_TEAM,
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
from dispatcher.core.lifecycle import ASSIGNMENT_MOVES, AssignmentState, IncidentAction, UnitAction
from dispatcher.core.roster import (
    Roster,
    Shift,
    UnitState,
    UnitStatus,
    choose_officers,
    status_after_task_change,
)
from dispatcher.deadline_scheduler import DeadlineScheduler
from dispatcher.feed import EventFeed, feed_message
from dispatcher.open_incidents import OpenIncidents
from dispatcher.stats import HubStats
from dispatcher.store import (
    HandoverRecord,
    IncidentFilter,
    IncidentStore,
    RosterRecord,
    RuleTableRecord,
    StoredEvent,
)
from dispatcher.writer import Batch, HubStopped, IncidentNotFound, Writer
from rules.matcher import RoutingInput, RuleBook
from rules.scoring import ScoringTable

if TYPE_CHECKING:
    from rules.messages import MessageModel

__all__ = [
    "HandoverNotFound",
    "Hub",
    "HubStopped",
    "IncidentNotFound",
    "ReportOutcome",
    "UnknownAlarm",
    "UnknownOfficer",
    "feed_message",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Notes' client keys remembered in memory (older ones are found in the timeline).
_NOTE_KEYS_KEPT = 100_000
#: The state each step of a team leads to, and the forward order of the working states.
_STEP_TARGET = {action: target for (_, action), target in ASSIGNMENT_MOVES.items() if isinstance(action, UnitAction)}
_FORWARD = (AssignmentState.ACKNOWLEDGED, AssignmentState.EN_ROUTE, AssignmentState.ON_SCENE, AssignmentState.RESOLVED)


class UnknownOfficer(LookupError):
    def __init__(self, officer_id: str) -> None:
        super().__init__(f"officer {officer_id!r} is not on the roster")
        self.officer_id = officer_id


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """``created``: a new incident; ``joined``: the report attached to an open duplicate; neither: a retry."""

    incident: Incident
    created: bool
    joined: bool = False


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
        audit_hold_s: float = 0.05,
        recent_reports: int = 100_000,
        roster: Roster | None = None,
        duplicate_radius_m: float = 200.0,
        duplicate_window: timedelta = timedelta(minutes=30),
        alarm_retry: timedelta = timedelta(seconds=2),
        messages: MessageModel | None = None,
    ) -> None:
        """``messages``: a message model (:mod:`rules.messages`) that decides a description's category where the
        keywords are weak or tie; every rule table the hub routes by gets it, now and when another is put in
        force. ``audit_hold_s``: how long an audit entry with nothing else queued waits for a change to commit
        with (:meth:`record_audit`)."""
        self.store = store
        self.messages = messages
        self.rules = rules
        self.roster = roster or Roster(version="none", timezone=rules.table.timezone, officers={})
        self.duplicate_radius_m = duplicate_radius_m
        self.duplicate_window = duplicate_window
        self.clock = clock
        self.feed = feed
        self.alarms = OpenAlarms()  # the board's open alarms (see dispatcher/alarms.py)
        self.stats = HubStats()  # counters for /metrics (see dispatcher/stats.py)
        # The township's records: the last ids given, and the handovers taken over since start
        # (id -> by, at) so that a second acknowledgement is answered without a write.
        self._last_handover_id = 0
        self._last_table_id = 0
        # Special bonuses approved since start (the writer's own check; earlier ones are read from the log).
        self._bonuses_approved: dict[int, ev.BonusApproved] = {}
        #: The public notices (CAP) issued, oldest first, by seq: few, read by a public feed, so kept here
        #: (loaded at start) rather than searched for in the event log on every request.
        self._alerts: dict[int, ev.AlertIssued] = {}
        self._handovers_taken: dict[int, tuple[str, datetime]] = {}
        self._note_keys: OrderedDict[tuple[int, str], None] = OrderedDict()  # notes' client keys seen (newest last)
        self._open = OpenIncidents(recent_reports=recent_reports)
        self._deadlines = DeadlineScheduler(alarm, clock, self._open, retry=alarm_retry)
        self._writer = Writer(
            store=store,
            open_incidents=self._open,
            roster=lambda: self.roster,
            before_commit=self._offer_freed,
            after_commit=self._committed,
            restore=self._deadlines.restore,
            queue_size=queue_size,
            batch_max=batch_max,
            light_hold_s=audit_hold_s,
            stats=self.stats,
        )

    @property
    def rules(self) -> RuleBook:
        """The rule table in force, with the hub's message model."""
        return self._rules

    @rules.setter
    def rules(self, book: RuleBook) -> None:
        self._rules = (
            book if self.messages is None or book.messages is self.messages else book.with_messages(self.messages)
        )

    # -- life -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._writer.running

    @property
    def last_seq(self) -> int:
        return self._writer.next_seq - 1

    @property
    def deadlines(self) -> DeadlineScheduler:
        """The deadline scheduler room (read-only use: what is armed)."""
        return self._deadlines

    @property
    def open_index(self) -> OpenIncidents:
        """The open-incident index room (read-only use)."""
        return self._open

    @property
    def armed_deadlines(self) -> int:
        """How many marks the deadline scheduler holds: one or more for each open incident with a deadline or
        escalation step pending (some since stale: their deadlines kept)."""
        return len(self._deadlines)

    @property
    def units(self) -> dict[str, UnitState]:
        """Each officer's live state (status, position, open tasks); changed only after a commit."""
        return self._open.units

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
        self._last_handover_id, self._last_table_id = await self.store.last_record_ids()
        self.feed.last_seq = last_seq
        # Loading builds millions of long-lived objects and frees nothing: the collector's passes over
        # them would find nothing and cost a quarter of the start.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._open.load(await self.store.load_open(), await self.store.load_units())
        finally:
            if collecting:
                gc.enable()
        await self._load_alarms()
        stored_alerts = await self.store.events_of_type(ev.AlertIssued.__name__, limit=10_000_000)
        self._alerts = {e.seq: _alert(e) for e in stored_alerts}
        self._writer.start(last_id, last_seq)
        self._deadlines.start(self.fire_due)
        log.info(
            "hub started: %d open incidents, %d deadline marks, last event %d",
            len(self._open),
            len(self._deadlines),
            last_seq,
        )

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Finish what is queued (up to ``timeout_s``), then stop the writer and close the store."""
        self._deadlines.stop()
        await self._writer.stop(timeout_s)
        await self.store.close()

    async def settle(self) -> None:
        """Wait until every command queued so far is committed (tests: act, then settle)."""
        if self.running:
            await self._submit(lambda batch: None)

    # -- commands -------------------------------------------------------------------------

    async def record_audit(self, entry: AuditEntry) -> None:
        """Store ``entry`` in the audit trail with the writer's next batch; returns once it is committed.

        For a hub whose database holds the directory's audit table (the composition root decides): the entry
        of a request rides with the other changes of that batch instead of a transaction of its own; with no
        other change queued, it waits up to the writer's ``light_hold_s`` (50 ms) for one.
        """
        await self._submit(lambda batch: batch.changes.audit.append(entry), light=True)

    async def report(self, report: Report, at: datetime) -> ReportOutcome:
        """Route and dispatch a report, or return the incident it already made (same ``report_id``)."""
        return await self._submit(self._reporting(report, at), report_id=report.report_id, overlaps=True)

    async def report_many(self, reports: Sequence[Report], at: datetime) -> list[ReportOutcome | BaseException]:
        """Route and dispatch ``reports`` as :meth:`report` does each, queued together so that they commit
        together (one writer batch when they fit ``batch_max``); answers each one's outcome in order.

        A report the lifecycle or the store refuses is answered with its exception (``Refused``,
        ``CommitRefused``); the others still commit. A retry of a ``report_id`` given earlier in the same list
        answers the incident the first made. ``StoreUnavailable`` comes back for each report of a batch that
        could not be stored. Raises ``HubStopped`` (nothing queued) when the hub is not running.
        """
        commands = [
            (self._reporting(report, at), {"report_id": report.report_id, "overlaps": True}) for report in reports
        ]
        return await self._writer.submit_many(commands)

    def _reporting(self, report: Report, at: datetime) -> Callable[[Batch], ReportOutcome]:
        """The writer command of a report: routed now, applied in its batch."""
        decision = self.rules.route(_routing_input(report, at))

        def apply(batch: Batch) -> ReportOutcome:
            known = batch.reports.get(report.report_id)
            if known is not None:
                return ReportOutcome(batch.current(known), created=False)
            same = self._duplicate_of(batch, report, decision.category, at)
            if same is not None:
                joined, events = attach_report(same, report, at)
                batch.reports[report.report_id] = joined.id
                batch.changes.report_ids.append(report.report_id)
                batch.record(joined, events)
                return ReportOutcome(joined, created=False, joined=True)
            incident_id = batch.next_id
            batch.next_id += 1
            officers = self._officers_for(batch, report, decision.zones, (decision.lead, *decision.support), at)
            incident, events = open_incident(
                incident_id, report, decision, at, officers, calendar=self.rules.work_calendar
            )
            batch.reports[report.report_id] = incident_id
            batch.changes.report_ids.append(report.report_id)
            batch.record(incident, events, created=True)
            return ReportOutcome(incident, created=True)

        return apply

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
        note: str | None = None,
        photos: tuple[str, ...] = (),
    ) -> Incident:
        """Advance one team's assignment (or return it, with a reason); ``note`` and ``photos`` ride in its event.

        Raises ``IllegalTransition``, ``UnknownAssignment``, ``StaleVersion``, ``Refused`` or
        :class:`IncidentNotFound`; nothing changes then.
        """

        def decide(current: Incident, batch: Batch) -> tuple[Incident, list[ev.Event]]:
            moved, events = move_unit(current, team, action, at, actor, reason=reason, note=note, photos=photos)
            # Every team resolved and the rule asks for 核查: the incident waits for its verifier.
            waiting, more = closing.await_verification(moved, at, calendar=self.rules.work_calendar)
            return waiting, [*events, *more]

        return await self._change(incident_id, decide, expected_version)

    # -- closing the loop: extensions (延期), parking (挂账), verification (核查) -------------------

    async def request_extension(
        self, incident_id: int, team: str, reason: str, due_at: datetime, at: datetime, actor: str | None = None
    ) -> Incident:
        """A team asks to move its resolution deadline; see :mod:`dispatcher.core.closing`."""
        return await self._change(
            incident_id, lambda current, _: closing.request_extension(current, team, reason, due_at, at, actor)
        )

    async def request_parking(
        self, incident_id: int, reason: str, review_at: datetime, at: datetime, actor: str | None = None
    ) -> Incident:
        """Ask to park (挂账) the incident until ``review_at``."""
        return await self._change(
            incident_id, lambda current, _: closing.request_parking(current, reason, review_at, at, actor)
        )

    async def decide_request(
        self,
        incident_id: int,
        request_id: int,
        approve: bool,
        at: datetime,
        *,
        role: str,
        actor: str | None = None,
        reason: str = "",
    ) -> Incident:
        """An approver in ``role`` (module_lead, party_secretary) approves or refuses a request."""
        return await self._change(
            incident_id,
            lambda current, _: closing.decide_request(
                current, request_id, approve, at, role=role, actor=actor, reason=reason
            ),
        )

    async def resume(self, incident_id: int, at: datetime, actor: str | None = None) -> Incident:
        """Take a parked incident out of the parked list: its live teams' deadlines start again from ``at``."""
        return await self._change(
            incident_id, lambda current, _: closing.resume(current, at, actor, calendar=self.rules.work_calendar)
        )

    async def verify(
        self,
        incident_id: int,
        passed: bool,
        at: datetime,
        *,
        verifier: str,
        verifier_ids: Sequence[str] = (),
        reason: str = "",
        photos: Sequence[str] = (),
        flags: Sequence[str] = (),
        expected_version: int | None = None,
    ) -> Incident:
        """核查: pass (close) or fail (返工) an incident waiting for verification."""

        def decide(current: Incident, batch: Batch) -> tuple[Incident, list[ev.Event]]:
            return closing.verify(
                current,
                passed,
                at,
                verifier=verifier,
                verifier_ids=verifier_ids,
                reason=reason,
                photos=photos,
                flags=flags,
                calendar=self.rules.work_calendar,
            )

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

        def decide(current: Incident, batch: Batch) -> tuple[Incident, list[ev.Event]]:
            return finish_incident(current, action, at, actor, reason)

        return await self._change(incident_id, decide, expected_version)

    async def note(
        self, incident_id: int, text: str, at: datetime, author: str | None = None, *, public: bool = False
    ) -> Incident:
        incident, _ = await self.add_note(incident_id, text, at, author, public=public)
        return incident

    async def add_note(
        self,
        incident_id: int,
        text: str,
        at: datetime,
        author: str | None = None,
        *,
        photos: tuple[str, ...] = (),
        note_id: str | None = None,
        public: bool = False,
    ) -> tuple[Incident, bool]:
        """Add a note; returns the incident and whether the note was added.

        With ``note_id`` (the client's key) a note already added under that key to this incident (stored, or
        committed or queued since) is not added again: the incident is returned with ``False``. Raises
        :class:`IncidentNotFound`.
        """
        if note_id is not None and (incident_id, note_id) not in self._note_keys:
            for event in await self.timeline(incident_id):
                if event.type == "NoteAdded" and orjson.loads(event.payload).get("note_id") == note_id:
                    self._remember_note(incident_id, note_id)
                    break

        def apply(batch: Batch) -> tuple[Incident, bool]:
            current = batch.current(incident_id)
            if note_id is not None and (
                (incident_id, note_id) in self._note_keys
                or any(
                    isinstance(f, ev.NoteAdded) and f.incident_id == incident_id and f.note_id == note_id
                    for _, f in batch.facts
                )
            ):
                return current, False
            incident, events = add_note(current, text, author, at, photos=photos, note_id=note_id, public=public)
            batch.record(incident, events)
            return incident, True

        return await self._submit(apply, incident_id=incident_id)

    def _remember_note(self, incident_id: int, note_id: str) -> None:
        self._note_keys[(incident_id, note_id)] = None
        if len(self._note_keys) > _NOTE_KEYS_KEPT:
            self._note_keys.popitem(last=False)

    async def step_taken(self, incident: Incident, team: str, action: UnitAction, actor: str) -> bool:
        """Whether ``actor`` already took this step on ``team``'s assignment, which is at its state or past it.

        For retries: a step applied once and sent again (a double tap, a phone that lost the answer).
        Reads the incident's timeline; raises ``UnknownAssignment``.
        """
        state = incident.assignment(team).state
        target = _STEP_TARGET[action]
        if state is not target and (target not in _FORWARD or state not in _FORWARD[_FORWARD.index(target) :]):
            return False
        kind = "AssignmentReturned" if action is UnitAction.RETURN else "UnitMoved"
        for event in reversed(await self.timeline(incident.id)):
            if event.type != kind:
                continue
            data = orjson.loads(event.payload)
            same = data.get("team") == team and data.get("actor") == actor
            if same and (kind == "AssignmentReturned" or data.get("to_state") == target.value):
                return True
        return False

    async def public_notes(self, incident_ids: Sequence[int]) -> dict[int, str]:
        """The text of each incident's last public note (shown to its reporter), for those that have one."""
        notes = await self.store.events_of_incidents(incident_ids, (ev.NoteAdded.__name__,))
        last: dict[int, str] = {}
        for stored in notes:
            data = orjson.loads(stored.payload)
            if data.get("public") and stored.incident_id is not None:
                last[stored.incident_id] = data["text"]
        return last

    async def find_report(self, report_id: str) -> int | None:
        """The incident that holds ``report_id`` now, or None: no report of that id was ever taken."""
        return (await self.store.find_reports([report_id], writer=False)).get(report_id)

    async def fire_due(self, at: datetime) -> int:
        """Record every deadline due at ``at`` that is still pending; returns how many were missed."""

        def apply(batch: Batch) -> int:
            missed = 0
            entries = self._deadlines.pop_due(at)
            batch.popped.extend(entries)
            for entry in entries:
                try:
                    current = batch.current(entry.incident_id)
                except IncidentNotFound:
                    continue  # closed or cancelled since: nothing to escalate
                if entry.team == NO_TEAM:
                    incident, events = closing.miss_check(current, entry.kind, at)
                elif entry.step:
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

        def decide(current: Incident, batch: Batch) -> tuple[Incident, list[ev.Event]]:
            chosen = officer
            if chosen is None:
                held = current.assignment(team)
                exclude = frozenset((*held.tried, *([held.officer] if held.officer else [])))
                chosen = batch.choose(team, current, at, exclude)
                if chosen is None:
                    raise Refused(f"nobody of team {team} is on duty and free")
            elif self.roster.officers.get(chosen) is None or self.roster.officers[chosen].team != team:
                raise Refused(f"officer {chosen!r} is not on team {team}'s roster")
            return assign_officer(current, team, chosen, at, reason=ev.AssignReason.REASSIGN, actor=actor)

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

        def decide(current: Incident, batch: Batch) -> tuple[Incident, list[ev.Event]]:
            officers = self._officers_for(batch, current.report, current.zones, (team,), at)
            return add_team(
                current,
                team,
                at,
                officer=officers.get(team),
                actor=actor,
                waiting=team in officers,
                calendar=self.rules.work_calendar,
            )

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

        def decide(current: Incident, batch: Batch) -> tuple[Incident, list[ev.Event]]:
            officers = self._officers_for(batch, current.report, current.zones, (to_team,), at)
            return reassign_team(
                current,
                from_team,
                to_team,
                at,
                officer=officers.get(to_team),
                actor=actor,
                waiting=to_team in officers,
                calendar=self.rules.work_calendar,
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

        def decide(current: Incident, batch: Batch) -> tuple[Incident, list[ev.Event]]:
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
        def decide(current: Incident, batch: Batch) -> tuple[Incident, list[ev.Event]]:
            return change_priority(current, priority, at, actor)

        return await self._change(incident_id, decide, expected_version)

    async def merge(
        self,
        source_id: int,
        target_id: int,
        at: datetime,
        actor: str | None = None,
        *,
        expected_version: int | None = None,
        expected_target_version: int | None = None,
    ) -> Incident:
        """Fold incident ``source_id`` into ``target_id``; returns the target.

        ``expected_version`` and ``expected_target_version`` are the versions of the source and of the
        target the caller saw: a command on either that committed first (a cancel of the target, say)
        makes the merge raise ``StaleVersion``. Also raises ``IllegalTransition``, ``Refused`` or
        :class:`IncidentNotFound`; nothing changes then.
        """

        def apply(batch: Batch) -> Incident:
            source, target = batch.current(source_id), batch.current(target_id)
            check_version(source, expected_version)
            check_version(target, expected_target_version)
            folded, target, events = merge_incidents(source, target, at, actor)
            batch.record(folded, [e for e in events if e.incident_id == source_id])
            batch.record(target, [e for e in events if e.incident_id == target_id])
            for report_id in (folded.report.report_id, *(r.report.report_id for r in folded.reports)):
                batch.reports[report_id] = target.id
            return target

        keys = {"incident_id": source_id}
        return await self._submit(apply, also=(target_id,), **keys)

    async def split(self, incident_id: int, report_id: str, at: datetime, actor: str | None = None) -> Incident:
        """Split an attached report off into an incident of its own, routed afresh; returns the new one."""

        def apply(batch: Batch) -> Incident:
            new_id = batch.next_id
            remaining, report, events = detach_report(batch.current(incident_id), report_id, new_id, at, actor)
            batch.next_id += 1
            decision = self.rules.route(_routing_input(report, at))
            officers = self._officers_for(batch, report, decision.zones, (decision.lead, *decision.support), at)
            opened, opened_events = open_incident(
                new_id, report, decision, at, officers, calendar=self.rules.work_calendar
            )
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

        def apply(batch: Batch) -> UnitState:
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

        def apply(batch: Batch) -> int:
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
        """Record one try at forwarding a county matter (its webhook subscription, :mod:`gateways.webhooks`)."""

        def decide(current: Incident, batch: Batch) -> tuple[Incident, list[ev.Event]]:
            return record_delivery(current, at, ok=ok, status_code=status_code, error=error, max_attempts=max_attempts)

        return await self._change(incident_id, decide)

    def pending_deliveries(self) -> list[Incident]:
        """Open county matters not yet forwarded, oldest first."""
        return self._open.pending_deliveries()

    def waiting(self) -> list[tuple[Incident, str]]:
        """Assignments waiting for an officer, most urgent first: (incident, team)."""
        return self._open.waiting()

    def team_of(self, officer_id: str) -> str:
        officer = self.roster.officers.get(officer_id)
        return officer.team if officer is not None else ""

    def replace_roster(self, roster: Roster) -> Roster:
        """Dispatch by ``roster`` from now on without storing it: for restoring at start, before the writer runs.

        In service a roster is put in force with :meth:`load_roster` (stored, with an event).
        Open assignments keep their officers.
        """
        previous, self.roster = self.roster, roster
        return previous

    def _known_team(self, team: str) -> None:
        if team not in {t.id for t in self.rules.table.teams}:
            raise Refused(f"team {team!r} is not in rule table {self.rules.version}")

    def _officers_for(
        self, batch: Batch, report: Report, zones: tuple[str, ...], teams: Sequence[str | None], at: datetime
    ) -> dict[str, str | None]:
        """The chosen officer of each team that has a roster; teams without one are left out (sent whole)."""
        # One view of the officers for every team: nothing is recorded while choosing.
        return choose_officers(self.roster, batch.all_units(), teams, at, report.lat, report.lon, zones)

    def _replacement(self, batch: Batch, incident: Incident, entry: DueEntry, at: datetime) -> str | None:
        if entry.kind is not ev.DeadlineKind.ACK or not self.roster.team(entry.team):
            return None
        held = incident.assignment(entry.team)
        exclude = frozenset((*held.tried, *([held.officer] if held.officer else [])))
        return batch.choose(entry.team, incident, at, exclude)

    def _duplicate_of(self, batch: Batch, report: Report, category: str | None, at: datetime) -> Incident | None:
        """The open incident this report repeats (see :func:`find_duplicate`), as this batch sees it."""
        if category is None or self.duplicate_radius_m <= 0:
            return None
        if report.lat is None and report.zone not in self.rules.small_zones:
            return None
        ids = set(self._open.in_category(category))
        ids.update(i for i, inc in batch.pending() if inc.category == category)
        return find_duplicate(
            report,
            category,
            at,
            (batch.current(i) for i in ids),
            radius_m=self.duplicate_radius_m,
            window=self.duplicate_window,
            small_zones=self.rules.small_zones,
        )

    def _fill_waiting(self, batch: Batch, at: datetime) -> int:
        """After the batch's commands: hand waiting assignments of teams with a freed officer to them."""
        filled = 0
        teams = batch.freed
        batch.freed = set()
        for team in sorted(teams):
            ids = set(self._open.waiting_in(team)) | {
                i for i, inc in batch.pending() if any(a.team == team and a.waiting for a in inc.assignments)
            }
            # Most urgent first; usually one officer came free, so only the first few are taken: a heap gives
            # them without sorting the whole queue (thousands wait for a team after a burst).
            queue = [(inc.priority, inc.reported_at, inc.id, inc) for inc in map(batch.current, ids)]
            heapq.heapify(queue)
            while queue:
                incident = heapq.heappop(queue)[3]
                if not incident.is_open or not incident.has_team(team) or not incident.assignment(team).waiting:
                    continue
                officer = batch.choose(team, incident, at)
                if officer is None:
                    break
                updated, events = assign_officer(incident, team, officer, at, reason=ev.AssignReason.AVAILABLE)
                batch.record(updated, events)
                filled += 1
        return filled

    def replace_rules(self, rules: RuleBook) -> RuleBook:
        """Route new reports by ``rules`` from now on; returns the table it replaces.

        Not stored: for restoring at start, before the writer runs; in service a table is put in force
        with :meth:`put_rules_in_force` (stored, with an event). Open incidents keep the deadlines and
        escalation chain they were dispatched with: those are stored with each incident, not looked up
        in the table again.
        """
        previous, self.rules = self.rules, rules
        return previous

    # -- reads ----------------------------------------------------------------------------

    def open_incidents(self) -> tuple[int, list[Incident]]:
        """The open incidents by id and the sequence number they reflect, taken at one instant.

        The incidents are immutable: the list stays the state as of that sequence number however
        long its reader takes (a board's paged snapshot).
        """
        return self.last_seq, self._open.by_id()

    async def get(self, incident_id: int) -> Incident:
        incident = self._open.get(incident_id)
        if incident is None and self._may_exist(incident_id):
            incident = await self.store.get(incident_id)
        if incident is None:
            raise IncidentNotFound(incident_id)
        return incident

    async def timeline(self, incident_id: int) -> list[StoredEvent]:
        if not self._may_exist(incident_id):
            return []
        return await self.store.timeline(incident_id)

    def _may_exist(self, incident_id: int) -> bool:
        return self._writer.may_exist(incident_id)

    async def list_incidents(self, where: IncidentFilter, *, limit: int, offset: int) -> tuple[list[Incident], int]:
        return await self.store.list_incidents(where, limit=limit, offset=offset)

    async def briefing(self, *, start: datetime, end: datetime, by: Unit) -> Briefing:
        """The briefing's figures for ``[start, end)`` grouped by ``by``; reads the store only."""
        return await self.store.briefing(start=start, end=end, by=by)

    async def assessment(self, *, period: Period, table: ScoringTable) -> Assessment:
        """The assessment of a named period by the scoring table ``table``, with the period's approved special
        bonuses as lines; reads the store only."""
        result = await self.store.assessment(period=period, table=table)
        return with_bonuses(result, table, (await self.bonuses()).values())

    async def bonuses(self) -> dict[int, Bonus]:
        """Every special bonus (专项加分) of the township log, by id, with its approval if any."""
        entered = await self.store.events_of_type("BonusEntered", limit=100_000)
        approved = await self.store.events_of_type("BonusApproved", limit=100_000)
        return bonuses_from([*entered, *approved])

    async def enter_bonus(
        self, *, period: Period, unit_kind: str, unit: str, points: float, reason: str, at: datetime, actor: str
    ) -> int:
        """Log a special bonus entered by ``actor`` (the supervision office); returns its id (its seq). It
        counts in the assessment once another person approves it. Raises ``ValueError`` for a unit kind
        other than post, team or module."""
        if unit_kind not in UNIT_KINDS:
            raise ValueError(f"unit_kind must be one of {', '.join(UNIT_KINDS)}")
        event = ev.BonusEntered(
            at=at, period=period.name, unit_kind=unit_kind, unit=unit, points=points, reason=reason, entered_by=actor
        )

        def apply(batch: Batch) -> int:
            seq = batch.next_seq
            batch.record_township(event)
            return seq

        return await self._submit(apply)

    async def approve_bonus(self, bonus_id: int, *, at: datetime, actor: str) -> ev.BonusApproved:
        """Approve special bonus ``bonus_id`` as ``actor``. Raises :class:`BonusRefused` (nothing written)
        for an unknown bonus, one already approved, or an approval by the person who entered it.

        The checks read the committed log before the approval is queued; the writer then checks again,
        in its turn, against the approvals committed since the hub started and those of its own batch: of
        two people approving the same bonus at the same instant, the first is logged and the second
        refused."""
        bonus = (await self.bonuses()).get(bonus_id)
        refusal = approval_refusal(bonus, bonus_id, actor)
        if refusal is not None:
            raise BonusRefused(refusal)
        event = ev.BonusApproved(at=at, bonus=bonus_id, approved_by=actor)

        def apply(batch: Batch) -> ev.BonusApproved:
            first = self._bonuses_approved.get(bonus_id) or next(
                (f for _, f in batch.facts if isinstance(f, ev.BonusApproved) and f.bonus == bonus_id), None
            )
            if first is not None:
                raise BonusRefused(f"special bonus {bonus_id} was already approved by {first.approved_by}")
            batch.record_township(event)
            return event

        return await self._submit(apply)

    async def scoring_tables(self) -> list[tuple[int, ev.ScoringPutInForce]]:
        """Every scoring table put in force, oldest first, with its seq (its id) and its YAML (``body``)."""
        return await self.store.scoring_tables()

    async def put_scoring_in_force(self, *, version: str, body: str, at: datetime, actor: str | None) -> int:
        """Log scoring table ``body`` (already loaded and checked by the caller) as in force from ``at``;
        returns its id (its seq). The text is stored first, under its digest; the event names the digest
        (the log and the board's feed carry no YAML)."""
        digest = await self.store.store_scoring_text(body=body, version=version, at=at)
        size = len(body.encode("utf-8"))
        event = ev.ScoringPutInForce(at=at, version=version, digest=digest, size=size, actor=actor)

        def apply(batch: Batch) -> int:
            seq = batch.next_seq
            batch.record_township(event)
            return seq

        return await self._submit(apply)

    async def briefing_document(self, *, period: Period) -> Document:
        """The briefing document (简报) of a named period for this township; reads the store only."""
        return await self.store.briefing_document(township=self.rules.table.township.name, period=period)

    async def incidents_behind(
        self, *, start: datetime, end: datetime, by: Unit, unit: str | None, figure: Figure
    ) -> list[IncidentLine]:
        """The incidents counted in one figure of one unit; reads the store only."""
        return await self.store.incidents_behind(start=start, end=end, by=by, unit=unit, figure=figure)

    async def events_since(self, seq: int, *, limit: int) -> list[StoredEvent]:
        if seq >= self.last_seq:
            return []
        return await self.store.events_since(max(seq, 0), limit=limit)

    # -- the write path -------------------------------------------------------------------

    async def _change(
        self,
        incident_id: int,
        decide: Callable[[Incident, Batch], tuple[Incident, list[ev.Event]]],
        expected_version: int | None = None,
    ) -> Incident:
        """The common shape of a command on one incident: check the version the caller saw, let the pure
        core decide, record what it decided. Raises what ``decide`` raises; nothing changes then."""

        def apply(batch: Batch) -> Incident:
            current = batch.current(incident_id)
            check_version(current, expected_version)
            incident, events = decide(current, batch)
            batch.record(incident, events)
            return incident

        return await self._submit(apply, incident_id=incident_id)

    async def _submit(self, apply: Callable[[Batch], T], **keys: Any) -> T:
        return await self._writer.submit(apply, **keys)

    def _offer_freed(self, batch: Batch) -> None:
        """Before a batch commits: officers it freed take the waiting work of their teams."""
        self._fill_waiting(batch, self.clock.now())

    def _committed(self, batch: Batch) -> None:
        """After a commit, before the callers hear: the feed, the index, the deadlines and the alarms follow."""
        # The boards first: the feed writes the frames to their sockets now, and nothing here yields, so nobody
        # can read the hub between this and the lines below (the index and deadlines took 80 µs before it).
        self.feed.publish(batch.records)
        created: list[Incident] = []
        for incident in batch.touched.values():
            before = batch.originals.get(incident.id)
            if before is None:
                created.append(incident)
            else:
                self._open.follow(incident, before)
                self._deadlines.follow(incident, before)
        # The new ones (most of a batch) together: what incidents opened together share is read once.
        self._open.follow_new(created)
        self._deadlines.follow_new(created)
        self._open.follow_units(batch.units)
        for _, fact in batch.facts:
            if type(fact) is ev.NoteAdded and fact.note_id is not None:
                self._remember_note(fact.incident_id, fact.note_id)
        self._township_committed(batch)
        self.alarms.apply(batch.changes.events)
        self.stats.events.update(e.type for e in batch.changes.events)
        self._deadlines.rearm()

    # -- the township's log: handovers, rosters, rule tables ---------------------------------

    async def record_handover(self, shift: Shift, at: datetime) -> HandoverRecord:
        """交接班: record ``shift``'s handover summary as of ``at`` (a ``HandoverRecorded`` event).

        The summary is taken inside the writer, from the open incidents as this batch leaves them,
        so it matches the log at the handover's ``seq``. Returns the record with its id.
        """

        def apply(batch: Batch) -> HandoverRecord:
            incidents = {**self._open.incidents, **{i.id: i for i in batch.touched.values()}}
            summary = summarise(shift.team, incidents.values(), at)
            record = HandoverRecord(
                id=self._last_handover_id + len(batch.changes.handovers) + 1,
                team=shift.team,
                shift_id=shift.id,
                at=at,
                summary=orjson.dumps(summary).decode(),
                incoming_lead=shift.lead,
            )
            assert record.id is not None
            batch.changes.handovers.append(record)
            batch.record_township(
                ev.HandoverRecorded(
                    at=at,
                    handover_id=record.id,
                    team=shift.team,
                    shift_id=shift.id,
                    incoming_lead=shift.lead,
                    open_incidents=tuple(item["incident_id"] for item in summary["open"]),
                    running_deadlines=summary["running_deadlines"],
                    about_to_breach=len(summary["about_to_breach"]),
                )
            )
            return record

        return await self._submit(apply)

    async def acknowledge_handover(self, handover_id: int, actor: str, at: datetime) -> HandoverRecord:
        """The incoming duty lead takes handover ``handover_id`` over (a ``HandoverAcknowledged`` event).

        Idempotent: a handover already taken over is returned as it was and nothing is recorded.
        Raises :class:`HandoverNotFound`.
        """
        stored = await self.store.handover(handover_id) if 0 < handover_id <= self._last_handover_id else None
        if stored is None:
            raise HandoverNotFound(handover_id)

        def apply(batch: Batch) -> HandoverRecord:
            if stored.acknowledged_by is not None:
                return stored
            taken = self._handovers_taken.get(handover_id)
            if taken is not None:  # taken over since it was read, by an earlier batch
                return replace(stored, acknowledged_by=taken[0], acknowledged_at=taken[1])
            earlier = next((h for h in batch.changes.handover_acks if h.id == handover_id), None)
            if earlier is not None:  # two clicks in one batch
                return earlier
            record = replace(stored, acknowledged_by=actor, acknowledged_at=at)
            batch.changes.handover_acks.append(record)
            batch.record_township(
                ev.HandoverAcknowledged(at=at, handover_id=handover_id, team=stored.team, actor=actor)
            )
            return record

        return await self._submit(apply)

    async def load_roster(self, roster: Roster, body: str, at: datetime, actor: str | None) -> ev.RosterLoaded:
        """Store ``roster`` (``body``: its checked document as JSON) and dispatch by it from the commit on.

        ``roster`` must already be checked against the rule table. Open assignments keep their officers.
        """

        def apply(batch: Batch) -> ev.RosterLoaded:
            event = ev.RosterLoaded(
                at=at,
                version=roster.version,
                previous=(batch.roster_in_force or self.roster).version,
                officers=len(roster.officers),
                shifts=len(roster.shifts),
                actor=actor,
            )
            batch.changes.rosters.append(RosterRecord(version=roster.version, body=body, loaded_at=at, loaded_by=actor))
            batch.record_township(event)
            batch.roster_in_force = roster
            return event

        return await self._submit(apply)

    async def record_township_event(self, event: ev.WebhookDisabled) -> ev.WebhookDisabled:
        """Append a fact of the township's log that changes no state of the hub (a webhook disabled)."""

        def apply(batch: Batch) -> ev.WebhookDisabled:
            batch.record_township(event)
            return event

        return await self._submit(apply)

    async def put_rules_in_force(
        self, rules: RuleBook, text: str, at: datetime, actor: str | None
    ) -> ev.RulesPutInForce:
        """Store rule table ``rules`` (``text``: its YAML as given) and route new reports by it from the commit on.

        ``rules`` must already be compiled and checked. Open incidents keep the deadlines and chain
        they were dispatched with. The event's ``table_id`` names the stored text (for a rollback).
        """

        def apply(batch: Batch) -> ev.RulesPutInForce:
            table_id = self._last_table_id + len(batch.changes.rule_tables) + 1
            current = batch.rules_in_force or self.rules
            # Storing the table already in force (the file's, at start) replaces nothing.
            event = ev.RulesPutInForce(
                at=at,
                table_id=table_id,
                version=rules.version,
                previous=None if rules is current else current.version,
                actor=actor,
            )
            batch.changes.rule_tables.append(
                RuleTableRecord(id=table_id, version=rules.version, put_at=at, put_by=actor, body=text)
            )
            batch.record_township(event)
            batch.rules_in_force = rules
            return event

        return await self._submit(apply)

    async def issue_alert(self, alert: ev.AlertIssued) -> int:
        """Record a public notice (CAP) on the township's log; returns its ``seq``, the alert's id from then on."""

        def apply(batch: Batch) -> int:
            seq = batch.next_seq
            batch.record_township(alert)
            return seq

        return await self._submit(apply)

    def alerts(self, *, limit: int) -> list[tuple[int, ev.AlertIssued]]:
        """The notices issued, newest first, with their ids (``seq``)."""
        newest = sorted(self._alerts, reverse=True)[:limit]
        return [(seq, self._alerts[seq]) for seq in newest]

    def alert(self, alert_id: int) -> ev.AlertIssued | None:
        """The notice of id ``alert_id`` (its event's ``seq``), or None."""
        return self._alerts.get(alert_id)

    def cancelled_alerts(self) -> set[int]:
        """The ids of the notices a Cancel has replaced."""
        return {ref for alert in self._alerts.values() if alert.msg_type == "Cancel" for ref in alert.referenced}

    def _township_committed(self, batch: Batch) -> None:
        """After a commit: the ids given, the handovers taken over, the roster and rule table put in force."""
        changes = batch.changes
        self._last_handover_id += len(changes.handovers)
        self._last_table_id += len(changes.rule_tables)
        self._alerts.update((seq, fact) for seq, fact in batch.facts if isinstance(fact, ev.AlertIssued))
        self._bonuses_approved.update((f.bonus, f) for _, f in batch.facts if isinstance(f, ev.BonusApproved))
        for taken in changes.handover_acks:
            assert taken.id is not None and taken.acknowledged_by is not None and taken.acknowledged_at is not None
            self._handovers_taken[taken.id] = (taken.acknowledged_by, taken.acknowledged_at)
        if batch.roster_in_force is not None:
            self.roster = batch.roster_in_force
        if batch.rules_in_force is not None:
            self.rules = batch.rules_in_force

    # -- alarms (the board's shared acknowledgement) ----------------------------------------

    async def acknowledge_alarm(self, incident_id: int, alarm_seq: int, at: datetime, actor: str | None) -> Incident:
        """Acknowledge the open alarm raised by event ``alarm_seq``; every board clears it.

        Idempotent: an alarm already acknowledged is answered with the incident and nothing is
        recorded. Raises :class:`UnknownAlarm` when ``alarm_seq`` raised no alarm of this incident
        still open (an unknown seq, or the incident was finished since), or
        :class:`IncidentNotFound`.
        """

        def apply(batch: Batch) -> Incident:
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
        if self._open.incidents:
            self.alarms.apply(await self.store.events_of_incidents(list(self._open.incidents), ALARM_EVENTS))


class HandoverNotFound(LookupError):
    def __init__(self, handover_id: int) -> None:
        super().__init__(f"no handover {handover_id}")
        self.handover_id = handover_id


class UnknownAlarm(LookupError):
    def __init__(self, incident_id: int, alarm_seq: int) -> None:
        super().__init__(f"incident {incident_id} has no open alarm {alarm_seq}")
        self.incident_id = incident_id
        self.alarm_seq = alarm_seq


def _acknowledged_in(batch: Batch, incident_id: int, alarm_seq: int) -> bool:
    """Whether this very batch already acknowledges the alarm (two boards clicking at once)."""
    return any(
        isinstance(fact, ev.AlarmAcknowledged) and fact.incident_id == incident_id and fact.alarm_seq == alarm_seq
        for _, fact in batch.facts
    )


def _alert(stored: StoredEvent) -> ev.AlertIssued:
    event = ev.decode_township(stored.type, orjson.loads(stored.payload))
    assert isinstance(event, ev.AlertIssued)
    return event
