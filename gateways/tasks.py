"""An officer's tasks: the live assignments it (or its team) holds, with the deadline that runs now.

Pure functions over the hub's open incidents, shared by ``GET /api/v1/me/assignments`` and ``/ws/field``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dispatcher.core.incidents import DeadlineState, Incident
from dispatcher.hub import Hub


def officer_teams(hub: Hub, officer_id: str | None) -> frozenset[str]:
    """The teams ``officer_id`` belongs to on the roster in force (none when it is not on it)."""
    if officer_id is None:
        return frozenset()
    officer = hub.roster.officers.get(officer_id)
    return frozenset({officer.team}) if officer is not None else frozenset()


def holds(incident: Incident, officer_id: str | None, teams: frozenset[str]) -> bool:
    """Whether the officer (or, with ``teams``, one of its teams) holds an assignment of ``incident``."""
    return any((officer_id is not None and a.officer == officer_id) or a.team in teams for a in incident.assignments)


def running_deadline(incident: Incident, team: str) -> dict[str, Any] | None:
    """The assignment's deadline that runs now: its earliest pending one (ack, arrive or resolve)."""
    pending = [d for d in incident.assignment(team).deadlines if d.state is DeadlineState.PENDING]
    if not pending:
        return None
    first = min(pending, key=lambda d: d.due_at)
    return {"kind": first.kind.value, "due_at": first.due_at}


_FAR = datetime.max.replace(tzinfo=UTC)


def tasks_of(
    incidents: list[Incident], officer_id: str | None, teams: frozenset[str]
) -> list[tuple[Incident, str, dict[str, Any] | None]]:
    """(incident, team, running deadline) of each live assignment the officer (or one of ``teams``) holds, the
    most urgent first: priority (1 first), then the running deadline's due time (none last), then the id."""
    tasks = []
    for incident in incidents:
        for a in incident.assignments:
            if a.is_live and ((officer_id is not None and a.officer == officer_id) or a.team in teams):
                tasks.append((incident, a.team, running_deadline(incident, a.team)))

    def urgency(task: tuple[Incident, str, dict[str, Any] | None]) -> tuple[int, datetime, int, str]:
        incident, team, deadline = task
        return (incident.priority, deadline["due_at"] if deadline else _FAR, incident.id, team)

    return sorted(tasks, key=urgency)
