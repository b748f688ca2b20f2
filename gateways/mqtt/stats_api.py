"""``GET /api/v1/mqtt/stats``: the MQTT gateway's state and counters; ``POST /api/v1/mqtt/carry``: a device message
another replica took for a township served here (replica mode, docs/mqtt.md#mqtt-in-a-county)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from dispatcher.hub import HubStopped
from dispatcher.store import StoreUnavailable
from gateways.context import context_of
from gateways.mqtt.gateway import CarriedMessage, Moved
from gateways.problems import problem_response
from gateways.tenancy import township_of

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


class CarriedIn(BaseModel):
    """A device message as the replica that took it carries it: its topic, its payload (base64) and when it came."""

    topic: str = Field(max_length=1024)
    payload: str = Field(max_length=4 * 1024 * 1024)
    received_at: datetime


@router.post("/mqtt/carry", include_in_schema=False)
async def take_carried(request: Request, body: CarriedIn) -> Response:
    """Apply a carried message here as this replica's gateway would have: ``{"refusal": null}`` once done (stored),
    ``{"refusal": {reason, detail, code}}`` when refused (the taker publishes the dead letter), 503 while it cannot
    be stored here now (the taker keeps it unacknowledged and tries again)."""
    township = township_of(request)  # a township served elsewhere: carried on by the Elsewhere handler, or 503
    gateways = context_of(request).mqtt_gateways or {}
    gateway = gateways.get(township.id)
    if gateway is None:
        return problem_response(404, "not-found", f"no MQTT gateway for township {township.id} here")
    message = CarriedMessage(body.topic, base64.b64decode(body.payload), body.received_at)
    try:
        refusal = await gateway.take_carried(message)
    except (Moved, StoreUnavailable, HubStopped) as exc:
        return problem_response(
            503, "unavailable", f"township {township.id}: not stored here now ({exc})", headers={"Retry-After": "1"}
        )
    answer = None if refusal is None else {"reason": refusal[0].value, "detail": refusal[1], "code": refusal[2]}
    return Response(orjson.dumps({"refusal": answer}), media_type="application/json")
