"""``SqlIncidentStore``: the store port on SQLAlchemy's async engine (SQLite or PostgreSQL).

Writes go through one dedicated connection owned by the hub's writer task, as whole batches in
one transaction each (group commit): the ORM and driver layers are the bottleneck, not the disk,
so one writer with batched executemany beats many pooled writers. Reads use the engine's pool.
SQLite runs in WAL mode with ``synchronous=FULL``, so a commit that returned survives a crash of
the process and of the machine.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from dispatcher.core.events import DeadlineKind
from dispatcher.core.incidents import Assignment, Deadline, DeadlineState, Incident, Report
from dispatcher.core.lifecycle import FINAL_STATUSES, AssignmentState, IncidentStatus, Role
from dispatcher.migrations import upgrade_to_head
from dispatcher.store import Changes, DuplicateReport, IncidentFilter, StoredEvent, StoreUnavailable
from dispatcher.tables import AssignmentRow, EventRow, IncidentRow
from rules.matcher import EscalationTarget

log = logging.getLogger(__name__)

incident_t = SQLModel.metadata.tables[IncidentRow.__tablename__]
assignment_t = SQLModel.metadata.tables[AssignmentRow.__tablename__]
event_t = SQLModel.metadata.tables[EventRow.__tablename__]

_FINAL = [s.value for s in FINAL_STATUSES]
_CHUNK = 500  # keeps IN (...) lists under every backend's parameter limit


def build_engine(url: str, *, pool_size: int = 10, durable: bool = True) -> AsyncEngine:
    """An async engine for ``url``; SQLite files get their folder created and WAL turned on.

    ``durable=False`` (simulations' throw-away databases only) lets SQLite skip fsync.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        sa_event.listen(engine.sync_engine, "connect", _sqlite_pragmas if durable else _sqlite_pragmas_scratch)
        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _sqlite_pragmas_scratch(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class SqlIncidentStore:
    """The store on SQLAlchemy Core over the SQLModel tables. All methods run on the event loop."""

    def __init__(self, url: str, *, pool_size: int = 10, durable: bool = True) -> None:
        self.url = url
        self._engine = build_engine(url, pool_size=pool_size, durable=durable)
        self._writer: AsyncConnection | None = None

    @property
    def backend(self) -> str:
        return self._engine.dialect.name

    async def open(self) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(upgrade_to_head)
        self._writer = await self._engine.connect()

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        await self._engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness reports any failure as "not ready"
            return False

    async def last_ids(self) -> tuple[int, int]:
        async with self._engine.connect() as conn:
            max_id = (await conn.execute(sa.select(sa.func.max(incident_t.c.id)))).scalar()
            max_seq = (await conn.execute(sa.select(sa.func.max(event_t.c.seq)))).scalar()
        return int(max_id or 0), int(max_seq or 0)

    # -- loading incidents -------------------------------------------------------------------

    async def load_open(self) -> list[Incident]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(incident_t).where(incident_t.c.status.not_in(_FINAL)))).all()
            return await _hydrate(conn, rows)

    async def load(self, incident_ids: Collection[int]) -> dict[int, Incident]:
        found: dict[int, Incident] = {}
        async with self._engine.connect() as conn:
            for chunk in _chunks(list(incident_ids)):
                rows = (await conn.execute(sa.select(incident_t).where(incident_t.c.id.in_(chunk)))).all()
                found.update((i.id, i) for i in await _hydrate(conn, rows))
        return found

    async def find_reports(self, report_ids: Collection[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        conn = self._writer_conn()
        for chunk in _chunks(list(report_ids)):
            query = sa.select(incident_t.c.report_id, incident_t.c.id).where(incident_t.c.report_id.in_(chunk))
            found.update({r: i for r, i in (await conn.execute(query)).all()})
        await conn.rollback()  # end the read transaction so the next batch sees fresh data
        return found

    async def get(self, incident_id: int) -> Incident | None:
        return (await self.load([incident_id])).get(incident_id)

    async def list_incidents(self, where: IncidentFilter, *, limit: int, offset: int) -> tuple[list[Incident], int]:
        conditions: list[Any] = []
        if where.status:
            conditions.append(incident_t.c.status.in_([s.value for s in where.status]))
        if where.open_only:
            conditions.append(incident_t.c.status.not_in(_FINAL))
        if where.exercise is not None:
            conditions.append(incident_t.c.exercise == where.exercise)
        if where.module:
            conditions.append(incident_t.c.module == where.module)
        if where.team:
            conditions.append(
                incident_t.c.id.in_(sa.select(assignment_t.c.incident_id).where(assignment_t.c.team == where.team))
            )
        async with self._engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(incident_t).where(*conditions))).scalar()
            query = (
                sa.select(incident_t).where(*conditions).order_by(incident_t.c.id.desc()).limit(limit).offset(offset)
            )
            rows = (await conn.execute(query)).all()
            return await _hydrate(conn, rows), int(total or 0)

    async def timeline(self, incident_id: int) -> list[StoredEvent]:
        query = sa.select(event_t).where(event_t.c.incident_id == incident_id).order_by(event_t.c.seq)
        async with self._engine.connect() as conn:
            return [_event(r) for r in (await conn.execute(query)).all()]

    async def events_since(self, seq: int, *, limit: int) -> list[StoredEvent]:
        query = sa.select(event_t).where(event_t.c.seq > seq).order_by(event_t.c.seq).limit(limit)
        async with self._engine.connect() as conn:
            return [_event(r) for r in (await conn.execute(query)).all()]

    # -- writing -----------------------------------------------------------------------------

    async def commit(self, changes: Changes) -> None:
        conn = self._writer_conn()
        try:
            async with conn.begin():
                await self._write(conn, changes)
        except sa.exc.IntegrityError as exc:
            if "report_id" in str(exc.orig):
                raise DuplicateReport(str(exc.orig)) from exc
            log.exception("batch commit refused by the database; nothing of it was written")
            raise StoreUnavailable(str(exc)) from exc
        except Exception as exc:
            log.exception("batch commit failed; nothing of it was written")
            if conn.invalidated:
                await self._reconnect()
            raise StoreUnavailable(str(exc)) from exc

    async def _write(self, conn: AsyncConnection, changes: Changes) -> None:
        if changes.created:
            await conn.execute(sa.insert(incident_t), [_incident_row(i) for i in changes.created])
            assignments = [_assignment_row(i.id, n, a) for i in changes.created for n, a in enumerate(i.assignments)]
            if assignments:
                await conn.execute(sa.insert(assignment_t), assignments)
        if changes.updated:
            await _write_updates(conn, changes.updated)
        if changes.events:
            await conn.execute(
                sa.insert(event_t),
                [
                    {"seq": e.seq, "incident_id": e.incident_id, "type": e.type, "at": e.at, "payload": e.payload}
                    for e in changes.events
                ],
            )

    def _writer_conn(self) -> AsyncConnection:
        if self._writer is None:
            raise StoreUnavailable("the store is not open")
        return self._writer

    async def _reconnect(self) -> None:
        try:
            if self._writer is not None:
                await self._writer.close()
        finally:
            self._writer = await self._engine.connect()


async def _write_updates(conn: AsyncConnection, updated: Sequence[tuple[Incident, Incident]]) -> None:
    incident_rows = [
        {"b_id": after.id, "status": after.status.value, "updated_at": after.updated_at, "version": after.version}
        for _, after in updated
    ]
    await conn.execute(
        incident_t.update()
        .where(incident_t.c.id == sa.bindparam("b_id"))
        .values(status=sa.bindparam("status"), updated_at=sa.bindparam("updated_at"), version=sa.bindparam("version")),
        incident_rows,
    )
    assignment_rows = []
    for before, after in updated:
        old = {a.team: a for a in before.assignments}
        for assignment in after.assignments:
            if old.get(assignment.team) is assignment:
                continue
            row = {"b_incident": after.id, "b_team": assignment.team}
            row.update(_assignment_state(assignment))
            assignment_rows.append(row)
    if assignment_rows:
        await conn.execute(
            assignment_t.update()
            .where(assignment_t.c.incident_id == sa.bindparam("b_incident"))
            .where(assignment_t.c.team == sa.bindparam("b_team"))
            .values({key: sa.bindparam(key) for key in _STATE_COLUMNS}),
            assignment_rows,
        )


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _incident_row(incident: Incident) -> dict[str, Any]:
    report = incident.report
    return {
        "id": incident.id,
        "report_id": report.report_id,
        "category": incident.category,
        "reported_category": report.category,
        "description": report.description,
        "zone": report.zone,
        "zones": ",".join(incident.zones),
        "lat": report.lat,
        "lon": report.lon,
        "severity": report.severity,
        "reporter": report.reporter,
        "reporter_kind": report.reporter_kind,
        "exercise": report.exercise,
        "occurred_at": report.occurred_at,
        "status": incident.status.value,
        "module": incident.module,
        "queue": incident.queue,
        "priority": incident.priority,
        "rule_id": incident.rule_id,
        "table_version": incident.table_version,
        "handover": incident.handover,
        "escalation": orjson.dumps(
            [
                {"after_s": t.after.total_seconds(), "level": t.level, "name": t.name, "title": t.title}
                for t in incident.escalation
            ]
        ).decode(),
        "reported_at": incident.reported_at,
        "updated_at": incident.updated_at,
        "version": incident.version,
    }


_KINDS = tuple(DeadlineKind)
_STATE_COLUMNS = (
    "state",
    "updated_at",
    *(f"{kind.value}_{column}" for kind in _KINDS for column in ("state", "settled_at")),
)


def _assignment_state(assignment: Assignment) -> dict[str, Any]:
    """The columns an assignment's moves change: its state and each deadline's state."""
    row: dict[str, Any] = {"state": assignment.state.value, "updated_at": assignment.updated_at}
    for kind in _KINDS:
        deadline = assignment.deadline(kind)
        row[f"{kind.value}_state"] = deadline.state.value if deadline else None
        row[f"{kind.value}_settled_at"] = deadline.settled_at if deadline else None
    return row


def _assignment_row(incident_id: int, position: int, assignment: Assignment) -> dict[str, Any]:
    row = _assignment_state(assignment)
    row.update(
        incident_id=incident_id,
        team=assignment.team,
        position=position,
        role=assignment.role.value,
        dispatched_at=assignment.dispatched_at,
    )
    for kind in _KINDS:
        deadline = assignment.deadline(kind)
        row[f"{kind.value}_due_at"] = deadline.due_at if deadline else None
    return row


def _deadlines(row: Any) -> tuple[Deadline, ...]:
    found = []
    for kind in _KINDS:
        due_at = getattr(row, f"{kind.value}_due_at")
        if due_at is not None:
            found.append(
                Deadline(
                    kind=kind,
                    due_at=due_at,
                    state=DeadlineState(getattr(row, f"{kind.value}_state")),
                    settled_at=getattr(row, f"{kind.value}_settled_at"),
                )
            )
    return tuple(found)


def _event(row: Any) -> StoredEvent:
    return StoredEvent(seq=row.seq, incident_id=row.incident_id, type=row.type, at=row.at, payload=row.payload)


async def _hydrate(conn: AsyncConnection, rows: Sequence[Any]) -> list[Incident]:
    if not rows:
        return []
    ids = [r.id for r in rows]
    assignments: dict[int, list[Any]] = {}
    for chunk in _chunks(ids):
        for a in (await conn.execute(sa.select(assignment_t).where(assignment_t.c.incident_id.in_(chunk)))).all():
            assignments.setdefault(a.incident_id, []).append(a)
    incidents = []
    for r in rows:
        team_rows = sorted(assignments.get(r.id, []), key=lambda a: a.position)
        incidents.append(
            Incident(
                id=r.id,
                report=Report(
                    report_id=r.report_id,
                    category=r.reported_category,
                    description=r.description,
                    zone=r.zone,
                    lat=r.lat,
                    lon=r.lon,
                    severity=r.severity,
                    reporter=r.reporter,
                    reporter_kind=r.reporter_kind,
                    exercise=r.exercise,
                    occurred_at=r.occurred_at,
                ),
                status=IncidentStatus(r.status),
                module=r.module,
                queue=r.queue,
                zones=tuple(z for z in r.zones.split(",") if z),
                priority=r.priority,
                rule_id=r.rule_id,
                table_version=r.table_version,
                category=r.category,
                handover=r.handover,
                escalation=tuple(
                    EscalationTarget(
                        after=timedelta(seconds=t["after_s"]), level=t["level"], name=t["name"], title=t["title"]
                    )
                    for t in orjson.loads(r.escalation)
                ),
                reported_at=r.reported_at,
                updated_at=r.updated_at,
                version=r.version,
                assignments=tuple(
                    Assignment(
                        team=a.team,
                        role=Role(a.role),
                        state=AssignmentState(a.state),
                        dispatched_at=a.dispatched_at,
                        updated_at=a.updated_at,
                        deadlines=_deadlines(a),
                    )
                    for a in team_rows
                ),
            )
        )
    return incidents
