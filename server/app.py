"""The composition root: settings in, a wired FastAPI application out. Nothing is built at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from swagger_ui_bundle import swagger_ui_path

import dispatcher
from dispatcher.accounts import COUNTY, Lockout, Role, SqlDirectory, TokenKind
from dispatcher.alarm import Alarm, ApschedulerAlarm
from dispatcher.clock import Clock, SystemClock
from dispatcher.connection_budget import ConnectionBudget
from dispatcher.feed import EventFeed
from dispatcher.field_store import SqlFieldStore
from dispatcher.heap import SERVING_YOUNG, HeapFreezer
from dispatcher.hub import Hub
from dispatcher.leases import Fence
from dispatcher.media import LocalMediaStore
from dispatcher.ownership import HostsAll, NotCarried, Ownership, SettableOwnership
from dispatcher.roster_file import install_roster, restore_roster
from dispatcher.settings import Settings
from dispatcher.shifts import ShiftWatch
from dispatcher.sql_store import SqlIncidentStore
from dispatcher.tail_feed import TailFeeds
from dispatcher.webhooks import Backoff, SqlWebhooks
from gateways import (
    api,
    audit,
    auth,
    board,
    cap,
    closing_api,
    dispatch_api,
    field_api,
    field_app,
    metrics,
    open311,
    reports,
    rules_api,
    webhooks,
)
from gateways.context import AppContext
from gateways.edge import Edge, Hot, hot_routes
from gateways.evidence import recover_refs
from gateways.limits import TokenBuckets
from gateways.mqtt import GatewayConfig, LastKnownStatus, MqttGateway, Topics, default_prefix
from gateways.mqtt import stats_api as mqtt_stats_api
from gateways.mqtt.gateway import CarriedMessage
from gateways.mqtt.officers import RosterStatus
from gateways.policy import MOVE_ASSIGNMENT, document_security
from gateways.problems import document_problems
from gateways.replicas import Elsewhere, carry, carry_message
from gateways.schemas import IncidentCreate, IncidentsBatchCreate, UnitActionIn
from gateways.tenancy import Township, Townships
from rules import RuleBook, RuleTableError, compile_table, load_source, load_source_text
from rules.checker import TableRefused, check_for_service
from server.replicas import Adoptions, ReplicaSet

if TYPE_CHECKING:
    from rules.messages import MessageModel

log = logging.getLogger(__name__)


def load_rules(path: Path) -> RuleBook:
    """Load, compile and check a table for service.

    Raises ``RuleTableError`` (invalid) or ``TableRefused`` (blocking findings); logs the others.
    """
    source = load_source(path)
    book = compile_table(source.table)
    for finding in check_for_service(book, source, today=datetime.now(book.tz).date()):
        log.warning("rule table %s: %s", book.version, finding)
    return book


def _compile_text(text: str, base_dir: Path, source: str) -> RuleBook:
    loaded = load_source_text(text, source=source, base_dir=base_dir)
    book = compile_table(loaded.table)
    for finding in check_for_service(book, loaded, today=datetime.now(book.tz).date()):
        log.warning("rule table %s: %s", book.version, finding)
    return book


async def restore_rules(hub: Hub, path: Path, *, from_file: bool) -> str | None:
    """At start, before the writer runs: put the rule table put in force last (stored) back in force.

    The table at ``path`` (already the hub's, from :func:`build_hub`) is used instead on the first
    start (nothing stored), with ``from_file``, or when the stored table no longer compiles. Returns
    that file's text when it is in force but not yet the stored table: the caller stores it through
    the hub (a ``RulesPutInForce`` event) once the writer runs; ``None`` otherwise.
    """
    file_text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    stored = await hub.store.latest_rule_table()
    if stored is None:
        log.info("rule table %s from %s: the first put in force in this database", hub.rules.version, path)
        return file_text
    if from_file:
        if stored.body == file_text:
            log.info("rule table %s from %s: already the stored table %d", hub.rules.version, path, stored.id)
            return None
        log.warning(
            "rule table %s from %s put in force over stored table %d (%s) as asked (rules_from_file)",
            hub.rules.version,
            path,
            stored.id,
            stored.version,
        )
        return file_text
    assert stored.body is not None
    try:
        book = _compile_text(stored.body, path.parent, f"<stored table {stored.id}>")
    except (RuleTableError, TableRefused) as exc:
        log.error(
            "stored rule table %d (%s) cannot be used (%s); %s is put in force", stored.id, stored.version, exc, path
        )
        return file_text
    hub.replace_rules(book)
    log.warning(
        "rule table %s is in force: stored table %d, put in force by %s at %s; the file %s (%s) is not used "
        "(DISPATCHER_RULES_FROM_FILE=true puts it in force)",
        book.version,
        stored.id,
        stored.put_by,
        stored.put_at.isoformat(),
        path,
        "the same table" if stored.body == file_text else "another table",
    )
    return None


def load_messages(settings: Settings) -> MessageModel | None:
    """The message model of ``DISPATCHER_MESSAGE_MODEL``, or None when unset; raises ``MessageModelError`` (the
    file missing, unreadable or not a model) so that the server does not start without the model it was given."""
    if settings.message_model is None:
        return None
    from rules.message_file import read_message_model

    started = time.perf_counter()
    model = read_message_model(settings.message_model)
    log.info(
        "message model %s: %d labels, %d words, trained for table %s, loaded in %.2f s",
        settings.message_model,
        len(model.labels),
        len(model.weights),
        model.trained_on.get("table_version", "?"),
        time.perf_counter() - started,
    )
    return model


def build_hub(
    settings: Settings,
    *,
    clock: Clock | None = None,
    alarm: Alarm | None = None,
    messages: MessageModel | None = None,
    fence: Fence | None = None,
    budget: ConnectionBudget | None = None,
) -> Hub:
    """The hub with its store, rules, clock, alarm, feed and message model (``messages``, else the one of
    ``settings``); raises ``RuleTableError``, ``TableRefused`` or ``MessageModelError``.

    ``fence``: a replica's hub, whose every write is fenced by the township's lease (server/replicas.py);
    ``budget``: the replica's connection budget its store draws on.
    """
    rules = load_rules(settings.rules_path)
    return Hub(
        messages=messages or load_messages(settings),
        store=SqlIncidentStore(
            settings.database_url,
            pool_size=settings.db_pool_size,
            township=rules.township_id,
            fence=fence,
            budget=budget,
        ),
        rules=rules,
        clock=clock or SystemClock(),
        alarm=alarm or ApschedulerAlarm(),
        feed=EventFeed(queue_size=settings.board_queue_size, ring_size=settings.feed_ring_size),
        queue_size=settings.writer_queue_size,
        batch_max=settings.writer_batch_max,
        duplicate_radius_m=settings.duplicate_radius_m,
        duplicate_window=timedelta(seconds=settings.duplicate_window_s),
    )


def build_mqtt(
    settings: Settings, hubs: Sequence[Hub], officers: LastKnownStatus, ownership: Ownership | None = None
) -> list[MqttGateway]:
    """One MQTT gateway per township served when ``settings.mqtt_url`` is set, else none (HTTP only).

    Each township has its own topics (``township/<id>/``; ``DISPATCHER_MQTT_PREFIX`` serves one township only),
    broker session and outbox cursor: with several townships the client id and the cursor are named
    ``<client id>-<township>``.
    """
    if not settings.mqtt_url:
        return []
    from dispatcher.outbox import SqlOutboxCursor

    if settings.mqtt_prefix and len(hubs) > 1:
        raise ValueError("DISPATCHER_MQTT_PREFIX serves one township: unset it to serve each under township/<id>/")
    gateways = []
    for hub in hubs:
        township = hub.rules.township_id
        client_id = settings.mqtt_client_id if len(hubs) == 1 else f"{settings.mqtt_client_id}-{township}"
        config = GatewayConfig(
            url=settings.mqtt_url,
            topics=Topics(settings.mqtt_prefix or default_prefix(township)),
            client_id=client_id,
            max_payload_bytes=settings.mqtt_max_payload_bytes,
            shared_group=settings.mqtt_shared_group,
        )
        gateways.append(
            MqttGateway(
                hub,
                config,
                cursor=SqlOutboxCursor(settings.database_url, client_id),
                on_officer_status=RosterStatus(hub, officers).record,
                ownership=ownership,
            )
        )
    return gateways


#: The shared subscription group of replicas when ``DISPATCHER_MQTT_SHARED_GROUP`` is not set.
REPLICA_GROUP = "dispatchers"


def replica_gateway(
    settings: Settings,
    township: Township,
    officers: LastKnownStatus,
    ownership: Ownership,
    replica_id: str,
    *,
    publishes: bool = True,
    budget: ConnectionBudget | None = None,
) -> MqttGateway:
    """Replica mode: the gateway of ``township`` under the client id of ``replica_id`` (``<client id>-<replica>-
    <township>``), a member of the shared group. It follows the township's hub as leases bring a new one; its outbox
    cursor (``outbox-<township>``) is the county's, so the replica taking the township goes on where the last one
    left off. ``publishes=False``: intake only (another replica's session, adopted while it is dead). ``budget``: the
    replica's connection budget, which the outbox cursor draws on."""
    if settings.mqtt_url is None:
        raise ValueError("no MQTT URL")
    from dispatcher.outbox import SqlOutboxCursor

    config = GatewayConfig(
        url=settings.mqtt_url,
        topics=Topics(settings.mqtt_prefix or default_prefix(township.id)),
        client_id=f"{settings.mqtt_client_id}-{replica_id}-{township.id}",
        max_payload_bytes=settings.mqtt_max_payload_bytes,
        shared_group=settings.mqtt_shared_group or REPLICA_GROUP,
        publishes=publishes,
    )

    def hub_now() -> Hub:
        return township.hub

    return MqttGateway(
        township.hub,
        config,
        cursor=SqlOutboxCursor(settings.database_url, f"outbox-{township.id}", budget=budget),
        on_officer_status=RosterStatus(township.hub, officers, hub_of=hub_now).record,
        ownership=ownership,
        hub_of=hub_now,
    )


class ServedHubs(Mapping[str, Hub]):
    """Replica mode: the hubs of the townships served here now (a live view: leases come and go)."""

    def __init__(self, townships: Townships) -> None:
        self._townships = townships

    def __getitem__(self, township: str) -> Hub:
        if township not in self._townships or not self._townships[township].serving:
            raise KeyError(township)
        return self._townships[township].hub

    def __iter__(self) -> Iterator[str]:
        return iter([t.id for t in self._townships.values() if t.serving])

    def __len__(self) -> int:
        return sum(1 for t in self._townships.values() if t.serving)


class HubFeeds(Mapping[str, EventFeed]):
    """The feed of each township's hub now (a live view: in replica mode a township gets a new hub at each take)."""

    def __init__(self, townships: Townships) -> None:
        self._townships = townships

    def __getitem__(self, township: str) -> EventFeed:
        return self._townships[township].hub.feed

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._townships))

    def __len__(self) -> int:
        return len(self._townships)


async def replica_token(directory: SqlDirectory, replica_id: str, at: datetime) -> str:
    """The token this replica carries device messages to the others with: account ``replica-<id>`` (an
    administrator of the county), its earlier tokens revoked, a new one issued at each start."""
    name = f"replica-{replica_id.lower()}"
    if directory.account(name) is None:
        await directory.create_account(name, Role.ADMIN, COUNTY, at)
    await directory.revoke_all(name, at)
    token, _ = await directory.issue_token(name, TokenKind.DEVICE, at, label="replica: carries MQTT messages")
    return token


def build_townships(
    settings: Settings, hubs: Sequence[Hub] | None = None, *, budget: ConnectionBudget | None = None
) -> list[Township]:
    """The townships to serve: the hubs given, else ``DISPATCHER_TOWNSHIPS``, else one township (their stores
    drawing on ``budget``, a replica's)."""
    if hubs is None and settings.townships:
        hubs = []
        messages = load_messages(settings)  # one model for every township, read once
        for township_id, rules_path, url in settings.township_entries():
            hub = build_hub(
                settings.model_copy(update={"rules_path": rules_path, "database_url": url}),
                messages=messages,
                budget=budget,
            )
            if hub.rules.township_id != township_id:
                raise ValueError(f"DISPATCHER_TOWNSHIPS: {rules_path} is the table of {hub.rules.township_id!r}")
            hubs.append(hub)
    hubs = hubs or [build_hub(settings, budget=budget)]
    townships = []
    for hub in hubs:
        rules_path = settings.rules_path
        for township_id, path, _ in settings.township_entries():
            if township_id == hub.rules.township_id:
                rules_path = path
        roster = settings.model_copy(update={"rules_path": rules_path}).roster_file()
        townships.append(Township(hub.rules.township_id, hub, ShiftWatch(hub), rules_path, roster))
    return townships


def _documented_security(app: FastAPI) -> None:
    """The OpenAPI document says what the guard enforces (see :func:`gateways.policy.document_security`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(document_security(build()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI served from the ``swagger-ui-bundle-v2`` wheel under ``/docs/assets``.

    Plain routes (no policy dependency), like FastAPI's own: the page and its scripts hold no data; the
    schema it reads is ``/openapi.json``.
    """
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    async def docs(_: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} – API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
        )

    async def oauth2_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route("/docs", docs, include_in_schema=False)
    app.add_route("/docs/oauth2-redirect", oauth2_redirect, include_in_schema=False)


def first_start_box(password: str, settings: Settings) -> str:
    """The first start's message: the generated password of ``admin``, framed so that it stands out in the log."""
    lines = [
        "First start: the administrator account 'admin' was created.",
        f"Its password, shown this once: {password}",
        f"Sign in at http://{settings.host}:{settings.port}/board as admin.",
        "Lost it? On this machine: dispatcher accounts set-password admin",
    ]
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule])


def delivery_settings(settings: Settings) -> webhooks.DeliverySettings:
    return webhooks.DeliverySettings(
        timeout_s=settings.webhook_timeout_s,
        backoff=Backoff(
            first=timedelta(seconds=settings.webhook_first_backoff_s),
            most=timedelta(seconds=settings.webhook_max_backoff_s),
        ),
        disable_after=timedelta(seconds=settings.webhook_disable_after_s),
        county_attempts=settings.county_webhook_attempts,
        county_url=settings.county_webhook_url,
        county_secret=settings.county_webhook_secret.get_secret_value() if settings.county_webhook_secret else None,
    )


#: Settings of the county forwarder of old, now the county hand-over webhook subscription's (docs/webhooks.md).
_RETIRED = {
    "DISPATCHER_COUNTY_WEBHOOK_FIRST_BACKOFF_S": "DISPATCHER_WEBHOOK_FIRST_BACKOFF_S",
    "DISPATCHER_COUNTY_WEBHOOK_TIMEOUT_S": "DISPATCHER_WEBHOOK_TIMEOUT_S",
}


def create_app(
    settings: Settings,
    *,
    hub: Hub | None = None,
    hubs: Sequence[Hub] | None = None,
    ownership: Ownership | None = None,
) -> FastAPI:
    """The dispatcher's ASGI application; the hubs start and stop with the app's lifespan.

    One hub per township served (``hubs``, or ``hub`` for one, or built from ``settings``); accounts,
    tokens and the audit trail live in ``settings.database_url`` (:class:`SqlDirectory`). ``ownership``
    says which of them this process hosts (default: all, :class:`HostsAll`); boards of the others follow
    their log (:class:`TailFeeds`).
    """
    for old, new in _RETIRED.items():
        if old in os.environ:
            log.warning("%s is no longer read: the county hand-over is a webhook subscription, use %s", old, new)
    # Replica mode: every connection of this process to PostgreSQL but the lease rounds' (and a LISTEN per
    # township database tailed) comes out of one budget, whatever the number of townships (docs/operations.md).
    budget = (
        ConnectionBudget(settings.db_connections, application_name=replica_application_name(settings.replica_id))
        if settings.replica_id is not None
        else None
    )
    townships = Townships(build_townships(settings, [hub] if hub is not None else hubs, budget=budget))
    carrier: dict[str, Any] = {}  # replica mode: the replica set's view and this replica's token, once started

    async def carry_to_owner(township: str, message: Any) -> Any:
        if "token" not in carrier or not isinstance(message, CarriedMessage):
            raise NotCarried(f"township {township}: this replica cannot carry messages yet")
        return await carry_message(carrier["view"], carrier["token"], township, message)

    if ownership is None:
        # Replica mode: a township is hosted here while this replica holds its lease (the replica set says
        # when); boards of the others follow their event log (dispatcher/tail_feed.py); device messages taken
        # here for the others are carried to their owners (POST /api/v1/mqtt/carry there).
        ownership = SettableOwnership(carry=carry_to_owner) if settings.replica_id is not None else HostsAll()
    tail_feeds = TailFeeds(
        ownership,
        {t.id: t.hub.store for t in townships.values() if isinstance(t.hub.store, SqlIncidentStore)},
        HubFeeds(townships),  # the feed of each township's hub now (replica mode: a new hub at each take)
        queue_size=settings.board_queue_size,
        ring_size=settings.feed_ring_size,
    )
    the_hub = townships.first.hub
    directory = SqlDirectory(
        settings.database_url,
        budget=budget,
        session_ttl=timedelta(seconds=settings.token_ttl_s),
        lockout=Lockout(
            failures=settings.lockout_failures,
            window=timedelta(seconds=settings.lockout_window_s),
            lock_for=timedelta(seconds=settings.lockout_s),
        ),
    )
    officers = LastKnownStatus()
    # photos' metadata and places (the field app, docs/field.md)
    field = SqlFieldStore(settings.database_url, budget=budget)
    freezer = HeapFreezer(young=SERVING_YOUNG) if settings.gc_freeze else None
    adoptions: Adoptions | None = None
    if settings.replica_id is None:
        replicas = None
        gateways = build_mqtt(settings, [t.hub for t in townships.values()], officers, ownership)
        served: Mapping[str, Hub] = {t.id: t.hub for t in townships.values()}
    else:
        assert budget is not None  # made above for every replica
        replica_id = settings.replica_id
        if settings.mqtt_url and settings.mqtt_prefix and len(townships) > 1:
            raise ValueError("DISPATCHER_MQTT_PREFIX serves one township: unset it to serve each under township/<id>/")
        gateways = (
            [replica_gateway(settings, t, officers, ownership, replica_id, budget=budget) for t in townships.values()]
            if settings.mqtt_url
            else []
        )
        if gateways:
            adoptions = Adoptions(
                lambda dead: [
                    replica_gateway(settings, t, officers, ownership, dead, publishes=False, budget=budget)
                    for t in townships.values()
                ]
            )
        served = ServedHubs(townships)
        replicas = _leased_townships(settings, townships, directory, ownership, budget, adoptions)
    mqtt = gateways[0] if gateways else None  # the first township's: its stats and state are the ones shown
    deliverer = webhooks.Deliverer(
        SqlWebhooks(settings.database_url, attempts_kept=settings.webhook_attempts_kept, budget=budget),
        served,
        delivery_settings(settings),
        townships=list(townships),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await directory.open()
        await field.open()
        admin_password = settings.admin_password.get_secret_value() if settings.admin_password else None
        had_accounts = bool(directory.accounts())
        generated = await directory.ensure_admin(admin_password, the_hub.clock.now())
        if generated is not None:
            # Printed once, to the console only (not to the log): it is never shown again.
            print(first_start_box(generated, settings), flush=True)
            log.warning("created administrator 'admin'; its generated password was printed once to the console")
        elif had_accounts and admin_password is not None:
            log.warning(
                "DISPATCHER_ADMIN_PASSWORD is set but this database has accounts already: it is not applied (it "
                "only sets admin's password at the first start); to change it: dispatcher accounts set-password admin"
            )
        async with AsyncExitStack() as stack:
            if replicas is not None:
                await replicas.start()
                stack.push_async_callback(replicas.stop)
                await _replica_edges(stack, replicas, deliverer, ownership, gateways, adoptions, directory, carrier)
                # Boards on a hub of a township this replica gives up resume from its log (4008), elsewhere.
                tail_feeds.start()
                stack.push_async_callback(tail_feeds.stop)
                yield  # the townships' hubs come and go with their leases; see _leased_townships
                return
            for township in townships.values():
                await _start_township(stack, township, settings)
                # A crash between an event's commit and its photos' references: written again from the event.
                await recover_refs(township.hub.store, field, township.id, township.hub.last_seq)
            for gateway in gateways:
                await gateway.start()
                stack.push_async_callback(gateway.stop)
            if not gateways:
                log.info("MQTT gateway off (no --mqtt-url / DISPATCHER_MQTT_URL): HTTP only")
            if freezer is not None:
                freezer.start()
                stack.push_async_callback(freezer.stop)
            stack.callback(sys.setswitchinterval, sys.getswitchinterval())
            sys.setswitchinterval(settings.switch_interval_ms / 1000)  # see docs/architecture.md, "Two batches"
            await stack.enter_async_context(deliverer.running())
            tail_feeds.start()
            stack.push_async_callback(tail_feeds.stop)
            yield
        await field.close()
        await directory.close()

    app = FastAPI(
        title="Township command-room dispatcher",
        summary="Report → route by the responsibility boundary list → dispatch merged teams → live board",
        version=dispatcher.__version__,
        lifespan=lifespan,
        # Every route passes the policy table (gateways/policy.py): deny by default.
        dependencies=[Depends(auth.guard)],
        # The API docs come from the package, not a CDN: township intranets are offline (see _offline_docs).
        docs_url=None,
        redoc_url=None,
        # FastAPI's built-in OpenTelemetry bridge asks the global providers on every request whether one was set
        # (three environment reads a request: issue 14). Nothing here sets one (the SDK is not a dependency):
        # the dispatcher's own /metrics and access log say what it does.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    #: The first township's hub, for code that serves one township; HTTP routes choose through get_hub.
    app.state.context = AppContext(
        hub=the_hub,
        townships=townships,
        directory=directory,
        clock=the_hub.clock,
        settings=settings,
        mqtt=mqtt,
        mqtt_gateways={g.township: g for g in gateways},
        officer_status=officers,
        webhooks=deliverer,
        snapshot_pages=board.SnapshotPages(),  # boards connecting together share encoded snapshot pages
        token_buckets=TokenBuckets(settings.rate_per_s, settings.rate_burst),
        sign_in_buckets=TokenBuckets(settings.sign_in_per_min / 60.0, settings.sign_in_per_min),
        media=LocalMediaStore(settings.media_path()),
        field=field,
        ownership=ownership,
        tail_feeds=tail_feeds,
        replicas=replicas.view if replicas is not None else None,
        # One process: a township whose hub writes the directory's database logs its audit entries in the
        # writer's batches. Replica mode keeps the directory's own transactions (hubs change hands there).
        audit=audit.Trail(
            directory,
            {
                t.id: t.hub
                for t in townships.values()
                if replicas is None
                and isinstance(t.hub.store, SqlIncidentStore)
                and t.hub.store.shares_database(settings.database_url)
            },
        ),
    )
    app.state.replica_set = replicas
    # Dispatch first: its /assignments/{team}/officer and /reassign must win over /assignments/{team}/{action}.
    app.include_router(auth.router)
    app.include_router(dispatch_api.router)
    app.include_router(closing_api.router)
    app.include_router(api.router)
    app.include_router(rules_api.router)
    app.include_router(mqtt_stats_api.router)
    app.include_router(audit.router)
    app.include_router(webhooks.router)
    app.include_router(metrics.router)
    app.include_router(board.router)
    app.include_router(field_api.router)
    app.include_router(field_api.feed_router)
    app.include_router(field_app.router)
    app.include_router(open311.router)
    app.include_router(cap.router)
    app.include_router(reports.router)
    api.install_error_handlers(app)
    app.add_exception_handler(Elsewhere, carry)  # replica mode: a township served by another replica
    app.mount("/static", StaticFiles(directory=board.STATIC_DIR), name="static")
    _offline_docs(app)
    _documented_security(app)
    # One layer for every request (access log, body limit, audit trail, masking); report intake and the batch
    # door and a team's steps are answered there, without the router's matching and dependency solving
    # (gateways/edge.py).
    uploads = dict.fromkeys(field_api.UPLOAD_PATHS, settings.media_max_bytes + field_api.UPLOAD_OVERHEAD)
    app.add_middleware(
        Edge,
        limit=settings.body_limit_bytes,
        larger={**LARGER_BODIES, **uploads},
        access_log=settings.access_log,
        hot=hot_routes(
            app,
            {
                ("POST", "/api/v1/incidents"): Hot(api.report_incident, IncidentCreate),
                ("POST", "/api/v1/incidents/batch"): Hot(api.report_incidents, IncidentsBatchCreate),
                MOVE_ASSIGNMENT: Hot(api.move_unit, UnitActionIn, path=api.UnitStepPath, optional=True),
            },
        ),
    )

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
        here = [t for t in townships.values() if t.serving]
        store_ok = all([await t.hub.store.ping() for t in here])
        running = all(t.hub.running for t in here)
        ready = store_ok and running and (replicas is None or replicas.settled)
        body: dict[str, Any] = {
            "ready": ready,
            "store": "up" if store_ok else "down",
            "writer": "running" if running else "stopped",
            "rule_table": the_hub.rules.version,
            "roster": the_hub.roster.version,
            "last_seq": the_hub.last_seq,
            "boards": the_hub.feed.subscriber_count,
            # connected: every gateway connected and subscribed (a report published before is not kept for it)
            "mqtt": ("connected" if all(g.subscribed.is_set() for g in gateways) else "down") if gateways else "off",
            "townships": sorted(townships),
        }
        if replicas is not None:
            body["replica"] = {"id": replicas.id, "serves": replicas.held, "leases_settled": replicas.settled}
        return JSONResponse(body, status_code=200 if ready else 503)

    return app


#: Bodies allowed past the default limit: a whole rule table or roster, a batch of reports (500 reports of 8 KiB
#: each on average: a batch of longer descriptions is sent in smaller batches).
LARGER_BODIES = {
    "/api/v1/rules": 5_000_000,
    "/api/v1/roster": 1_000_000,
    "/api/v1/incidents/batch": 4 * 1024 * 1024,
    "/api/v1/mqtt/carry": 4 * 1024 * 1024,  # a device message (up to DISPATCHER_MQTT_MAX_PAYLOAD_BYTES) in base64
}


async def _replica_edges(
    stack: AsyncExitStack,
    replicas: ReplicaSet,
    deliverer: webhooks.Deliverer,
    ownership: Ownership,
    gateways: list[MqttGateway],
    adoptions: Adoptions | None,
    directory: SqlDirectory,
    carrier: dict[str, Any],
) -> None:
    """Replica mode, once the first lease round ran: the MQTT gateways of every township (each a member of the
    shared group; a township's outbox publishes where its lease is) and the webhook deliveries of the townships
    served here, which move with their leases."""
    pending: set[asyncio.Task[None]] = set()

    def moved(township: str, owned: bool) -> None:
        if not owned:
            deliverer.refresh()  # its workers stop at once: the next owner delivers from the recorded cursors
            return
        task = asyncio.create_task(deliverer.hosted(township), name=f"webhooks of {township}")
        pending.add(task)
        task.add_done_callback(pending.discard)

    await stack.enter_async_context(deliverer.running())
    stack.callback(ownership.watch(moved))
    deliverer.refresh()  # the townships whose hubs started before the watch
    if not gateways:
        log.info("MQTT gateway off (no --mqtt-url / DISPATCHER_MQTT_URL): HTTP only")
        return
    carrier["view"] = replicas.view
    carrier["token"] = await replica_token(directory, replicas.id, datetime.now(UTC))
    for gateway in gateways:
        await gateway.start()
        stack.push_async_callback(gateway.stop)
    if adoptions is not None:
        adoptions.start()
        stack.push_async_callback(adoptions.stop)


def replica_application_name(replica_id: str | None) -> str:
    """How a replica's connections are named in PostgreSQL's ``pg_stat_activity`` (``application_name``)."""
    return f"dispatcher-{replica_id}"[:63] if replica_id else "dispatcher"


def _leased_townships(
    settings: Settings,
    townships: Townships,
    directory: SqlDirectory,
    ownership: Ownership,
    budget: ConnectionBudget,
    adoptions: Adoptions | None = None,
) -> ReplicaSet:
    """Replica mode: the townships' hubs start and stop with this replica's leases (server/replicas.py); dead
    replicas' MQTT sessions are adopted as the rounds say (``adoptions``)."""
    urls = {t.id: str(getattr(t.hub.store, "url", "")) for t in townships.values()}
    if settings.advertise_url is None:
        raise ValueError(
            "DISPATCHER_REPLICA_ID needs DISPATCHER_ADVERTISE_URL: where the other replicas reach this one"
        )
    for url in [settings.database_url, *urls.values()]:
        if not url.startswith("postgresql"):
            raise ValueError(f"replica mode runs on PostgreSQL only, not {url.split(':')[0]} (SQLite: one process)")

    async def start(township: Township, fence: Fence) -> AsyncExitStack:
        spec = settings.model_copy(update={"rules_path": township.rules_path, "database_url": urls[township.id]})
        township.hub = build_hub(spec, fence=fence, budget=budget)
        township.shifts = ShiftWatch(township.hub)
        stack = AsyncExitStack()
        try:
            await _start_township(stack, township, settings)
        except BaseException:  # a failed or cancelled start (the lease moved on): nothing may stay open
            await stack.aclose()
            if not township.hub.running:
                with contextlib.suppress(Exception):
                    await township.hub.store.close()
            raise
        return stack

    return ReplicaSet(
        replica_id=settings.replica_id or "",
        url=settings.advertise_url.rstrip("/"),
        county_url=settings.database_url,
        application_name=budget.application_name,
        townships=townships,
        start_township=start,
        ttl=timedelta(seconds=settings.lease_ttl_s),
        refresh=directory.refresh,
        on_change=ownership.set if isinstance(ownership, SettableOwnership) else None,
        adopt=adoptions.want if adoptions is not None else None,
    )


async def _start_township(stack: AsyncExitStack, township: Township, settings: Settings) -> None:
    hub = township.hub

    rules_text: str | None = None
    roster_unstored = False

    async def prepare() -> None:
        # The rule table first: the roster is checked against it.
        nonlocal rules_text, roster_unstored
        rules_text = await restore_rules(hub, township.rules_path, from_file=settings.rules_from_file)
        roster, township.roster_source, roster_unstored = await restore_roster(
            hub, township.roster_file, use_stored=not settings.no_roster
        )
        log.info("roster %s: %d officers, %d shifts", roster.version, len(roster.officers), len(roster.shifts))

    await hub.start(prepare)
    stack.push_async_callback(hub.stop)
    # What came from files is stored through the writer, so that it is on the log like any other change.
    if rules_text is not None:
        await hub.put_rules_in_force(hub.rules, rules_text, hub.clock.now(), f"file:{township.rules_path.name}")
    if roster_unstored and township.roster_source is not None and township.roster_file is not None:
        await install_roster(hub, township.roster_source, f"file:{township.roster_file.name}")
    township.shifts.start()
    stack.callback(township.shifts.stop)
    log.info(
        "dispatcher ready: township %s, rule table %s, roster %s, database %s",
        hub.rules.township_id,
        hub.rules.version,
        hub.roster.version,
        getattr(hub.store, "url", "?").split("@")[-1],
    )
