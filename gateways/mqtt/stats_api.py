"""``GET /api/v1/mqtt/stats``: the MQTT gateway's state and counters (there is no metrics endpoint yet)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter(prefix="/api/v1")


@router.get("/mqtt/stats", summary="The MQTT gateway: connection state, messages taken, dead letters, outbox")
async def mqtt_stats(request: Request) -> dict[str, Any]:
    gateway = getattr(request.app.state, "mqtt", None)
    if gateway is None:
        return {"state": "off"}
    stats: dict[str, Any] = gateway.stats()
    officers = getattr(request.app.state, "officer_status", None)
    if officers is not None:
        stats["officers_reporting"] = len(officers.latest)
    return stats
