"""Closing the loop under ``/api/v1``: extensions (延期), parking (挂账), verification (核查) and the board's lanes.

Each route parses, calls one hub method and serialises, like :mod:`gateways.api`; who may call which is in
the policy table (:mod:`gateways.policy`). An approver decides in the role of their account (a module
lead's account as ``module_lead``, the party secretary's as ``party_secretary``); the verifier is the
signed-in account, and its officer id when it has one, which must be none of the incident's handlers.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dispatcher.accounts import Role
from dispatcher.core.incidents import Incident, RequestKind
from dispatcher.core.lifecycle import IncidentStatus
from dispatcher.values import IncidentId, RowId
from gateways.api import HubDep, json_response
from gateways.auth import acting, principal_of
from gateways.schemas import (
    Conflict,
    DecisionIn,
    ExtensionIn,
    IncidentPublic,
    LanesPublic,
    ParkingIn,
    ResumeIn,
    VerificationIn,
    incident_json,
)

router = APIRouter(prefix="/api/v1")

_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": Conflict, "description": "the lifecycle does not allow this move now (`allowed` lists what it does)"}
}

#: The approver's role on a request, from the account's role.
APPROVER_ROLE = {Role.MODULE_LEAD: "module_lead", Role.PARTY_SECRETARY: "party_secretary"}


@router.post(
    "/incidents/{incident_id}/extensions",
    response_model=IncidentPublic,
    responses=_CONFLICT,
    summary="延期: a team asks for its resolution deadline to move",
)
async def request_extension(request: Request, incident_id: IncidentId, body: ExtensionIn, hub: HubDep) -> Response:
    incident = await hub.request_extension(
        incident_id, body.team, body.reason, body.due_at, hub.clock.now(), acting(request, body.actor)
    )
    return json_response(incident_json(incident))


@router.post(
    "/incidents/{incident_id}/parking",
    response_model=IncidentPublic,
    responses=_CONFLICT,
    summary="挂账: ask to park the incident until a review date",
)
async def request_parking(request: Request, incident_id: IncidentId, body: ParkingIn, hub: HubDep) -> Response:
    incident = await hub.request_parking(
        incident_id, body.reason, body.review_at, hub.clock.now(), acting(request, body.actor)
    )
    return json_response(incident_json(incident))


@router.post(
    "/incidents/{incident_id}/requests/{request_id}/{decision}",
    response_model=IncidentPublic,
    responses=_CONFLICT,
    summary="An approver approves or refuses an extension or parking request",
)
async def decide_request(
    request: Request,
    incident_id: IncidentId,
    request_id: RowId,
    decision: Literal["approve", "refuse"],
    hub: HubDep,
    body: DecisionIn | None = None,
) -> Response:
    role = APPROVER_ROLE.get(principal_of(request).role, principal_of(request).role.value)
    incident = await hub.decide_request(
        incident_id,
        request_id,
        decision == "approve",
        hub.clock.now(),
        role=role,
        actor=acting(request, body.actor if body else None),
        reason=(body.reason or "") if body else "",
    )
    return json_response(incident_json(incident))


@router.post(
    "/incidents/{incident_id}/resume",
    response_model=IncidentPublic,
    responses=_CONFLICT,
    summary="Take a parked incident out of the parked list",
)
async def resume(request: Request, incident_id: IncidentId, hub: HubDep, body: ResumeIn | None = None) -> Response:
    incident = await hub.resume(incident_id, hub.clock.now(), acting(request, body.actor if body else None))
    return json_response(incident_json(incident))


@router.post(
    "/incidents/{incident_id}/verification",
    response_model=IncidentPublic,
    responses=_CONFLICT,
    summary="核查: pass (close) or fail (返工) a resolved incident, with photos",
)
async def verify(request: Request, incident_id: IncidentId, body: VerificationIn, hub: HubDep) -> Response:
    account = principal_of(request).account
    ids = [account.name, *([account.officer_id] if account.officer_id else [])]
    incident = await hub.verify(
        incident_id,
        body.passed,
        hub.clock.now(),
        verifier=acting(request, body.actor),
        verifier_ids=ids,
        reason=body.reason or "",
        photos=body.photos,
        expected_version=body.version,
    )
    return json_response(incident_json(incident))


@router.get("/lanes", response_model=LanesPublic, summary="The closing-the-loop lanes of the open incidents")
async def lanes(hub: HubDep) -> Response:
    _, incidents = hub.open_incidents()
    verifying: list[Incident] = []
    asking: list[tuple[Incident, int]] = []
    parked: list[Incident] = []
    for incident in sorted(incidents, key=lambda i: i.id):
        if incident.status is IncidentStatus.VERIFYING:
            verifying.append(incident)
        elif incident.status is IncidentStatus.PARKED:
            parked.append(incident)
        for r in incident.loop.requests:
            if r.is_open and r.kind is RequestKind.EXTENSION:
                asking.append((incident, r.id))
    return json_response(
        {
            "verifying": [{"incident": incident_json(i), "request_id": None} for i in verifying],
            "extension_requests": [{"incident": incident_json(i), "request_id": rid} for i, rid in asking],
            "parked": [{"incident": incident_json(i), "request_id": None} for i in parked],
        }
    )
