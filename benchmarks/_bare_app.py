"""The HTTP stack's floor: the report door with nothing behind it (``benchmarks/intake.py --http-server bare``).

What every single-door request pays before the dispatcher does anything: uvicorn (httptools, uvloop), FastAPI's
routing and dependency solving, one pydantic validation of the report, a bearer token checked against one
value, and a 201 whose JSON body (orjson) is as long as the dispatcher's answer to the benchmark's reports
(about 3.5 KB: the report, five teams' assignments and their deadlines). Nothing is stored, routed or
audited; ``GET /api/v1/incidents?limit=1`` counts the 201s answered so that the benchmark's check that every
201 was stored compares like with like.

Not part of the product: a yardstick, so that the dispatcher's CPU a report can be read as the stack's share
plus the dispatcher's own on the machine of the day.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

TOKEN = secrets.token_urlsafe(24)
TEAMS = ("traffic-police", "police-station", "market-supervision", "law-enforcement", "township-office")


class Report(BaseModel):
    report_id: Annotated[str, Field(min_length=1, max_length=128)]
    category: Annotated[str, Field(max_length=96)]
    zone: Annotated[str | None, Field(max_length=64)] = None
    description: Annotated[str, Field(max_length=4000)] = ""


def _assignment(team: str, n: int) -> dict[str, Any]:
    due = f"2026-12-05T10:{15 + n:02d}:00+08:00"
    return {
        "team": team,
        "position": n,
        "role": "lead" if n == 0 else "support",
        "status": "dispatched",
        "officer": f"{team}-officer-{n + 1}",
        "dispatched_at": "2026-12-05T10:00:00+08:00",
        "acknowledged_at": None,
        "arrived_at": None,
        "resolved_at": None,
        "deadlines": {"acknowledge": due, "arrive": due, "resolve": due},
        "escalation": {"level": "team", "step": 0, "next_at": due, "chain": ["team", "module_lead", "secretary"]},
        "note": None,
        "team_name": f"{team} (duty desk of the township's {team} team)",
        "promise": "acknowledge within 5 minutes, on site within 15, resolved within the working day",
        "links": {"self": f"/api/v1/incidents/{{id}}/assignments/{team}", "team": f"/api/v1/teams/{team}"},
    }


ASSIGNMENTS = [_assignment(team, n) for n, team in enumerate(TEAMS)]
app = FastAPI(title="bare report door (benchmark yardstick)")
answered = 0


@app.get("/readyz")
async def ready() -> dict[str, str]:
    return {"status": "ready", "rule_table": "none (bare HTTP stack)"}


@app.post("/api/v1/auth/token")
async def token(request: Request) -> dict[str, str]:
    await request.body()
    return {"access_token": TOKEN, "token_type": "bearer"}


@app.post("/api/v1/incidents", status_code=201)
async def report(report: Report, authorization: Annotated[str, Header()] = "") -> Response:
    global answered
    if authorization != f"Bearer {TOKEN}":
        raise HTTPException(401, "sign in")
    answered += 1
    body = {
        "id": answered,
        "report_id": report.report_id,
        "category": report.category,
        "reported_category": report.category,
        "zone": report.zone,
        "description": report.description,
        "status": "dispatched",
        "module": "traffic",
        "reported_at": "2026-12-05T10:00:00+08:00",
        "version": 1,
        "assignments": ASSIGNMENTS,
    }
    return Response(orjson.dumps(body), status_code=201, media_type="application/json")


@app.get("/api/v1/incidents")
async def count() -> dict[str, int]:
    return {"count": answered}
