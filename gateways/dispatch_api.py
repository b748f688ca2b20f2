"""Dispatch routes under ``/api/v1``: the roster, units, operator overrides, the waiting queue, returns.

Each route parses, calls one hub method, serialises, like :mod:`gateways.api`. Every override names
its ``actor`` and may carry the incident ``version`` the operator saw (409 when it moved on since).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from dispatcher.core.roster import UnitState, UnitStatus
from dispatcher.hub import HandoverNotFound
from dispatcher.roster_file import OfficerIn, OverrideIn, RosterError, RosterIn, install_roster, parse_roster
from dispatcher.values import IncidentId, RowId, Text
from gateways.api import HubDep, json_response
from gateways.auth import acting
from gateways.schemas import (
    EscalateIn,
    HandoverAckIn,
    IncidentPublic,
    MergeIn,
    OfficerChoiceIn,
    PriorityIn,
    ReassignIn,
    SplitIn,
    TeamIn,
    UnitReportIn,
    incident_json,
)
from gateways.tenancy import township_of

router = APIRouter(prefix="/api/v1")


# -- operator overrides ---------------------------------------------------------------------


@router.post(
    "/incidents/{incident_id}/assignments/{team}/officer",
    response_model=IncidentPublic,
    summary="Hand a team's assignment to another officer (or the best free one)",
)
async def choose_officer(
    request: Request, incident_id: IncidentId, team: Text, body: OfficerChoiceIn, hub: HubDep
) -> Response:
    incident = await hub.assign(
        incident_id, team, body.officer, hub.clock.now(), acting(request, body.actor), expected_version=body.version
    )
    return json_response(incident_json(incident))


@router.post(
    "/incidents/{incident_id}/teams",
    response_model=IncidentPublic,
    summary="Send one more team to the incident",
)
async def add_team(request: Request, incident_id: IncidentId, body: TeamIn, hub: HubDep) -> Response:
    actor = acting(request, body.actor)
    incident = await hub.add_team(incident_id, body.team, hub.clock.now(), actor, expected_version=body.version)
    return json_response(incident_json(incident))


@router.post(
    "/incidents/{incident_id}/assignments/{team}/reassign",
    response_model=IncidentPublic,
    summary="Move a team's part (a returned one included) to another team",
)
async def reassign_team(
    request: Request, incident_id: IncidentId, team: Text, body: ReassignIn, hub: HubDep
) -> Response:
    incident = await hub.reassign_team(
        incident_id, team, body.to_team, hub.clock.now(), acting(request, body.actor), expected_version=body.version
    )
    return json_response(incident_json(incident))


@router.post(
    "/incidents/{incident_id}/escalate",
    response_model=IncidentPublic,
    summary="Escalate now: the next leader of the chain not yet reached hears of it",
)
async def escalate(request: Request, incident_id: IncidentId, body: EscalateIn, hub: HubDep) -> Response:
    actor = acting(request, body.actor)
    incident = await hub.escalate(incident_id, hub.clock.now(), actor, body.team, expected_version=body.version)
    return json_response(incident_json(incident))


@router.post("/incidents/{incident_id}/priority", response_model=IncidentPublic, summary="Change the priority")
async def set_priority(request: Request, incident_id: IncidentId, body: PriorityIn, hub: HubDep) -> Response:
    incident = await hub.set_priority(
        incident_id, body.priority, hub.clock.now(), acting(request, body.actor), expected_version=body.version
    )
    return json_response(incident_json(incident))


@router.post(
    "/incidents/{incident_id}/merge",
    response_model=IncidentPublic,
    summary="Fold this incident into another (its reports join it); answers with the one that stays",
)
async def merge(request: Request, incident_id: IncidentId, body: MergeIn, hub: HubDep) -> Response:
    actor = acting(request, body.actor)
    target = await hub.merge(
        incident_id,
        body.into,
        hub.clock.now(),
        actor,
        expected_version=body.version,
        expected_target_version=body.into_version,
    )
    return json_response(incident_json(target))


@router.post(
    "/incidents/{incident_id}/split",
    response_model=IncidentPublic,
    status_code=201,
    summary="Split a joined report off into an incident of its own, routed afresh",
)
async def split(request: Request, incident_id: IncidentId, body: SplitIn, hub: HubDep) -> Response:
    actor = acting(request, body.actor)
    return json_response(incident_json(await hub.split(incident_id, body.report_id, hub.clock.now(), actor)), 201)


# -- the queue and the returns ----------------------------------------------------------------


@router.get("/dispatch/waiting", summary="Assignments waiting for an officer, most urgent first")
async def waiting(hub: HubDep) -> Response:
    return json_response(
        {
            "data": [
                {
                    "incident_id": incident.id,
                    "team": team,
                    "priority": incident.priority,
                    "module": incident.module,
                    "category": incident.category,
                    "reported_at": incident.reported_at,
                    "dispatched_at": incident.assignment(team).dispatched_at,
                }
                for incident, team in hub.waiting()
            ]
        }
    )


@router.get("/dispatch/returns", summary="Returns (回退) counted by the rule that routed them")
async def returns(hub: HubDep, limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000) -> Response:
    events = await hub.store.events_of_type("AssignmentReturned", limit=limit)
    by_rule: Counter[str] = Counter()
    by_team: Counter[tuple[str, str]] = Counter()
    for event in events:
        data = orjson.loads(event.payload)
        rule = data.get("rule_id") or "(no rule)"
        by_rule[rule] += 1
        by_team[(rule, data["team"])] += 1
    return json_response(
        {
            "data": [
                {
                    "rule_id": rule,
                    "returns": count,
                    "by_team": {team: n for (r, team), n in sorted(by_team.items()) if r == rule},
                }
                for rule, count in by_rule.most_common()
            ],
            "total": sum(by_rule.values()),
        }
    )


# -- units --------------------------------------------------------------------------------------


def _unit_json(hub: Any, officer_id: str, unit: UnitState, on_duty: Mapping[str, str | None]) -> dict[str, Any]:
    officer = hub.roster.officers[officer_id]
    return {
        "id": officer.id,
        "name": officer.name,
        "team": officer.team,
        "module": officer.module,
        "post": officer.post,
        "kind": officer.kind.value,
        "department": officer.department,
        "on_duty": officer_id in on_duty and unit.status is not UnitStatus.OFF_DUTY,
        "posted_at": on_duty.get(officer_id, officer.zone),
        "status": unit.status.value,
        "tasks": unit.tasks,
        "location": {"lat": unit.lat, "lon": unit.lon} if unit.lat is not None else None,
        "position_at": unit.position_at,
    }


@router.get("/units", summary="Every officer on the roster: duty, status, position and open tasks")
async def units(hub: HubDep, team: Text | None = None) -> Response:
    now = hub.clock.now()
    teams = sorted({o.team for o in hub.roster.officers.values()} if team is None else {team})
    data = []
    for t in teams:
        on_duty = hub.roster.duty(t, now)
        for officer in hub.roster.team(t):
            data.append(_unit_json(hub, officer.id, hub.units.get(officer.id, UnitState()), on_duty))
    return json_response({"data": data, "roster_version": hub.roster.version})


@router.post("/units/{officer_id}/status", summary="An officer's device reports status and/or position")
async def report_unit(officer_id: Text, body: UnitReportIn, hub: HubDep) -> Response:
    unit = await hub.report_unit(
        officer_id,
        hub.clock.now(),
        status=UnitStatus(body.status) if body.status else None,
        lat=body.location.lat if body.location else None,
        lon=body.location.lon if body.location else None,
    )
    officer = hub.roster.officers[officer_id]
    answer = _unit_json(hub, officer_id, unit, hub.roster.duty(officer.team, hub.clock.now()))
    if body.accuracy_m is not None:
        answer["accuracy_m"] = body.accuracy_m
    return json_response(answer)


# -- the roster ---------------------------------------------------------------------------------


def _source(request: Request) -> RosterIn:
    source: RosterIn | None = township_of(request).roster_source
    if source is None:
        raise HTTPException(404, "no roster is loaded: PUT one to /api/v1/roster")
    return source


_EDIT = re.compile(r"\+edit\.(\d+)$")


def _edited_version(version: str) -> str:
    found = _EDIT.search(version)
    base = version[: found.start()] if found else version
    return f"{base}+edit.{int(found.group(1)) + 1 if found else 1}"[:64]


async def _install(request: Request, source: RosterIn, actor: str | None) -> Response:
    township = township_of(request)
    hub = township.hub
    try:
        await install_roster(hub, source, acting(request, actor))
    except RosterError as exc:
        raise HTTPException(422, detail=[{"loc": ["body"], "msg": p, "type": "roster"} for p in exc.problems]) from None
    township.roster_source = source
    township.shifts.follow(hub.roster)
    return json_response(orjson.loads(source.model_dump_json()))


@router.get("/roster", summary="The roster in force: officers, shifts and duty overrides")
async def get_roster(request: Request) -> Response:
    return json_response(orjson.loads(_source(request).model_dump_json()))


@router.put("/roster", summary="Replace the roster (checked against the rule table; refused whole on any problem)")
async def put_roster(request: Request, body: dict[str, Any], actor: Text | None = None) -> Response:
    try:
        source = parse_roster(body)
    except RosterError as exc:
        raise HTTPException(422, detail=[{"loc": ["body"], "msg": p, "type": "roster"} for p in exc.problems]) from None
    return await _install(request, source, actor)


@router.put("/roster/officers/{officer_id}", summary="Add or change one officer")
async def put_officer(request: Request, officer_id: Text, body: OfficerIn, actor: Text | None = None) -> Response:
    if body.id != officer_id:
        raise HTTPException(422, f"the body is officer {body.id!r}, the path {officer_id!r}")
    source = _source(request)
    officers = [o for o in source.officers if o.id != officer_id] + [body]
    edited = source.model_copy(update={"officers": officers, "version": _edited_version(source.version)})
    return await _install(request, edited, actor)


@router.delete("/roster/officers/{officer_id}", summary="Take an officer off the roster (and off every shift)")
async def delete_officer(request: Request, officer_id: Text, actor: Text | None = None) -> Response:
    source = _source(request)
    if all(o.id != officer_id for o in source.officers):
        raise HTTPException(404, f"officer {officer_id!r} is not on the roster")
    shifts = []
    for shift in source.shifts:
        kept = [o for o in shift.officers if o != officer_id]
        if kept:
            lead = shift.lead if shift.lead != officer_id else None
            shifts.append(shift.model_copy(update={"officers": kept, "lead": lead}))
    edited = source.model_copy(
        update={
            "officers": [o for o in source.officers if o.id != officer_id],
            "shifts": shifts,
            "overrides": [o for o in source.overrides if o.officer != officer_id],
            "version": _edited_version(source.version),
        }
    )
    return await _install(request, edited, actor)


@router.post("/roster/overrides", status_code=201, summary="Put an officer on or off duty for one day")
async def add_override(request: Request, body: OverrideIn, actor: Text | None = None) -> Response:
    source = _source(request)
    overrides = [o for o in source.overrides if (o.officer, o.date) != (body.officer, body.date)] + [body]
    edited = source.model_copy(update={"overrides": overrides, "version": _edited_version(source.version)})
    response = await _install(request, edited, actor)
    response.status_code = 201
    return response


# -- shift handovers ----------------------------------------------------------------------------


def _handover_json(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "team": record.team,
        "shift_id": record.shift_id,
        "at": record.at,
        "summary": orjson.loads(record.summary),
        "incoming_lead": record.incoming_lead,
        "acknowledged_by": record.acknowledged_by,
        "acknowledged_at": record.acknowledged_at,
    }


@router.get("/handovers", summary="Shift handovers (交接班), newest first")
async def handovers(hub: HubDep, team: Text | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> Response:
    return json_response({"data": [_handover_json(h) for h in await hub.store.handovers(team=team, limit=limit)]})


@router.post("/handovers/{handover_id}/ack", summary="The incoming duty lead takes the handover over")
async def acknowledge_handover(request: Request, handover_id: RowId, body: HandoverAckIn, hub: HubDep) -> Response:
    try:
        record = await hub.acknowledge_handover(handover_id, acting(request, body.actor), hub.clock.now())
    except HandoverNotFound:
        raise HTTPException(404, f"no handover {handover_id}") from None
    return json_response(_handover_json(record))
