"""Which replica runs which township: the lease decisions, pure (no clock, no I/O).

A county runs several ``dispatcher serve`` processes (replicas) on one PostgreSQL server. Each township's hub
runs on the one replica that holds its lease (a row with a holder, an epoch and an expiry time, see
:mod:`dispatcher.leases`). Every replica computes the same :func:`plan` from the same rows, then acts on its
own part (:func:`moves`): renew what it holds and keeps, give back what it holds and no longer keeps, take
what is planned for it once nobody holds it.

The plan, deterministic and simple: with ``n`` townships and ``live`` replicas, each replica holds
``n // live`` townships, and ``n % live`` of them one more (30 on 3: 10 each; 4 on 3: 2, 1, 1). Townships are
walked in sorted order: a township whose lease is live stays with its holder up to ``n // live``, then up to
one more while extra places are left (so nothing moves while nothing changes); the rest (free, expired, or
over a holder's share) go one by one to the live replica holding fewest so far, ties to the smaller id.
A lease held by a replica that is not (or not yet) seen as live stays with it until it expires: only its
expiry frees a township, never a guess that its holder is gone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Lease:
    """A township's lease as stored: ``holder`` None once given back; live while ``expires_at`` is ahead."""

    township: str
    holder: str | None
    epoch: int
    expires_at: datetime | None

    def live(self, now: datetime) -> bool:
        return self.holder is not None and self.expires_at is not None and self.expires_at > now

    def held_by(self, replica: str, now: datetime) -> bool:
        return self.holder == replica and self.live(now)


@dataclass(frozen=True, slots=True)
class Replica:
    """A replica's heartbeat row: its id, the URL other replicas forward to, when it was last seen."""

    id: str
    url: str
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class Moves:
    """What one replica does in one round: each a sorted tuple of township ids."""

    acquire: tuple[str, ...] = ()
    renew: tuple[str, ...] = ()
    release: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Layout:
    """Who serves what now, for answering requests: each township's live holder and every live replica's URL."""

    owners: Mapping[str, str | None] = field(default_factory=dict)
    urls: Mapping[str, str] = field(default_factory=dict)

    def owner_url(self, township: str) -> str | None:
        """Where a request for ``township`` goes; None while nobody live holds it (a switch: 503, retry)."""
        owner = self.owners.get(township)
        return None if owner is None else self.urls.get(owner)


def live_replicas(replicas: Sequence[Replica], now: datetime, ttl: timedelta) -> list[str]:
    """The ids of the replicas seen within ``ttl`` before ``now``, sorted."""
    return sorted(r.id for r in replicas if r.seen_at + ttl > now)


def share(townships: int, live: int) -> int:
    """The most townships one live replica aims at."""
    return math.ceil(townships / live) if live else 0


def plan(
    townships: Sequence[str], live: Sequence[str], leases: Mapping[str, Lease], now: datetime
) -> dict[str, str | None]:
    """The replica each township should be with (None: no live replica at all)."""
    if not live:
        return dict.fromkeys(sorted(townships))
    live = sorted(live)
    base, extra = divmod(len(townships), len(live))
    counts = dict.fromkeys(live, 0)
    planned: dict[str, str | None] = {}
    over, rest = [], []
    for township in sorted(townships):
        lease = leases.get(township)
        if lease is None or lease.holder is None or not lease.live(now):
            rest.append(township)
        elif lease.holder not in counts:
            planned[township] = lease.holder  # not seen live (yet): it keeps the township until expiry
        elif counts[lease.holder] < base:
            planned[township] = lease.holder
            counts[lease.holder] += 1
        else:
            over.append((township, lease.holder))
    for township, holder in over:  # the extra townships stay with holders that have one over the base
        if counts[holder] == base and extra:
            planned[township] = holder
            counts[holder] += 1
            extra -= 1
        else:
            rest.append(township)
    for township in sorted(rest):
        below = [r for r in live if counts[r] < base] or [r for r in live if counts[r] == base and extra] or live
        fewest = min(below, key=lambda r: (counts[r], r))
        if counts[fewest] >= base:
            extra -= 1
        planned[township] = fewest
        counts[fewest] += 1
    return dict(sorted(planned.items()))


def moves(me: str, planned: Mapping[str, str | None], leases: Mapping[str, Lease], now: datetime) -> Moves:
    """``me``'s part of ``planned``: acquire what is planned for me and free, renew what I hold and keep,
    release what I hold and is planned elsewhere. A township planned for me but held live by another waits
    for its holder to give it back (or for the lease to expire)."""
    acquire, renew, release = [], [], []
    for township, target in sorted(planned.items()):
        lease = leases.get(township)
        mine = lease is not None and lease.held_by(me, now)
        if target == me:
            if mine:
                renew.append(township)
            elif lease is None or not lease.live(now):
                acquire.append(township)
        elif mine:
            release.append(township)
    return Moves(acquire=tuple(acquire), renew=tuple(renew), release=tuple(release))


def settled(planned: Mapping[str, str | None], leases: Mapping[str, Lease], now: datetime) -> bool:
    """Every township is held, live, by the replica the plan gives it to (nothing is moving)."""
    for township, target in planned.items():
        lease = leases.get(township)
        if target is None or lease is None or not lease.held_by(target, now):
            return False
    return True


def layout(replicas: Sequence[Replica], leases: Mapping[str, Lease], now: datetime, ttl: timedelta) -> Layout:
    """Who serves what: a township's owner is its live lease's holder when that replica is live too."""
    alive = {r.id: r.url for r in replicas if r.seen_at + ttl > now}
    owners = {t: (lease.holder if lease.live(now) and lease.holder in alive else None) for t, lease in leases.items()}
    return Layout(owners=owners, urls=alive)


def adoptions(me: str, replicas: Sequence[Replica], now: datetime, ttl: timedelta) -> tuple[str, ...]:
    """The replicas that are not live (heartbeat older than ``ttl``) whose broker sessions ``me`` takes care of.

    A dead replica's MQTT sessions hold its share of a shared subscription (and the messages it had in hand,
    unacknowledged): a live replica adopts them (connects under their client ids) until the dead one is back.
    Dead replicas, sorted, are dealt to the live ones, sorted, in turn: every replica computes the same.
    """
    live = live_replicas(replicas, now, ttl)
    if me not in live:
        return ()
    dead = sorted(r.id for r in replicas if r.id not in live)
    return tuple(d for n, d in enumerate(dead) if live[n % len(live)] == me)
