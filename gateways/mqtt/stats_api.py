"""``GET /api/v1/mqtt/stats``: the MQTT gateway's state and counters (there is no metrics endpoint yet)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateways.context import context_of

router = APIRouter(prefix="/api/v1")


@router.get("/mqtt/stats", summary="The MQTT gateway: connection state, messages taken, dead letters, outbox")
async def mqtt_stats(request: Request) -> dict[str, Any]:
    gateway = context_of(request).mqtt
    if gateway is None:
        return {"state": "off"}
    stats: dict[str, Any] = gateway.stats()
    officers = context_of(request).officer_status
    if officers is not None:
        stats["officers_reporting"] = len(officers.latest)
    return stats
