"""Township leases on PostgreSQL: heartbeats, takes, renewals and the fence of every write.

Why a lease row with an epoch, not session advisory locks: an advisory lock belongs to a database session,
so a replica that is paused (SIGSTOP, a long GC, a VM migration) or cut off keeps its townships for as long
as PostgreSQL keeps its connection: minutes of TCP keepalive, unless someone kills the backend. A lease row
expires by the database's clock after ``lease_ttl_s`` whatever its holder does, and its epoch (one more at
each take) is a fencing token: every write transaction of a hub first reads its township's fence ``FOR
SHARE`` and goes on only when the epoch is the one it took (:func:`check_fence`). The new holder raises the
fence before it loads anything (:func:`raise_fence`); that ``UPDATE`` waits for a write in flight under the
old epoch and every later one sees the new epoch and is refused (:class:`LeaseLost`): a replica that wakes
after losing its lease writes nothing.

The replica and lease rows live in the county database (one query a round reads them all); the fence row lives
in the township's own database, in the same transaction as its writes. Times are the county database's
``now()``: replicas' own clocks never decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dispatcher.core.leases import Lease, Replica
from dispatcher.lease_tables import FenceRow, LeaseRow, ReplicaRow
from dispatcher.store import StoreUnavailable

replica_t: sa.Table = ReplicaRow.__table__  # type: ignore[attr-defined]
lease_t: sa.Table = LeaseRow.__table__  # type: ignore[attr-defined]
fence_t: sa.Table = FenceRow.__table__  # type: ignore[attr-defined]


class LeaseLost(StoreUnavailable):
    """This replica no longer holds the township's lease: nothing was written (another replica serves it)."""


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a hub's writes are fenced by: its township and the epoch this replica took."""

    township: str
    epoch: int


async def check_fence(conn: AsyncConnection, fence: Fence | None) -> None:
    """The first statement of a leased hub's write transaction: raise :class:`LeaseLost` unless the township's
    fence still holds ``fence.epoch``. ``FOR SHARE`` keeps a new holder's :func:`raise_fence` waiting until
    this transaction ends, so no write of an old epoch commits after the new holder loaded."""
    if fence is None:
        return
    query = sa.select(fence_t.c.epoch).where(fence_t.c.township == fence.township).with_for_update(read=True)
    epoch = (await conn.execute(query)).scalar()
    if epoch != fence.epoch:
        raise LeaseLost(
            f"township {fence.township}: lease epoch {fence.epoch} was taken over (now {epoch}); nothing was written"
        )


async def raise_fence(conn: AsyncConnection, fence: Fence) -> None:
    """Before a new holder loads its township: set the fence to its epoch (only ever upwards).

    Raises :class:`LeaseLost` when a newer epoch is there already. Waits (up to the connection's
    ``lock_timeout``) for a write transaction of the old holder still in flight.
    """
    insert = pg_insert(fence_t).values(township=fence.township, epoch=fence.epoch)
    upsert = insert.on_conflict_do_update(
        index_elements=[fence_t.c.township],
        set_={"epoch": insert.excluded.epoch},
        where=fence_t.c.epoch < insert.excluded.epoch,
    ).returning(fence_t.c.epoch)
    if (await conn.execute(upsert)).scalar() is None:
        raise LeaseLost(f"township {fence.township}: a newer lease than epoch {fence.epoch} holds the fence")


class SqlLeases:
    """The replica and lease rows in the county database; every time is the database's ``now()``."""

    def __init__(self, engine: AsyncEngine, ttl: timedelta) -> None:
        self._engine = engine
        self.ttl = ttl

    async def round(self, me: str, url: str, townships: list[str]) -> tuple[datetime, list[Replica], dict[str, Lease]]:
        """One heartbeat of ``me`` and everything a round decides on: the database's now, replicas, leases."""
        async with self._engine.begin() as conn:
            now = (await conn.execute(sa.select(sa.func.now()))).scalar_one()
            beat = pg_insert(replica_t).values(id=me, url=url, seen_at=now)
            await conn.execute(
                beat.on_conflict_do_update(index_elements=[replica_t.c.id], set_={"url": url, "seen_at": now})
            )
            if townships:
                missing = pg_insert(lease_t).values([{"township": t, "epoch": 0} for t in townships])
                await conn.execute(missing.on_conflict_do_nothing(index_elements=[lease_t.c.township]))
            replicas = [Replica(r.id, r.url, r.seen_at) for r in (await conn.execute(sa.select(replica_t))).all()]
            rows = (await conn.execute(sa.select(lease_t).where(lease_t.c.township.in_(townships)))).all()
        leases = {r.township: Lease(r.township, r.holder, r.epoch, r.expires_at) for r in rows}
        return now, replicas, leases

    async def acquire(self, township: str, me: str) -> int | None:
        """Take a free or expired lease: its new epoch, or None when another replica holds it live."""
        free = sa.or_(lease_t.c.holder.is_(None), lease_t.c.expires_at.is_(None), lease_t.c.expires_at <= sa.func.now())
        return await self._update(
            sa.update(lease_t)
            .where(lease_t.c.township == township, free)
            .values(holder=me, epoch=lease_t.c.epoch + 1, expires_at=sa.func.now() + self.ttl)
            .returning(lease_t.c.epoch)
        )

    async def renew(self, township: str, me: str, epoch: int) -> bool:
        """Push the expiry on while nobody took over (same holder, same epoch); False: the lease is lost."""
        return (
            await self._update(
                sa.update(lease_t)
                .where(lease_t.c.township == township, lease_t.c.holder == me, lease_t.c.epoch == epoch)
                .values(expires_at=sa.func.now() + self.ttl)
                .returning(lease_t.c.epoch)
            )
            is not None
        )

    async def renew_all(self, me: str, held: dict[str, int]) -> set[str]:
        """:meth:`renew` for every township of ``held`` (township -> epoch) in one statement: the townships
        renewed (the others were taken over). One round trip whatever the number of townships, so that a
        round of a replica holding thirty stays well inside the lease's TTL on a loaded machine."""
        if not held:
            return set()
        statement = (
            sa.update(lease_t)
            .where(lease_t.c.holder == me, sa.tuple_(lease_t.c.township, lease_t.c.epoch).in_(list(held.items())))
            .values(expires_at=sa.func.now() + self.ttl)
            .returning(lease_t.c.township)
        )
        async with self._engine.begin() as conn:
            return set((await conn.execute(statement)).scalars())

    async def release(self, township: str, me: str, epoch: int) -> None:
        """Give a lease back at once (its hub has stopped): the planned replica takes it in its next round."""
        await self._update(
            sa.update(lease_t)
            .where(lease_t.c.township == township, lease_t.c.holder == me, lease_t.c.epoch == epoch)
            .values(holder=None, expires_at=None)
            .returning(lease_t.c.epoch)
        )

    async def leave(self, me: str) -> None:
        """A replica shutting down: its heartbeat is set long past, so the others rebalance at once. The row stays:
        a replica not live is one whose MQTT sessions another adopts (:func:`dispatcher.core.leases.adoptions`)."""
        async with self._engine.begin() as conn:
            await conn.execute(sa.update(replica_t).where(replica_t.c.id == me).values(seen_at=sa.func.to_timestamp(0)))

    async def _update(self, statement: sa.Update) -> int | None:
        async with self._engine.begin() as conn:
            value = (await conn.execute(statement)).scalar()
        return None if value is None else int(value)
