"""``SqlOutboxCursor``: where an outbox stands in the event log, kept in table ``outbox_cursor``.

It has its own engine (and, on SQLite, its own connection) so that its writes never wait in or
hold up the hub's writer task; they are few (the outbox saves every ~100 ms at most) and tiny.
The schema comes from the store's migrations, which run when the hub starts: open this after.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import SQLModel

from dispatcher.connection_budget import ConnectionBudget
from dispatcher.sql_store import build_engine
from dispatcher.tables import OutboxCursorRow

cursor_t = SQLModel.metadata.tables[OutboxCursorRow.__tablename__]


class SqlOutboxCursor:
    """Load and save one named cursor. All methods run on the event loop."""

    def __init__(self, url: str, name: str, *, budget: ConnectionBudget | None = None) -> None:
        """``budget``: a replica's connection budget (:mod:`dispatcher.connection_budget`) to draw on."""
        self.name = name
        self._engine = build_engine(url, pool_size=1, budget=budget)

    async def load(self) -> int | None:
        """The last seq saved under this name, or None when this outbox never saved one."""
        async with self._engine.connect() as conn:
            query = sa.select(cursor_t.c.last_seq).where(cursor_t.c.name == self.name)
            value = (await conn.execute(query)).scalar()
        return None if value is None else int(value)

    async def save(self, last_seq: int, at: datetime) -> None:
        """Record ``last_seq`` (never moves the cursor backwards)."""
        async with self._engine.begin() as conn:
            updated = await conn.execute(
                sa.update(cursor_t)
                .where(cursor_t.c.name == self.name, cursor_t.c.last_seq <= last_seq)
                .values(last_seq=last_seq, updated_at=at)
            )
            if updated.rowcount == 0:
                exists = await conn.execute(sa.select(cursor_t.c.name).where(cursor_t.c.name == self.name))
                if exists.first() is None:
                    await conn.execute(sa.insert(cursor_t).values(name=self.name, last_seq=last_seq, updated_at=at))

    async def close(self) -> None:
        await self._engine.dispose()
