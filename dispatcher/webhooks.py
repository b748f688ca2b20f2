"""Webhook subscriptions: who receives which events of a township, how far each has got, and every attempt.

A subscription is a URL, the event types it wants (``*``: all), its township and a secret (Standard
Webhooks' ``whsec_`` form). Delivery follows the township's event log from a durable cursor
(``delivered_seq``): an event is sent, retried with backoff until the receiver answers 2xx, and only
then the cursor moves past it. So nothing is lost while a receiver is down, and a crash between a send and
its record sends that event again with the same ``webhook-id`` (receivers drop the copy).

The pure rules (which events a subscription takes, the backoff, when a failing subscription is
disabled) are functions here; :class:`SqlWebhooks` keeps subscriptions and the attempt log in the
accounts' database; the sending is :mod:`gateways.webhooks`.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from dispatcher.connection_budget import ConnectionBudget
from dispatcher.sql_store import build_engine
from dispatcher.webhook_tables import WebhookAttemptRow, WebhookSubscriptionRow

ALL = "*"
subscription_t: sa.Table = WebhookSubscriptionRow.__table__  # type: ignore[attr-defined]
attempt_t: sa.Table = WebhookAttemptRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    id: int
    township: str
    url: str
    event_types: frozenset[str]
    secret: str
    description: str | None
    include_drills: bool
    reveal_reporters: bool
    enabled: bool
    delivered_seq: int
    failing_since: datetime | None
    disabled_reason: str | None
    created_by: str | None
    created_at: datetime

    def wants(self, event_type: str) -> bool:
        return ALL in self.event_types or event_type in self.event_types


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One try to deliver one event to one subscription (ok or not), as the delivery log shows it."""

    subscription_id: int
    seq: int
    webhook_id: str
    attempt: int
    at: datetime
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float
    id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """How long to wait after the ``n``-th failed try of one event: doubling from ``first``, at most ``most``."""

    first: timedelta = timedelta(seconds=1)
    most: timedelta = timedelta(minutes=5)

    def after(self, failures: int) -> timedelta:
        if failures <= 0:
            return timedelta(0)
        grown: timedelta = self.first * (2 ** min(failures - 1, 30))
        return min(grown, self.most)


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_id(township: str, seq: int) -> str:
    """The id a receiver deduplicates by: the same for every try of one event, whichever replica sends it."""
    return f"evt_{township}_{seq}"


def disable_reason(failing_since: datetime | None, now: datetime, limit: timedelta) -> str | None:
    """Why a subscription failing since ``failing_since`` is disabled at ``now``, or None: keep trying."""
    if failing_since is None or now - failing_since < limit:
        return None
    hours = limit.total_seconds() / 3600
    return f"every delivery failed for {hours:g} h (since {failing_since.isoformat()})"


def _subscription(row: Any) -> Subscription:
    return Subscription(
        id=row.id,
        township=row.township,
        url=row.url,
        event_types=frozenset(orjson.loads(row.event_types)),
        secret=row.secret,
        description=row.description,
        include_drills=row.include_drills,
        reveal_reporters=row.reveal_reporters,
        enabled=row.enabled,
        delivered_seq=row.delivered_seq,
        failing_since=row.failing_since,
        disabled_reason=row.disabled_reason,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _attempt(row: Any) -> Attempt:
    return Attempt(
        id=row.id,
        subscription_id=row.subscription_id,
        seq=row.seq,
        webhook_id=row.webhook_id,
        attempt=row.attempt,
        at=row.at,
        ok=row.ok,
        status_code=row.status_code,
        error=row.error,
        duration_ms=row.duration_ms,
    )


class SqlWebhooks:
    """Subscriptions (cached in memory: the deliverers read them often) and the attempt log, which keeps the
    newest ``attempts_kept`` attempts of each subscription (the oldest are deleted as new ones come)."""

    def __init__(self, url: str, *, attempts_kept: int = 10_000, budget: ConnectionBudget | None = None) -> None:
        if attempts_kept < 1:
            raise ValueError("attempts_kept must be 1 or more")
        self._engine = build_engine(url, pool_size=2, budget=budget)
        self._subscriptions: dict[int, Subscription] = {}
        self._opened = False
        self.attempts_kept = attempts_kept
        # Pruning is one DELETE per tenth of the bound, not one per attempt: a log holds at most 1.1 × the bound.
        self._prune_every = max(1, attempts_kept // 10)
        self._since_pruned: dict[int, int] = {}

    async def open(self) -> None:
        """Read the subscriptions (idempotent; the tables are made by the migrations the accounts' open runs)."""
        if self._opened:
            return
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(subscription_t).order_by(subscription_t.c.id))).all()
        if not self._opened:
            self._subscriptions = {row.id: _subscription(row) for row in rows}
            self._opened = True

    async def reload(self) -> None:
        """Read the subscriptions again (replica mode: another replica delivered and moved their cursors)."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(subscription_t).order_by(subscription_t.c.id))).all()
        self._subscriptions = {row.id: _subscription(row) for row in rows}
        self._opened = True

    async def close(self) -> None:
        await self._engine.dispose()
        self._opened = False

    def all(self) -> list[Subscription]:
        return list(self._subscriptions.values())

    def get(self, subscription_id: int) -> Subscription | None:
        return self._subscriptions.get(subscription_id)

    async def create(
        self,
        *,
        township: str,
        url: str,
        event_types: Sequence[str],
        description: str | None,
        include_drills: bool,
        reveal_reporters: bool,
        delivered_seq: int,
        created_by: str | None,
        at: datetime,
        secret: str | None = None,
    ) -> Subscription:
        """A new subscription; ``secret``: a ``whsec_`` secret both sides were given, else a new one."""
        values = {
            "township": township,
            "url": url,
            "event_types": orjson.dumps(sorted(set(event_types))).decode(),
            "secret": secret or new_secret(),
            "description": description,
            "include_drills": include_drills,
            "reveal_reporters": reveal_reporters,
            "enabled": True,
            "delivered_seq": delivered_seq,
            "failing_since": None,
            "disabled_reason": None,
            "created_by": created_by,
            "created_at": at,
        }
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.insert(subscription_t).values(values).returning(subscription_t.c.id))
            new_id = result.scalar_one()
        subscription = _subscription(type("Row", (), {"id": new_id, **values})())
        self._subscriptions[new_id] = subscription
        return subscription

    async def update(self, subscription_id: int, **changes: Any) -> Subscription | None:
        """Change a subscription's stored fields (``event_types`` as a sequence); None when there is none."""
        current = self._subscriptions.get(subscription_id)
        if current is None:
            return None
        values = dict(changes)
        if "event_types" in values:
            values["event_types"] = orjson.dumps(sorted(set(values["event_types"]))).decode()
        async with self._engine.begin() as conn:
            await conn.execute(sa.update(subscription_t).where(subscription_t.c.id == subscription_id).values(values))
        if "event_types" in changes:
            changes["event_types"] = frozenset(changes["event_types"])
        updated = replace(current, **changes)
        self._subscriptions[subscription_id] = updated
        return updated

    async def delete(self, subscription_id: int) -> bool:
        if subscription_id not in self._subscriptions:
            return False
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(attempt_t).where(attempt_t.c.subscription_id == subscription_id))
            await conn.execute(sa.delete(subscription_t).where(subscription_t.c.id == subscription_id))
        del self._subscriptions[subscription_id]
        return True

    async def record(self, attempt: Attempt, *, delivered_seq: int | None, failing_since: datetime | None) -> None:
        """Log one attempt and, in the same transaction, the subscription's new cursor and failure state."""
        current = self._subscriptions.get(attempt.subscription_id)
        values: dict[str, Any] = {"failing_since": failing_since}
        if delivered_seq is not None:
            values["delivered_seq"] = delivered_seq
        row = {
            "subscription_id": attempt.subscription_id,
            "seq": attempt.seq,
            "webhook_id": attempt.webhook_id,
            "attempt": attempt.attempt,
            "at": attempt.at,
            "ok": attempt.ok,
            "status_code": attempt.status_code,
            "error": attempt.error,
            "duration_ms": attempt.duration_ms,
        }
        since = self._since_pruned.get(attempt.subscription_id, self._prune_every - 1) + 1
        async with self._engine.begin() as conn:
            await conn.execute(sa.insert(attempt_t).values(row))
            await conn.execute(
                sa.update(subscription_t).where(subscription_t.c.id == attempt.subscription_id).values(values)
            )
            if since >= self._prune_every:  # (and at the first attempt after a start: the bound may have shrunk)
                await conn.execute(self._prune(attempt.subscription_id))
                since = 0
        self._since_pruned[attempt.subscription_id] = since
        if current is not None and attempt.subscription_id in self._subscriptions:
            self._subscriptions[attempt.subscription_id] = replace(current, **values)

    def _prune(self, subscription_id: int) -> sa.Delete:
        """Delete the subscription's attempts older than its newest ``attempts_kept``."""
        oldest_kept = (
            sa.select(attempt_t.c.id)
            .where(attempt_t.c.subscription_id == subscription_id)
            .order_by(attempt_t.c.id.desc())
            .offset(self.attempts_kept - 1)
            .limit(1)
            .scalar_subquery()
        )
        return sa.delete(attempt_t).where(attempt_t.c.subscription_id == subscription_id, attempt_t.c.id < oldest_kept)

    async def skip_to(self, subscription_id: int, delivered_seq: int) -> None:
        """Move the cursor past events the subscription does not take (nothing was sent, nothing logged)."""
        current = self._subscriptions.get(subscription_id)
        if current is None or delivered_seq <= current.delivered_seq:
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(subscription_t)
                .where(subscription_t.c.id == subscription_id)
                .values(delivered_seq=delivered_seq)
            )
        self._subscriptions[subscription_id] = replace(current, delivered_seq=delivered_seq)

    async def attempts(self, subscription_id: int, *, limit: int, before: int | None = None) -> list[Attempt]:
        """The delivery log of a subscription, newest first."""
        query = sa.select(attempt_t).where(attempt_t.c.subscription_id == subscription_id)
        if before is not None:
            query = query.where(attempt_t.c.id < before)
        query = query.order_by(attempt_t.c.id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [_attempt(row) for row in (await conn.execute(query)).all()]
