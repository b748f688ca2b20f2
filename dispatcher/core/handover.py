"""The shift handover (交接班) summary: what one shift hands the next. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from dispatcher.core.incidents import DeadlineState, Incident

#: A running deadline due within this window is listed as about to breach.
SOON = timedelta(minutes=30)


def summarise(team: str, incidents: Iterable[Incident], at: datetime, soon: timedelta = SOON) -> dict[str, Any]:
    """Open incidents the team works on, each with its running deadlines; those about to breach apart."""
    open_items: list[dict[str, Any]] = []
    running = 0
    breaching: list[dict[str, Any]] = []
    for incident in sorted(incidents, key=lambda i: (i.priority, i.id)):
        if not incident.is_open or not incident.has_team(team):
            continue
        assignment = incident.assignment(team)
        if not assignment.is_live:
            continue
        deadlines = [d for d in assignment.deadlines if d.state is DeadlineState.PENDING]
        running += len(deadlines)
        open_items.append(
            {
                "incident_id": incident.id,
                "status": incident.status.value,
                "state": assignment.state.value,
                "officer": assignment.officer,
                "priority": incident.priority,
                "category": incident.category,
                "deadlines": [{"kind": d.kind.value, "due_at": d.due_at.isoformat()} for d in deadlines],
            }
        )
        for d in deadlines:
            if d.due_at <= at + soon:
                breaching.append(
                    {
                        "incident_id": incident.id,
                        "kind": d.kind.value,
                        "due_at": d.due_at.isoformat(),
                        "overdue": d.due_at <= at,
                    }
                )
    breaching.sort(key=lambda b: (b["due_at"], b["incident_id"]))
    return {
        "team": team,
        "at": at.isoformat(),
        "open": open_items,
        "running_deadlines": running,
        "about_to_breach": breaching,
    }
