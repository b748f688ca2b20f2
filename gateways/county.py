"""Forwarding county matters (转县级部门) through an outbound webhook, with retries and a delivery record.

When the boundary list gives a matter to a county department, the incident opens with a pending
*delivery*. This forwarder POSTs it as JSON to ``DISPATCHER_COUNTY_WEBHOOK_URL`` and records every
try on the incident (``HandoverAttempted`` events; the incident's ``delivery`` shows the state):

* a 2xx answer is delivered; anything else (an error status, a refused connection, a timeout) is
  tried again after 1 s, 2 s, 4 s … (at most ``max_backoff_s``) until ``max_attempts`` tries have
  failed, when the delivery is marked failed and the command room must phone the department;
* every request carries ``Idempotency-Key: <township>-<incident id>``, so the receiver can drop
  the copy a retry may send after an answer was lost;
* drills (``exercise``) are never forwarded;
* the work comes from the hub's state, not from memory: at start every open incident whose delivery
  is still pending is sent (a crash between a send and its record re-sends, never loses), then new
  ones arrive through the event feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from dispatcher.core.incidents import DeliveryState, Incident
from dispatcher.feed import FeedRecord, Subscription
from dispatcher.hub import Hub, HubStopped, IncidentNotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSettings:
    url: str
    timeout_s: float = 10.0
    max_attempts: int = 8
    first_backoff_s: float = 1.0
    max_backoff_s: float = 300.0


def handover_payload(incident: Incident, township: str) -> dict[str, Any]:
    """What the county department receives: the matter, where it is, who reported it."""
    report = incident.report
    return {
        "township": township,
        "incident_id": incident.id,
        "report_id": report.report_id,
        "department": incident.handover,
        "category": incident.category,
        "description": report.description,
        "zone": report.zone,
        "zones": list(incident.zones),
        "location": {"lat": report.lat, "lon": report.lon} if report.lat is not None else None,
        "severity": report.severity,
        "reporter": report.reporter,
        "reported_at": incident.reported_at.isoformat(),
        "rule_table": incident.table_version,
    }


class CountyForwarder:
    """One task per pending delivery, each retrying on its own; started and stopped with the app."""

    def __init__(self, hub: Hub, settings: WebhookSettings, client: httpx.AsyncClient | None = None) -> None:
        self._hub = hub
        self._settings = settings
        self._client = client or httpx.AsyncClient(timeout=settings.timeout_s)
        self._owns_client = client is None
        self._runner: asyncio.Task[None] | None = None
        self._sending: dict[int, asyncio.Task[None]] = {}

    async def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="county-forwarder")
        log.info("county forwarding on: %s", self._settings.url)

    async def stop(self) -> None:
        tasks = [t for t in (self._runner, *self._sending.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_client:
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            subscription = self._hub.feed.subscribe()
            try:
                for incident in self._hub.pending_deliveries():  # what a restart or a lag left behind
                    self._send_soon(incident.id)
                await self._follow(subscription)
            finally:
                subscription.close()

    async def _follow(self, subscription: Subscription) -> None:
        while True:
            record = await subscription.get()
            if not isinstance(record, FeedRecord):
                return  # dropped for lagging: resubscribe, and rescan the pending ones
            if record.incident_id is None or '"type":"IncidentReported"' not in record.message:
                continue
            if '"handover":null' in record.message:
                continue
            self._send_soon(record.incident_id)

    def _send_soon(self, incident_id: int) -> None:
        if incident_id in self._sending:
            return
        task = asyncio.create_task(self._deliver(incident_id), name=f"county-{incident_id}")
        self._sending[incident_id] = task
        task.add_done_callback(lambda _: self._sending.pop(incident_id, None))

    async def _deliver(self, incident_id: int) -> None:
        settings = self._settings
        backoff = settings.first_backoff_s
        while True:
            try:
                incident = await self._hub.get(incident_id)
            except IncidentNotFound:
                return
            delivery = incident.delivery
            if delivery is None or delivery.state is not DeliveryState.PENDING:
                return
            ok, status, error = await self._post(incident)
            try:
                recorded = await self._hub.record_delivery(
                    incident_id,
                    self._hub.clock.now(),
                    ok=ok,
                    status_code=status,
                    error=error,
                    max_attempts=settings.max_attempts,
                )
            except HubStopped:
                return
            if recorded.delivery is None or recorded.delivery.state is not DeliveryState.PENDING:
                level = logging.INFO if ok else logging.ERROR
                log.log(level, "county handover of incident %d: %s", incident_id, recorded.delivery)
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, settings.max_backoff_s)

    async def _post(self, incident: Incident) -> tuple[bool, int | None, str | None]:
        township = self._hub.rules.township_id
        try:
            answer = await self._client.post(
                self._settings.url,
                content=orjson.dumps(handover_payload(incident, township)),
                headers={"Content-Type": "application/json", "Idempotency-Key": f"{township}-{incident.id}"},
            )
        except httpx.HTTPError as exc:
            return False, None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= answer.status_code < 300:
            return True, answer.status_code, None
        return False, answer.status_code, f"HTTP {answer.status_code}: {answer.text[:200]}"


@contextlib.asynccontextmanager
async def forwarding(hub: Hub, settings: WebhookSettings | None) -> Any:
    """Run a forwarder for the app's lifetime when a webhook is configured (else log that it is off)."""
    if settings is None:
        log.info("county forwarding off: set DISPATCHER_COUNTY_WEBHOOK_URL to forward county matters")
        yield None
        return
    forwarder = CountyForwarder(hub, settings)
    await forwarder.start()
    try:
        yield forwarder
    finally:
        await forwarder.stop()
