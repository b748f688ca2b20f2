"""Outbound webhooks: a township's events POSTed to the systems around the command room, signed.

Each enabled subscription (:mod:`dispatcher.webhooks`) has one worker task here. The worker reads the
township's event log after the subscription's cursor (the log is the truth; the hub's feed only wakes
it), skips what the subscription does not take, and sends each wanted event on its own, in ``seq``
order, per the Standard Webhooks spec: headers ``webhook-id`` (``evt_<township>_<seq>``, the same for
every try), ``webhook-timestamp`` and ``webhook-signature`` (``v1,`` HMAC-SHA256 of
``id.timestamp.body`` with the subscription's secret). A 2xx answer moves the cursor past the event;
anything else is logged as an attempt and tried again after 1 s, 2 s, 4 s … (at most
``DISPATCHER_WEBHOOK_MAX_BACKOFF_S``), so a receiver that is down for an hour gets every event, in
order, when it is back. A subscription whose every delivery failed for ``DISPATCHER_WEBHOOK_DISABLE_AFTER_S``
is disabled, with a ``WebhookDisabled`` event in the township's log; enabling it again resumes at its
cursor.

Delivery is at least once: a crash after a send and before its record sends that event again with the
same ``webhook-id``, which receivers deduplicate by.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import AnyHttpUrl, BaseModel, Field, UrlConstraints
from standardwebhooks import Webhook

from dispatcher.accounts import Account, Role
from dispatcher.core import events as ev
from dispatcher.core.incidents import DeliveryState, Incident
from dispatcher.feed import FeedRecord
from dispatcher.hub import Hub, HubStopped, IncidentNotFound
from dispatcher.store import StoredEvent
from dispatcher.values import RowId, Text
from dispatcher.webhooks import Attempt, Backoff, SqlWebhooks, Subscription, disable_reason, webhook_id
from gateways.context import context_of
from gateways.privacy import mask
from rules.matcher import RuleBook

log = logging.getLogger(__name__)
#: How a subscription that does not reveal reporters sees them: as the supervision office does (masked).
_MASKED_READER = Account(name="webhook", role=Role.SUPERVISION, township="*")
_PAGE = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverySettings:
    timeout_s: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)
    disable_after: timedelta = timedelta(hours=24)
    county_attempts: int = 8  # tries of one county hand-over before its delivery is marked failed
    county_url: str | None = None  # DISPATCHER_COUNTY_WEBHOOK_URL: each township's hand-over subscription
    county_secret: str | None = None  # DISPATCHER_COUNTY_WEBHOOK_SECRET: its whsec_ secret (else a new one)


#: The event type of the county hand-over (转县级部门): a subscription to it receives each county matter as a
#: hand-over document (:func:`handover_payload`), and each try is recorded on the incident too.
COUNTY_HANDOVER = "CountyHandover"


def handover_payload(incident: Incident, township: str, gbt_code: str | None = None) -> dict[str, Any]:
    """What the county department receives: the matter (with its category's GB/T 47678.5 code), where it is,
    who reported it."""
    report = incident.report
    return {
        "township": township,
        "incident_id": incident.id,
        "report_id": report.report_id,
        "department": incident.handover,
        "category": incident.category,
        "gbt_code": gbt_code,
        "description": report.description,
        "zone": report.zone,
        "zones": list(incident.zones),
        "location": {"lat": report.lat, "lon": report.lon} if report.lat is not None else None,
        "severity": report.severity,
        "reporter": report.reporter,
        "reported_at": incident.reported_at.isoformat(),
        "rule_table": incident.table_version,
    }


def handover_body(
    subscription: Subscription, township: str, incident: Incident, at: datetime, gbt_code: str | None
) -> bytes:
    data: Any = handover_payload(incident, township, gbt_code)
    if not subscription.reveal_reporters:
        data = mask(data, _MASKED_READER)
    return orjson.dumps({"type": COUNTY_HANDOVER, "timestamp": at.isoformat(), "data": data})


def body_of(
    subscription: Subscription, township: str, event: StoredEvent, gbt_codes: Mapping[str, str | None] | None = None
) -> bytes:
    """What the receiver gets: ``{type, timestamp, data}`` as Standard Webhooks suggests; ``data`` holds the event,
    and for an event that names a category (``IncidentReported``, ``CategoryChanged``…) that category's GB/T
    47678.5 code from ``gbt_codes`` (null where the catalogue gives none)."""
    data: Any = orjson.loads(event.payload)
    if not subscription.reveal_reporters:
        data = mask(data, _MASKED_READER)
    envelope: dict[str, Any] = {"township": township, "seq": event.seq, "incident_id": event.incident_id}
    if gbt_codes is not None and isinstance(data, dict) and "category" in data:
        envelope["gbt_code"] = gbt_codes.get(data["category"] or "")
    envelope["event"] = data
    return orjson.dumps({"type": event.type, "timestamp": event.at.isoformat(), "data": envelope})


def gbt_codes(rules: RuleBook) -> Mapping[str, str | None]:
    """Each catalogue category's GB/T 47678.5 code (``gbt_code``; None where none fits)."""
    return {c.id: c.gbt_code for c in rules.table.catalogue}


def signed_headers(secret: str, message_id: str, at: datetime, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
        "user-agent": "township-dispatcher-webhooks",
    }


class Deliverer:
    """The workers of every enabled subscription of the townships served here; started with the app."""

    def __init__(
        self,
        store: SqlWebhooks,
        hubs: Mapping[str, Hub],
        settings: DeliverySettings,
        client: httpx.AsyncClient | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        townships: Sequence[str] | None = None,
    ) -> None:
        """``wall_clock`` stamps the signatures: receivers check them against their own clocks (a drill's
        virtual time would be refused), while the delivery log keeps the hub's time.

        ``hubs``: the townships whose deliveries run here, read at each :meth:`refresh` (replica mode: those whose
        lease this replica holds, a live view); ``townships``: every township of the county (default: ``hubs``'),
        each given its county hand-over subscription at start."""
        self.store = store
        self._wall_clock = wall_clock
        self._hubs = hubs
        self._settings = settings
        self._given_client = client
        self._client = client or httpx.AsyncClient(timeout=settings.timeout_s)
        self._workers: dict[int, tuple[Subscription, asyncio.Task[None]]] = {}
        self._wake: dict[int, asyncio.Event] = {}
        self._wakers: dict[str, asyncio.Task[None]] = {}  # per township with workers: it follows the feed
        self._followed_hub: dict[str, Hub] = {}  # the hub each waker follows
        self._townships = list(townships) if townships is not None else list(hubs)
        self._drills: dict[str, OrderedDict[int, bool]] = {}
        self._running = False
        self._progress = asyncio.Condition()
        self.attempt_counts: Counter[tuple[int, str]] = Counter()  # (subscription, "ok"/"failed") since start

    async def delivered(self, subscription_id: int, seq: int) -> None:
        """Wait until the subscription's cursor has passed ``seq`` (delivered or skipped), or it is gone or off."""

        def passed() -> bool:
            subscription = self.store.get(subscription_id)
            return subscription is None or not subscription.enabled or subscription.delivered_seq >= seq

        async with self._progress:
            await self._progress.wait_for(passed)

    async def _moved(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    async def start(self) -> None:
        await self.store.open()
        if self._given_client is None and self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=self._settings.timeout_s)
        if self._settings.county_url is not None:
            await self._ensure_county(self._settings.county_url, self._settings.county_secret)
        self._running = True
        self.refresh()
        log.info("webhooks: %d subscription(s), %d enabled", len(self.store.all()), len(self._workers))

    async def _ensure_county(self, url: str, secret: str | None) -> None:
        """Each township served has one county hand-over subscription to ``url``: made at the first start
        (from seq 0, so that matters left pending by the forwarder of old are sent), its URL and secret
        changed when the settings change. One that was disabled stays so until an administrator enables it."""
        for township in self._townships:
            existing = [s for s in self.store.all() if s.township == township and COUNTY_HANDOVER in s.event_types]
            if existing:
                current = existing[0]
                changes: dict[str, Any] = {}
                if current.url != url:
                    changes["url"] = url
                if secret is not None and current.secret != secret:
                    changes["secret"] = secret
                if changes:
                    await self.store.update(current.id, **changes)
                    log.warning("county hand-over subscription %d: %s changed", current.id, " and ".join(changes))
                continue
            made = await self.store.create(
                township=township,
                url=url,
                event_types=[COUNTY_HANDOVER],
                description="county hand-over (DISPATCHER_COUNTY_WEBHOOK_URL)",
                include_drills=False,
                reveal_reporters=True,  # the department calls the reporter back, as the forwarder's did
                delivered_seq=0,
                created_by="DISPATCHER_COUNTY_WEBHOOK_URL",
                at=self._hubs[township].clock.now() if township in self._hubs else self._wall_clock(),
                secret=secret,
            )
            log.warning("county hand-over of %s: webhook subscription %d to %s", township, made.id, url)

    def county_forwarding(self, township: str) -> bool:
        """Whether the township's county matters are forwarded: an enabled hand-over subscription exists."""
        return any(s.enabled and s.township == township and COUNTY_HANDOVER in s.event_types for s in self.store.all())

    async def stop(self) -> None:
        tasks = [*self._wakers.values(), *(task for _, task in self._workers.values())]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._wakers.clear()
        self._running = False
        if self._given_client is None:
            await self._client.aclose()
        await self.store.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Deliverer]:
        """Run the workers for the app's lifetime."""
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def hosted(self, township: str) -> None:
        """Replica mode: ``township``'s hub now runs here (its lease taken). Its subscriptions are read again,
        since the replica that delivered before moved their cursors, and their workers start from there."""
        if self._running:
            await self.store.reload()
            self.refresh()

    def refresh(self) -> None:
        """Start a worker for each enabled subscription, stop those of changed, disabled or deleted ones (and
        those of a township no longer served here)."""
        if not self._running:
            return  # the app has not started (or has stopped): the workers start with it
        wanted = {s.id: s for s in self.store.all() if s.enabled and s.township in self._hubs}
        for subscription_id, (started_as, task) in list(self._workers.items()):
            current = wanted.get(subscription_id)
            if task.done() or current is None or _restart_needed(started_as, current):
                task.cancel()
                del self._workers[subscription_id]
        for subscription_id, subscription in wanted.items():
            if subscription_id not in self._workers:
                self._wake[subscription_id] = asyncio.Event()
                task = asyncio.create_task(self._work(subscription_id), name=f"webhook-{subscription_id}")
                self._workers[subscription_id] = (subscription, task)
        # Only a township with workers follows its feed: without subscriptions, intake pays nothing here.
        followed = {s.township for s, _ in self._workers.values()}
        for township in set(self._wakers):
            if township not in followed or self._followed_hub.get(township) is not self._hubs.get(township):
                self._wakers.pop(township).cancel()
        for township in followed - set(self._wakers):
            hub = self._hubs[township]
            self._followed_hub[township] = hub
            self._wakers[township] = asyncio.create_task(
                self._wake_on_commits(township, hub), name=f"webhooks-{township}"
            )

    async def _wake_on_commits(self, township: str, hub: Hub) -> None:
        while True:
            subscription = hub.feed.subscribe()
            try:
                self._wake_township(township)  # a resubscription may have missed commits
                while True:
                    record: object = await subscription.get()
                    while record is not None and isinstance(record, FeedRecord):  # one wake-up per batch
                        record = subscription.get_nowait()
                    self._wake_township(township)
                    if record is not None:
                        break  # dropped for lagging: subscribe again
            finally:
                subscription.close()

    def _wake_township(self, township: str) -> None:
        for subscription_id, (subscription, _) in self._workers.items():
            if subscription.township == township:
                self._wake[subscription_id].set()

    async def _work(self, subscription_id: int) -> None:
        try:
            await self._follow(subscription_id)
        except (HubStopped, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("webhook %d: its worker stopped", subscription_id)

    async def _follow(self, subscription_id: int) -> None:
        wake = self._wake[subscription_id]
        while True:
            subscription = self.store.get(subscription_id)
            if subscription is None or not subscription.enabled:
                return
            hub = self._hubs[subscription.township]
            wake.clear()  # before reading: a commit after the read sets it again
            events = await hub.events_since(subscription.delivered_seq, limit=_PAGE)
            if not events:
                await wake.wait()
                continue
            skipped: int | None = None
            for event in events:
                if not await self._wanted(subscription, hub, event):
                    skipped = event.seq
                    continue
                if skipped is not None:
                    await self.store.skip_to(subscription_id, skipped)
                    await self._moved()
                    skipped = None
                if not await self._deliver(subscription_id, event):
                    return
                subscription = self.store.get(subscription_id) or subscription
            if skipped is not None:
                await self.store.skip_to(subscription_id, skipped)
                await self._moved()

    async def _wanted(self, subscription: Subscription, hub: Hub, event: StoredEvent) -> bool:
        if COUNTY_HANDOVER in subscription.event_types:
            # A county matter opens with a pending delivery (never a drill's): those are what it takes.
            return event.type == "IncidentReported" and orjson.loads(event.payload).get("handover") is not None
        if not subscription.wants(event.type):
            return False
        if subscription.include_drills or event.incident_id is None:
            return True
        return not await self._is_drill(subscription.township, hub, event.incident_id)

    async def _is_drill(self, township: str, hub: Hub, incident_id: int) -> bool:
        known = self._drills.setdefault(township, OrderedDict())
        if incident_id in known:
            known.move_to_end(incident_id)
            return known[incident_id]
        try:
            drill = (await hub.get(incident_id)).report.exercise
        except IncidentNotFound:
            drill = False
        known[incident_id] = drill
        if len(known) > 10_000:
            known.popitem(last=False)
        return drill

    async def _deliver(self, subscription_id: int, event: StoredEvent) -> bool:
        """Send one event until it is delivered (True), or the subscription is disabled or removed (False).

        A county hand-over is also done when its delivery is settled on the incident: delivered, or failed
        after ``county_attempts`` tries (the command room then phones the department)."""
        failures = 0
        while True:
            subscription = self.store.get(subscription_id)
            if subscription is None or not subscription.enabled:
                return False
            hub = self._hubs[subscription.township]
            message_id = webhook_id(subscription.township, event.seq)
            extra: dict[str, str] = {}
            county = COUNTY_HANDOVER in subscription.event_types
            if county:
                incident = await self._pending_handover(hub, event)
                if incident is None:  # settled before (a restart after its record): nothing to send
                    await self.store.skip_to(subscription_id, event.seq)
                    await self._moved()
                    return True
                code = gbt_codes(hub.rules).get(incident.category or "")
                body = handover_body(subscription, subscription.township, incident, event.at, code)
                extra["idempotency-key"] = f"{subscription.township}-{incident.id}"
            else:
                body = body_of(subscription, subscription.township, event, gbt_codes(hub.rules))
            at = hub.clock.now()
            started = time.perf_counter()
            status, error = await self._post(subscription, message_id, self._wall_clock(), body, extra)
            ok = error is None
            settled = ok
            if county and event.incident_id is not None:
                recorded = await hub.record_delivery(
                    event.incident_id,
                    at,
                    ok=ok,
                    status_code=status,
                    error=error,
                    max_attempts=self._settings.county_attempts,
                )
                settled = recorded.delivery is None or recorded.delivery.state is not DeliveryState.PENDING
            self.attempt_counts[subscription_id, "ok" if ok else "failed"] += 1
            attempt = Attempt(
                subscription_id=subscription_id,
                seq=event.seq,
                webhook_id=message_id,
                attempt=failures + 1,
                at=at,
                ok=ok,
                status_code=status,
                error=error,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            if ok:
                await self.store.record(attempt, delivered_seq=event.seq, failing_since=None)
                await self._moved()
                return True
            failing_since = subscription.failing_since or at
            await self.store.record(attempt, delivered_seq=event.seq if settled else None, failing_since=failing_since)
            if settled:  # a county hand-over that failed its last try: the next one is sent
                log.error(
                    "webhook %d: county hand-over of incident %s failed %d times",
                    subscription_id,
                    event.incident_id,
                    failures + 1,
                )
                await self._moved()
                return True
            failures += 1
            reason = disable_reason(failing_since, at, self._settings.disable_after)
            if reason is not None:
                await self._disable(subscription, hub, reason, at)
                return False
            log.warning(
                "webhook %d: event %d to %s failed (%s), try %d",
                subscription_id,
                event.seq,
                subscription.url,
                error,
                failures,
            )
            await asyncio.sleep(self._settings.backoff.after(failures).total_seconds())

    async def _pending_handover(self, hub: Hub, event: StoredEvent) -> Incident | None:
        """The incident of a county matter whose delivery still waits, else None."""
        if event.incident_id is None:
            return None
        try:
            incident = await hub.get(event.incident_id)
        except IncidentNotFound:
            return None
        delivery = incident.delivery
        return incident if delivery is not None and delivery.state is DeliveryState.PENDING else None

    async def _post(
        self, subscription: Subscription, message_id: str, at: datetime, body: bytes, extra: dict[str, str]
    ) -> tuple[int | None, str | None]:
        headers = signed_headers(subscription.secret, message_id, at, body) | extra
        try:
            answer = await self._client.post(subscription.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= answer.status_code < 300:
            return answer.status_code, None
        return answer.status_code, f"HTTP {answer.status_code}: {answer.text[:200]}"

    async def _disable(self, subscription: Subscription, hub: Hub, reason: str, at: datetime) -> None:
        await self.store.update(subscription.id, enabled=False, disabled_reason=reason)
        await self._moved()
        log.critical("webhook %d to %s disabled: %s", subscription.id, subscription.url, reason)
        with contextlib.suppress(HubStopped):
            await hub.record_township_event(
                ev.WebhookDisabled(
                    at=at,
                    subscription_id=subscription.id,
                    url=subscription.url,
                    reason=reason,
                    delivered_seq=subscription.delivered_seq,
                )
            )


def _restart_needed(before: Subscription, now: Subscription) -> bool:
    return (before.url, before.event_types, before.secret) != (now.url, now.event_types, now.secret)


# -- the API: administrators manage subscriptions ----------------------------------------------------

router = APIRouter(prefix="/api/v1", tags=["webhooks"])


WebhookUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2048)]


class SubscriptionIn(BaseModel):
    model_config = {"extra": "forbid"}

    url: WebhookUrl = Field(description="where events are POSTed (http or https)")
    event_types: list[Annotated[str, Field(pattern=r"^(\*|[A-Z][A-Za-z]{1,47})$")]] = Field(
        min_length=1, max_length=64, description="event type names (e.g. IncidentReported), or ['*'] for all"
    )
    description: Text | None = Field(default=None, max_length=500)
    include_drills: bool = Field(default=False, description="send the events of drills (演练) too")
    reveal_reporters: bool = Field(
        default=False, description="send reporters' contact details (else masked as ***, as supervision sees them)"
    )
    from_seq: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="start after this seq (default: the latest: new events only)"
    )


class SubscriptionPatch(BaseModel):
    model_config = {"extra": "forbid"}

    url: WebhookUrl | None = None
    event_types: list[Annotated[str, Field(pattern=r"^(\*|[A-Z][A-Za-z]{1,47})$")]] | None = Field(
        default=None, min_length=1, max_length=64
    )
    description: Text | None = Field(default=None, max_length=500)
    enabled: bool | None = Field(default=None, description="true resumes a disabled subscription at its cursor")
    include_drills: bool | None = None
    reveal_reporters: bool | None = None


def _json(subscription: Subscription, *, with_secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": subscription.id,
        "township": subscription.township,
        "url": subscription.url,
        "event_types": sorted(subscription.event_types),
        "description": subscription.description,
        "include_drills": subscription.include_drills,
        "reveal_reporters": subscription.reveal_reporters,
        "enabled": subscription.enabled,
        "delivered_seq": subscription.delivered_seq,
        "failing_since": subscription.failing_since.isoformat() if subscription.failing_since else None,
        "disabled_reason": subscription.disabled_reason,
        "created_by": subscription.created_by,
        "created_at": subscription.created_at.isoformat(),
    }
    if with_secret:
        body["secret"] = subscription.secret
    return body


def _respond(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def _deliverer(request: Request) -> Deliverer:
    deliverer = context_of(request).webhooks
    assert isinstance(deliverer, Deliverer)
    await deliverer.store.open()
    return deliverer


def _township(request: Request) -> str:
    township = getattr(request.state, "township", None)
    if township is None:
        raise HTTPException(422, "choose a township (?township= or X-Township)")
    return str(township)


def _allowed_host(request: Request, url: str) -> None:
    """Refuse a URL whose host is not in ``DISPATCHER_WEBHOOK_HOSTS`` (when that is set): the dispatcher then
    only ever calls the county systems it was told of."""
    hosts = context_of(request).settings.webhook_hosts
    if not hosts:
        return
    allowed = {h.strip().lower() for h in hosts.split(",") if h.strip()}
    host = (httpx.URL(url).host or "").lower()
    if host not in allowed:
        raise HTTPException(422, f"webhooks may only point at {', '.join(sorted(allowed))} (DISPATCHER_WEBHOOK_HOSTS)")


async def _own(request: Request, subscription_id: int) -> Subscription:
    subscription = (await _deliverer(request)).store.get(subscription_id)
    if subscription is None or subscription.township != _township(request):
        raise HTTPException(404, f"no webhook subscription {subscription_id}")
    return subscription


@router.get("/webhooks", summary="Webhook subscriptions of the township (secrets are never shown again)")
async def list_subscriptions(request: Request) -> Response:
    township = _township(request)
    data = [_json(s) for s in (await _deliverer(request)).store.all() if s.township == township]
    return _respond({"data": data, "count": len(data)})


@router.post("/webhooks", status_code=201, summary="Subscribe a URL to the township's events; the secret is shown once")
async def create_subscription(request: Request, body: SubscriptionIn) -> Response:
    deliverer = await _deliverer(request)
    township = _township(request)
    hub = context_of(request).townships[township].hub
    principal = getattr(request.state, "principal", None)
    _allowed_host(request, str(body.url))
    start = body.from_seq if body.from_seq is not None else hub.last_seq
    subscription = await deliverer.store.create(
        township=township,
        url=str(body.url),
        event_types=body.event_types,
        description=body.description,
        include_drills=body.include_drills,
        reveal_reporters=body.reveal_reporters,
        delivered_seq=start,
        created_by=principal.name if principal is not None else None,
        at=hub.clock.now(),
    )
    deliverer.refresh()
    return _respond(_json(subscription, with_secret=True), 201)


@router.get("/webhooks/{subscription_id}", summary="One webhook subscription")
async def get_subscription(request: Request, subscription_id: RowId) -> Response:
    return _respond(_json(await _own(request, subscription_id)))


@router.patch("/webhooks/{subscription_id}", summary="Change, disable or re-enable a webhook subscription")
async def patch_subscription(request: Request, subscription_id: RowId, body: SubscriptionPatch) -> Response:
    await _own(request, subscription_id)
    deliverer = await _deliverer(request)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    if changes.get("url") is not None:
        changes["url"] = str(changes["url"])
    nulls = ("url", "event_types", "enabled", "include_drills", "reveal_reporters")
    if any(key in changes and changes[key] is None for key in nulls):
        raise HTTPException(422, f"{', '.join(nulls)} cannot be null")
    if changes.get("url") is not None:
        _allowed_host(request, changes["url"])
    if changes.get("enabled") is True:
        changes.update(disabled_reason=None, failing_since=None)
    elif changes.get("enabled") is False:
        changes["disabled_reason"] = "disabled by an administrator"
    updated = await deliverer.store.update(subscription_id, **changes)
    assert updated is not None
    deliverer.refresh()
    return _respond(_json(updated))


@router.delete("/webhooks/{subscription_id}", status_code=204, summary="Remove a subscription and its delivery log")
async def delete_subscription(request: Request, subscription_id: RowId) -> Response:
    await _own(request, subscription_id)
    deliverer = await _deliverer(request)
    await deliverer.store.delete(subscription_id)
    deliverer.refresh()
    return Response(status_code=204)


@router.get("/webhooks/{subscription_id}/deliveries", summary="The delivery log: every attempt, newest first")
async def deliveries(
    request: Request,
    subscription_id: RowId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: RowId | None = None,
    outcome: Literal["ok", "failed"] | None = None,
) -> Response:
    await _own(request, subscription_id)
    attempts = await (await _deliverer(request)).store.attempts(subscription_id, limit=limit, before=before)
    if outcome is not None:
        attempts = [a for a in attempts if a.ok == (outcome == "ok")]
    data = [
        {
            "id": a.id,
            "seq": a.seq,
            "webhook_id": a.webhook_id,
            "attempt": a.attempt,
            "at": a.at.isoformat(),
            "ok": a.ok,
            "status_code": a.status_code,
            "error": a.error,
            "duration_ms": a.duration_ms,
        }
        for a in attempts
    ]
    return _respond({"data": data, "count": len(data)})
