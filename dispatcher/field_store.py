"""The field app's records in SQL: photos' metadata (``media``), which incidents reference a photo
(``media_ref``), and places (``place``). Tables in :mod:`dispatcher.field_tables`, revision 0007.

Lives in the accounts' database (``DISPATCHER_DATABASE_URL``) with a ``township`` column, like the audit
trail. Not on the writer's path: an upload is not an incident change, and a reference is recorded after
the incident's event is committed (see :meth:`SqlFieldStore.add_refs`). Async; call from the event loop.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

from dispatcher.connection_budget import ConnectionBudget
from dispatcher.field_tables import MediaRefRow, MediaRow, PlaceRow
from dispatcher.migrations import upgrade_to_head
from dispatcher.sql_store import build_engine

media_t = SQLModel.metadata.tables[MediaRow.__tablename__]
media_ref_t = SQLModel.metadata.tables[MediaRefRow.__tablename__]
place_t = SQLModel.metadata.tables[PlaceRow.__tablename__]


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaRecord:
    """A stored photo's metadata: what the phone said (``client_*``) and what the photo's EXIF says."""

    sha256: str
    content_type: str
    bytes: int
    width: int
    height: int
    uploaded_by: str
    uploaded_at: datetime
    township: str
    client_taken_at: datetime | None = None
    client_lat: float | None = None
    client_lon: float | None = None
    client_accuracy_m: float | None = None
    exif_taken_at: str | None = None
    exif_lat: float | None = None
    exif_lon: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Place:
    """A place with a printed code (龙游通)."""

    code: str
    kind: str  # household | shop | stall | facility
    name: str
    address: str
    township: str
    zone: str | None = None
    lat: float | None = None
    lon: float | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    notes: str | None = None


def _upsert(conn: Any, table: sa.Table, keys: Sequence[str], *, update: bool) -> Any:
    insert: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table)
    if update:
        columns = [c.name for c in table.columns if c.name not in keys]
        return statement.on_conflict_do_update(
            index_elements=list(keys), set_={c: statement.excluded[c] for c in columns}
        )
    return statement.on_conflict_do_nothing(index_elements=list(keys))


class SqlFieldStore:
    def __init__(self, url: str, *, pool_size: int = 5, budget: ConnectionBudget | None = None) -> None:
        self.url = url
        self._engine = build_engine(url, pool_size=pool_size, budget=budget)

    async def open(self) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(upgrade_to_head)

    async def close(self) -> None:
        await self._engine.dispose()

    # -- photos --

    async def add_media(self, record: MediaRecord) -> tuple[MediaRecord, bool]:
        """Record a photo unless its bytes are recorded already; returns the stored record and whether it is new."""
        async with self._engine.begin() as conn:
            result = await conn.execute(_upsert(conn, media_t, ["sha256"], update=False), asdict(record))
            if result.rowcount:
                return record, True
            row = (await conn.execute(sa.select(media_t).where(media_t.c.sha256 == record.sha256))).one()
            return MediaRecord(**row._asdict()), False

    async def media(self, sha256: str) -> MediaRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(media_t).where(media_t.c.sha256 == sha256))).first()
        return MediaRecord(**row._asdict()) if row is not None else None

    async def missing(self, ids: Collection[str], township: str) -> list[str]:
        """The ids of ``ids`` that are no photo recorded in ``township``, in the order given."""
        if not ids:
            return []
        query = sa.select(media_t.c.sha256).where(media_t.c.sha256.in_(list(ids)), media_t.c.township == township)
        async with self._engine.connect() as conn:
            known = set((await conn.execute(query)).scalars())
        return [i for i in ids if i not in known]

    async def add_refs(self, township: str, incident_id: int, ids: Collection[str]) -> None:
        """Record that ``incident_id`` references the photos ``ids`` (idempotent)."""
        if not ids:
            return
        rows = [{"sha256": i, "township": township, "incident_id": incident_id} for i in set(ids)]
        async with self._engine.begin() as conn:
            await conn.execute(_upsert(conn, media_ref_t, ["sha256", "township", "incident_id"], update=False), rows)

    async def referencing(self, sha256: str, township: str, *, limit: int = 50) -> list[int]:
        """The incidents of ``township`` that reference the photo (the lowest ids first)."""
        query = (
            sa.select(media_ref_t.c.incident_id)
            .where(media_ref_t.c.sha256 == sha256, media_ref_t.c.township == township)
            .order_by(media_ref_t.c.incident_id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    # -- places --

    async def put_places(self, places: Sequence[Place]) -> int:
        """Insert or update ``places`` by code; returns how many were written."""
        if not places:
            return 0
        rows = [asdict(p) for p in places]
        async with self._engine.begin() as conn:
            await conn.execute(_upsert(conn, place_t, ["code"], update=True), rows)
        return len(rows)

    async def place(self, code: str, township: str) -> Place | None:
        query = sa.select(place_t).where(place_t.c.code == code, place_t.c.township == township)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return Place(**row._asdict()) if row is not None else None

    async def places(self, township: str | None = None) -> list[Place]:
        query = sa.select(place_t).order_by(place_t.c.code)
        if township is not None:
            query = query.where(place_t.c.township == township)
        async with self._engine.connect() as conn:
            return [Place(**row._asdict()) for row in (await conn.execute(query)).all()]
