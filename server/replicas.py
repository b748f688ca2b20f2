"""Replica mode: this process's part of a county's townships, taken and given back by lease rounds.

Switched on by ``DISPATCHER_REPLICA_ID`` with ``DISPATCHER_ADVERTISE_URL`` (PostgreSQL only). Every
``lease_ttl_s / 4`` a round beats this replica's heartbeat, reads every replica and lease row (one transaction
in the county database), computes the plan (:mod:`dispatcher.core.leases`) and acts on its own part:

* renew what it holds and keeps; a renewal refused (another replica took over: this one was paused or cut off)
  stops that hub at once, without writing: the fence refuses whatever it still tries;
* give back what the plan moves elsewhere: the hub stops first (what it has queued commits under the lease),
  then the lease row is freed for the next round of the replica it goes to;
* take what is planned for it and free: a new epoch, then a fresh hub whose store raises the fence before it
  loads the open incidents and re-arms every deadline (one missed during the switch fires once, at start).

A hub starts in a task of its own, so a round (and the renewals of the other townships) never waits for a
start. ``settled`` (``/readyz``) says that every township is held by the replica the plan gives it to and
that this replica's hubs all run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta

import httpx

from dispatcher.core.leases import Lease, adoptions, layout, live_replicas, moves, plan, settled
from dispatcher.leases import Fence, SqlLeases
from dispatcher.sql_store import build_engine
from gateways.mqtt import MqttGateway
from gateways.replicas import Replicas
from gateways.tenancy import Township, Townships

log = logging.getLogger(__name__)

#: Starts a township's fresh hub under ``fence`` (and makes it the township's); the stack stops it.
StartTownship = Callable[[Township, Fence], Awaitable[AsyncExitStack]]


class ReplicaSet:
    """This replica's leases and the hubs they allow; ``view`` is what the gateways read."""

    def __init__(
        self,
        *,
        replica_id: str,
        url: str,
        county_url: str,
        townships: Townships,
        application_name: str | None = None,
        start_township: StartTownship,
        ttl: timedelta,
        refresh: Callable[[], Awaitable[None]] | None = None,
        on_change: Callable[[str, bool], None] | None = None,
        adopt: Callable[[tuple[str, ...]], None] | None = None,
    ) -> None:
        """``adopt``: told each round which dead replicas' broker sessions this one takes care of (it must not
        wait: a round renews the leases)."""
        self.id = replica_id
        self.url = url
        self.ttl = ttl
        self.round_s = ttl.total_seconds() / 4
        self._townships = townships
        self._start_township = start_township
        self._refresh = refresh
        self._on_change = on_change  # told when a township starts or stops being served here (tail feeds)
        self._adopt = adopt
        # The rounds' statements run one after the other: one connection of its own, outside the replica's
        # connection budget, so that renewals never wait behind the townships' work.
        self._engine = build_engine(county_url, pool_size=1, max_overflow=0, application_name=application_name)
        self._leases = SqlLeases(self._engine, ttl)
        self._held: dict[str, int] = {}  # township -> the epoch this replica took
        self._stacks: dict[str, AsyncExitStack] = {}
        self._starting: dict[str, asyncio.Task[None]] = {}
        # One start at a time: the schema check (Alembic) is not made for two at once in one process.
        self._start_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.settled = False
        self.rounds = 0
        self.view = Replicas(
            id=replica_id,
            url=url,
            client=httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=2.0)),
            retry_after_s=max(1, round(ttl.total_seconds() / 2)),
        )
        for township in townships.values():
            township.serving = False

    @property
    def held(self) -> list[str]:
        return sorted(self._held)

    async def start(self) -> None:
        await self._round()
        self._task = asyncio.create_task(self._run(), name=f"leases {self.id}")

    async def stop(self) -> None:
        """Give everything back: each hub stops (its queue committed), its lease is freed, the heartbeat goes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for township in list(self._held):
            await self._give_back(township)
        with contextlib.suppress(Exception):
            await self._leases.leave(self.id)
        await self.view.client.aclose()
        await self._engine.dispose()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.round_s)
            try:
                await self._round()
            except Exception:
                log.warning("lease round failed; held %s", self.held, exc_info=True)
                self.settled = False

    async def _round(self) -> None:
        townships = sorted(self._townships)
        now, replicas, leases = await self._leases.round(self.id, self.url, townships)
        planned = plan(townships, live_replicas(replicas, now, self.ttl), leases, now)
        mine = moves(self.id, planned, leases, now)
        for township in list(self._held):
            lease = leases.get(township)
            if lease is None or lease.holder != self.id or lease.epoch != self._held[township]:
                await self._lose(township, lease)
        for township in mine.release:
            await self._give_back(township)
        # One statement renews what this replica holds and keeps, and what it held whose lease expired (a round
        # came late: a loaded machine) but the plan gives back here: when nobody took that meanwhile the same
        # epoch goes on and its hub keeps running; otherwise that hub stops before a new epoch is taken (never
        # two hubs of one township here). One statement, so that a late round does not make the next one later.
        late = [t for t in mine.acquire if t in self._held]
        renewed = await self._leases.renew_all(
            self.id, {t: self._held[t] for t in (*mine.renew, *late) if t in self._held}
        )
        if late:
            kept = sorted(renewed.intersection(late))
            log.warning("lease round came late: %d leases had expired, renewed: %s", len(late), ", ".join(kept))
        for township in mine.renew:
            if township not in self._held:  # this replica's id held it before a restart: take it anew
                await self._take(township)
            elif township not in renewed:
                await self._lose(township, None)
        for township in mine.acquire:
            if township in self._held:
                if township in renewed:
                    continue
                await self._lose(township, None)
            await self._take(township)
        if self._refresh is not None:
            await self._refresh()
        if self._adopt is not None:
            self._adopt(adoptions(self.id, replicas, now, self.ttl))
        owned = {t: Lease(t, self.id, e, now + self.ttl) for t, e in self._held.items()}
        given = {t: Lease(t, None, leases[t].epoch, None) for t in mine.release}
        current = {**leases, **given, **owned}
        self.view.layout = layout(replicas, current, now, self.ttl)
        self.settled = settled(planned, current, now) and all(self._townships[t].serving for t in self._held)
        self.rounds += 1

    async def _take(self, township: str) -> None:
        epoch = await self._leases.acquire(township, self.id)
        if epoch is None:
            return  # another replica was quicker: the plans agree again next round
        self._held[township] = epoch
        log.info("township %s: lease taken (epoch %d); starting its hub", township, epoch)
        self._starting[township] = asyncio.create_task(self._serve(township, epoch), name=f"start {township}")

    async def _serve(self, township: str, epoch: int) -> None:
        try:
            async with self._start_lock:
                stack = await self._start_township(self._townships[township], Fence(township, epoch))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("township %s: its hub did not start (epoch %d)", township, epoch)
            self._starting.pop(township, None)
            if self._held.get(township) == epoch:
                del self._held[township]
                with contextlib.suppress(Exception):
                    await self._leases.release(township, self.id, epoch)
            return
        self._stacks[township] = stack
        self._starting.pop(township, None)
        self._townships[township].serving = True
        self._changed(township, True)
        log.info("township %s: served here (epoch %d)", township, epoch)

    async def _lose(self, township: str, lease: Lease | None) -> None:
        """Another replica took the township (this one was too slow to renew): stop, writing nothing more."""
        log.warning(
            "township %s: lease epoch %s lost (now %s); stopping its hub",
            township,
            self._held.get(township),
            f"{lease.holder}, epoch {lease.epoch}" if lease is not None else "taken over",
        )
        self._held.pop(township, None)
        await self._halt(township)

    async def _give_back(self, township: str) -> None:
        epoch = self._held.pop(township, None)
        await self._halt(township)
        if epoch is not None:
            log.info("township %s: handed over (epoch %d)", township, epoch)
            await self._leases.release(township, self.id, epoch)

    def _changed(self, township: str, served: bool) -> None:
        if self._on_change is not None:
            self._on_change(township, served)

    async def _halt(self, township: str) -> None:
        if self._townships[township].serving:
            self._changed(township, False)
        self._townships[township].serving = False
        starting = self._starting.pop(township, None)
        if starting is not None:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
        stack = self._stacks.pop(township, None)
        if stack is not None:
            try:
                await stack.aclose()
            except Exception:
                log.warning("township %s: its hub stopped with an error", township, exc_info=True)


class Adoptions:
    """The broker sessions of dead replicas that this replica takes care of (:func:`adoptions` says which).

    Mosquitto (2.0) goes on handing a shared subscription's messages to a member whose session it keeps while the
    member is offline, and keeps the messages that member had in hand unacknowledged in that session. So a live
    replica connects under the dead one's client ids (intake only, ``make``): the broker sends it what waited there
    (the messages in hand again, marked DUP), and it carries them to the townships' owners like its own share. When
    the dead replica returns under its id it takes its sessions back (the broker ends the adopter's connections);
    the adopter stops at its next round, which sees the replica live again.
    """

    def __init__(self, make: Callable[[str], list[MqttGateway]]) -> None:
        self._make = make  # the intake-only gateways under the client ids of a replica
        self._gateways: dict[str, list[MqttGateway]] = {}
        self._wanted: tuple[str, ...] = ()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def adopted(self) -> list[str]:
        return sorted(self._gateways)

    def want(self, dead: tuple[str, ...]) -> None:
        """Called by each lease round (never waits): the replicas whose sessions to hold now."""
        if dead != self._wanted:
            self._wanted = dead
            self._changed.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt adoptions")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(g.stop() for gs in self._gateways.values() for g in gs), return_exceptions=True)
        self._gateways.clear()

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            wanted = set(self._wanted)
            for replica in sorted(set(self._gateways) - wanted):
                log.info("replica %s is back or adopted by another: its MQTT sessions are let go", replica)
                await asyncio.gather(*(g.stop() for g in self._gateways.pop(replica)), return_exceptions=True)
            for replica in sorted(wanted - set(self._gateways)):
                log.warning("replica %s is not live: its MQTT sessions are taken care of here", replica)
                gateways = self._make(replica)
                self._gateways[replica] = gateways
                for gateway in gateways:
                    await gateway.start()
