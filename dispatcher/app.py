"""The composition root: settings in, a wired FastAPI application out. Nothing is built at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

import dispatcher
from dispatcher.alarm import Alarm, ApschedulerAlarm
from dispatcher.clock import Clock, SystemClock
from dispatcher.feed import EventFeed
from dispatcher.heap import HeapFreezer
from dispatcher.hub import Hub
from dispatcher.roster_file import restore_roster
from dispatcher.settings import Settings
from dispatcher.shifts import ShiftWatch
from dispatcher.sql_store import SqlIncidentStore
from gateways import api, board, dispatch_api, rules_api
from gateways.county import WebhookSettings, forwarding
from gateways.mqtt import GatewayConfig, LastKnownStatus, MqttGateway, Topics, default_prefix
from gateways.mqtt import stats_api as mqtt_stats_api
from gateways.mqtt.officers import RosterStatus
from rules import RuleBook, compile_table, load_source
from rules.checker import check_for_service

log = logging.getLogger(__name__)


def load_rules(path: Path) -> RuleBook:
    """Load, compile and check a table for service.

    Raises ``RuleTableError`` (invalid) or ``TableRefused`` (blocking findings); logs the others.
    """
    source = load_source(path)
    book = compile_table(source.table)
    for finding in check_for_service(book, source):
        log.warning("rule table %s: %s", book.version, finding)
    return book


def build_hub(settings: Settings, *, clock: Clock | None = None, alarm: Alarm | None = None) -> Hub:
    """The hub with its store, rules, clock, alarm and feed; raises ``RuleTableError`` or ``TableRefused``."""
    rules = load_rules(settings.rules_path)
    return Hub(
        store=SqlIncidentStore(settings.database_url, pool_size=settings.db_pool_size),
        rules=rules,
        clock=clock or SystemClock(),
        alarm=alarm or ApschedulerAlarm(),
        feed=EventFeed(queue_size=settings.board_queue_size, ring_size=settings.feed_ring_size),
        queue_size=settings.writer_queue_size,
        batch_max=settings.writer_batch_max,
        duplicate_radius_m=settings.duplicate_radius_m,
        duplicate_window=timedelta(seconds=settings.duplicate_window_s),
    )


def webhook_settings(settings: Settings) -> WebhookSettings | None:
    if settings.county_webhook_url is None:
        return None
    return WebhookSettings(
        url=settings.county_webhook_url,
        timeout_s=settings.county_webhook_timeout_s,
        max_attempts=settings.county_webhook_attempts,
        first_backoff_s=settings.county_webhook_first_backoff_s,
    )


def build_mqtt(settings: Settings, hub: Hub, officers: LastKnownStatus) -> MqttGateway | None:
    """The MQTT gateway when ``settings.mqtt_url`` is set, else None (HTTP only)."""
    if not settings.mqtt_url:
        return None
    from dispatcher.outbox import SqlOutboxCursor

    config = GatewayConfig(
        url=settings.mqtt_url,
        topics=Topics(settings.mqtt_prefix or default_prefix(hub.rules.township_id)),
        client_id=settings.mqtt_client_id,
        max_payload_bytes=settings.mqtt_max_payload_bytes,
    )
    return MqttGateway(
        hub,
        config,
        cursor=SqlOutboxCursor(settings.database_url, settings.mqtt_client_id),
        on_officer_status=RosterStatus(hub, officers).record,
    )


def create_app(settings: Settings, *, hub: Hub | None = None) -> FastAPI:
    """The dispatcher's ASGI application; the hub (then the MQTT gateway) start and stop with its lifespan."""
    the_hub = hub or build_hub(settings)
    officers = LastKnownStatus()
    mqtt = build_mqtt(settings, the_hub, officers)

    freezer = HeapFreezer() if settings.gc_freeze else None
    shifts = ShiftWatch(the_hub)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def prepare() -> None:
            roster, app.state.roster_source = await restore_roster(
                the_hub, settings.roster_file(), use_stored=not settings.no_roster
            )
            log.info("roster %s: %d officers, %d shifts", roster.version, len(roster.officers), len(roster.shifts))

        await the_hub.start(prepare)
        shifts.start()
        if mqtt is not None:
            await mqtt.start()
        else:
            log.info("MQTT gateway off (no --mqtt-url / DISPATCHER_MQTT_URL): HTTP only")
        if freezer is not None:
            freezer.start()
        try:
            async with forwarding(the_hub, webhook_settings(settings)) as county:
                app.state.county = county
                log.info(
                    "dispatcher ready: township %s, rule table %s, roster %s, database %s",
                    the_hub.rules.township_id,
                    the_hub.rules.version,
                    the_hub.roster.version,
                    settings.database_url.split("@")[-1],
                )
                yield
        finally:
            if freezer is not None:
                await freezer.stop()
            if mqtt is not None:
                await mqtt.stop()
            shifts.stop()
            await the_hub.stop()

    app = FastAPI(
        title="Township command-room dispatcher",
        summary="Report → route by the responsibility boundary list → dispatch merged teams → live board",
        version=dispatcher.__version__,
        lifespan=lifespan,
    )
    app.state.hub = the_hub
    app.state.settings = settings
    app.state.roster_source = None
    app.state.shifts = shifts
    app.state.mqtt = mqtt
    app.state.officer_status = officers
    # Dispatch first: its /assignments/{team}/officer and /reassign must win over /assignments/{team}/{action}.
    app.include_router(dispatch_api.router)
    app.include_router(api.router)
    app.include_router(rules_api.router)
    app.include_router(mqtt_stats_api.router)
    app.include_router(board.router)
    api.install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=board.STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/board")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        store_ok = await the_hub.store.ping()
        # Readiness is about taking reports: HTTP still does while the broker is away, so a down
        # MQTT gateway is reported here but does not make the dispatcher unready.
        ready = store_ok and the_hub.running
        body = {
            "ready": ready,
            "store": "up" if store_ok else "down",
            "writer": "running" if the_hub.running else "stopped",
            "rule_table": the_hub.rules.version,
            "roster": the_hub.roster.version,
            "last_seq": the_hub.last_seq,
            "boards": the_hub.feed.subscriber_count,
            "mqtt": mqtt.state if mqtt is not None else "off",
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    return app
