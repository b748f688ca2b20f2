"""``MqttGateway``: field devices over a real broker (aiomqtt), around the hub's public methods.

Intake: it subscribes (QoS 1, persistent session under a fixed client id) to reports, officer
status and acknowledgements; each message is decoded by the pure codec and handed to the hub, and
acknowledged to the broker (PUBACK) only **after** the hub committed it: a message the process
did not finish is redelivered by the broker to the next session. Refused payloads go to the
``deadletter`` topic and are acknowledged too, so they are not redelivered forever.

Out: an outbox that reads the committed event log from a persisted cursor (``hub.events_since``),
then follows the live feed; the cursor only moves after the broker acknowledged the publishes, and
is saved at most every ``cursor_every_s``. A crash re-sends a few events (payloads carry ``seq``:
consumers deduplicate) but never skips one.

The connection is re-established with exponential backoff; the HTTP side never waits for it.
Runs on the hub's event loop; ``start``/``stop`` from the composition root's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dispatcher.accounts import Account
from dispatcher.core.incidents import Incident, UnknownAssignment
from dispatcher.core.lifecycle import IllegalTransition, UnitAction
from dispatcher.feed import OVERFLOW, FeedRecord, Subscription
from dispatcher.hub import Hub, HubStopped, IncidentNotFound
from dispatcher.ownership import HostsAll, Ownership
from dispatcher.store import StoredEvent, StoreUnavailable
from gateways.mqtt.codec import (
    AssignmentAck,
    DeadLetter,
    Notice,
    NoticeWriter,
    OfficerStatus,
    Refusal,
    ReportCommand,
    dead_letter_payload,
    decode,
)
from gateways.mqtt.paho_tuning import buffer_reads, coalesce_writes, lighten_paho
from gateways.mqtt.publisher import BatchPublisher
from gateways.mqtt.topics import Topics
from gateways.policy import DEVICE_ROLE, MOVE_ASSIGNMENT, grant_for, scope_refusal
from gateways.problems import code_of

log = logging.getLogger(__name__)

END_ROUND_S = 1.0  # how long each round of :func:`end_tasks` waits before cancelling again


async def end_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, rounds: int = 30, round_s: float | None = None
) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait for them, cancelling those still running again each round; returns any left.

    One cancel is not enough on Python 3.11: ``asyncio.wait_for``, which every aiomqtt call awaits, swallows a
    cancel that lands as its call completes (fixed in 3.12). The outbox would then go on publishing into a
    dead session, and a session waiting for it would never end, so the gateway would never reconnect. After
    ``rounds`` rounds of up to ``round_s`` (default :data:`END_ROUND_S`) the tasks left are returned rather than
    waited for forever: the caller says what that means.
    """
    left = set(tasks)
    for _ in range(rounds):
        if not left:
            break
        for task in left:
            task.cancel()  # again each round: the previous one may have been swallowed
        done, left = await asyncio.wait(left, timeout=END_ROUND_S if round_s is None else round_s)
        for task in done:  # their outcome is read here, as gather(return_exceptions=True) did
            if not task.cancelled():
                task.exception()
    return left


# paho leaves Nagle's algorithm on: a PUBACK or a notice then waits for the peer's delayed ACK
# (40 ms on Linux). That was the whole publish → notice latency until it was turned off.
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)

OnOfficerStatus = Callable[[OfficerStatus], Awaitable[None]]

# The state an assignment is in once an action took effect: a redelivered acknowledgement finds
# it there already and is taken as done, not refused.
_REACHED = {
    UnitAction.ACKNOWLEDGE: "acknowledged",
    UnitAction.DEPART: "en_route",
    UnitAction.ARRIVE: "on_scene",
    UnitAction.RESOLVE: "resolved",
}


class OutboxCursor(Protocol):
    """Where the outbox stands in the event log (``dispatcher.outbox.SqlOutboxCursor``)."""

    async def load(self) -> int | None: ...

    async def save(self, last_seq: int, at: Any) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtt://[user[:password]@]host[:port]``; raises ``ValueError`` on anything else."""
        parts = urlsplit(url)
        if parts.scheme not in {"mqtt", "tcp"} or not parts.hostname:
            raise ValueError(f"an MQTT URL looks like mqtt://user:password@host:1883, not {url!r}")
        return cls(
            host=parts.hostname,
            port=parts.port or 1883,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        return f"mqtt://{self.username + '@' if self.username else ''}{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    url: str
    topics: Topics
    client_id: str = "dispatcher"
    max_payload_bytes: int = 64 * 1024
    session_expiry_s: int = 7 * 24 * 3600
    intake_in_flight: int = 1000  # messages handed to the hub and not yet acknowledged, at most
    publish_window: int = 200  # outgoing QoS 1 messages awaiting the broker's PUBACK, at most
    cursor_every_s: float = 0.1
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 10.0
    catch_up_page: int = 1000
    #: Subscribe as a member of this MQTT 5 shared subscription group (``$share/<group>/...``): the broker hands
    #: each message to one member, so replicas take each report once. None: a plain subscription.
    shared_group: str | None = None
    #: False: intake only, no outbox connection (a replica draining a dead replica's broker session, whose
    #: township's notices the owner's own gateway publishes).
    publishes: bool = True


@dataclass(frozen=True, slots=True)
class CarriedMessage:
    """A device message taken by a replica that does not host its township, as it is carried to the owner: the
    owner decodes it again and applies it as if it had taken it itself (:meth:`MqttGateway.apply`)."""

    topic: str
    payload: bytes
    received_at: datetime


class Moved(Exception):
    """The township stopped being hosted here while a message was being applied: carry it to the owner."""


class MqttGateway:
    def __init__(
        self,
        hub: Hub,
        config: GatewayConfig,
        *,
        cursor: OutboxCursor,
        on_officer_status: OnOfficerStatus,
        ownership: Ownership | None = None,
        hub_of: Callable[[], Hub] | None = None,
    ) -> None:
        """``hub_of``: the township's hub now (replica mode: a fresh hub each time this replica takes the lease);
        default: ``hub`` for ever."""
        self._hub_of: Callable[[], Hub] = hub_of or (lambda: hub)
        self.township = hub.rules.township_id
        self._ownership: Ownership = ownership or HostsAll()
        self.config = config
        self.topics = config.topics
        self.address = BrokerAddress.parse(config.url)
        self._cursor = cursor
        self._on_officer_status = on_officer_status
        self._notices = NoticeWriter(config.topics)
        self._connected = False
        self._generation = 0
        self._protocol = aiomqtt.ProtocolVersion.V5
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._saver: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(config.intake_in_flight)
        self._published_seq = 0
        self._saved_seq = 0
        self._hosted = asyncio.Event()  # set while the township's hub runs here: only then does the outbox publish
        self._unhosted = asyncio.Event()  # set while it does not: the outbox stops and waits to be hosted again
        self._outbox_ready = False
        self.subscribed = asyncio.Event()  # set while subscribed to the device topics (tests wait for it)
        self._unwatch: Callable[[], None] = lambda: None
        self.counters: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()

    @property
    def hub(self) -> Hub:
        return self._hub_of()

    # -- life ------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``connected`` once subscribed to the device topics (as ``/readyz`` says), else ``down``.

        A message published between the broker's CONNACK and the SUBSCRIBE's answer can find no
        subscriber, so the gateway is not called connected before its subscriptions are confirmed.
        """
        return "connected" if self._connected and self.subscribed.is_set() else "down"

    async def start(self) -> None:
        """Load the outbox cursor and start connecting in the background; never waits for the broker.

        A first start (no cursor saved under this client id) begins at the hub's last event: the
        history from before the gateway existed is not sent to devices.
        """
        lighten_paho()
        self._unwatch = self._ownership.watch(self._hosting_changed)
        if self._ownership.owns(self.township):
            if self.config.publishes:
                await self._load_cursor()
            self._hosted.set()
        else:
            self._unhosted.set()
        self._stopping = False
        self._runner = asyncio.create_task(self._run(), name="mqtt-gateway")
        self._saver = asyncio.create_task(self._save_cursor_every(), name="mqtt-outbox-cursor")
        log.info(
            "MQTT gateway starting: broker %s, client id %s, topics %s*, outbox from seq %s",
            self.address,
            self.config.client_id,
            f"{self.topics.prefix} (shared group {self.config.shared_group})"
            if self.config.shared_group
            else self.topics.prefix,
            self._published_seq if self._hosted.is_set() else "- (the township is hosted elsewhere)",
        )

    async def _load_cursor(self) -> None:
        """Where the outbox stands; a first start (no cursor saved under this name) begins at the hub's last event."""
        saved = await self._cursor.load()
        if saved is None:
            saved = self.hub.last_seq
            await self._cursor.save(saved, self.hub.clock.now())
        self._published_seq = self._saved_seq = saved
        self._outbox_ready = True

    def _hosting_changed(self, township: str, owned: bool) -> None:
        if township != self.township:
            return
        if owned:
            self._unhosted.clear()
            self._hosted.set()
        else:
            self._hosted.clear()
            self._unhosted.set()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop taking messages, let those in hand finish (up to ``timeout_s``), save the cursor.

        Messages still unacknowledged stay with the broker and come back to the next session.
        """
        self._stopping = True
        self._unwatch()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
        for task in (self._runner, self._saver, *self._tasks):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._runner, self._saver, *self._tasks) if t is not None), return_exceptions=True
        )
        with contextlib.suppress(Exception):
            if self._outbox_ready:
                await self._save_cursor()
        await self._cursor.close()
        self._connected = False

    def stats(self) -> dict[str, Any]:
        """Counters for ``GET /api/v1/mqtt/stats`` (since start)."""
        return {
            "state": self.state,
            "broker": str(self.address),
            "client_id": self.config.client_id,
            "prefix": self.topics.prefix,
            "protocol": "5" if self._protocol is aiomqtt.ProtocolVersion.V5 else "3.1.1",
            "received": dict(self.counters),
            "dead_letters": dict(self.dead_letters),
            "outbox": {
                "published_seq": self._published_seq,
                "saved_seq": self._saved_seq,
                "lag": max(0, self.hub.last_seq - self._published_seq),
            },
            "in_flight": len(self._tasks),
        }

    # -- the connection --------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        v5 = self._protocol is aiomqtt.ProtocolVersion.V5
        properties: Properties | None = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.config.session_expiry_s
            properties.ReceiveMaximum = min(self.config.intake_in_flight, 65535)
        client = aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=self.address.username,
            password=self.address.password,
            identifier=self.config.client_id,
            protocol=self._protocol,
            clean_start=False,
            clean_session=None if v5 else False,
            properties=properties,
            keepalive=30,
            timeout=10,
            max_inflight_messages=self.config.publish_window,
            logger=logging.getLogger("gateways.mqtt.paho"),
            socket_options=NO_DELAY,
        )
        # PUBACK only after the hub committed: the broker keeps the message until then.
        client._client.manual_ack_set(True)
        buffer_reads(client._client)
        coalesce_writes(client._client)
        client.pending_calls_threshold = self.config.publish_window + self.config.intake_in_flight
        return client

    def _outbox_client(self) -> aiomqtt.Client:
        """The outbox's own connection: MQTT 3.1.1 with a clean session, on purpose.

        It needs no broker session (its memory is the cursor in the database), and a 3.1.1 PUBACK is
        shorter to decode than an MQTT 5 one (no reason code or properties to read): with seven notices
        per report that was a tenth of the gateway's CPU (benchmarks/README.md).

        paho's own in-flight limit is off (0): :class:`BatchPublisher` already holds a batch (about
        ``publish_window`` notices) until the broker acknowledged it, and with a limit paho scans every
        message in flight at each PUBACK to find one waiting (4 % of the server's CPU at saturation).
        """
        client = aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=self.address.username,
            password=self.address.password,
            identifier=f"{self.config.client_id}-outbox",
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=True,
            keepalive=30,
            timeout=10,
            max_inflight_messages=0,
            logger=logging.getLogger("gateways.mqtt.paho"),
            socket_options=NO_DELAY,
        )
        buffer_reads(client._client)  # seven PUBACKs per report come back on it
        coalesce_writes(client._client)  # and a batch of notices goes out in one send
        return client

    async def _run(self) -> None:
        delay = self.config.reconnect_min_s
        while not self._stopping:
            try:
                await self._session()
            except aiomqtt.MqttCodeError as exc:
                if self._protocol is aiomqtt.ProtocolVersion.V5 and _unsupported_protocol(exc):
                    log.warning("the broker does not speak MQTT 5; using 3.1.1")
                    self._protocol = aiomqtt.ProtocolVersion.V311
                    continue
                log.warning("MQTT broker %s: %s; retrying in %.1f s", self.address, exc, delay)
            except aiomqtt.MqttError as exc:
                log.warning("MQTT broker %s unreachable or lost: %s; retrying in %.1f s", self.address, exc, delay)
            except Exception:
                log.exception("MQTT gateway session failed; retrying in %.1f s", delay)
            finally:
                if self._connected:  # it was up: start the backoff over
                    self.counters["disconnects"] += 1
                    delay = self.config.reconnect_min_s
                self._connected = False
            if self._stopping:
                break
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # jitter: devices and gateways do not retry in step
            delay = min(delay * 2, self.config.reconnect_max_s)

    async def _session(self) -> None:
        client = self._client()
        publishing = self._outbox_client() if self.config.publishes else contextlib.nullcontext()
        async with client, publishing as publisher:
            self._generation += 1
            self._connected = True
            self.counters["connects"] += 1
            log.info("MQTT gateway connected to %s (session %d)", self.address, self._generation)
            for topic in self.topics.subscriptions:
                await client.subscribe(self._filter(topic), qos=1)
            self.subscribed.set()
            tasks = {asyncio.create_task(self._intake(client, self._generation), name="mqtt-intake")}
            if publisher is not None:
                tasks.add(asyncio.create_task(self._outbox(publisher), name="mqtt-outbox"))
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # re-raise the reason the session ended
            finally:
                self.subscribed.clear()
                if left := await end_tasks(tasks):
                    names = sorted(task.get_name() for task in left)
                    log.error("MQTT gateway: %d tasks did not end after 30 cancels, left running: %s", len(left), names)

    def _filter(self, topic: str) -> str:
        group = self.config.shared_group
        if group is None or self._protocol is not aiomqtt.ProtocolVersion.V5:
            return topic
        return f"$share/{group}/{topic}"

    # -- intake ----------------------------------------------------------------------------

    async def _intake(self, client: aiomqtt.Client, generation: int) -> None:
        # aiomqtt's iterator costs a task and an asyncio.wait per message; messages come in bursts (paho hands
        # over all a read brought), so the rest of a burst is taken from its queue directly.
        waiting: asyncio.Queue[aiomqtt.Message] = client._queue
        async for first in client.messages:
            message = first
            while True:
                await self._slots.acquire()
                task = asyncio.create_task(self._handle(client, generation, message))
                self._tasks.add(task)
                task.add_done_callback(self._handled)
                if waiting.empty():
                    break
                message = waiting.get_nowait()

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and (exc := task.exception()) is not None and not isinstance(exc, aiomqtt.MqttError):
            log.error("MQTT message handling failed", exc_info=exc)

    async def _handle(self, client: aiomqtt.Client, generation: int, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
        payload = bytes(payload)
        at = self.hub.clock.now()
        command = self._decode(topic, payload, at)
        try:
            if isinstance(command, DeadLetter):
                await self._dead_letter(client, command, payload)
            else:
                refusal = await self._settle(command, CarriedMessage(topic, payload, at))
                if refusal is not None:
                    reason, detail, code = refusal
                    await self._dead_letter(client, DeadLetter(reason, detail, topic, code), payload)
        except _Stopping:
            return  # the broker keeps it for the next session
        self._ack(client, generation, message)

    def _decode(self, topic: str, payload: bytes, at: datetime) -> Any:
        return decode(
            self.topics,
            topic,
            payload,
            received_at=at,
            max_bytes=self.config.max_payload_bytes,
            has_zone=lambda zone: self.hub.rules.has_zone(zone),
        )

    async def _settle(self, command: Any, message: CarriedMessage) -> RefusalOf | None:
        """Apply ``command`` here while the township is hosted here, else carry it to its owner (a shared
        subscription gave it to this replica), and only then is it acknowledged to the broker. A lease that
        moves meanwhile sends it the other way. Raises ``_Stopping`` when the gateway stops first."""
        while True:
            try:
                if not self._ownership.owns(self.township):
                    return await self._until_carried(message)
                return await self.apply(command, message.received_at)
            except Moved:
                continue

    async def take_carried(self, message: CarriedMessage) -> RefusalOf | None:
        """A message another replica took for this township, applied here as if taken here: why it was refused
        (the taker publishes the dead letter), or None when it was done. Raises :class:`Moved` when the township
        is not hosted here, ``StoreUnavailable`` / ``HubStopped`` when it cannot be stored now (the taker tries
        again)."""
        command = self._decode(message.topic, message.payload, message.received_at)
        if isinstance(command, DeadLetter):
            return command.reason, command.detail, command.code
        if not self._ownership.owns(self.township):
            raise Moved(self.township)
        return await self.apply(command, message.received_at, retry=False)

    async def apply(self, command: Any, at: Any, *, retry: bool = True) -> RefusalOf | None:
        """Apply a decoded command to this township's hub: why it was refused, or None when it was done.

        ``retry``: wait out an unavailable store (else ``StoreUnavailable`` / ``HubStopped`` are raised).
        Raises :class:`Moved` when the township stops being hosted here meanwhile.
        """
        if isinstance(command, ReportCommand):
            self.counters["reports"] += 1
            try:
                outcome = await self._stored(lambda: self.hub.report(command.report, at), retry)
            except (Moved, _Stopping, StoreUnavailable, HubStopped):
                raise
            except Exception as exc:  # a failure no check foresaw: refuse it once rather than forever
                log.exception("report %s from MQTT failed", command.report.report_id)
                return Refusal.REFUSED, f"{type(exc).__name__}: {exc}", code_of(exc)
            self.counters["reports_created" if outcome.created else "reports_repeated"] += 1
            kind = "created" if outcome.created else "joined" if outcome.joined else "known"
            self.hub.stats.reports["mqtt", kind] += 1
            return None
        if isinstance(command, OfficerStatus):
            self.counters["status"] += 1
            try:
                await self._on_officer_status(command)
            except Exception:
                self.counters["status_errors"] += 1
                log.exception("officer status of %s not taken", command.officer_id)
            return None
        assert isinstance(command, AssignmentAck)
        self.counters["acks"] += 1
        return await self._move(command, at, retry)

    async def _move(self, ack: AssignmentAck, at: Any, retry: bool) -> RefusalOf | None:
        """Why the move was refused, if it was."""
        try:
            incident = await self._stored(lambda: self.hub.get(ack.incident_id), retry)
            forbidden = self._forbidden(ack, incident)
            if forbidden is not None:
                return Refusal.FORBIDDEN, forbidden, "forbidden"
            await self._stored(
                lambda: self.hub.move_unit(ack.incident_id, ack.team, ack.action, at, actor=ack.officer_id), retry
            )
        except (Moved, _Stopping, StoreUnavailable, HubStopped):
            raise
        except IllegalTransition as exc:
            if exc.current == _REACHED[ack.action]:
                self.counters["acks_repeated"] += 1
                return None
            return Refusal.REFUSED, str(exc), code_of(exc)
        except (UnknownAssignment, IncidentNotFound) as exc:
            return Refusal.REFUSED, str(exc), code_of(exc)
        except Exception as exc:  # a failure no check foresaw: refuse it once rather than forever
            log.exception("acknowledgement from %s failed", ack.officer_id)
            return Refusal.REFUSED, f"{type(exc).__name__}: {exc}", code_of(exc)
        return None

    def _forbidden(self, ack: AssignmentAck, incident: Incident) -> str | None:
        """Why the policy keeps the officer of the topic from this move, as it would over HTTP; None: allowed.

        The device is a field officer (:data:`gateways.policy.DEVICE_ROLE`) whose officer is the topic's; the
        entry of ``POST /api/v1/incidents/{incident_id}/assignments/{team}/{action}`` decides, through the same
        :func:`gateways.policy.scope_refusal` as the HTTP guard.
        """
        scope = (grant_for(*MOVE_ASSIGNMENT) or {}).get(DEVICE_ROLE)
        if scope is None:
            return f"role {DEVICE_ROLE.value} may not move assignments"
        device = Account(f"mqtt:{ack.officer_id}", DEVICE_ROLE, self.hub.rules.township_id, officer_id=ack.officer_id)
        return scope_refusal(device, scope, incident, team=ack.team, roster_known=bool(self.hub.roster.officers))

    async def _stored(self, call: Callable[[], Awaitable[Any]], retry: bool) -> Any:
        """Run a hub command, retrying while the store is unavailable (when ``retry``).

        Raises ``_Stopping`` when the gateway stops, :class:`Moved` when the township's hub stopped running here
        (its lease went to another replica: the message is carried there instead).
        """
        delay = 0.1
        while True:
            if self._stopping:
                raise _Stopping
            if not self._ownership.owns(self.township):
                raise Moved(self.township)
            try:
                return await call()
            except (StoreUnavailable, HubStopped):
                if not retry:
                    raise
                if self._stopping:
                    raise _Stopping from None
                self.counters["store_retries"] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _until_carried(self, message: CarriedMessage) -> RefusalOf | None:
        """Hand ``message`` to the township's owner, retrying while it cannot be: the owner's refusal, if any.

        Raises :class:`Moved` when the township comes to be hosted here meanwhile, ``_Stopping`` when the
        gateway stops.
        """
        delay = 0.1
        while True:
            if self._stopping:
                raise _Stopping
            if self._ownership.owns(self.township):
                raise Moved(self.township)
            try:
                refusal: RefusalOf | None = await self._ownership.carry(self.township, message)
            except Exception as exc:  # noqa: BLE001 - no owner now (a failover) or it did not answer: again
                self.counters["carry_retries"] += 1
                log.warning("carrying a message of %s to its owner failed: %s", self.township, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                self.counters["carried"] += 1
                return refusal

    def _ack(self, client: aiomqtt.Client, generation: int, message: aiomqtt.Message) -> None:
        # A message from a connection that has since dropped is redelivered on the new one (same
        # packet id, DUP): that copy is handled (idempotently) and acknowledged in its own right.
        if generation == self._generation and self._connected and message.qos > 0:
            client._client.ack(message.mid, message.qos)

    async def _dead_letter(self, client: aiomqtt.Client, letter: DeadLetter, payload: bytes) -> None:
        self.dead_letters[letter.reason.value] += 1
        log.warning("MQTT dead letter (%s) from %s: %s", letter.reason.value, letter.topic, letter.detail)
        body = dead_letter_payload(letter, payload, at=self.hub.clock.now())
        await client.publish(self.topics.deadletter, body, qos=1)

    # -- outbox ----------------------------------------------------------------------------

    async def _outbox(self, client: aiomqtt.Client) -> None:
        """Publish the township's events while its hub runs here (the owner's outbox alone publishes them).

        Hosted anew (a lease taken), it starts from the cursor as saved (by the replica that published before,
        or by this one); unhosted (the lease lost or handed over), it stops and saves how far it got. Notices
        published and not yet saved are published again by the next owner: at least once, never lost.
        """
        while True:
            await self._hosted.wait()
            if not self._outbox_ready:
                await self._load_cursor()
            publishing = asyncio.create_task(self._publish_hosted(client), name="mqtt-outbox-hosted")
            lost = asyncio.create_task(self._unhosted.wait(), name="mqtt-outbox-lost")
            try:
                await asyncio.wait({publishing, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (publishing, lost):
                    task.cancel()
                await asyncio.gather(publishing, lost, return_exceptions=True)
            if not publishing.cancelled() and publishing.exception() is not None:
                raise publishing.exception()  # type: ignore[misc]
            with contextlib.suppress(Exception):
                await self._save_cursor()
            self._outbox_ready = False  # hosted again later: read the cursor as the owner meanwhile left it
            log.info(
                "MQTT outbox of %s stopped at seq %d: the township is hosted elsewhere",
                self.township,
                self._published_seq,
            )

    async def _publish_hosted(self, client: aiomqtt.Client) -> None:
        batch = BatchPublisher(client)
        feed = self.hub.feed
        subscription: Subscription = feed.subscribe()
        try:
            while True:
                await self._catch_up(batch)
                while True:
                    first = await subscription.get()
                    if first is OVERFLOW:
                        subscription = feed.subscribe()  # fell behind: catch up, then follow again
                        break
                    assert isinstance(first, FeedRecord)
                    records = [first]
                    while len(records) < self.config.publish_window:
                        more = subscription.get_nowait()
                        if more is None:
                            break
                        if more is OVERFLOW:
                            subscription = feed.subscribe()
                            records = []
                            break
                        assert isinstance(more, FeedRecord)
                        records.append(more)
                    fresh = [r for r in records if r.seq > self._published_seq]
                    if not fresh:
                        if not records:
                            break
                        continue
                    if fresh[0].seq != self._published_seq + 1:
                        break  # a gap (the feed was ahead of us): read it from the log
                    await self._publish_events(batch, (_from_feed(r) for r in fresh))
        finally:
            subscription.close()

    async def _catch_up(self, batch: BatchPublisher) -> None:
        """Publish everything committed after the cursor: from the feed's memory, else the log."""
        while self._published_seq < self.hub.last_seq:
            recent = self.hub.feed.recent_since(self._published_seq)
            if recent:
                await self._publish_events(batch, (_from_feed(r) for r in recent[: self.config.catch_up_page]))
                continue
            page = await self.hub.events_since(self._published_seq, limit=self.config.catch_up_page)
            if not page:
                return
            await self._publish_events(batch, (_from_log(e) for e in page))

    async def _publish_events(
        self, batch: BatchPublisher, events: Iterable[tuple[int, str, dict[str, Any], str | None]]
    ) -> None:
        """Publish the notices of ``events`` (in seq order), then move the cursor past them."""
        window = self.config.publish_window
        notices: list[Notice] = []
        last = self._published_seq
        for seq, type_name, data, payload in events:
            notices.extend(self._notices.notices(seq, type_name, data, payload))
            last = seq
            if len(notices) >= window:
                await batch.publish(notices)
                notices = []
                self._advance(last)
        if notices:
            await batch.publish(notices)
        self._advance(last)

    def _advance(self, seq: int) -> None:
        if seq > self._published_seq:
            self.counters["events_published"] += seq - self._published_seq
            self._published_seq = seq

    async def _save_cursor_every(self) -> None:
        while True:
            await asyncio.sleep(self.config.cursor_every_s)
            try:
                await self._save_cursor()
            except Exception:  # the next round tries again; a lost save only re-sends a few
                log.warning("saving the MQTT outbox cursor failed", exc_info=True)

    async def _save_cursor(self) -> None:
        seq = self._published_seq
        if seq > self._saved_seq:
            await self._cursor.save(seq, self.hub.clock.now())
            self._saved_seq = seq


#: Why a device message was refused: the dead letter's reason, detail and problem code.
RefusalOf = tuple[Refusal, str, str]


class _Stopping(Exception):
    """The gateway is stopping: the message stays unacknowledged with the broker, for the next session."""


def _from_feed(record: FeedRecord) -> tuple[int, str, dict[str, Any], str | None]:
    """The event of a feed record, with its stored payload text: ``board/events`` shares it, not re-encoded."""
    payload = record.payload()
    return record.seq, record.type_name(), orjson.loads(payload), payload


def _from_log(event: StoredEvent) -> tuple[int, str, dict[str, Any], str | None]:
    return event.seq, event.type, orjson.loads(event.payload), event.payload


def _unsupported_protocol(exc: aiomqtt.MqttCodeError) -> bool:
    rc = exc.rc
    value = getattr(rc, "value", rc)
    return value in (1, 132)  # 3.1.1 "unacceptable protocol version", 5 "unsupported protocol version"
