"""What a run shows: times to dispatch, acknowledge, arrive and resolve; on-time rates; escalations;
and the scenario's expectations, each passed or failed with the incidents that failed it."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from dispatcher.briefing import Briefing, composite
from dispatcher.core.events import waiting_teams
from dispatcher.core.incidents import Incident
from dispatcher.core.lifecycle import IncidentStatus, Role
from simulations.runner import RunResult
from simulations.scenario import Expectation, offset


@dataclass
class IncidentTimes:
    incident: Incident
    dispatched: timedelta | None = None
    acked: dict[str, timedelta] = field(default_factory=dict)
    arrived: dict[str, timedelta] = field(default_factory=dict)
    resolved: dict[str, timedelta] = field(default_factory=dict)
    closed_at: datetime | None = None
    breaches: int = 0
    escalations: list[str] = field(default_factory=list)

    @property
    def lead(self) -> str | None:
        return next((a.team for a in self.incident.assignments if a.role is Role.LEAD), None)


def timings(result: RunResult) -> dict[int, IncidentTimes]:
    by_id = {i.id: IncidentTimes(i) for i in result.incidents}
    for event in result.events:
        times = by_id.get(event.incident_id) if event.incident_id is not None else None
        if times is None:
            continue
        data = orjson.loads(event.payload)
        since = event.at - times.incident.reported_at
        if event.type == "UnitsDispatched":
            times.dispatched = since
        elif event.type == "UnitMoved":
            target = {"acknowledged": times.acked, "on_scene": times.arrived, "resolved": times.resolved}.get(
                data["to_state"]
            )
            if target is not None:
                target.setdefault(data["team"], since)
        elif event.type == "IncidentClosed":
            times.closed_at = event.at
        elif event.type == "DeadlineMissed":
            times.breaches += 1
        elif event.type == "EscalationRaised":
            times.escalations.append(data["level"])
    return by_id


def officer_figures(result: RunResult) -> dict[str, dict[str, Any]]:
    """Per officer (runs with a roster): tasks given, acknowledged and how fast, taken away for silence."""
    holder: dict[tuple[int, str], tuple[str, datetime]] = {}
    given: dict[str, int] = defaultdict(int)
    acked: dict[str, list[timedelta]] = defaultdict(list)
    resent: dict[str, int] = defaultdict(int)
    for event in result.events:
        if event.incident_id is None or event.type not in {"UnitsDispatched", "OfficerAssigned", "UnitMoved"}:
            continue
        data = orjson.loads(event.payload)
        if event.type == "UnitsDispatched":
            for unit in data["units"]:
                if unit.get("officer"):
                    holder[(event.incident_id, unit["team"])] = (unit["officer"], event.at)
                    given[unit["officer"]] += 1
        elif event.type == "OfficerAssigned":
            holder[(event.incident_id, data["team"])] = (data["officer"], event.at)
            given[data["officer"]] += 1
            if data["reason"] == "redispatch" and data["previous"]:
                resent[data["previous"]] += 1
        elif data["to_state"] == "acknowledged":
            held = holder.get((event.incident_id, data["team"]))
            if held is not None:
                acked[held[0]].append(event.at - held[1])
    return {
        officer: {
            "tasks": given[officer],
            "ack": _stats(acked[officer]),
            "resent_for_silence": resent[officer],
        }
        for officer in sorted(given)
    }


def _stats(values: list[timedelta]) -> dict[str, float | None]:
    seconds = sorted(v.total_seconds() for v in values)
    if not seconds:
        return {"count": 0, "median_s": None, "p90_s": None}
    p90 = seconds[min(len(seconds) - 1, round(0.9 * (len(seconds) - 1)))]
    return {"count": len(seconds), "median_s": statistics.median(seconds), "p90_s": p90}


def _on_time(group: list[IncidentTimes], end: datetime) -> dict[str, Any]:
    """On-time closed ÷ (closed + still open past the lead's resolve deadline): open ones are not forgiven."""
    closed = on_time = overdue_open = 0
    for t in group:
        lead = next((a for a in t.incident.assignments if a.role is Role.LEAD), None)
        due = next((d.due_at for d in lead.deadlines if d.kind.value == "resolve"), None) if lead else None
        if t.incident.status is IncidentStatus.CLOSED:
            closed += 1
            resolved = t.resolved.get(lead.team) if lead else None
            if due is None or (resolved is not None and t.incident.reported_at + resolved <= due):
                on_time += 1
        elif due is not None and due < end:
            overdue_open += 1
    counted = closed + overdue_open
    return {
        "closed": closed,
        "on_time": on_time,
        "open_past_deadline": overdue_open,
        "on_time_rate": (on_time / counted) if counted else None,
    }


def briefing_rows(briefing: Briefing) -> dict[str, dict[str, Any]]:
    """The briefing's figures of each unit (dispatcher.briefing, the code of ``dispatcher report``), as plain
    values: the same definitions as a real month's briefing, so the two can be laid side by side."""
    return {
        u.unit or "(none)": {
            "received": u.received,
            "accepted": u.accepted,
            "due": u.due,
            "closed": u.closed,
            "close_rate": u.close_rate,
            "on_time_rate": u.on_time_rate,
            "overdue_open": u.overdue_open,
            "extension_rate": u.extension_rate,
            "rework_rate": u.rework_rate,
            "composite": composite(u),
            **{f"{stage.value}_median_s": t.median_s for stage, t in u.stages.items()},
        }
        for u in briefing.units
    }


def summarise(result: RunResult) -> dict[str, Any]:
    by_id = timings(result)
    groups: dict[str, dict[str, list[IncidentTimes]]] = {"module": defaultdict(list), "team": defaultdict(list)}
    for t in by_id.values():
        groups["module"][t.incident.module].append(t)
        for a in t.incident.assignments:
            groups["team"][a.team].append(t)
    out: dict[str, Any] = {
        "scenario": result.scenario.name,
        "seed": result.scenario.seed,
        "rule_table": result.rules_version,
        "start": result.started.isoformat(),
        "end": result.ended.isoformat(),
        "incidents": len(by_id),
        "events": len(result.events),
        "refused_moves": result.refused,
        "verifications": sum(len(i.loop.verifications) for i in result.incidents),
        "reworks": sum(i.loop.reworks for i in result.incidents),
        "extensions": sum(i.loop.extensions for i in result.incidents),
        "by_module": {},
        "by_team": {},
    }
    for module, group in sorted(groups["module"].items()):
        out["by_module"][module] = {
            "incidents": len(group),
            "dispatch": _stats([t.dispatched for t in group if t.dispatched is not None]),
            "lead_ack": _stats([t.acked[t.lead] for t in group if t.lead and t.lead in t.acked]),
            "lead_arrive": _stats([t.arrived[t.lead] for t in group if t.lead and t.lead in t.arrived]),
            "lead_resolve": _stats([t.resolved[t.lead] for t in group if t.lead and t.lead in t.resolved]),
            "breaches": sum(t.breaches for t in group),
            "escalations": sum(len(t.escalations) for t in group),
            **_on_time(group, result.ended),
        }
    by_officer = officer_figures(result)
    if by_officer:
        out["by_officer"] = by_officer
        out["waited_for_an_officer"] = sum(
            len(waiting_teams(e.payload)) for e in result.events if e.type == "AssignmentWaiting"
        )
    if result.briefing:
        out["briefing"] = {by.value: briefing_rows(b) for by, b in result.briefing.items()}
    for team, group in sorted(groups["team"].items()):
        out["by_team"][team] = {
            "assignments": len(group),
            "ack": _stats([t.acked[team] for t in group if team in t.acked]),
            "arrive": _stats([t.arrived[team] for t in group if team in t.arrived]),
            "resolve": _stats([t.resolved[team] for t in group if team in t.resolved]),
            "never_acknowledged": sum(1 for t in group if team not in t.acked),
        }
    return out


@dataclass(frozen=True)
class Verdict:
    name: str
    passed: bool
    detail: str


def _selected(expectation: Expectation, times: dict[int, IncidentTimes]) -> list[IncidentTimes]:
    chosen = []
    for t in times.values():
        category = t.incident.category or ""
        if expectation.category is not None:
            pattern = expectation.category
            if pattern.endswith(".*") and not category.startswith(pattern[:-1]):
                continue
            if not pattern.endswith(".*") and category != pattern:
                continue
        if expectation.module is not None and t.incident.module != expectation.module:
            continue
        chosen.append(t)
    return chosen


def verdicts(result: RunResult, expectations: list[Expectation] | None = None, variant: str = "run") -> list[Verdict]:
    """Each expectation (default: the scenario's) that speaks of ``variant``, passed or failed, with the ids
    of the incidents that failed it."""
    times = timings(result)
    found = []
    chosen = result.scenario.expectations if expectations is None else expectations
    for number, e in enumerate(chosen, 1):
        if e.variant is not None and e.variant != variant:
            continue
        group = _selected(e, times)
        name = e.name or f"expectation {number}"
        failed: list[int] = []
        checks: list[str] = []
        if not group:
            found.append(Verdict(name, False, "no incident matched its filters"))
            continue
        if e.dispatched_within is not None:
            limit = offset(e.dispatched_within)
            checks.append(f"dispatched within {e.dispatched_within}")
            failed += [t.incident.id for t in group if t.dispatched is None or t.dispatched > limit]
        if e.lead_acknowledged_within is not None:
            limit = offset(e.lead_acknowledged_within)
            checks.append(f"lead acknowledged within {e.lead_acknowledged_within}")
            failed += [t.incident.id for t in group if t.lead is None or t.acked.get(t.lead, limit * 2) > limit]
        if e.none_open_after is not None:
            limit = offset(e.none_open_after)
            checks.append(f"none open {e.none_open_after} after its report")
            for t in group:
                finished = t.closed_at or (None if t.incident.is_open else t.incident.updated_at)
                if (finished or result.ended) - t.incident.reported_at > limit:
                    failed.append(t.incident.id)
        if e.teams_dispatched is not None:
            wanted = set(e.teams_dispatched)
            checks.append(f"teams {sorted(wanted)} dispatched together")
            failed += [t.incident.id for t in group if {a.team for a in t.incident.assignments} != wanted]
        if e.escalations_at_least is not None:
            level = e.escalated_to
            count = sum(1 for t in group for lv in t.escalations if level is None or lv == level)
            checks.append(f"at least {e.escalations_at_least} escalation(s){f' to {level}' if level else ''}")
            if count < e.escalations_at_least:
                failed.append(-count)  # no incident to blame: record the count seen
        for least, seen, what in (
            (e.reworks_at_least, sum(t.incident.loop.reworks for t in group), "rework(s)"),
            (e.extensions_at_least, sum(t.incident.loop.extensions for t in group), "extension(s)"),
        ):
            if least is not None:
                checks.append(f"at least {least} {what} (seen {seen})")
                if seen < least:
                    failed.append(-seen)
        failed_ids = sorted({i for i in failed if i > 0})
        passed = not failed
        detail = "; ".join(checks) + f" over {len(group)} incident(s)"
        if not passed:
            detail += f"; failed: {failed_ids[:10] if failed_ids else 'too few'}"
        found.append(Verdict(name, passed, detail))
    return found
