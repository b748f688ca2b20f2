"""The composition root: settings in, a wired FastAPI application out. Nothing is built at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

import dispatcher
from dispatcher.accounts import Lockout, SqlDirectory
from dispatcher.alarm import Alarm, ApschedulerAlarm
from dispatcher.clock import Clock, SystemClock
from dispatcher.feed import EventFeed
from dispatcher.heap import HeapFreezer
from dispatcher.hub import Hub
from dispatcher.roster_file import restore_roster
from dispatcher.settings import Settings
from dispatcher.shifts import ShiftWatch
from dispatcher.sql_store import SqlIncidentStore
from gateways import api, audit, auth, board, dispatch_api, rules_api
from gateways.audit import AuditTrail
from gateways.county import WebhookSettings, forwarding
from gateways.limits import BodyLimit, TokenBuckets
from gateways.mqtt import GatewayConfig, LastKnownStatus, MqttGateway, Topics, default_prefix
from gateways.mqtt import stats_api as mqtt_stats_api
from gateways.mqtt.officers import RosterStatus
from gateways.privacy import MaskResponses
from gateways.tenancy import Township, Townships
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


def build_townships(settings: Settings, hubs: Sequence[Hub] | None = None) -> list[Township]:
    """The townships to serve: the hubs given, else ``DISPATCHER_TOWNSHIPS``, else one township."""
    if hubs is None and settings.townships:
        hubs = []
        for township_id, rules_path, url in settings.township_entries():
            hub = build_hub(settings.model_copy(update={"rules_path": rules_path, "database_url": url}))
            if hub.rules.township_id != township_id:
                raise ValueError(f"DISPATCHER_TOWNSHIPS: {rules_path} is the table of {hub.rules.township_id!r}")
            hubs.append(hub)
    hubs = hubs or [build_hub(settings)]
    townships = []
    for hub in hubs:
        rules_path = settings.rules_path
        for township_id, path, _ in settings.township_entries():
            if township_id == hub.rules.township_id:
                rules_path = path
        roster = settings.model_copy(update={"rules_path": rules_path}).roster_file()
        townships.append(Township(hub.rules.township_id, hub, ShiftWatch(hub), rules_path, roster))
    return townships


def create_app(settings: Settings, *, hub: Hub | None = None, hubs: Sequence[Hub] | None = None) -> FastAPI:
    """The dispatcher's ASGI application; the hubs start and stop with the app's lifespan.

    One hub per township served (``hubs``, or ``hub`` for one, or built from ``settings``); accounts,
    tokens and the audit trail live in ``settings.database_url`` (:class:`SqlDirectory`).
    """
    townships = Townships(build_townships(settings, [hub] if hub is not None else hubs))
    the_hub = townships.first.hub
    directory = SqlDirectory(
        settings.database_url,
        session_ttl=timedelta(seconds=settings.token_ttl_s),
        lockout=Lockout(
            failures=settings.lockout_failures,
            window=timedelta(seconds=settings.lockout_window_s),
            lock_for=timedelta(seconds=settings.lockout_s),
        ),
    )
    officers = LastKnownStatus()
    mqtt = build_mqtt(settings, the_hub, officers)  # the first township's hub: one broker prefix per process
    freezer = HeapFreezer() if settings.gc_freeze else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await directory.open()
        admin_password = settings.admin_password.get_secret_value() if settings.admin_password else None
        generated = await directory.ensure_admin(admin_password, the_hub.clock.now())
        if generated is not None:
            # Printed once, to the console only (not to the log): it is never shown again.
            print(f"dispatcher: created administrator 'admin' with password {generated}", flush=True)
            log.warning("created administrator 'admin'; its generated password was printed once to the console")
        async with AsyncExitStack() as stack:
            for township in townships.values():
                await _start_township(stack, township, settings)
            if mqtt is not None:
                await mqtt.start()
                stack.push_async_callback(mqtt.stop)
            else:
                log.info("MQTT gateway off (no --mqtt-url / DISPATCHER_MQTT_URL): HTTP only")
            if freezer is not None:
                freezer.start()
                stack.push_async_callback(freezer.stop)
            app.state.county = await stack.enter_async_context(forwarding(the_hub, webhook_settings(settings)))
            for township in list(townships.values())[1:]:
                await stack.enter_async_context(forwarding(township.hub, webhook_settings(settings)))
            yield
        await directory.close()

    app = FastAPI(
        title="Township command-room dispatcher",
        summary="Report → route by the responsibility boundary list → dispatch merged teams → live board",
        version=dispatcher.__version__,
        lifespan=lifespan,
        # Every route passes the policy table (gateways/policy.py): deny by default.
        dependencies=[Depends(auth.guard)],
    )
    #: The first township's hub, for code that serves one township; HTTP routes choose through get_hub.
    app.state.hub = the_hub
    app.state.townships = townships
    app.state.directory = directory
    app.state.clock = the_hub.clock
    app.state.settings = settings
    app.state.mqtt = mqtt
    app.state.officer_status = officers
    app.state.snapshot_pages = board.SnapshotPages()  # boards connecting together share encoded snapshot pages
    app.state.token_buckets = TokenBuckets(settings.rate_per_s, settings.rate_burst)
    app.state.sign_in_buckets = TokenBuckets(settings.sign_in_per_min / 60.0, settings.sign_in_per_min)
    # Dispatch first: its /assignments/{team}/officer and /reassign must win over /assignments/{team}/{action}.
    app.include_router(auth.router)
    app.include_router(dispatch_api.router)
    app.include_router(api.router)
    app.include_router(rules_api.router)
    app.include_router(mqtt_stats_api.router)
    app.include_router(audit.router)
    app.include_router(board.router)
    api.install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=board.STATIC_DIR), name="static")
    # Outermost last: the body limit sees a request first, then the audit trail, then masking.
    app.add_middleware(MaskResponses)
    app.add_middleware(AuditTrail)
    app.add_middleware(BodyLimit, limit=settings.body_limit_bytes, larger=LARGER_BODIES)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/board")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        # Readiness is about taking reports: HTTP still does while the broker is away, so a down
        # MQTT gateway is reported here but does not make the dispatcher unready.
        store_ok = all([await t.hub.store.ping() for t in townships.values()])
        running = all(t.hub.running for t in townships.values())
        ready = store_ok and running
        body = {
            "ready": ready,
            "store": "up" if store_ok else "down",
            "writer": "running" if running else "stopped",
            "rule_table": the_hub.rules.version,
            "roster": the_hub.roster.version,
            "last_seq": the_hub.last_seq,
            "boards": the_hub.feed.subscriber_count,
            "mqtt": mqtt.state if mqtt is not None else "off",
            "townships": sorted(townships),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    return app


#: Bodies allowed past the default limit: a whole rule table or roster.
LARGER_BODIES = {"/api/v1/rules": 5_000_000, "/api/v1/roster": 1_000_000}


async def _start_township(stack: AsyncExitStack, township: Township, settings: Settings) -> None:
    hub = township.hub

    async def prepare() -> None:
        roster, township.roster_source = await restore_roster(
            hub, township.roster_file, use_stored=not settings.no_roster
        )
        log.info("roster %s: %d officers, %d shifts", roster.version, len(roster.officers), len(roster.shifts))

    await hub.start(prepare)
    stack.push_async_callback(hub.stop)
    township.shifts.start()
    stack.callback(township.shifts.stop)
    log.info(
        "dispatcher ready: township %s, rule table %s, roster %s, database %s",
        hub.rules.township_id,
        hub.rules.version,
        hub.roster.version,
        getattr(hub.store, "url", "?").split("@")[-1],
    )
