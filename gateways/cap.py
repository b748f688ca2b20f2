"""Public notices as CAP 1.2 (OASIS Common Alerting Protocol): issued by the command room, served to anyone.

* ``POST /api/v1/alerts`` (the command room): an alert, or an update or cancel naming earlier ones
  (``references``), from an incident or on its own; one ``<info>`` per language (zh-CN and en); the area is a
  zone of the rule table (its polygon, or its circle), a circle or a polygon given. A drill's notice (an exercise
  incident, ``exercise: true``, or one that references a drill's notice) is ``status=Exercise``, and an
  ``Actual`` notice can only be updated or cancelled by an ``Actual`` one: a drill never leaves as ``Actual``.
* ``GET /api/v1/alerts``: the notices issued, newest first (the command room and supervision).
* ``GET /cap/alerts/{id}.xml`` and the Atom feed ``GET /cap/feed.xml``: public, as public notices are.

A notice is an :class:`dispatcher.core.events.AlertIssued` fact on the township's log holding the document as
issued; its ``seq`` is its id. Nothing changes it afterwards. :func:`read_cap` reads a CAP 1.2 document back
(ours, or another sender's such as the OASIS examples).
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from starlette.requests import HTTPConnection

from dispatcher.core.events import AlertIssued
from dispatcher.hub import Hub
from dispatcher.values import IncidentId, Latitude, Longitude, storable_text
from gateways.api import HubDep
from gateways.auth import acting
from gateways.context import context_of
from gateways.replicas import Elsewhere

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MEDIA = "application/cap+xml"
LANGUAGES = ("zh-CN", "en")
FEED_SIZE = 50

Category = Literal[
    "Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra", "CBRNE", "Other"
]
ResponseType = Literal["Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None"]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]
MsgType = Literal["Alert", "Update", "Cancel"]

_XML_ILLEGAL = {chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"} | {"\ufffe", "\uffff"}


def _xml_text(value: str) -> str:
    """Text an XML 1.0 document can hold (and the store too); refused otherwise."""
    storable_text(value)
    bad = next((c for c in value if c in _XML_ILLEGAL), None)
    if bad is not None:
        raise ValueError(f"the control character U+{ord(bad):04X} cannot be carried in an XML document")
    return value


CapText = Annotated[str, AfterValidator(_xml_text)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InfoText(_In):
    """One language's words of a notice."""

    event: CapText = Field(min_length=1, max_length=128, description="the kind of event, e.g. 道路封闭 / Road closed")
    headline: CapText = Field(min_length=1, max_length=160)
    description: CapText = Field(min_length=1, max_length=4000)
    instruction: CapText | None = Field(default=None, max_length=2000, description="what people should do")
    area_desc: CapText | None = Field(default=None, max_length=256, description="default: the zone's name")


class CircleIn(_In):
    lat: Latitude
    lon: Longitude
    radius_m: float = Field(gt=0, le=200_000)


class AreaIn(_In):
    """Exactly one of: a zone of the rule table, a circle, a polygon ([lat, lon] points, closed)."""

    zone: CapText | None = Field(default=None, min_length=1, max_length=64)
    circle: CircleIn | None = None
    polygon: list[tuple[Latitude, Longitude]] | None = Field(default=None, min_length=4, max_length=500)

    @model_validator(mode="after")
    def _one(self) -> AreaIn:
        given = [n for n in ("zone", "circle", "polygon") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of zone, circle, polygon (got {', '.join(given) or 'none'})")
        if self.polygon is not None and self.polygon[0] != self.polygon[-1]:
            raise ValueError("a polygon must end where it starts")
        return self


class AlertCreate(_In):
    """A public notice to issue (``POST /api/v1/alerts``)."""

    msg_type: MsgType = "Alert"
    references: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, max_length=20, description="ids of the notices an Update or Cancel replaces"
    )
    incident_id: IncidentId | None = None
    exercise: bool | None = Field(default=None, description="a drill's notice; default: as the incident or references")
    category: list[Category] = Field(min_length=1, max_length=12)
    response_type: list[ResponseType] = Field(default_factory=list, max_length=9)
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    expires: AwareDatetime | None = None
    area: AreaIn | None = Field(default=None, description="default: the incident's zone")
    text: dict[Literal["zh-CN", "en"], InfoText] = Field(description="zh-CN and en: one <info> each")

    @model_validator(mode="after")
    def _shape(self) -> AlertCreate:
        missing = [lang for lang in LANGUAGES if lang not in self.text]
        if missing:
            raise ValueError(f"text needs both zh-CN and en (missing {', '.join(missing)})")
        if self.msg_type == "Alert" and self.references:
            raise ValueError("an Alert references nothing: use Update or Cancel to replace earlier notices")
        if self.msg_type != "Alert" and not self.references:
            raise ValueError(f"an {self.msg_type} must name the notices it replaces in references")
        return self


router = APIRouter(tags=["cap"])


# -- writing ---------------------------------------------------------------------------------------


def _cap(name: str) -> str:
    return f"{{{CAP_NS}}}{name}"


def _sub(parent: ET.Element, name: str, text: str | None) -> None:
    if text is not None:
        ET.SubElement(parent, _cap(name)).text = text


def cap_time(at: datetime) -> str:
    """A CAP date-time: seconds, and a numeric offset (CAP forbids ``Z`` and fractions)."""
    return at.replace(microsecond=0).isoformat()


def reference(event: AlertIssued) -> str:
    """``sender,identifier,sent``: how a later message names this one."""
    return f"{event.sender},{event.identifier},{cap_time(event.at)}"


def cap_document(
    *,
    identifier: str,
    sender: str,
    sent: datetime,
    status: str,
    msg_type: str,
    references: list[AlertIssued],
    incident_id: int | None,
    body: AlertCreate,
    sender_names: dict[str, str],
    areas: dict[str, tuple[str, list[str], list[str]]],
) -> str:
    """The CAP 1.2 XML of a notice; ``areas``: per language (areaDesc, polygons, circles) in CAP's notation."""
    alert = ET.Element(_cap("alert"))
    _sub(alert, "identifier", identifier)
    _sub(alert, "sender", sender)
    _sub(alert, "sent", cap_time(sent))
    _sub(alert, "status", status)
    _sub(alert, "msgType", msg_type)
    _sub(alert, "scope", "Public")
    if status == "Exercise":
        _sub(alert, "note", "演练 (exercise): not a real event")
    if references:
        _sub(alert, "references", " ".join(reference(r) for r in references))
    if incident_id is not None:
        _sub(alert, "incidents", str(incident_id))
    for language in LANGUAGES:
        words = body.text[language]  # type: ignore[index]
        info = ET.SubElement(alert, _cap("info"))
        _sub(info, "language", language)
        for category in body.category:
            _sub(info, "category", category)
        _sub(info, "event", words.event)
        for response in body.response_type:
            _sub(info, "responseType", response)
        _sub(info, "urgency", body.urgency)
        _sub(info, "severity", body.severity)
        _sub(info, "certainty", body.certainty)
        _sub(info, "effective", cap_time(sent))
        _sub(info, "expires", cap_time(body.expires) if body.expires else None)
        _sub(info, "senderName", sender_names[language])
        _sub(info, "headline", words.headline)
        _sub(info, "description", words.description)
        _sub(info, "instruction", words.instruction)
        description, polygons, circles = areas[language]
        area = ET.SubElement(info, _cap("area"))
        _sub(area, "areaDesc", description)
        for polygon in polygons:
            _sub(area, "polygon", polygon)
        for circle in circles:
            _sub(area, "circle", circle)
    return ET.tostring(alert, encoding="unicode", default_namespace=CAP_NS, xml_declaration=False)


def _point(lat: float, lon: float) -> str:
    return f"{lat:.6f},{lon:.6f}"


def _areas(body: AlertCreate, hub: Hub, zone_of_incident: str | None) -> dict[str, tuple[str, list[str], list[str]]]:
    area = body.area or (AreaIn(zone=zone_of_incident) if zone_of_incident else None)
    if area is None:
        raise _invalid("area", "give an area (a zone, a circle or a polygon): the incident has no zone to default to")
    polygons: list[str] = []
    circles: list[str] = []
    names = {"zh-CN": "", "en": ""}
    if area.zone is not None:
        zone = next((z for z in hub.rules.table.zones if z.id == area.zone), None)
        if zone is None:
            raise _invalid("area.zone", f"unknown zone {area.zone!r} in rule table {hub.rules.version}")
        names = {"zh-CN": zone.name, "en": zone.name_en}
        geometry = zone.geometry
        if geometry.type == "Point":
            lon, lat = geometry.coordinates
            circles.append(f"{_point(lat, lon)} {(zone.radius_m or 0) / 1000:.3f}")
        elif geometry.type == "Polygon":
            polygons.append(" ".join(_point(lat, lon) for lon, lat in geometry.coordinates[0]))
        else:  # a MultiPolygon zone: one <polygon> per part (its outer ring; CAP has no holes)
            polygons += [" ".join(_point(lat, lon) for lon, lat in part[0]) for part in geometry.coordinates]
    elif area.circle is not None:
        c = area.circle
        circles.append(f"{_point(c.lat, c.lon)} {c.radius_m / 1000:.3f}")
    elif area.polygon is not None:
        polygons.append(" ".join(_point(lat, lon) for lat, lon in area.polygon))
    result = {}
    for language in LANGUAGES:
        given = body.text[language].area_desc  # type: ignore[index]
        description = given or names[language]
        if not description:
            raise _invalid(f"text.{language}.area_desc", "describe the area in words (areaDesc): it is not a zone")
        result[language] = (description, polygons, circles)
    return result


def _areas_of(earlier: AlertIssued) -> dict[str, tuple[str, list[str], list[str]]]:
    """The areas of a notice issued before, per language (read back from its document)."""
    infos = {i["language"]: i for i in read_cap(earlier.document)["info"]}
    result = {}
    for language in LANGUAGES:
        area = infos[language]["area"][0]
        result[language] = (area["area_desc"] or "", area["polygon"], area["circle"])
    return result


def _invalid(field: str, message: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": ["body", *field.split(".")], "msg": message, "type": "value_error"}])


def decide_status(exercise: bool | None, incident_drill: bool, referenced: list[AlertIssued]) -> str:
    """``Exercise`` or ``Actual``; raises ``ValueError`` where a drill would leave as ``Actual`` (or the reverse)."""
    drill_refs = {r.status == "Exercise" for r in referenced}
    if len(drill_refs) > 1:
        raise ValueError("the references mix a drill's notices and real ones")
    drill = incident_drill or drill_refs == {True}
    if exercise is False and drill:
        raise ValueError("a drill's notice is status Exercise, never Actual")
    if exercise is True and drill_refs == {False}:
        raise ValueError("a real notice cannot be updated or cancelled by an exercise")
    return "Exercise" if drill or exercise else "Actual"


def alert_json(alert_id: int, event: AlertIssued) -> dict[str, Any]:
    return {
        "id": alert_id,
        "identifier": event.identifier,
        "sender": event.sender,
        "sent": cap_time(event.at),
        "status": event.status,
        "msg_type": event.msg_type,
        "references": list(event.referenced),
        "incident_id": event.incident_id,
        "headline": event.headline,
        "actor": event.actor,
        "url": f"/cap/alerts/{alert_id}.xml",
    }


@router.post(
    "/api/v1/alerts",
    status_code=201,
    summary="Issue a public notice (CAP 1.2): an alert, or an update or cancel of earlier ones",
    responses={404: {"description": "no such incident"}, 409: {"description": "a referenced notice is cancelled"}},
)
async def issue_alert(request: Request, body: AlertCreate, hub: HubDep) -> Response:
    incident = await hub.get(body.incident_id) if body.incident_id is not None else None
    referenced: list[AlertIssued] = []
    for alert_id in dict.fromkeys(body.references):
        earlier = hub.alert(alert_id)
        if earlier is None:
            raise _invalid("references", f"no notice {alert_id}")
        referenced.append(earlier)
    if body.references:
        cancelled = hub.cancelled_alerts()
        gone = [i for i in body.references if i in cancelled]
        if gone:
            raise HTTPException(409, f"notice {gone[0]} is already cancelled: issue a new Alert instead")
    try:
        status = decide_status(body.exercise, bool(incident and incident.report.exercise), referenced)
    except ValueError as exc:
        raise _invalid("exercise", str(exc)) from None
    incident_id = incident.id if incident else next((r.incident_id for r in referenced if r.incident_id), None)
    if body.area is None and incident is None and referenced:
        areas = _areas_of(referenced[0])  # an update or cancel keeps the area of the notice it replaces
    else:
        areas = _areas(body, hub, incident.report.zone if incident else None)
    sent = hub.clock.now().astimezone(hub.rules.tz).replace(microsecond=0)
    if body.expires is not None:
        if body.expires <= sent:
            raise _invalid("expires", f"a notice must expire after it is sent ({cap_time(sent)})")
        # CAP's date-times carry whole-minute offsets: written in the township's time, like ``sent``
        try:
            body = body.model_copy(update={"expires": body.expires.astimezone(hub.rules.tz)})
        except OverflowError:
            raise _invalid("expires", "a date-time within the years 1-9999 in the township's time") from None
    township = hub.rules.township_id
    identifier = f"{township}-{sent:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
    sender = f"command-room@{township}.dispatcher"
    names = hub.rules.table.township
    document = cap_document(
        identifier=identifier,
        sender=sender,
        sent=sent,
        status=status,
        msg_type=body.msg_type,
        references=referenced,
        incident_id=incident_id,
        body=body,
        sender_names={"zh-CN": f"{names.name}综合信息指挥室", "en": f"{names.name_en} command room"},
        areas=areas,
    )
    event = AlertIssued(
        at=sent,
        identifier=identifier,
        sender=sender,
        status=status,
        msg_type=body.msg_type,
        referenced=tuple(dict.fromkeys(body.references)),
        incident_id=incident_id,
        headline=body.text["zh-CN"].headline,
        actor=acting(request, None),
        document=document,
    )
    alert_id = await hub.issue_alert(event)
    request.state.audit_detail = f"CAP {status} {body.msg_type} {identifier} (notice {alert_id})"
    return Response(orjson.dumps(alert_json(alert_id, event)), status_code=201, media_type="application/json")


@router.get("/api/v1/alerts", summary="The public notices issued, newest first")
async def list_alerts(hub: HubDep, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> Response:
    alerts = hub.alerts(limit=limit)
    return Response(orjson.dumps({"data": [alert_json(i, a) for i, a in alerts]}), media_type="application/json")


# -- serving (public) ------------------------------------------------------------------------------


def _public_hub(request: HTTPConnection) -> Hub:
    townships = context_of(request).townships
    wanted = request.query_params.get("township")
    if wanted is not None and wanted not in townships:
        raise HTTPException(404, f"township {wanted!r} is not served here")
    township = townships.first if wanted is None else townships[wanted]
    if not township.serving:
        raise Elsewhere(township.id)  # replica mode: its notices are read where its hub runs
    return township.hub


@router.get("/cap/alerts/{alert_id}.xml", summary="A public notice as issued (CAP 1.2 XML)")
async def get_alert(request: Request, alert_id: str) -> Response:
    event = _public_hub(request).alert(int(alert_id)) if alert_id.isdecimal() and len(alert_id) < 10 else None
    if event is None:
        raise HTTPException(404, f"no notice {alert_id}")
    body = '<?xml version="1.0" encoding="UTF-8"?>\n' + event.document
    return Response(body.encode(), media_type=f"{CAP_MEDIA}; charset=utf-8")


@router.get("/cap/feed.xml", summary="The public notices as an Atom feed, newest first")
async def feed(request: Request) -> Response:
    hub = _public_hub(request)
    alerts = hub.alerts(limit=FEED_SIZE)
    township = hub.rules.table.township
    base = str(request.base_url).rstrip("/")

    def atom(parent: ET.Element, name: str, text: str | None = None, **attributes: str) -> ET.Element:
        element = ET.SubElement(parent, name, attributes)
        element.text = text
        return element

    # Plain names and an explicit xmlns: ElementTree's default_namespace refuses unqualified attributes.
    root = ET.Element("feed", {"xmlns": ATOM_NS})
    atom(root, "id", f"urn:dispatcher:{township.id}:cap-feed")
    atom(root, "title", f"{township.name}综合信息指挥室 公共预警 ({township.name_en} public notices, CAP 1.2)")
    atom(root, "updated", cap_time(alerts[0][1].at) if alerts else cap_time(hub.clock.now().astimezone(hub.rules.tz)))
    atom(root, "link", rel="self", href=f"{base}/cap/feed.xml")
    atom(atom(root, "author"), "name", f"{township.name}综合信息指挥室")
    for alert_id, alert in alerts:
        entry = atom(root, "entry")
        atom(entry, "id", f"urn:dispatcher:{township.id}:alert:{alert.identifier}")
        atom(entry, "title", alert.headline)
        atom(entry, "updated", cap_time(alert.at))
        atom(entry, "link", rel="alternate", type=CAP_MEDIA, href=f"{base}/cap/alerts/{alert_id}.xml")
        atom(entry, "category", term=alert.status)
        atom(entry, "category", term=alert.msg_type)
        atom(entry, "summary", f"{alert.status} {alert.msg_type}: {alert.headline}")
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(body, media_type="application/atom+xml; charset=utf-8")


# -- reading ---------------------------------------------------------------------------------------


def _texts(element: ET.Element, name: str) -> list[str]:
    return [(e.text or "").strip() for e in element.findall(_cap(name))]


def _one(element: ET.Element, name: str) -> str | None:
    found = element.find(_cap(name))
    return (found.text or "").strip() if found is not None else None


def read_cap(document: bytes | str) -> dict[str, Any]:
    """A CAP 1.2 document as plain data (any sender's). Raises ``ValueError`` for what is not one.

    A document type declaration is refused: CAP has none, and entities are how XML is made to explode.
    """
    raw = document.encode() if isinstance(document, str) else document
    if b"<!DOCTYPE" in raw.upper() or b"<!ENTITY" in raw.upper():
        raise ValueError("a CAP document has no DOCTYPE or ENTITY declarations")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    if root.tag != _cap("alert"):
        raise ValueError(f"not a CAP 1.2 alert: the root is {root.tag}")
    references = [tuple(r.split(",")) for r in (_one(root, "references") or "").split()]
    return {
        "identifier": _one(root, "identifier"),
        "sender": _one(root, "sender"),
        "sent": datetime.fromisoformat(_one(root, "sent") or ""),
        "status": _one(root, "status"),
        "msg_type": _one(root, "msgType"),
        "scope": _one(root, "scope"),
        "note": _one(root, "note"),
        "references": references,
        "incidents": _one(root, "incidents"),
        "info": [
            {
                "language": _one(info, "language") or "en-US",
                "category": _texts(info, "category"),
                "event": _one(info, "event"),
                "response_type": _texts(info, "responseType"),
                "urgency": _one(info, "urgency"),
                "severity": _one(info, "severity"),
                "certainty": _one(info, "certainty"),
                "expires": _one(info, "expires"),
                "sender_name": _one(info, "senderName"),
                "headline": _one(info, "headline"),
                "description": _one(info, "description"),
                "instruction": _one(info, "instruction"),
                "area": [
                    {
                        "area_desc": _one(area, "areaDesc"),
                        "polygon": _texts(area, "polygon"),
                        "circle": _texts(area, "circle"),
                        "geocode": [(_one(g, "valueName"), _one(g, "value")) for g in area.findall(_cap("geocode"))],
                    }
                    for area in info.findall(_cap("area"))
                ],
            }
            for info in root.findall(_cap("info"))
        ],
    }
