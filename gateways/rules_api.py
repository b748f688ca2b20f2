"""The rule table over HTTP: what is in force, its catalogue, ``explain``, and putting a new table in force."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import PlainTextResponse

from dispatcher.values import Latitude, Longitude, RowId, Text
from gateways.api import HubDep, json_response
from gateways.auth import acting
from gateways.compression import json_answer
from gateways.problems import problem_response
from gateways.tenancy import township_of
from rules import RoutingInput, RuleBook, RuleTableError, compile_table, load_source_text
from rules.checker import Finding, TableRefused, check_for_service
from rules.explain import explain, explanation_json

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])

_MAX_TABLE_BYTES = 5_000_000


@router.get("", summary="The rule table in force: township, modules, teams, zones, catalogue")
async def rules_summary(hub: HubDep) -> Response:
    table = hub.rules.table
    return json_response(
        {
            "version": table.version,
            "township": table.township.model_dump(),
            "timezone": table.timezone,
            "triage_module": table.triage_module,
            "party_secretary": table.party_secretary.model_dump(),
            "modules": [m.model_dump() for m in table.modules],
            "teams": [t.model_dump() for t in table.teams],
            "county_departments": [d.model_dump() for d in table.county_departments],
            "zones": [z.model_dump() for z in table.zones],
            "catalogue": [c.model_dump() for c in table.catalogue],
        }
    )


@router.get("/catalogue", summary="The categories: labels, national catalogue code, message-board class")
async def catalogue(request: Request, hub: HubDep) -> Response:
    table = hub.rules.table
    return await json_answer(request, {"version": table.version, "data": [c.model_dump() for c in table.catalogue]})


@router.get("/explain", summary="Why a report with these fields would go where it goes")
async def explain_route(
    hub: HubDep,
    category: Text | None = None,
    description: Annotated[Text, Query(max_length=4000)] = "",
    zone: Text | None = None,
    lat: Latitude | None = None,
    lon: Longitude | None = None,
    severity: Annotated[int | None, Query(ge=1, le=5)] = None,
    reporter_kind: Literal["officer", "device", "citizen", "hotline"] | None = None,
    at: Annotated[datetime | None, Query(description="when it happened (default: now)")] = None,
) -> Response:
    if at is not None and at.tzinfo is None:
        raise HTTPException(422, detail=[{"loc": ["query", "at"], "msg": "give a timezone", "type": "value_error"}])
    item = RoutingInput(
        category=category,
        description=description,
        zone=zone,
        lat=lat,
        lon=lon,
        severity=severity,
        reporter_kind=reporter_kind,
        at=at or hub.clock.now(),
    )
    return json_response(explanation_json(explain(hub.rules, item)))


@router.put(
    "",
    summary="Put a new table in force (YAML body); refused, with the old table kept, when it has errors",
    openapi_extra={"requestBody": {"content": {"application/yaml": {"schema": {"type": "string"}}}, "required": True}},
)
async def replace_rules(request: Request, hub: HubDep) -> Response:
    body = await request.body()
    if len(body) > _MAX_TABLE_BYTES:
        raise HTTPException(413, detail=f"a table may have at most {_MAX_TABLE_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(422, detail="the table must be UTF-8 text") from None
    base: Path = township_of(request).rules_path.parent
    try:
        # Off the event loop: the loader's budget (rules.yaml_budget) bounds how long this takes.
        book, findings = await asyncio.to_thread(_checked_table, text, base, hub.clock.now())
    except RuleTableError as exc:
        found = [asdict(p) for p in exc.problems]
        return problem_response(422, "invalid", "the table is not valid", problems=found)
    except TableRefused as exc:
        return problem_response(
            422, "invalid", "the check refused the table", findings=[asdict(f) for f in exc.findings]
        )
    serving = hub.rules.township_id
    if book.township_id != serving:
        return problem_response(
            409,
            "wrong-township",
            f"the table is for township {book.township_id!r}; this one serves township {serving!r}",
            township=book.township_id,
            serving=serving,
        )
    put = await hub.put_rules_in_force(book, text, hub.clock.now(), acting(request, None))
    log.info("rule table %s replaced by %s (%d findings)", put.previous, book.version, len(findings))
    return json_response(
        {
            "version": book.version,
            "previous": put.previous,
            "table_id": put.table_id,
            "findings": [asdict(f) for f in findings],
        }
    )


def _checked_table(text: str, base: Path, now: datetime) -> tuple[RuleBook, list[Finding]]:
    """Load, compile and check an uploaded table (its calendar against ``now``); runs on a worker thread.

    Raises :class:`RuleTableError` (with every problem's line) or :class:`TableRefused`.
    """
    source = load_source_text(text, source="<uploaded table>", base_dir=base)
    book = compile_table(source.table)
    return book, check_for_service(book, source, today=now.astimezone(book.tz).date())


@router.get("/versions", summary="Every rule table put in force, newest first: id, version, who and when")
async def rule_versions(hub: HubDep, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Response:
    tables = await hub.store.rule_tables(limit=limit)
    return json_response(
        {
            "data": [
                {"id": t.id, "version": t.version, "put_by": t.put_by, "put_at": t.put_at.isoformat()} for t in tables
            ],
            "in_force": hub.rules.version,
        }
    )


@router.get(
    "/versions/{table_id}",
    summary="One stored rule table as the YAML it was put in force with (PUT it back to roll back)",
    response_class=PlainTextResponse,
)
async def rule_version(table_id: RowId, hub: HubDep) -> Response:
    table = await hub.store.rule_table(table_id) if table_id > 0 else None
    if table is None or table.body is None:
        raise HTTPException(404, f"no stored rule table {table_id}")
    return Response(table.body, media_type="application/yaml; charset=utf-8")


@router.get("/zones", summary="The zones as a GeoJSON FeatureCollection with their labels (for the board's map)")
async def zones(request: Request, hub: HubDep) -> Response:
    table = hub.rules.table
    features = []
    lons: list[float] = []
    lats: list[float] = []
    for zone in table.zones:
        geometry = zone.geometry.model_dump()
        if geometry["type"] == "Point":
            points = [geometry["coordinates"]]
        elif geometry["type"] == "Polygon":
            points = geometry["coordinates"][0]
        else:  # MultiPolygon: every outer ring
            points = [p for rings in geometry["coordinates"] for p in rings[0]]
        lons += [float(p[0]) for p in points]
        lats += [float(p[1]) for p in points]
        features.append(
            {
                "type": "Feature",
                "id": zone.id,
                "geometry": geometry,
                "properties": {"id": zone.id, "name": zone.name, "name_en": zone.name_en, "radius_m": zone.radius_m},
            }
        )
    collection: dict[str, object] = {"type": "FeatureCollection", "version": table.version, "features": features}
    if features:
        collection["bbox"] = [min(lons), min(lats), max(lons), max(lats)]
    return await json_answer(request, collection)
