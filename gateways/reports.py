"""What leaders read in a browser: the ``/reports`` page and the briefing document behind it.

The page (``/reports``, like ``/board``) holds no data: it signs in and fetches, with its bearer token,

- ``GET /api/v1/reports/briefing?period=2026-11`` (``&format=html``, the default: the document as an HTML
  fragment, the same rendering as ``dispatcher report --html``; ``&format=xlsx``: the workbook, as a download);
- ``GET /api/v1/reports/incidents?period=…&by=team&unit=traffic&figure=due``: the incidents behind one
  figure of one unit, so a leader follows a number to the incidents that make it.

Who may read them is the policy table's (leaders and the supervision office); docs/reports.md defines
every figure.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from dispatcher.briefing import BEHIND_LIMIT, Figure, Period, Unit
from gateways.api import HubDep
from gateways.board import STATIC_DIR
from gateways.briefing_document import STYLE, render_html, render_xlsx

router = APIRouter(tags=["reports"])

PeriodQuery = Annotated[str, Query(max_length=16, description="a month 2026-11, a quarter 2026-Q4 or a year 2026")]


def _period(text: str) -> Period:
    try:
        return Period.parse(text)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("/reports", response_class=HTMLResponse, include_in_schema=False)
async def reports_page() -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "reports.html").read_text(encoding="utf-8"))


@router.get("/api/v1/reports/briefing", summary="The briefing document (简报) of a period, as HTML or XLSX")
async def get_briefing_document(hub: HubDep, period: PeriodQuery, format: Literal["html", "xlsx"] = "html") -> Response:
    named = _period(period)
    doc = await hub.briefing_document(period=named)
    if format == "xlsx":
        return Response(
            render_xlsx(doc),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="briefing-{named.name}.xlsx"'},
        )
    return HTMLResponse(f"<style>{STYLE}</style><div class='briefing'>{render_html(doc, fragment=True)}</div>")


class IncidentLinePublic(BaseModel):
    incident_id: int
    unit: str | None
    status: str
    reported_at: datetime
    due_at: datetime | None
    closed_at: datetime | None


class IncidentsBehindPublic(BaseModel):
    period: str
    by: str
    unit: str | None
    figure: str
    incidents: list[IncidentLinePublic]
    limit: int


@router.get(
    "/api/v1/reports/incidents",
    response_model=IncidentsBehindPublic,
    summary="The incidents counted in one figure of one unit for a period",
)
async def get_incidents_behind(
    hub: HubDep,
    period: PeriodQuery,
    figure: Figure,
    by: Unit = Unit.TEAM,
    unit: Annotated[str | None, Query(max_length=64, description="omit: the row without a unit")] = None,
) -> IncidentsBehindPublic:
    named = _period(period)
    lines = await hub.incidents_behind(start=named.start, end=named.end, by=by, unit=unit, figure=figure)
    return IncidentsBehindPublic(
        period=named.name,
        by=by.value,
        unit=unit,
        figure=figure.value,
        incidents=[
            IncidentLinePublic(
                incident_id=line.incident_id,
                unit=line.unit,
                status=line.status,
                reported_at=line.reported_at,
                due_at=line.due_at,
                closed_at=line.closed_at,
            )
            for line in lines
        ],
        limit=BEHIND_LIMIT,
    )
