"""An officer's tasks: the live assignments it (or its team) holds, with the deadline that runs now.

Pure functions over the hub's open incidents, shared by ``GET /api/v1/me/assignments`` and ``/ws/field``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dispatcher.core.incidents import DeadlineState, Incident
from dispatcher.hub import Hub
from rules.table import Labelled


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


def task_summary(
    incident: Incident,
    team: str,
    deadline: dict[str, Any] | None,
    officer_id: str | None,
    team_names: Mapping[str, Labelled] | None = None,
) -> dict[str, Any]:
    """What the phone's task list draws of one task (about 400 bytes, where the whole incident is ~7 KB): the
    incident's identity, place and urgency, and the officer's part (``task``, with the team's names from
    ``team_names``, its id where it has none). The task screen reads the whole incident
    (``GET /api/v1/incidents/{id}``) when it is opened."""
    report = incident.report
    held = incident.assignment(team)
    label = (team_names or {}).get(team)
    return {
        "id": incident.id,
        "version": incident.version,
        "status": incident.status.value,
        "priority": incident.priority,
        "category": incident.category,
        "description": report.description,
        "zone": report.zone,
        "location": {"lat": report.lat, "lon": report.lon} if report.lat is not None else None,
        "place": report.place,
        "exercise": report.exercise,
        "reported_at": incident.reported_at,
        "task": {
            "team": team,
            "team_name": label.name if label is not None else team,
            "team_name_en": label.name_en if label is not None else team,
            "state": held.state.value,
            "officer": held.officer,
            "mine": held.officer == officer_id,
            "deadline": deadline,
        },
    }


def task_summaries(
    incidents: list[Incident],
    officer_id: str | None,
    teams: frozenset[str],
    team_names: Mapping[str, Labelled] | None = None,
) -> list[dict[str, Any]]:
    """:func:`task_summary` of each task :func:`tasks_of` finds, in its order (the most urgent first)."""
    found = tasks_of(incidents, officer_id, teams)
    return [task_summary(i, team, deadline, officer_id, team_names) for i, team, deadline in found]


def team_names(hub: Hub) -> dict[str, Labelled]:
    """The teams of the rule table in force, by id (their Chinese and English names)."""
    return {t.id: t for t in hub.rules.table.teams}
