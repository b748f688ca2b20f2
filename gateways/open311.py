"""Open311 GeoReport v2 under ``/open311/v2/``: citizen apps and 12345-style hotlines report here.

The six calls of the specification (field summary: shared/data/open311/OPEN311_GEOREPORT_V2_FIELDS.md), each
in JSON or XML by the path's extension:

* ``GET services.{fmt}``: one service per catalogue category (``group``: its message-board class), plus
  ``other`` (a description the table's keywords classify; what they cannot goes to triage);
* ``GET services/{code}.{fmt}``: the extra questions (attributes) of the categories that ask some;
* ``POST requests.{fmt}``: a report (API key of a ``citizen_app`` or ``hotline`` account, as ``api_key`` in the
  form, the query or a bearer header), answered with ``service_request_id``, or a ``token`` while it is in triage;
* ``GET requests.{fmt}``, ``GET requests/{id}.{fmt}``, ``GET tokens/{token}.{fmt}``: the reports that came in
  from citizens and hotlines (never officers' or devices' reports, never drills), without the reporter.

Errors are the specification's: a list of ``{code, description}`` (``errors/error`` in XML), ``code`` being the
HTTP status. Each record carries the GB/T 47678.5 code of its category (``gbt_code``, an extension field).
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

from dispatcher.accounts import Role
from dispatcher.core.incidents import Incident, Refused, Report
from dispatcher.core.lifecycle import IncidentStatus
from dispatcher.core.lifecycle import Role as AssignmentRole
from dispatcher.hub import Hub, IncidentNotFound
from dispatcher.store import CommitRefused, IncidentFilter
from dispatcher.values import storable_text
from gateways.auth import principal_of
from gateways.context import context_of
from gateways.privacy import sensitive
from gateways.replicas import Elsewhere
from gateways.tenancy import township_of
from rules.matcher import RuleBook
from rules.table import Category

FORMATS = ("json", "xml")
OTHER = "other"  # the service of a matter the citizen cannot place: classified by keywords, else triage
TRIAGE = "triage"
REPORTER_KIND = {Role.CITIZEN_APP: "citizen", Role.HOTLINE: "hotline"}
PUBLIC_KINDS = tuple(REPORTER_KIND.values())
CLOSED = (IncidentStatus.RESOLVED, IncidentStatus.CLOSED, IncidentStatus.CANCELLED, IncidentStatus.MERGED)
OPEN = tuple(s for s in IncidentStatus if s not in CLOSED)
WINDOW = timedelta(days=90)  # the specification's default and largest window of GET requests
MAX_RECORDS = 1000  # ... and its cap on records


class Open311Error(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


@dataclass(frozen=True, slots=True)
class Attribute:
    """One extra question of a service definition; an answer in ``raise_severity`` sets the report's severity."""

    code: str
    description: str
    datatype: str
    required: bool
    values: tuple[tuple[str, str], ...] = ()
    raise_severity: Mapping[str, int] | None = None


#: The categories that ask more than the common fields (the service definitions). An answer is written into
#: the report's description (``[code] value``) so that the command room reads it.
ATTRIBUTES: dict[str, tuple[Attribute, ...]] = {
    "traffic.accident": (
        Attribute(
            "injured",
            "有人受伤吗？(Is anyone injured?)",
            "singlevaluelist",
            True,
            (("yes", "有人受伤 (yes)"), ("no", "无人受伤 (no)")),
            {"yes": 4},
        ),
        Attribute("vehicles", "涉及几辆车？(How many vehicles?)", "number", False),
    ),
    "public_order.fire_safety": (
        Attribute(
            "burning",
            "现在是否起火？(Is something burning now?)",
            "singlevaluelist",
            True,
            (("yes", "正在燃烧 (yes)"), ("no", "隐患，未起火 (no, a hazard)")),
            {"yes": 5},
        ),
    ),
}


# -- encoding -------------------------------------------------------------------------------------


#: Characters XML 1.0 cannot carry; a report's text may hold them (the API takes any storable text).
_XML_ILLEGAL = dict.fromkeys([c for c in range(0x20) if chr(c) not in "\t\n\r"] + [0xFFFE, 0xFFFF], "\ufffd")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _w3c(value)
    return str(value).translate(_XML_ILLEGAL)


def _w3c(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _element(name: str, value: Any) -> ET.Element:
    element = ET.Element(name)
    if isinstance(value, dict):
        for key, item in value.items():
            if item is not None:
                element.append(_element(key, item))
    elif isinstance(value, tuple):  # (child tag, items): a list in XML
        tag, items = value
        for item in items:
            element.append(_element(tag, item))
    else:
        element.text = _text(value)
    return element


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_json_ready(v) for v in value[1]]
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, datetime):
        return _w3c(value)
    return value


def answer(fmt: str, root: str, item: str, items: Sequence[dict[str, Any]], status: int = 200) -> Response:
    """``items`` as the specification's JSON (an array) or XML (``<root><item>…</item></root>``)."""
    if fmt == "xml":
        body = ET.tostring(_element(root, (item, items)), encoding="utf-8", xml_declaration=True)
        return Response(body, status_code=status, media_type="text/xml; charset=utf-8")
    return Response(orjson.dumps(_json_ready(list(items))), status_code=status, media_type="application/json")


def _format(request: Request) -> str:
    fmt = str(request.path_params.get("fmt", "json"))
    return fmt if fmt in FORMATS else "json"


class Open311Route(APIRoute):
    """Every refusal on these routes (the guard's, the parser's, the hub's) in the specification's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Open311Error as exc:
                status, description = exc.status, exc.description
            except Elsewhere:
                raise  # a township another replica serves: the request is carried there (gateways/replicas.py)
            except HTTPException as exc:
                status, description = exc.status_code, str(exc.detail)
                if status == 401:
                    description = "api_key missing or not valid: give the key of a citizen_app or hotline account"
            except RequestValidationError as exc:
                status = 400
                description = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            except IncidentNotFound as exc:
                status, description = 404, str(exc)
            except (Refused, CommitRefused) as exc:
                status, description = 400, f"not stored: {exc}"
            errors = [{"code": status, "description": description}]
            response = answer(_format(request), "errors", "error", errors, status)
            if status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
            return response

        return handle


router = APIRouter(prefix="/open311/v2", route_class=Open311Route, tags=["open311"])


def _fmt(fmt: str) -> str:
    if fmt not in FORMATS:
        raise Open311Error(404, f"unknown format {fmt!r}: use .json or .xml")
    return fmt


def _hub(request: HTTPConnection) -> Hub:
    """The hub of the township asked for: the API key's (set by the guard), else ``jurisdiction_id``, else the
    only (first) township."""
    if getattr(request.state, "township", None) is not None:
        return township_of(request).hub
    townships = context_of(request).townships
    wanted = request.query_params.get("jurisdiction_id")
    if wanted is not None and wanted not in townships:
        raise Open311Error(404, f"unknown jurisdiction_id {wanted!r}: one of {', '.join(sorted(townships))}")
    township = townships.first if wanted is None else townships[wanted]
    if not township.serving:
        raise Elsewhere(township.id)  # replica mode: its hub runs on another replica
    return township.hub


def _category(rules: RuleBook, code: str) -> Category | None:
    return next((c for c in rules.table.catalogue if c.id == code), None)


def _in_triage(incident: Incident) -> bool:
    """Still waiting for the command room to place it: no team has it yet (Open311 answers a token only)."""
    return incident.queue == TRIAGE and not incident.assignments and incident.is_open


# -- services ---------------------------------------------------------------------------------------


def services(rules: RuleBook) -> list[dict[str, Any]]:
    """The service list of a rule table: its catalogue, then ``other``."""
    words: dict[str, list[str]] = {}
    for entry in rules.table.keywords:
        words.setdefault(entry.category, []).extend(entry.words)
    listed = [
        {
            "service_code": c.id,
            "service_name": c.name,
            "description": c.name_en,
            "metadata": c.id in ATTRIBUTES,
            "type": "realtime",
            "keywords": ",".join(words.get(c.id, [])[:8]),
            "group": c.board_class,
            "gbt_code": c.gbt_code,
        }
        for c in rules.table.catalogue
    ]
    listed.append(
        {
            "service_code": OTHER,
            "service_name": "其他（由描述分类）",
            "description": "Anything else: the description decides the category; a token is answered while the "
            "command room sorts it",
            "metadata": False,
            "type": "batch",
            "keywords": "",
            "group": "其他",
            "gbt_code": None,
        }
    )
    return listed


@router.get("/services.{fmt}", summary="Open311: the service list (one service per catalogue category)")
async def list_services(request: Request, fmt: str) -> Response:
    return answer(_fmt(fmt), "services", "service", services(_hub(request).rules))


def _definition(code: str) -> dict[str, Any]:
    attributes = [
        {
            "variable": True,
            "code": a.code,
            "datatype": a.datatype,
            "required": a.required,
            "datatype_description": "",
            "order": order,
            "description": a.description,
            "values": ("value", [{"key": k, "name": n} for k, n in a.values]) if a.values else None,
        }
        for order, a in enumerate(ATTRIBUTES.get(code, ()), start=1)
    ]
    return {"service_code": code, "attributes": ("attribute", attributes)}


@router.get("/services/{service_code}.{fmt}", summary="Open311: a service's definition (its extra attributes)")
async def service_definition(request: Request, service_code: str, fmt: str) -> Response:
    fmt = _fmt(fmt)
    rules = _hub(request).rules
    if service_code != OTHER and _category(rules, service_code) is None:
        raise Open311Error(404, f"unknown service_code {service_code!r}")
    body = _definition(service_code)
    if fmt == "xml":
        xml = ET.tostring(_element("service_definition", body), encoding="utf-8", xml_declaration=True)
        return Response(xml, media_type="text/xml; charset=utf-8")
    return Response(orjson.dumps(_json_ready(body)), media_type="application/json")


# -- posting a request ------------------------------------------------------------------------------


def _field(form: Mapping[str, Any], name: str, limit: int = 256) -> str | None:
    value = form.get(name)
    if value is None or not isinstance(value, str) or not value.strip():
        return None
    if len(value) > limit:
        raise Open311Error(400, f"{name}: at most {limit} characters")
    try:
        storable_text(value)
    except ValueError as exc:  # NUL or a lone surrogate (pydantic's error is a ValueError)
        raise Open311Error(400, f"{name}: {exc}") from None
    return value.strip()


def _coordinate(form: Mapping[str, Any], name: str, low: float, high: float) -> float:
    raw = _field(form, name, 32)
    try:
        value = float(raw or "")
    except ValueError:
        raise Open311Error(400, f"{name}: a number in WGS84 degrees is needed, got {raw!r}") from None
    if not low <= value <= high:
        raise Open311Error(400, f"{name}: {value} is outside {low}..{high}")
    return value


def _place(form: Mapping[str, Any], rules: RuleBook) -> tuple[float | None, float | None, str | None]:
    """(lat, lon, zone) from the one location form the specification asks: lat and long, or an address naming one
    of the township's zones (its id, Chinese or English name)."""
    if form.get("lat") is not None or form.get("long") is not None:
        return _coordinate(form, "lat", -90, 90), _coordinate(form, "long", -180, 180), None
    address = _field(form, "address_id", 64) or _field(form, "address_string", 256)
    if address is None:
        raise Open311Error(400, "a location is needed: lat and long, or address_string (or address_id) naming a zone")
    for zone in rules.table.zones:
        if address in (zone.id, zone.name, zone.name_en):
            return None, None, zone.id
    names = ", ".join(f"{z.id} ({z.name})" for z in rules.table.zones)
    raise Open311Error(
        400, f"address {address!r} names no zone of this township; give lat and long, or one of: {names}"
    )


def _attributes(form: Mapping[str, Any], code: str) -> tuple[list[str], int | None]:
    """The answers to the service's attributes as description lines, and the severity they raise to."""
    lines: list[str] = []
    severity: int | None = None
    for attribute in ATTRIBUTES.get(code, ()):
        value = _field(form, f"attribute[{attribute.code}]", 256)
        if value is None:
            if attribute.required:
                raise Open311Error(400, f"attribute[{attribute.code}] is required for {code}: {attribute.description}")
            continue
        if attribute.values and value not in {k for k, _ in attribute.values}:
            allowed = ", ".join(k for k, _ in attribute.values)
            raise Open311Error(400, f"attribute[{attribute.code}]: {value!r} is not one of {allowed}")
        if attribute.datatype == "number":
            try:
                float(value)
            except ValueError:
                raise Open311Error(400, f"attribute[{attribute.code}]: a number is needed, got {value!r}") from None
        lines.append(f"[{attribute.code}] {value}")
        if attribute.raise_severity and value in attribute.raise_severity:
            severity = max(severity or 0, attribute.raise_severity[value])
    return lines, severity


@router.post(
    "/requests.{fmt}",
    summary="Open311: report a matter (API key of a citizen_app or hotline account)",
    description="Form fields of GeoReport v2: service_code, lat+long or address_string, description, first_name, "
    "last_name, phone, email, media_url, attribute[code]. The answer carries `service_request_id`, or a `token` "
    "while the report waits in the command room's triage.",
)
async def post_request(request: Request, fmt: str) -> Response:
    fmt = _fmt(fmt)
    role = principal_of(request).role
    kind = REPORTER_KIND.get(role)
    if kind is None:
        raise Open311Error(403, f"role {role.value} may not report through Open311: a citizen_app or hotline key")
    hub = _hub(request)
    form = await request.form()
    code = _field(form, "service_code", 96)
    if code is None:
        raise Open311Error(400, "service_code is required")
    category = None if code == OTHER else code
    if category is not None and _category(hub.rules, category) is None:
        raise Open311Error(400, f"unknown service_code {code!r}: see services.{fmt}")
    lat, lon, zone = _place(form, hub.rules)
    lines, severity = _attributes(form, code)
    description = _field(form, "description", 4000)
    media = _field(form, "media_url", 1000)
    known = _category(hub.rules, code)
    text = "\n".join([description or (known.name if known else ""), *lines])
    if media:
        text += f"\n[media_url] {media}"
    if not text.strip():
        raise Open311Error(400, "description is required for service_code other: it decides the category")
    who = " ".join(v for v in (_field(form, "last_name", 64), _field(form, "first_name", 64)) if v)
    contact = [v for v in (who, _field(form, "phone", 32), _field(form, "email", 128)) if v]
    report = Report(
        report_id=f"open311-{secrets.token_urlsafe(12)}",
        category=category,
        description=text[:4000],
        zone=zone,
        lat=lat,
        lon=lon,
        severity=severity,
        reporter=" / ".join(contact) or None,
        reporter_kind=kind,
        occurred_at=None,
    )
    outcome = await hub.report(report, hub.clock.now())
    incident = outcome.incident
    request.state.audit_detail = f"open311 {kind} report {report.report_id} → incident {incident.id}"
    if _in_triage(incident):
        return answer(fmt, "service_requests", "request", [{"token": report.report_id}], 201)
    notice = f"已交{agency(incident, hub.rules)}处理 (sent to {agency_en(incident, hub.rules)})"
    return answer(
        fmt,
        "service_requests",
        "request",
        [{"service_request_id": str(incident.id), "service_notice": notice, "gbt_code": _gbt(incident, hub.rules)}],
        201,
    )


# -- reading requests -------------------------------------------------------------------------------


def agency(incident: Incident, rules: RuleBook) -> str:
    """Who must fulfil the request, in Chinese: the lead team, the county department handed to, or the module."""
    table = rules.table
    lead = next((a.team for a in incident.assignments if a.role is AssignmentRole.LEAD), None)
    for team in table.teams:
        if team.id == lead:
            return team.name
    for department in table.county_departments:
        if department.id == incident.handover:
            return department.name
    for module in table.modules:
        if module.id == incident.module:
            return module.name
    return incident.module


def agency_en(incident: Incident, rules: RuleBook) -> str:
    table = rules.table
    lead = next((a.team for a in incident.assignments if a.role is AssignmentRole.LEAD), None)
    named = [*table.teams, *table.county_departments, *table.modules]
    for wanted in (lead, incident.handover, incident.module):
        for item in named:
            if item.id == wanted:
                return item.name_en
    return incident.module


def _gbt(incident: Incident, rules: RuleBook) -> str | None:
    category = _category(rules, incident.category) if incident.category else None
    return category.gbt_code if category is not None else None


def _expected(incident: Incident) -> datetime | None:
    for assignment in incident.assignments:
        if assignment.role is AssignmentRole.LEAD:
            return next((d.due_at for d in assignment.deadlines if d.kind.value == "resolve"), None)
    return None


def record(incident: Incident, rules: RuleBook, status_note: str | None) -> dict[str, Any]:
    """One incident as a GeoReport v2 service request (no reporter; no description in sensitive categories)."""
    report = incident.report
    category = _category(rules, incident.category) if incident.category else None
    zone_id = report.zone or (incident.zones[0] if incident.zones else None)  # given, or found by lat/long
    zone = next((z for z in rules.table.zones if z.id == zone_id), None)
    closed = incident.status in CLOSED
    return {
        "service_request_id": str(incident.id),
        "status": "closed" if closed else "open",
        "status_notes": status_note,
        "service_name": category.name if category else None,
        "service_code": incident.category or OTHER,
        "description": None if sensitive(incident.category) else report.description,
        "agency_responsible": agency(incident, rules),
        "service_notice": None,
        "requested_datetime": incident.reported_at,
        "updated_datetime": incident.updated_at,
        "expected_datetime": None if closed else _expected(incident),
        "address": zone.name if zone else None,
        "address_id": zone_id,
        "zipcode": None,
        "lat": report.lat,
        "long": report.lon,
        "media_url": None,
        "gbt_code": category.gbt_code if category else None,
    }


async def _records(hub: Hub, incidents: Sequence[Incident]) -> list[dict[str, Any]]:
    notes = await hub.public_notes([i.id for i in incidents])
    return [record(i, hub.rules, notes.get(i.id)) for i in incidents]


def _instant(name: str, raw: str | None) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise Open311Error(
            400, f"{name}: a W3C date-time with a time zone is needed, e.g. 2026-06-12T08:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise Open311Error(400, f"{name}: give the time zone (Z or +08:00)")
    return value


def _codes(raw: str | None) -> list[str]:
    return [c.strip() for c in (raw or "").split(",") if c.strip()]


def _public_filter(**given: Any) -> IncidentFilter:
    return IncidentFilter(reporter_kinds=PUBLIC_KINDS, exercise=False, **given)


@router.get("/requests.{fmt}", summary="Open311: citizens' and hotlines' requests, by the specification's filters")
async def list_requests(request: Request, fmt: str) -> Response:
    fmt = _fmt(fmt)
    hub = _hub(request)
    query = request.query_params
    ids_given = _codes(query.get("service_request_id"))
    codes = _codes(query.get("service_code"))
    if ids_given:
        if not all(i.isdecimal() and len(i) <= 9 for i in ids_given):
            raise Open311Error(400, "service_request_id: a comma-separated list of numbers")
        where = _public_filter(ids=[int(i) for i in ids_given])
    else:
        statuses: list[IncidentStatus] = []
        for status in _codes(query.get("status")):
            if status not in ("open", "closed"):
                raise Open311Error(400, f"status: {status!r} is neither open nor closed")
            statuses.extend(OPEN if status == "open" else CLOSED)
        start = _instant("start_date", query.get("start_date"))
        end = _instant("end_date", query.get("end_date"))
        if start is None:
            end = end or hub.clock.now()
            start = end - WINDOW
        elif end is None:
            end = start + WINDOW
        if end < start:
            raise Open311Error(400, "end_date is before start_date")
        if end - start > WINDOW:
            raise Open311Error(400, "start_date to end_date may span 90 days at most")
        where = _public_filter(
            status=tuple(dict.fromkeys(statuses)),
            categories=[] if OTHER in codes else codes,  # ``other`` (no category): filtered below
            reported_from=start,
            reported_before=end + timedelta(microseconds=1),
        )
    incidents, _ = await hub.list_incidents(where, limit=MAX_RECORDS, offset=0)
    if OTHER in codes:
        incidents = [i for i in incidents if (i.category or OTHER) in codes]
    return answer(fmt, "service_requests", "request", await _records(hub, incidents))


async def _public_incident(hub: Hub, incident_id: int) -> Incident | None:
    if incident_id < 1 or incident_id > 2**31 - 1:
        return None
    try:
        incident = await hub.get(incident_id)
    except IncidentNotFound:
        return None
    if incident.report.reporter_kind not in PUBLIC_KINDS or incident.report.exercise:
        return None
    return incident


@router.get("/requests/{service_request_id}.{fmt}", summary="Open311: one request")
async def get_request(request: Request, service_request_id: str, fmt: str) -> Response:
    fmt = _fmt(fmt)
    hub = _hub(request)
    incident = await _public_incident(hub, int(service_request_id)) if service_request_id.isdecimal() else None
    if incident is None:
        raise Open311Error(404, f"no service request {service_request_id!r}")
    return answer(fmt, "service_requests", "request", await _records(hub, [incident]))


@router.get("/tokens/{token}.{fmt}", summary="Open311: the service_request_id of a token, once out of triage")
async def get_token(request: Request, token: str, fmt: str) -> Response:
    fmt = _fmt(fmt)
    hub = _hub(request)
    incident_id = await hub.find_report(token) if token.startswith("open311-") and len(token) <= 64 else None
    incident = await _public_incident(hub, incident_id) if incident_id is not None else None
    if incident is None:
        raise Open311Error(404, f"no token {token!r}")
    item: dict[str, Any] = {"token": token}
    if not _in_triage(incident):
        item = {"service_request_id": str(incident.id), "token": token}
    return answer(fmt, "service_requests", "request", [item])
