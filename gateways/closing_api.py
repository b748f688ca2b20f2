"""Closing the loop under ``/api/v1``: extensions (延期), parking (挂账), verification (核查) and the board's lanes.

Each route parses, calls one hub method and serialises, like :mod:`gateways.api`; who may call which is in
the policy table (:mod:`gateways.policy`). An approver decides in the role of their account (a module
lead's account as ``module_lead``, the party secretary's as ``party_secretary``); the verifier is the
signed-in account, and its officer id when it has one, which must be none of the incident's handlers.
Verification photos are ids of the photo store (``POST /api/v1/media``); a photo taken far from the incident or
long before it is flagged on the verification (:func:`dispatcher.core.closing.photo_flags`), never refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dispatcher.accounts import Role
from dispatcher.core.closing import PhotoFacts, photo_flags
from dispatcher.core.incidents import Incident, RequestKind
from dispatcher.core.lifecycle import IncidentStatus
from dispatcher.field_store import MediaRecord
from dispatcher.values import IncidentId, RowId
from gateways.api import HubDep, json_response
from gateways.auth import acting, principal_of
from gateways.evidence import check_attachments, field_store, record_refs
from gateways.schemas import (
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
    409: {
        "description": "the lifecycle does not allow this move now (`illegal-transition`: `allowed` lists what it does)"
    }
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
    await check_attachments(request, body.photos)  # 422 naming a photo not in the photo store
    now = hub.clock.now()
    flags: tuple[str, ...] = ()
    if body.photos:
        store = field_store(request)
        facts = [_facts(await store.media(photo), photo, hub.rules.tz) for photo in body.photos]
        flags = photo_flags(await hub.get(incident_id), facts, now)
    incident = await hub.verify(
        incident_id,
        body.passed,
        now,
        verifier=acting(request, body.actor),
        verifier_ids=ids,
        reason=body.reason or "",
        photos=body.photos,
        flags=flags,
        expected_version=body.version,
    )
    await record_refs(request, incident.id, body.photos)  # readers of the incident may see its evidence
    return json_response(incident_json(incident))


def _facts(record: MediaRecord | None, photo: str, tz: tzinfo) -> PhotoFacts:
    """Where and when the photo was taken: the phone's own fix first, else the photo's EXIF (camera time is
    local: an EXIF time without an offset is read in the township's time zone)."""
    if record is None:
        return PhotoFacts(id=photo, taken_at=None, lat=None, lon=None)
    taken = record.client_taken_at
    if taken is None and record.exif_taken_at:
        try:
            parsed = datetime.fromisoformat(record.exif_taken_at)
        except ValueError:
            parsed = None
        if parsed is not None:
            taken = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)
    if taken is not None and taken.tzinfo is None:
        taken = taken.replace(tzinfo=UTC)  # stored as UTC; some drivers hand it back naive
    lat, lon = record.client_lat, record.client_lon
    if lat is None or lon is None:
        lat, lon = record.exif_lat, record.exif_lon
    return PhotoFacts(id=photo, taken_at=taken, lat=lat, lon=lon)


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
