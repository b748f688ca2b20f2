"""The deadline scheduler: which deadline or escalation step is due next, and the alarm clock set for it.

Deadlines are data stored with each incident (see :mod:`dispatcher.core.deadlines`); this room only
keeps them in a heap, sets the one alarm (:mod:`dispatcher.alarm`) for the earliest live one, and when
it rings asks the hub to record what fell due. The climb itself (missed deadline, the next officer, the
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
from dispatcher.core.deadlines import DeadlineWatch, DueEntry
from dispatcher.core.incidents import NO_TEAM, Assignment, DeadlineState, EscalationState, Incident
from dispatcher.open_incidents import OpenIncidents

log = logging.getLogger(__name__)

_DEADLINE_KINDS = frozenset(k.value for k in ev.DeadlineKind)


def due_entries(incident: Incident) -> list[DueEntry]:
    """Every pending deadline and waiting escalation step of an incident, as heap entries."""
    entries = [DueEntry(d.due_at, incident.id, team, d.kind) for team, d in incident.pending_deadlines()]
    entries.extend(
        DueEntry(e.due_at, incident.id, team, ev.DeadlineKind(e.kind), e.step)
        for team, e in incident.pending_escalations()
        if e.kind in _DEADLINE_KINDS
    )
    return entries


def _all_due_entries(incidents: Iterable[Incident]) -> list[DueEntry]:
    """:func:`due_entries` of every incident in one pass (a restart may find a million pending ones)."""
    pending, step_pending = DeadlineState.PENDING, EscalationState.PENDING
    # ``tuple.__new__`` itself: ``DueEntry._make`` is a Python function around the same call (an entry a deadline).
    new, entry_type = tuple.__new__, DueEntry
    entries: list[DueEntry] = []
    for incident in incidents:
        incident_id = incident.id
        for a in incident.assignments:
            team = a.team
            for d in a.deadlines:
                if d.state is pending:
                    entries.append(new(entry_type, (d.due_at, incident_id, team, d.kind, 0)))
            for e in a.escalations:
                if e.state is step_pending and e.kind in _DEADLINE_KINDS:
                    entries.append(new(entry_type, (e.due_at, incident_id, team, ev.DeadlineKind(e.kind), e.step)))
        for d in incident.loop.checks:  # the incident's own: verification due, parking review
            if d.state is pending:
                entries.append(new(entry_type, (d.due_at, incident_id, NO_TEAM, d.kind, 0)))
    return entries


def _teams_pending(assignments: Iterable[Assignment]) -> list[tuple[datetime, str, ev.DeadlineKind, int]]:
    """The teams' part of :func:`_all_due_entries` (due time, team, kind, step), for no incident in particular."""
    pending, step_pending = DeadlineState.PENDING, EscalationState.PENDING
    found: list[tuple[datetime, str, ev.DeadlineKind, int]] = []
    for a in assignments:
        team = a.team
        found.extend((d.due_at, team, d.kind, 0) for d in a.deadlines if d.state is pending)
        found.extend(
            (e.due_at, team, ev.DeadlineKind(e.kind), e.step)
            for e in a.escalations
            if e.state is step_pending and e.kind in _DEADLINE_KINDS
        )
    return found


def _new_due_entries(incidents: Iterable[Incident]) -> list[DueEntry]:
    """:func:`_all_due_entries` of incidents a batch created, in the same order. The incidents one decision opened
    at one instant for the same officers share their assignments (:func:`~dispatcher.core.incidents.open_incident`):
    the teams' pending entries are read once for each such tuple, and only the incident's id changes."""
    new, entry_type = tuple.__new__, DueEntry
    pending = DeadlineState.PENDING
    entries: list[DueEntry] = []
    # id(assignments) -> (the tuple, held so that its id stays its own; its entries without the incident's id)
    read: dict[int, tuple[object, list[tuple[datetime, str, ev.DeadlineKind, int]]]] = {}
    for incident in incidents:
        assignments = incident.assignments
        found = read.get(id(assignments))
        if found is None or found[0] is not assignments:
            found = read[id(assignments)] = (assignments, _teams_pending(assignments))
        incident_id = incident.id
        entries.extend([new(entry_type, (due, incident_id, team, kind, step)) for due, team, kind, step in found[1]])
        for d in incident.loop.checks:  # the incident's own: verification due, parking review
            if d.state is pending:
                entries.append(new(entry_type, (d.due_at, incident_id, NO_TEAM, d.kind, 0)))
    return entries


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
        return len(self._watch)

    def pending(self) -> list[DueEntry]:
        """The watched entries still pending, in due order (kept or voided ones wait in the heap until they come up)."""
        return sorted(e for e in self._watch.entries() if self._still_pending(e))

    def start(self, fire: Callable[[datetime], Awaitable[int]]) -> None:
        """Arm every pending entry of the open incidents and start the alarm clock."""
        self._fire = fire
        self._watch.arm_many(_all_due_entries(self._open.incidents.values()))
        self._alarm.start(self._ring)
        self.rearm()

    def stop(self) -> None:
        self._alarm.stop()
        self._fire = None

    def follow_new(self, incidents: Iterable[Incident]) -> None:
        """After a commit: watch every entry of the incidents the batch created (:meth:`follow` of each with no
        ``before``, in one push)."""
        self._watch.push(_new_due_entries(incidents))

    def follow(self, incident: Incident, before: Incident | None) -> None:
        """After a commit: watch the incident's entries that ``before`` did not have."""
        if before is None:  # a new incident (most of what a batch touches): every entry is new
            self._watch.push(_all_due_entries((incident,)))
            return
        armed = set(due_entries(before))
        self._watch.push(entry for entry in due_entries(incident) if entry not in armed)

    def pop_due(self, at: datetime) -> list[DueEntry]:
        """Take every entry due at ``at`` off the heap (the writer's batch records them)."""
        return self._watch.pop_due(at)

    def restore(self, entries: Iterable[DueEntry]) -> None:
        """Watch again entries whose batch was not committed, chain steps included."""
        for entry in entries:
            self._watch.arm(entry.incident_id, entry.team, entry.kind, entry.due_at, step=entry.step)

    def rearm(self) -> None:
        """Set the alarm for the earliest live entry (entries kept or voided since are dropped first)."""
        while (entry := self._watch.peek()) is not None and not self._still_pending(entry):
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

    def _still_pending(self, entry: DueEntry) -> bool:
        incident = self._open.get(entry.incident_id)
        if incident is None:
            return False
        if entry.team == NO_TEAM:
            check = incident.loop.check(entry.kind)
            return check is not None and check.state is DeadlineState.PENDING and check.due_at == entry.due_at
        assignment = next((a for a in incident.assignments if a.team == entry.team), None)
        if assignment is None:
            return False
        if entry.step:
            step = assignment.escalation(entry.kind.value, entry.step)
            return step is not None and step.state is EscalationState.PENDING and step.due_at == entry.due_at
        deadline = assignment.deadline(entry.kind)
        return deadline is not None and deadline.state is DeadlineState.PENDING and deadline.due_at == entry.due_at
