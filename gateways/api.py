"""The HTTP API under ``/api/v1``: each route parses, calls one hub method, serialises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError
from starlette.requests import HTTPConnection

from dispatcher.accounts import Account
from dispatcher.briefing import Unit
from dispatcher.core.incidents import Incident, Refused, Report
from dispatcher.core.lifecycle import IllegalTransition, IncidentAction, IncidentStatus, UnitAction
from dispatcher.hub import Hub, HubStopped, ReportOutcome, UnknownAlarm
from dispatcher.store import CommitRefused, IncidentFilter, StoreUnavailable
from dispatcher.values import IncidentId, Offset, Seq, Text
from gateways import problems
from gateways.auth import acting, principal_of
from gateways.evidence import attachment_problem, check_attachments, record_refs
from gateways.policy import READ_INCIDENT, Scope, grant_for, scope_refusal
from gateways.schemas import (
    AlarmAckIn,
    BriefingPublic,
    CancelIn,
    CloseIn,
    EventsPublic,
    IncidentCreate,
    IncidentDetail,
    IncidentPublic,
    IncidentsBatchCreate,
    IncidentsBatchPublic,
    IncidentsPublic,
    NoteIn,
    ReportReceipt,
    UnitActionIn,
    briefing_public,
    event_json,
    incident_json,
)
from gateways.tenancy import township_of
from rules import RuleBook


async def get_hub(request: HTTPConnection) -> Hub:
    """The hub of the township the guard settled for this request (the one place that chooses a hub)."""
    return township_of(request).hub


HubDep = Annotated[Hub, Depends(get_hub)]

router = APIRouter(prefix="/api/v1")


class JsonAnswer(Response):
    """Encoded JSON with its head made directly: the headers :class:`Response` would make, in its order.

    ``Content-Length``, ``Content-Type: application/json``, then ``extra`` (raw, lower-case names, as
    ``response.headers[name] = value`` would append them), without ``init_headers`` and ``MutableHeaders``.
    Only for statuses that carry a body (not 1xx, 204 or 304).
    """

    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int = 200, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", b"%d" % len(body)), _JSON_TYPE, *extra]


_JSON_TYPE = (b"content-type", b"application/json")


def json_response(data: Any, status_code: int = 200) -> Response:
    if status_code < 200 or status_code in (204, 304):
        return Response(orjson.dumps(data), status_code=status_code, media_type="application/json")
    return JsonAnswer(orjson.dumps(data), status_code)


def _raw_json(text: str, status_code: int = 200) -> Response:
    return Response(text, status_code=status_code, media_type="application/json")


def _field_error(field: str, message: str) -> HTTPException:
    return problems.Problem(422, "invalid", f"{field}: {message}", errors=[{"field": field, "message": message}])


@router.post(
    "/incidents",
    status_code=201,
    response_model=IncidentPublic | ReportReceipt,
    responses={
        200: {
            "model": IncidentPublic | ReportReceipt,
            "description": "this report_id was already reported, or the report joined an open incident of the "
            "same category close by (its report_count rose); header X-Report-Outcome says which",
        }
    },
    summary="Report an incident; it is routed and dispatched at once, or joins the open incident it repeats",
    description="The answer is the incident when the reporter may read it (as `GET /api/v1/incidents/{id}` "
    "would let it), else a `ReportReceipt`: the incident's id and status only.",
)
async def report_incident(request: Request, body: IncidentCreate, hub: HubDep) -> Response:
    if body.zone is not None and not hub.rules.has_zone(body.zone):
        raise _field_error("zone", f"unknown zone {body.zone!r} in rule table {hub.rules.version}")
    await check_attachments(request, body.photos, body.place)
    outcome = await hub.report(body.to_report(), hub.clock.now())
    incident = outcome.incident
    await record_refs(request, incident.id, body.photos)
    kind = "created" if outcome.created else "joined" if outcome.joined else "known"
    hub.stats.reports["http", kind] += 1
    status_code = 201 if outcome.created else 200
    if _may_read(principal_of(request).account, incident, hub):
        answer = incident_json(incident, encoded=True)  # written below and read by nobody
    else:
        answer = {"id": incident.id, "report_id": body.report_id, "status": incident.status.value, "outcome": kind}
    return JsonAnswer(orjson.dumps(answer), status_code, _OUTCOME_HEADERS[kind])


#: ``X-Report-Outcome`` of each answer of the single door, encoded once.
_OUTCOME_HEADERS = {kind: ((b"x-report-outcome", kind.encode()),) for kind in ("created", "joined", "known")}


@router.post(
    "/incidents/batch",
    response_model=IncidentsBatchPublic,
    responses={
        413: {"description": "the body is over the batch door's limit (see docs/security.md)"},
        422: {"description": "the body is not a JSON array of at most 500 items (nothing was stored)"},
        503: {"description": "the database could not be reached: retry the whole batch, stored reports answer known"},
    },
    summary="Report up to 500 incidents at once; each report is answered on its own, in order",
    description="For hotline imports and devices that buffer. Each item is the body of `POST /api/v1/incidents` "
    "and is validated on its own: an invalid item, an unknown zone or a value the store refuses is answered "
    "`refused` with its problem, and the others are stored all the same (together, in one writer batch when "
    "they fit). The answer is `200` whatever the outcomes; `incident` is given only where the reporter may read "
    "it (as the single door answers a receipt).",
)
async def report_incidents(request: Request, body: IncidentsBatchCreate, hub: HubDep) -> Response:
    at = hub.clock.now()
    rules = hub.rules
    outcomes: list[dict[str, Any]] = []
    accepted: list[tuple[dict[str, Any], Report]] = []
    for outcome, report in _admitted(body.root, rules):
        outcomes.append(outcome)
        if report is None:
            continue
        # Most reports carry no photo and no place code: nothing to look up, no coroutine to make.
        if report.photos or report.place is not None:
            problem = await attachment_problem(request, report.photos, report.place)
            if problem is not None:
                errors = [{"field": problem[0], "message": problem[1]}]
                outcome.update(outcome="refused", code="invalid", problem=problems.one_line(errors), errors=errors)
                continue
        accepted.append((outcome, report))
    if accepted:
        answers = await hub.report_many([report for _, report in accepted], at)
        for unavailable in (a for a in answers if isinstance(a, StoreUnavailable | HubStopped)):
            raise unavailable  # 503 for the whole batch: a retry of it is answered `known` where it was stored
        account = principal_of(request).account
        scope = _read_scope(account)
        roster_known = bool(hub.roster.officers)
        for (outcome, report), answer in zip(accepted, answers, strict=True):
            _settle(outcome, answer, account, scope, roster_known)
            if report.photos and isinstance(answer, ReportOutcome):
                await record_refs(request, answer.incident.id, report.photos)
    counts = dict.fromkeys(BATCH_KINDS, 0)
    for outcome in outcomes:
        counts[outcome["outcome"]] += 1
    hub.stats.reports.update({("http_batch", kind): n for kind, n in counts.items() if n})
    request.state.audit_detail = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "empty"
    return JsonAnswer(orjson.dumps({"data": outcomes, "count": len(outcomes), **counts}))


BATCH_KINDS = ("created", "known", "joined", "refused")

#: The whole batch's items validated in one call (pydantic's loop, not ours); the models are the ones
#: ``IncidentCreate.model_validate`` makes of each.
_BATCH_ITEMS: TypeAdapter[list[IncidentCreate]] = TypeAdapter(list[IncidentCreate])


def _admitted(items: list[Any], rules: RuleBook) -> Iterator[tuple[dict[str, Any], Report | None]]:
    """Each item's outcome so far and its report when valid, in order (see :func:`_admit`).

    The items are validated together first; when any of them is not valid, each is validated on its own so
    that its problems are its own.
    """
    try:
        bodies = _BATCH_ITEMS.validate_python(items)
    except ValidationError:
        for index, item in enumerate(items):
            yield _admit(index, item, rules)
        return
    for index, body in enumerate(bodies):
        outcome: dict[str, Any] = {"index": index, "report_id": body.report_id}
        zone = body.zone
        if zone is not None and not rules.has_zone(zone):
            yield _unknown_zone(outcome, zone, rules), None
        else:
            yield outcome, body.to_report()


def _admit(index: int, item: Any, rules: RuleBook) -> tuple[dict[str, Any], Report | None]:
    """One batch item checked as the single door checks its body: its outcome so far, and its report when valid."""
    given = item.get("report_id") if isinstance(item, dict) else None
    outcome: dict[str, Any] = {"index": index, "report_id": given if isinstance(given, str) else None}
    try:
        body = IncidentCreate.model_validate(item)
    except ValidationError as exc:
        errors = problems.field_errors(exc.errors(include_url=False, include_input=False))
        outcome.update(outcome="refused", code="invalid", problem=problems.one_line(errors), errors=errors)
        return problems.answerable(outcome), None
    if body.zone is not None and not rules.has_zone(body.zone):
        return _unknown_zone(outcome, body.zone, rules), None
    return outcome, body.to_report()


def _unknown_zone(outcome: dict[str, Any], zone: str, rules: RuleBook) -> dict[str, Any]:
    errors = [{"field": "zone", "message": f"unknown zone {zone!r} in rule table {rules.version}"}]
    outcome.update(outcome="refused", code="invalid", problem=problems.one_line(errors), errors=errors)
    return outcome


def _settle(
    outcome: dict[str, Any],
    answer: ReportOutcome | BaseException,
    account: Account,
    scope: Scope | None,
    roster_known: bool,
) -> None:
    """Fill in a valid item's outcome from what the hub answered for it (an unexpected error is raised: 500).

    ``scope``: the account's on ``GET /api/v1/incidents/{incident_id}`` (:func:`_read_scope`); ``roster_known``:
    whether the hub's roster has officers (the same for the whole batch).
    """
    if isinstance(answer, ReportOutcome):
        incident = answer.incident
        outcome["outcome"] = "created" if answer.created else "joined" if answer.joined else "known"
        outcome["id"] = incident.id
        outcome["status"] = incident.status._value_
        if scope is not None and scope_refusal(account, scope, incident, roster_known=roster_known) is None:
            outcome["incident"] = incident_json(incident)
        return
    if isinstance(answer, CommitRefused):
        problem = f"not stored, a value of this report was refused: {answer}"
        outcome.update(outcome="refused", code=problems.code_of(answer), problem=problem)
        return
    if isinstance(answer, Refused):
        outcome.update(outcome="refused", code=problems.code_of(answer), problem=str(answer))
        return
    raise answer


def _read_scope(account: Account) -> Scope | None:
    """The scope ``account`` has on ``GET /api/v1/incidents/{incident_id}``, or None: it may not read incidents."""
    return (grant_for(*READ_INCIDENT) or {}).get(account.role)


def _may_read(account: Account, incident: Incident, hub: Hub) -> bool:
    """Whether ``account`` could read ``incident`` through ``GET /api/v1/incidents/{incident_id}``."""
    return _readable(account, _read_scope(account), incident, hub)


def _readable(account: Account, scope: Scope | None, incident: Incident, hub: Hub) -> bool:
    """:func:`_may_read` with the account's :func:`_read_scope` already known (a batch asks once)."""
    if scope is None:
        return False
    return scope_refusal(account, scope, incident, roster_known=bool(hub.roster.officers)) is None


@router.get("/incidents", response_model=IncidentsPublic, summary="List incidents, newest first")
async def list_incidents(
    hub: HubDep,
    status: Annotated[list[IncidentStatus] | None, Query()] = None,
    team: Text | None = None,
    module: Text | None = None,
    open: bool = False,
    exercise: Annotated[bool | None, Query(description="true: drills only; false: real incidents only")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> Response:
    where = IncidentFilter(status=tuple(status or ()), team=team, module=module, open_only=open, exercise=exercise)
    incidents, count = await hub.list_incidents(where, limit=limit, offset=offset)
    return json_response({"data": [incident_json(i) for i in incidents], "count": count})


@router.get("/incidents/{incident_id}", response_model=IncidentDetail, summary="One incident with its timeline")
async def get_incident(incident_id: IncidentId, hub: HubDep) -> Response:
    incident = await hub.get(incident_id)
    timeline = await hub.timeline(incident_id)
    head = orjson.dumps(incident_json(incident))[:-1]
    body = head + b',"timeline":[' + ",".join(event_json(e) for e in timeline).encode() + b"]}"
    return Response(body, media_type="application/json")


_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "the lifecycle does not allow this move now (`illegal-transition`, with `allowed`), or the "
        "incident moved on since the `version` given (`stale-version`); `current` says where it is now"
    }
}


class UnitStepPath(BaseModel):
    """The path of a team's step, validated as the route's parameters are (the edge answers the route itself)."""

    incident_id: IncidentId
    team: Text
    action: UnitAction


@router.post(
    "/incidents/{incident_id}/assignments/{team}/{action}",
    response_model=IncidentPublic,
    responses=_CONFLICT,
    summary="A team acknowledges, goes en route, arrives on scene or resolves",
)
async def move_unit(
    request: Request,
    incident_id: IncidentId,
    team: Text,
    action: UnitAction,
    hub: HubDep,
    body: UnitActionIn | None = None,
) -> Response:
    actor = acting(request, body.actor if body else None)
    if action is UnitAction.RETURN and not (body and body.reason and body.reason.strip()):
        raise _field_error("reason", "a return (回退) needs a reason: why is it not this team's matter")
    photos = tuple(body.photos) if body else ()
    await check_attachments(request, photos)
    try:
        incident = await hub.move_unit(
            incident_id,
            team,
            action,
            hub.clock.now(),
            actor,
            reason=(body.reason or "") if body else "",
            expected_version=body.version if body else None,
            note=body.note if body else None,
            photos=photos,
        )
    except IllegalTransition:
        # A retry of a step this account already took (a double tap, an answer lost): not a conflict.
        current = await hub.get(incident_id)
        if not await hub.step_taken(current, team, action, actor):
            raise
        await record_refs(request, incident_id, photos)  # in case the first try stopped before recording them
        response = json_response({**incident_json(current), "outcome": "already"})
        response.headers["X-Step-Outcome"] = "already"
        return response
    await record_refs(request, incident_id, photos)
    response = json_response({**incident_json(incident), "outcome": "applied"})
    response.headers["X-Step-Outcome"] = "applied"
    return response


@router.post("/incidents/{incident_id}/close", response_model=IncidentPublic, responses=_CONFLICT)
async def close_incident(
    request: Request, incident_id: IncidentId, hub: HubDep, body: CloseIn | None = None
) -> Response:
    actor = acting(request, body.actor if body else None)
    incident = await hub.finish(
        incident_id, IncidentAction.CLOSE, hub.clock.now(), actor, expected_version=body.version if body else None
    )
    return json_response(incident_json(incident))


@router.post("/incidents/{incident_id}/cancel", response_model=IncidentPublic, responses=_CONFLICT)
async def cancel_incident(request: Request, incident_id: IncidentId, body: CancelIn, hub: HubDep) -> Response:
    actor = acting(request, body.actor)
    incident = await hub.finish(
        incident_id, IncidentAction.CANCEL, hub.clock.now(), actor, body.reason, expected_version=body.version
    )
    return json_response(incident_json(incident))


@router.post(
    "/incidents/{incident_id}/notes",
    response_model=IncidentPublic,
    status_code=201,
    responses={200: {"model": IncidentPublic, "description": "a note with this note_id was already added"}},
)
async def add_note(request: Request, incident_id: IncidentId, body: NoteIn, hub: HubDep) -> Response:
    await check_attachments(request, body.photos)
    incident, added = await hub.add_note(
        incident_id,
        body.text,
        hub.clock.now(),
        acting(request, body.author),
        photos=tuple(body.photos),
        note_id=body.note_id,
        public=body.public,
    )
    await record_refs(request, incident_id, body.photos)  # a retry records them again: idempotent
    return json_response(incident_json(incident), 201 if added else 200)


@router.get("/events", response_model=EventsPublic, summary="The event log after a sequence number")
async def list_events(
    hub: HubDep,
    since: Annotated[Seq, Query()] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> Response:
    events = await hub.events_since(since, limit=limit)
    data = ",".join(event_json(e) for e in events)
    return _raw_json(f'{{"data":[{data}],"last_seq":{hub.last_seq}}}')


@router.get("/briefing", response_model=BriefingPublic, summary="The briefing's figures per unit for a period")
async def get_briefing(
    hub: HubDep,
    start: Annotated[AwareDatetime, Query(alias="from", description="the period's first instant (inclusive)")],
    end: Annotated[AwareDatetime, Query(alias="to", description="the period's end (exclusive)")],
    by: Annotated[Unit, Query(description="the unit the figures are grouped by")] = Unit.TEAM,
) -> BriefingPublic:
    if end <= start:
        raise HTTPException(422, "the period must end after it starts ('to' after 'from')")
    return briefing_public(await hub.briefing(start=start, end=end, by=by))


def install_error_handlers(app: FastAPI) -> None:
    """Answer the hub's refusals (none of which changed anything) and every HTTP error as problem details."""
    problems.install(app, get_hub)


# -- alarms (the board's shared acknowledgement) ------------------------------------------------


@router.post(
    "/incidents/{incident_id}/alarms/{alarm_seq}/ack",
    response_model=IncidentPublic,
    responses={404: {"description": "no such incident, or no open alarm raised by that event"}},
    summary="Acknowledge an alarm (a missed deadline or an escalation) on every board",
)
async def acknowledge_alarm(
    incident_id: IncidentId, alarm_seq: Seq, hub: HubDep, request: Request, body: AlarmAckIn | None = None
) -> Response:
    actor = acting(request, body.actor if body else None)
    try:
        incident = await hub.acknowledge_alarm(incident_id, alarm_seq, hub.clock.now(), actor)
    except UnknownAlarm as exc:
        raise HTTPException(404, detail=str(exc)) from None
    return json_response(incident_json(incident))
