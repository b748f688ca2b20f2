"""The deadline scheduler: which deadline or escalation step is due next, and the alarm clock set for it.

Deadlines are data stored with each incident (see :mod:`dispatcher.core.deadlines`); this room only
keeps a mark per incident in a heap (when it has something due first), sets the one alarm
(:mod:`dispatcher.alarm`) for the earliest live mark, and when it rings reads the marked incidents'
deadlines and asks the hub to record what fell due. The climb itself (missed deadline, the next officer, the
module lead, the party secretary) is decided by the pure core in the writer's batch.

Runs on the hub's event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta

from dispatcher.alarm import Alarm
from dispatcher.clock import Clock
from dispatcher.core import events as ev
from dispatcher.core.deadlines import DeadlineWatch, DueEntry, DueMark
from dispatcher.core.incidents import Assignment, DeadlineState, EscalationState, Incident
from dispatcher.open_incidents import OpenIncidents

log = logging.getLogger(__name__)

_DEADLINE_KINDS = frozenset(k.value for k in ev.DeadlineKind)


def due_entries(incident: Incident) -> list[DueEntry]:
    """Every pending deadline and waiting escalation step of an incident, as entries the writer can record."""
    entries = [DueEntry(d.due_at, incident.id, team, d.kind) for team, d in incident.pending_deadlines()]
    entries.extend(
        DueEntry(e.due_at, incident.id, team, ev.DeadlineKind(e.kind), e.step)
        for team, e in incident.pending_escalations()
        if e.kind in _DEADLINE_KINDS
    )
    return entries


def _teams_earliest(assignments: Iterable[Assignment]) -> datetime | None:
    """The earliest pending deadline or (deadline kind's) escalation step of ``assignments``, or None."""
    pending, step_pending = DeadlineState.PENDING, EscalationState.PENDING
    earliest: datetime | None = None
    for a in assignments:
        for d in a.deadlines:
            if d.state is pending and (earliest is None or d.due_at < earliest):
                earliest = d.due_at
        for e in a.escalations:
            if e.state is step_pending and e.kind in _DEADLINE_KINDS and (earliest is None or e.due_at < earliest):
                earliest = e.due_at
    return earliest


def _with_checks(incident: Incident, earliest: datetime | None) -> datetime | None:
    """``earliest`` or the incident's own pending check (verification due, parking review), whichever comes first."""
    pending = DeadlineState.PENDING
    for d in incident.loop.checks:
        if d.state is pending and (earliest is None or d.due_at < earliest):
            earliest = d.due_at
    return earliest


def earliest_due(incident: Incident) -> datetime | None:
    """When ``incident`` has something due first (a deadline, an escalation step, a check), or None: nothing."""
    return _with_checks(incident, _teams_earliest(incident.assignments))


def _marks(incidents: Iterable[Incident]) -> list[DueMark]:
    """A mark for each of ``incidents`` with something pending. The incidents one decision opened at one instant
    for the same officers share their assignments (:func:`~dispatcher.core.incidents.open_incident`): their
    earliest is found once for each such tuple."""
    new, mark_type = tuple.__new__, DueMark  # ``DueMark._make`` is a Python function around the same call
    marks: list[DueMark] = []
    # id(assignments) -> (the tuple, held so that its id stays its own; its earliest pending due time)
    read: dict[int, tuple[object, datetime | None]] = {}
    for incident in incidents:
        assignments = incident.assignments
        found = read.get(id(assignments))
        if found is None or found[0] is not assignments:
            found = read[id(assignments)] = (assignments, _teams_earliest(assignments))
        due = _with_checks(incident, found[1]) if incident.loop.checks else found[1]
        if due is not None:
            marks.append(new(mark_type, (due, incident.id)))
    return marks


class DeadlineScheduler:
    """Arms ``alarm`` for the earliest pending entry; on a ring, awaits ``fire(now)`` and never raises.

    A failed ``fire`` (the store could not record what fell due) leaves the entries pending and tries
    again ``retry`` later, not at once: no hot loop while the database is away.
    """

    def __init__(self, alarm: Alarm, clock: Clock, open_incidents: OpenIncidents, *, retry: timedelta) -> None:
        self._alarm = alarm
        self._clock = clock
        self._open = open_incidents
        self._retry = retry
        self._watch = DeadlineWatch()
        self._armed_for: datetime | None = None
        self._retry_at: datetime | None = None
        self._fire: Callable[[datetime], Awaitable[int]] | None = None

    def __len__(self) -> int:
        """How many marks the heap holds (an incident with something pending has one or more; some since stale)."""
        return len(self._watch)

    def pending(self) -> list[DueEntry]:
        """Every pending entry of the incidents watched, in due order: what the alarm will bring up."""
        watched = {mark.incident_id for mark in self._watch.marks()}
        entries = []
        for incident_id in watched:
            incident = self._open.get(incident_id)
            if incident is not None:
                entries.extend(due_entries(incident))
        return sorted(entries)

    def start(self, fire: Callable[[datetime], Awaitable[int]]) -> None:
        """Mark every open incident with something pending and start the alarm clock."""
        self._fire = fire
        self._watch.mark_many(_marks(self._open.incidents.values()))
        self._alarm.start(self._ring)
        self.rearm()

    def stop(self) -> None:
        self._alarm.stop()
        self._fire = None

    def follow_new(self, incidents: Iterable[Incident]) -> None:
        """After a commit: mark the incidents the batch created (:meth:`follow` of each with no ``before``, in one
        push)."""
        self._watch.push(_marks(incidents))

    def follow(self, incident: Incident, before: Incident | None) -> None:
        """After a commit: mark the incident again where its earliest due time moved (a mark at the old one stays
        until it comes up: :meth:`rearm` drops it, or :meth:`pop_due` finds nothing due in it)."""
        due = earliest_due(incident)
        if due is not None and (before is None or due != earliest_due(before)):
            self._watch.mark(incident.id, due)

    def pop_due(self, at: datetime) -> list[DueEntry]:
        """Every pending deadline and step of the incidents whose marks came up, due from their (earliest) mark up
        to ``at``, earliest first: the writer's batch records them. Each such incident is marked again for what it
        has due after ``at``. The first of several marks of one incident speaks for all of them."""
        due: list[DueEntry] = []
        seen: set[int] = set()
        for mark in self._watch.pop_due(at):
            incident_id = mark.incident_id
            if incident_id in seen:
                continue
            seen.add(incident_id)
            incident = self._open.get(incident_id)
            if incident is None:
                continue  # closed or cancelled since
            # From the mark on: what was due before it was handed out when an earlier mark came up.
            since, later = mark.due_at, None
            for entry in due_entries(incident):
                if entry.due_at > at:
                    if later is None or entry.due_at < later:
                        later = entry.due_at
                elif entry.due_at >= since:
                    due.append(entry)
            if later is not None:
                self._watch.mark(incident_id, later)
        due.sort()
        return due

    def restore(self, entries: Iterable[DueEntry]) -> None:
        """Watch again entries whose batch was not committed, chain steps included."""
        for entry in entries:
            self._watch.mark(entry.incident_id, entry.due_at)

    def rearm(self) -> None:
        """Set the alarm for the earliest live mark (marks of incidents finished, or whose earliest due time moved
        later since, are dropped first: the later time has its own mark)."""
        while (mark := self._watch.peek()) is not None and not self._live(mark):
            self._watch.drop_first()
        due = self._watch.next_due()
        if due is not None and self._retry_at is not None and due < self._retry_at:
            due = self._retry_at  # the last try failed: let the store breathe before the next
        if due != self._armed_for:
            self._armed_for = due
            self._alarm.set(due)

    async def _ring(self) -> None:
        """The alarm clock's job. Raises nothing: the scheduler must never hold one of the writer's errors."""
        # Forget what was armed: should the alarm ring a hair early, the re-arm must set it again.
        self._armed_for = None
        if self._fire is None:
            return
        try:
            await self._fire(self._clock.now())
        except Exception as exc:  # noqa: BLE001 - the entries stay pending and are tried again
            self._retry_at = self._clock.now() + self._retry
            log.warning("due deadlines not recorded (%s: %s); trying again in %s", type(exc).__name__, exc, self._retry)
            if self._fire is not None:
                self.rearm()
        else:
            self._retry_at = None

    def _live(self, mark: DueMark) -> bool:
        """Whether ``mark`` may still bring something up: its incident is open and has something due by then."""
        incident = self._open.get(mark.incident_id)
        if incident is None:
            return False
        due = earliest_due(incident)
        return due is not None and due <= mark.due_at
