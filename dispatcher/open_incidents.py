"""The open-incident index: the writer's cache of every open incident and what it looks things up by.

It holds what the hub needs between batches without asking the store: the open incidents themselves,
each officer's live state and task count, the open incidents by routed category (where a new report's
duplicate is looked for), the waiting assignments by team, and the newest report ids (a phone's
retry is answered from here), and the incidents finished most recently (a supporting team still moving
after the lead's incident was closed is refused without a read of the store). It changes only when the
writer has committed a batch
(:meth:`OpenIncidents.follow`) and when it is loaded at start.

Runs on the hub's event loop; no I/O.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import replace

from dispatcher.core.incidents import DeliveryState, Incident
from dispatcher.core.lifecycle import JOINABLE_STATUSES
from dispatcher.core.roster import UnitState, UnitStatus

_by_id = operator.attrgetter("id")


class OpenIncidents:
    """Open incidents by id, with the indexes the writer's policies read. Changed only after a commit."""

    def __init__(self, *, recent_reports: int = 100_000, finished_kept: int = 4_096) -> None:
        self.incidents: dict[int, Incident] = {}
        #: Each officer's live state; its task count is rebuilt from the open incidents at start.
        self.units: dict[str, UnitState] = {}
        self._by_category: dict[str, set[int]] = {}
        self._waiting: dict[str, set[int]] = {}
        self._recent: OrderedDict[str, int] = OrderedDict()
        self._recent_max = recent_reports
        # Finished incidents as last committed. The writer is the only one that changes an incident (a
        # replica that takes a township over starts a fresh hub), so these equal what the store holds.
        self._finished: OrderedDict[int, Incident] = OrderedDict()
        self._finished_max = finished_kept

    def load(self, incidents: Iterable[Incident], units: Mapping[str, UnitState]) -> None:
        """Start from the store: the open incidents, and the officers' stored status and position.

        What :meth:`follow` does for one incident, done in one pass over all of them (a restart may
        find 100,000 open incidents).
        """
        self.incidents = {i.id: i for i in incidents}
        self.units = dict(units)
        tasks: dict[str, int] = {}
        for incident in self.incidents.values():
            incident_id = incident.id
            if incident.category is not None and incident.status in JOINABLE_STATUSES:
                self._by_category.setdefault(incident.category, set()).add(incident_id)
            for officer, count in incident.held_by().items():
                tasks[officer] = tasks.get(officer, 0) + count
            for a in incident.assignments:
                if a.waiting and incident.is_open:
                    self._waiting.setdefault(a.team, set()).add(incident_id)
        for officer, count in tasks.items():
            unit = self.units.get(officer, UnitState())
            self.units[officer] = replace(unit, tasks=unit.tasks + count)
        for officer, unit in self.units.items():
            if unit.tasks and unit.status is UnitStatus.AVAILABLE:
                self.units[officer] = replace(unit, status=UnitStatus.ASSIGNED)

    def __len__(self) -> int:
        return len(self.incidents)

    def get(self, incident_id: int) -> Incident | None:
        return self.incidents.get(incident_id)

    def finished(self, incident_id: int) -> Incident | None:
        """The incident as last committed if it finished recently (the newest ``finished_kept``), else ``None``."""
        return self._finished.get(incident_id)

    def by_id(self) -> list[Incident]:
        """The open incidents in id order (usually kept in that order already: the sort only checks it)."""
        return sorted(self.incidents.values(), key=_by_id)

    # -- after a commit ---------------------------------------------------------------------

    def follow(self, incident: Incident, before: Incident | None) -> None:
        """An incident as a batch committed it (``before``: as it was, ``None`` when new)."""
        if incident.is_open:
            self.incidents[incident.id] = incident
            self._finished.pop(incident.id, None)  # reopened
        else:
            self.incidents.pop(incident.id, None)
            self._finished[incident.id] = incident
            self._finished.move_to_end(incident.id)
            if len(self._finished) > self._finished_max:
                self._finished.popitem(last=False)
        self._index(incident, before)

    def follow_new(self, incidents: Iterable[Incident]) -> None:
        """:meth:`follow` of each incident a batch created (no ``before``). The incidents one decision opened at one
        instant for the same officers share their assignments (see :func:`~dispatcher.core.incidents.open_incident`):
        which of their teams wait is read once for each such tuple."""
        read: dict[int, tuple[object, tuple[str, ...], tuple[str, ...]]] = {}  # id(assignments) -> it, waits, not
        waiting = self._waiting
        for incident in incidents:
            if not incident.is_open:
                self.follow(incident, None)
                continue
            incident_id = incident.id
            self.incidents[incident_id] = incident
            self._finished.pop(incident_id, None)
            if incident.category is not None:
                ids = self._by_category.setdefault(incident.category, set())
                if incident.status in JOINABLE_STATUSES:
                    ids.add(incident_id)
                else:
                    ids.discard(incident_id)
            assignments = incident.assignments
            found = read.get(id(assignments))
            if found is None or found[0] is not assignments:
                waits = {a.team: a.waiting for a in reversed(assignments)}  # the first of a team says, as in _index
                found = read[id(assignments)] = (
                    assignments,
                    tuple(team for team, waits_now in waits.items() if waits_now),
                    tuple(team for team, waits_now in waits.items() if not waits_now),
                )
            for team in found[1]:
                waiting.setdefault(team, set()).add(incident_id)
            for team in found[2]:
                if team in waiting:
                    waiting[team].discard(incident_id)

    def follow_units(self, units: Mapping[str, UnitState]) -> None:
        self.units.update(units)

    def remember_report(self, report_id: str, incident_id: int) -> None:
        """Remember which incident holds ``report_id`` (the newest ``recent_reports`` are kept)."""
        if self._recent.get(report_id) == incident_id:
            return
        self._recent[report_id] = incident_id
        self._recent.move_to_end(report_id)
        if len(self._recent) > self._recent_max:
            self._recent.popitem(last=False)

    # -- lookups ------------------------------------------------------------------------------

    def recent_report(self, report_id: str) -> int | None:
        return self._recent.get(report_id)

    def in_category(self, category: str) -> set[int]:
        """Ids of open incidents of ``category`` that a new report could still join."""
        return self._by_category.get(category, set())

    def waiting_in(self, team: str) -> set[int]:
        """Ids of open incidents where ``team``'s assignment waits for an officer."""
        return self._waiting.get(team, set())

    def waiting(self) -> list[tuple[Incident, str]]:
        """Assignments waiting for an officer, most urgent first: (incident, team)."""
        found = [(self.incidents[i], team) for team, ids in self._waiting.items() for i in ids if i in self.incidents]
        return sorted(found, key=lambda it: (it[0].priority, it[0].reported_at, it[0].id, it[1]))

    def indexes(self) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
        """The duplicate index (category → ids) and the waiting index (team → ids), without empty keys."""
        return (
            {k: set(v) for k, v in self._by_category.items() if v},
            {k: set(v) for k, v in self._waiting.items() if v},
        )

    def pending_deliveries(self) -> list[Incident]:
        """Open county matters not yet forwarded, oldest first."""
        return sorted(
            (
                i
                for i in self.incidents.values()
                if i.delivery is not None and i.delivery.state is DeliveryState.PENDING
            ),
            key=lambda i: i.id,
        )

    def _index(self, incident: Incident, before: Incident | None = None) -> None:
        """Keep the duplicate and waiting indexes in step with an incident's latest state."""
        if incident.category is not None:
            ids = self._by_category.setdefault(incident.category, set())
            if incident.status in JOINABLE_STATUSES:
                ids.add(incident.id)
            else:
                ids.discard(incident.id)
        # Whether each team of the incident waits, as ``incident.assignment(team)`` (the first of the team) says;
        # read in one pass over the assignments instead of one search per team.
        waits = {a.team: a.waiting for a in reversed(incident.assignments)}
        teams = waits.keys() | {a.team for a in before.assignments} if before is not None else waits.keys()
        is_open = incident.is_open
        for team in teams:
            if is_open and waits.get(team, False):
                self._waiting.setdefault(team, set()).add(incident.id)
            elif team in self._waiting:
                self._waiting[team].discard(incident.id)
