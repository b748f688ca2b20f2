"""``SqlIncidentStore``: the store port on SQLAlchemy's async engine (SQLite or PostgreSQL).

Writes go through one dedicated connection owned by the hub's writer task, as whole batches in
one transaction each (group commit), one statement per table: the driver layers are the bottleneck,
not the disk, so one writer with batched statements beats many pooled writers. A SQLite file's
writer connection is a plain ``sqlite3`` one on a thread of its own (:mod:`dispatcher.sqlite_writer`:
the batch's whole commit is one call there); PostgreSQL's is the engine's asyncpg connection. Reads
use the engine's pool. SQLite runs in WAL mode with ``synchronous=FULL``, so a commit that returned
survives a crash of the process and of the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import operator
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from dispatcher import briefing
from dispatcher import briefing as figures  # `briefing` is also a method name in the store's class
from dispatcher.account_tables import AuditRow
from dispatcher.assessment import Assessment, assess, store_scoring_text, stored_scoring_tables
from dispatcher.audit_entries import AUDIT_COLUMNS, audit_row, audit_values
from dispatcher.connection_budget import ConnectionBudget
from dispatcher.core.events import TEAM_DEADLINE_KINDS, DeadlineKind, ScoringPutInForce
from dispatcher.core.incidents import (
    Approval,
    Assignment,
    AttachedReport,
    Deadline,
    DeadlineState,
    Delivery,
    DeliveryState,
    Escalation,
    EscalationState,
    Incident,
    Loop,
    Promises,
    Report,
    Request,
    RequestKind,
    Verification,
)
from dispatcher.core.lifecycle import FINAL_STATUSES, AssignmentState, IncidentStatus, RequestState, Role
from dispatcher.core.roster import UnitState, UnitStatus
from dispatcher.leases import Fence, LeaseLost, check_fence, raise_fence
from dispatcher.migrations import upgrade_to_head
from dispatcher.sqlite_writer import WAL_AUTOCHECKPOINT_PAGES, Insert, SqliteWriter, Step, transact
from dispatcher.store import (
    Changes,
    CommitRefused,
    DuplicateReport,
    HandoverRecord,
    IncidentFilter,
    RuleTableRecord,
    StoredEvent,
    StoreLocked,
    StoreUnavailable,
)
from dispatcher.tables import (
    AssignmentRow,
    EscalationRow,
    EventRow,
    IncidentReportRow,
    IncidentRow,
    OfficerStatusRow,
    ReportKeyRow,
    RosterRow,
    RuleTableRow,
    ShiftHandoverRow,
    UtcDateTime,
)
from rules.matcher import EscalationTarget
from rules.scoring import ScoringTable
from rules.workdays import WorkSpan, format_window, parse_window, parse_work_span

log = logging.getLogger(__name__)

incident_t = SQLModel.metadata.tables[IncidentRow.__tablename__]
assignment_t = SQLModel.metadata.tables[AssignmentRow.__tablename__]
event_t = SQLModel.metadata.tables[EventRow.__tablename__]
escalation_t = SQLModel.metadata.tables[EscalationRow.__tablename__]
report_t = SQLModel.metadata.tables[IncidentReportRow.__tablename__]
unit_t = SQLModel.metadata.tables[OfficerStatusRow.__tablename__]
roster_t = SQLModel.metadata.tables[RosterRow.__tablename__]
handover_t = SQLModel.metadata.tables[ShiftHandoverRow.__tablename__]
rule_table_t = SQLModel.metadata.tables[RuleTableRow.__tablename__]
report_key_t = SQLModel.metadata.tables[ReportKeyRow.__tablename__]
audit_t = SQLModel.metadata.tables[AuditRow.__tablename__]

_FINAL = [s.value for s in FINAL_STATUSES]
_CHUNK = 500  # keeps IN (...) lists under every backend's parameter limit
_OPEN_PAGE = 2000  # open incidents read per query at start
#: The PostgreSQL NOTIFY channel of committed events; a payload is ``{"township": ..., "seq": <last seq>}``.
EVENTS_CHANNEL = "dispatcher_events"


def build_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    durable: bool = True,
    server_settings: dict[str, str] | None = None,
    budget: ConnectionBudget | None = None,
    application_name: str | None = None,
) -> AsyncEngine:
    """An async engine for ``url``; SQLite files get their folder created and WAL turned on.

    ``durable=False`` (simulations' throw-away databases only) lets SQLite skip fsync. ``server_settings``:
    PostgreSQL settings of every connection (a leased hub's timeouts). PostgreSQL's pool holds ``pool_size``
    connections and opens up to ``max_overflow`` (default: ``pool_size``) more at once; with ``budget`` it is
    that budget's instead (a replica's engines share one, :mod:`dispatcher.connection_budget`).
    ``application_name`` (else the budget's) names the connections in ``pg_stat_activity``.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        # hide_parameters: a failed statement's message (logged) never carries reporters' data.
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        sa_event.listen(engine.sync_engine, "connect", _sqlite_pragmas if durable else _sqlite_pragmas_scratch)
        return engine
    settings = dict(server_settings or {})
    name = application_name or (budget.application_name if budget is not None else None)
    if name:
        settings["application_name"] = name
    connect_args = {"server_settings": settings} if settings else {}
    if budget is not None:
        return create_async_engine(
            url, poolclass=budget.poolclass, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args
        )
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args=connect_args,
    )


# Failures that say the database is out of reach (worth retrying), as against a value it refuses.
_UNREACHABLE = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,  # no connection free in the pool (or the replica's budget) in time
    sqlite3.OperationalError,
    sqlite3.InterfaceError,
    OSError,
    TimeoutError,
)


def _translate(exc: Exception, doing: str) -> Exception:
    """The store's own exception for a driver failure: the class says whether to retry, the text is safe.

    The driver's message (SQL, parameters, another caller's report) stays in the server log.
    """
    kind = type(getattr(exc, "orig", None) or exc).__name__
    if isinstance(exc, _UNREACHABLE):
        return StoreUnavailable(f"the database could not be reached while {doing} ({kind}); nothing was written")
    return CommitRefused(f"the database refused a value while {doing} ({kind}); nothing was written")


def _sqlite_pragmas_scratch(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    # The same as the writer's connection, so that a rare commit here (an account, a webhook's delivery)
    # does not checkpoint the log early.
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class SqlIncidentStore:
    """The store on SQLAlchemy Core over the SQLModel tables. All methods run on the event loop."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        durable: bool = True,
        township: str | None = None,
        fence: Fence | None = None,
        inline_writes: bool = False,
        budget: ConnectionBudget | None = None,
    ) -> None:
        """``township``: named in the NOTIFY of each commit (PostgreSQL). ``fence``: a replica's hub
        (PostgreSQL only): no writer lock; every write checks the lease's epoch first. ``inline_writes``: a
        SQLite file's commits run on the event loop's thread, blocking it (simulations: the loop serves
        nothing else; see :class:`SqliteWriter`), and with ``durable=False`` they are grouped, each batch a
        savepoint, the group committed before every read through the engine. ``budget``: the replica's
        connection budget (PostgreSQL): no connection is kept for the writer, each batch takes one from the
        budget and gives it back (:mod:`dispatcher.connection_budget`)."""
        self.url = url
        self.fence = fence
        self._budget = budget
        self._opened = False
        # A leased hub's transaction left open (its replica paused mid-write) ends by itself, so that the
        # next holder's fence is not kept waiting; a fence raised behind a write in flight waits that long.
        leased = {"idle_in_transaction_session_timeout": "5000", "lock_timeout": "10000"} if fence else None
        self._engine = build_engine(url, pool_size=pool_size, durable=durable, server_settings=leased, budget=budget)
        # On PostgreSQL each commit that logs events also sends a NOTIFY naming the township and its last seq
        # (delivered by the database at COMMIT, never for a rolled-back batch): the wake-up of the boards that
        # replicas not hosting the township serve (dispatcher/tail_feed.py).
        self._notice = (
            sa.select(sa.func.pg_notify(EVENTS_CHANNEL, sa.bindparam("notice")))
            if township is not None and self._engine.dialect.name == "postgresql"
            else None
        )
        self._township = township
        self._writer: AsyncConnection | None = None  # PostgreSQL's (and an in-memory SQLite database's)
        self._sqlite: SqliteWriter | None = None  # a SQLite file's writer: its own thread and connection
        database = self._engine.url.database or ""
        if self._engine.dialect.name == "sqlite" and database and database != ":memory:":
            self._sqlite = SqliteWriter(str(Path(database).expanduser()), durable=durable, inline=inline_writes)
            if inline_writes and not durable:
                # Its commits are grouped: every read through the engine first commits what the writer holds.
                sa_event.listen(self._engine.sync_engine, "engine_connect", self._flush_writes)
        self._lock: WriterLock | None = None

    def _flush_writes(self, _connection: Any) -> None:
        if self._sqlite is not None:
            self._sqlite.flush()

    @property
    def backend(self) -> str:
        return self._engine.dialect.name

    def shares_database(self, url: str) -> bool:
        """Whether ``url`` names this store's database, so that a table of it (the audit trail) may be written
        in the writer's batches: the same URL, not a database private to each engine (SQLite in memory)."""
        return url == self.url and (self._sqlite is not None or self.backend == "postgresql")

    async def open(self) -> None:
        self._lock = WriterLock() if self.fence is not None else await WriterLock.take(self._engine)
        try:
            async with self._engine.begin() as conn:
                await conn.run_sync(upgrade_to_head)
            if self.fence is not None:
                async with self._engine.begin() as conn:
                    await raise_fence(conn, self.fence)
            if self._sqlite is not None:
                await self._sqlite.open()
            elif self._budget is None:
                self._writer = await self._writer_connection()
        except BaseException:
            await self._lock.release()
            self._lock = None
            raise
        self._opened = True

    async def close(self) -> None:
        self._opened = False
        if self._sqlite is not None:
            await self._sqlite.close()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        if self._lock is not None:
            await self._lock.release()
            self._lock = None
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

    # -- officers, rosters, handovers --------------------------------------------------------

    async def load_units(self) -> dict[str, UnitState]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(unit_t))).all()
        return {
            r.officer_id: UnitState(status=UnitStatus(r.status), lat=r.lat, lon=r.lon, position_at=r.position_at)
            for r in rows
        }

    async def latest_roster(self) -> tuple[str, str] | None:
        query = sa.select(roster_t.c.version, roster_t.c.body).order_by(roster_t.c.id.desc()).limit(1)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return (row.version, row.body) if row else None

    async def last_record_ids(self) -> tuple[int, int]:
        async with self._engine.connect() as conn:
            handover_id = (await conn.execute(sa.select(sa.func.max(handover_t.c.id)))).scalar()
            table_id = (await conn.execute(sa.select(sa.func.max(rule_table_t.c.id)))).scalar()
        return int(handover_id or 0), int(table_id or 0)

    async def handover(self, handover_id: int) -> HandoverRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(handover_t).where(handover_t.c.id == handover_id))).first()
        return _handover(row) if row else None

    async def latest_rule_table(self) -> RuleTableRecord | None:
        query = sa.select(rule_table_t).order_by(rule_table_t.c.id.desc()).limit(1)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _rule_table(row, row.body) if row else None

    async def rule_table(self, table_id: int) -> RuleTableRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(rule_table_t).where(rule_table_t.c.id == table_id))).first()
        return _rule_table(row, row.body) if row else None

    async def rule_tables(self, *, limit: int) -> list[RuleTableRecord]:
        columns = (rule_table_t.c.id, rule_table_t.c.version, rule_table_t.c.put_at, rule_table_t.c.put_by)
        query = sa.select(*columns).order_by(rule_table_t.c.id.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [_rule_table(r, None) for r in (await conn.execute(query)).all()]

    async def handovers(self, *, team: str | None, limit: int) -> list[HandoverRecord]:
        query = sa.select(handover_t).order_by(handover_t.c.id.desc()).limit(limit)
        if team is not None:
            query = query.where(handover_t.c.team == team)
        async with self._engine.connect() as conn:
            return [_handover(r) for r in (await conn.execute(query)).all()]

    async def events_of_type(self, type_name: str, *, limit: int, newest_first: bool = False) -> list[StoredEvent]:
        order = event_t.c.seq.desc() if newest_first else event_t.c.seq
        query = sa.select(event_t).where(event_t.c.type == type_name).order_by(order).limit(limit)
        async with self._engine.connect() as conn:
            return [_event(r) for r in (await conn.execute(query)).all()]

    # -- loading incidents -------------------------------------------------------------------

    async def load_open(self, *, page: int | None = None) -> list[Incident]:
        """Every open incident, in id order, read ``page`` incidents at a time.

        Paging keeps only one page of rows alive at once, and equal values (team names, states,
        times, deadlines, escalation chains) are shared among the incidents built (see
        :class:`_Hydrator`), so the incidents loaded at a restart take about the memory they took
        when they were built live.
        """
        async with self._engine.connect() as conn:
            return await _load_open(conn, page or _OPEN_PAGE)

    async def open_state(self, types: Collection[str]) -> tuple[int, list[Incident], list[StoredEvent]]:
        """At one instant: the last seq, every open incident, and their events of ``types`` (in seq order).

        One ``REPEATABLE READ`` transaction on PostgreSQL, so the three agree while a writer elsewhere
        commits (a replica serving a board for a township hosted on another replica reads it so).
        Reads only; the store need not be open.
        """
        async with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
            last_seq = int((await conn.execute(sa.select(sa.func.max(event_t.c.seq)))).scalar() or 0)
            incidents = await _load_open(conn, _OPEN_PAGE)
            events = await _events_of_incidents(conn, [i.id for i in incidents], types)
            await conn.rollback()
        return last_seq, incidents, events

    async def events_of_incidents(self, incident_ids: Collection[int], types: Collection[str]) -> list[StoredEvent]:
        async with self._engine.connect() as conn:
            return await _events_of_incidents(conn, incident_ids, types)

    async def load(self, incident_ids: Collection[int]) -> dict[int, Incident]:
        found: dict[int, Incident] = {}
        try:
            async with self._engine.connect() as conn:
                for chunk in _chunks(list(incident_ids)):
                    incidents = await _hydrate(conn, lambda q, chunk=chunk: q.where(incident_t.c.id.in_(chunk)))
                    found.update((i.id, i) for i in incidents)
        except Exception as exc:  # noqa: BLE001 - translated: the caller gets no SQL and no parameters
            log.warning("loading incidents failed: %s", exc)
            raise _translate(exc, "loading incidents") from None
        return found

    async def find_reports(self, report_ids: Collection[str], *, writer: bool = True) -> dict[str, int]:
        if self._sqlite is not None:  # the writer's thread runs one call at a time: any caller may queue there
            try:
                return await self._sqlite.run(functools.partial(_find_reports_sqlite, report_ids=list(report_ids)))
            except Exception as exc:  # noqa: BLE001 - translated: the caller gets no SQL and no parameters
                log.warning("looking up report ids failed: %s", exc)
                raise _translate(exc, "looking up report ids") from None
        try:
            if not writer:  # a reader beside the writer: a pooled connection, never the writer's own
                async with self._engine.connect() as conn:
                    return await _find_reports(conn, report_ids)
            async with self._writing() as conn:
                try:
                    found = await _find_reports(conn, report_ids)
                except Exception:
                    await self._recover(conn)
                    raise
                await conn.rollback()  # end the read transaction so the next batch sees fresh data
                return found
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - translated: the caller gets no SQL and no parameters
            log.warning("looking up report ids failed: %s", exc)
            raise _translate(exc, "looking up report ids") from None

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
        if where.place:
            conditions.append(incident_t.c.place == where.place)
        if where.team:
            conditions.append(
                incident_t.c.id.in_(sa.select(assignment_t.c.incident_id).where(assignment_t.c.team == where.team))
            )
        if where.ids:
            conditions.append(incident_t.c.id.in_(list(where.ids)))
        if where.categories:
            conditions.append(incident_t.c.category.in_(list(where.categories)))
        if where.reporter_kinds:
            conditions.append(incident_t.c.reporter_kind.in_(list(where.reporter_kinds)))
        if where.reported_from is not None:
            conditions.append(incident_t.c.reported_at >= where.reported_from)
        if where.reported_before is not None:
            conditions.append(incident_t.c.reported_at < where.reported_before)
        async with self._engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(incident_t).where(*conditions))).scalar()
            page = await _hydrate(
                conn, lambda q: q.where(*conditions).order_by(incident_t.c.id.desc()).limit(limit).offset(offset)
            )
            return page, int(total or 0)

    async def timeline(self, incident_id: int) -> list[StoredEvent]:
        query = sa.select(event_t).where(event_t.c.incident_id == incident_id).order_by(event_t.c.seq)
        async with self._engine.connect() as conn:
            return [_event(r) for r in (await conn.execute(query)).all()]

    async def briefing(self, *, start: datetime, end: datetime, by: briefing.Unit) -> briefing.Briefing:
        return await briefing.compute(self._engine, start=start, end=end, by=by)

    async def assessment(self, *, period: figures.Period, table: ScoringTable) -> Assessment:
        return await assess(self._engine, period=period, table=table)

    async def store_scoring_text(self, *, body: str, version: str, at: datetime) -> str:
        return await store_scoring_text(self._engine, body=body, version=version, at=at)

    async def scoring_tables(self) -> list[tuple[int, ScoringPutInForce]]:
        return await stored_scoring_tables(self._engine)

    async def briefing_document(self, *, township: str, period: figures.Period) -> figures.Document:
        return await figures.document(self._engine, township=township, period=period)

    async def incidents_behind(
        self, *, start: datetime, end: datetime, by: figures.Unit, unit: str | None, figure: figures.Figure
    ) -> list[figures.IncidentLine]:
        return await figures.incidents_behind(self._engine, start=start, end=end, by=by, unit=unit, figure=figure)

    async def events_since(self, seq: int, *, limit: int) -> list[StoredEvent]:
        query = sa.select(event_t).where(event_t.c.seq > seq).order_by(event_t.c.seq).limit(limit)
        async with self._engine.connect() as conn:
            return [_event(r) for r in (await conn.execute(query)).all()]

    # -- writing -----------------------------------------------------------------------------

    async def commit(self, changes: Changes) -> None:
        try:
            if self._sqlite is not None:
                # One call on the writer's thread: the rows are built, written and committed there.
                await self._sqlite.run(functools.partial(_commit_sqlite, changes=changes))
            else:
                async with self._writing() as conn:
                    try:
                        async with conn.begin():
                            await self._write(conn, _rows(changes))
                    except Exception:
                        await self._recover(conn)
                        raise
        except LeaseLost:
            raise
        except (sa.exc.IntegrityError, sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError) as exc:
            message = str(getattr(exc, "orig", None) or exc)
            if "report_key" in message or "report_id" in message:
                raise DuplicateReport("a report id of the batch is already stored") from None
            log.warning("batch commit refused by the database; nothing of it was written: %s", exc)
            raise CommitRefused("the database refused a value of the batch (IntegrityError)") from None
        except Exception as exc:  # noqa: BLE001 - translated: the caller gets no SQL and no parameters
            log.warning("batch commit failed; nothing of it was written: %s", exc)
            raise _translate(exc, "committing") from None

    async def _recover(self, conn: AsyncConnection) -> None:
        """After a failure on the writer connection: a broken one is replaced, an open transaction ended."""
        try:
            if conn.invalidated:
                if self._budget is None:  # a budget's connection goes back invalidated and is made anew
                    await self._reconnect()
            elif conn.in_transaction():
                await conn.rollback()
        except Exception as exc:  # noqa: BLE001 - the next use reconnects or fails in its own right
            log.warning("could not reset the writer connection: %s", exc)

    async def _write(self, conn: AsyncConnection, rows: _Rows) -> None:
        """A batch's statements inside its transaction (PostgreSQL; SQLite in memory).

        Whatever must be checked first in every writer transaction is the first statement here. Then what
        changed (one ``executemany`` per kind, present only when a batch moved something), then the new rows
        (:func:`_insert_all`: one ``COPY`` per table on PostgreSQL), then the township's records.
        """
        await check_fence(conn, self.fence)  # a replica's hub: first, is the township's lease still ours?
        if rows.incident_updates:
            await conn.execute(_INCIDENT_UPDATE, rows.incident_updates)
        if rows.assignment_updates:
            await conn.execute(_ASSIGNMENT_UPDATE, rows.assignment_updates)
        if rows.step_updates:
            await conn.execute(_STEP_UPDATE, rows.step_updates)
        if rows.reports_gone:  # before the inserts: a report that moves is deleted, then inserted again
            for chunk in _chunks([r["report_id"] for r in rows.reports_gone]):
                await conn.execute(report_t.delete().where(report_t.c.report_id.in_(chunk)))
        if rows.units:
            await conn.execute(_units_upsert(conn.dialect.name), rows.units)
        new = (
            (incident_t, _NEW_INCIDENT_COLUMNS, rows.incidents),
            (assignment_t, _NEW_ASSIGNMENT_COLUMNS, rows.assignments),
            (report_t, *_by_position(rows.reports)),
            (escalation_t, *_by_position(rows.steps)),
            (report_key_t, _NEW_REPORT_KEY_COLUMNS, rows.report_keys),
            (event_t, _NEW_EVENT_COLUMNS, rows.events),
        )
        await _insert_all(conn, [part for part in new if part[2]])
        if rows.handovers:
            await conn.execute(sa.insert(handover_t), rows.handovers)
        if rows.handover_acks:
            await conn.execute(_HANDOVER_ACK, rows.handover_acks)
        if rows.rosters:
            await conn.execute(sa.insert(roster_t), rows.rosters)
        if rows.rule_tables:
            await conn.execute(sa.insert(rule_table_t), rows.rule_tables)
        if rows.audit:
            await conn.execute(sa.insert(audit_t), rows.audit)
        if rows.events and self._notice is not None:  # the boards of other replicas: sent at COMMIT
            notice = orjson.dumps({"township": self._township, "seq": rows.events[-1][0]}).decode()
            await conn.execute(self._notice, {"notice": notice})

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """The writer's connection: its own, or (with a budget) one of the budget's for this batch alone."""
        if self._budget is None:
            if self._writer is None:
                raise StoreUnavailable("the store is not open")
            yield self._writer
            return
        if not self._opened:
            raise StoreUnavailable("the store is not open")
        async with self._engine.connect() as conn:
            yield conn

    async def _reconnect(self) -> None:
        try:
            if self._writer is not None:
                await self._writer.close()
        finally:
            self._writer = await self._writer_connection()

    async def _writer_connection(self) -> AsyncConnection:
        """The writer's own connection; on PostgreSQL with :class:`_WriterTimes` as its ``timestamptz`` codec."""
        conn = await self._engine.connect()
        if conn.dialect.name == "postgresql":
            try:
                raw = await conn.get_raw_connection()
                driver: asyncpg.Connection = raw.driver_connection
                times = _WriterTimes()
                await driver.set_type_codec(
                    "timestamptz", schema="pg_catalog", encoder=times.encode, decoder=times.decode, format="tuple"
                )
            except BaseException:
                await conn.close()
                raise
        return conn


#: PostgreSQL's ``timestamptz`` counts microseconds from this instant.
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class _WriterTimes:
    """The writer connection's ``timestamptz`` codec: a time as PostgreSQL's microseconds, remembered.

    asyncpg's own encoder does the same arithmetic in about 0.5 µs a value (two comparisons with infinity,
    a conversion to UTC, a subtraction); a batch binds some twenty times a report, most of them equal (its
    reports arrive together: one ``reported_at``, due times a rule's windows after it), so each distinct time
    is worked out once (a dict lookup; a datetime keeps its hash). At most ``_KEPT`` are remembered. A naive
    datetime is refused (``TypeError``), where asyncpg's encoder would take it as local time. The decoder
    gives what asyncpg's gives: an aware datetime in UTC (the dispatcher stores no infinite time).
    """

    _KEPT = 4096

    __slots__ = ("_micros",)

    def __init__(self) -> None:
        self._micros: dict[datetime, tuple[int]] = {}

    def encode(self, value: datetime) -> tuple[int]:
        found = self._micros.get(value)
        if found is None:
            if len(self._micros) >= self._KEPT:
                self._micros.clear()
            found = self._micros[value] = ((value - _PG_EPOCH) // _MICROSECOND,)
        return found

    @staticmethod
    def decode(value: tuple[int]) -> datetime:
        return _PG_EPOCH + timedelta(microseconds=value[0])


class WriterLock:
    """One writer per database: an exclusive ``flock`` on ``<file>.writer-lock`` beside a SQLite file, a
    session-level advisory lock on PostgreSQL (held by a connection of its own).

    Both go with the process: a killed dispatcher leaves no stale lock. A PostgreSQL connection that
    drops gives its lock back with it; the writer connection would then fail too and the process
    must be restarted. An in-memory SQLite database cannot be shared, so it takes no lock.
    """

    # An arbitrary 64-bit key that names "the dispatcher's writer" among the database's advisory locks.
    _ADVISORY_KEY = 0x64697370_77726974  # "disp" "writ"

    def __init__(self, *, fd: int | None = None, conn: AsyncConnection | None = None) -> None:
        self._fd = fd
        self._conn = conn

    @classmethod
    async def take(cls, engine: AsyncEngine) -> WriterLock:
        """Raises :class:`StoreLocked` (naming what holds it) when another process has the lock."""
        url = engine.url
        if url.get_backend_name() == "sqlite":
            database = url.database or ""
            if not database or database == ":memory:":
                return cls()
            return cls(fd=_flock_beside(database))
        conn = await engine.connect()
        try:
            taken = (await conn.execute(sa.select(sa.func.pg_try_advisory_lock(cls._ADVISORY_KEY)))).scalar()
            await conn.commit()  # the lock is the session's: no transaction is left open for it
        except BaseException:
            await conn.close()
            raise
        if not taken:
            await conn.close()
            raise StoreLocked(
                f"another dispatcher process is writing to database {url.database!r} on {url.host} "
                f"(it holds advisory lock {cls._ADVISORY_KEY}): one process per database"
            )
        return cls(conn=conn)

    @classmethod
    async def check_free(cls, url: str) -> None:
        """Raise :class:`StoreLocked` when another process writes to ``url`` now (taken and given back at once).

        For a clear message before a server starts; the store still takes the lock for real when it opens.
        """
        engine = build_engine(url, pool_size=1)
        try:
            await (await cls.take(engine)).release()
        finally:
            await engine.dispose()

    async def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor gives the flock back
            self._fd = None
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a dropped connection has given the lock back already
                await self._conn.close()
            self._conn = None


async def _load_open(conn: AsyncConnection, page: int) -> list[Incident]:
    hydrator = _Hydrator()
    found: list[Incident] = []
    after = 0
    open_ = incident_t.c.status.not_in(_FINAL)
    while True:
        query = _select(conn, incident_t, _INCIDENT_COLUMNS).where(open_, incident_t.c.id > after)
        rows = (await conn.execute(query.order_by(incident_t.c.id).limit(page))).all()
        if not rows:
            return found
        last = rows[-1][0]
        in_page = sa.and_(open_, incident_t.c.id > after, incident_t.c.id <= last)
        found.extend(await hydrator.build(conn, rows, in_page))
        if len(rows) < page:
            return found
        after = last


async def _events_of_incidents(
    conn: AsyncConnection, incident_ids: Collection[int], types: Collection[str]
) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    for chunk in _chunks(sorted(incident_ids)):
        query = (
            sa.select(event_t)
            .where(event_t.c.incident_id.in_(chunk), event_t.c.type.in_(sorted(types)))
            .order_by(event_t.c.seq)
        )
        events.extend(_event(r) for r in (await conn.execute(query)).all())
    return events


#: A table's new rows: the columns, and each row's values in their order.
_Insert = tuple[sa.Table, tuple[str, ...], Sequence[Sequence[Any]]]


async def _insert_all(conn: AsyncConnection, parts: Sequence[_Insert]) -> None:
    """Insert each table's rows, in the order given.

    On PostgreSQL each table's rows go in one binary ``COPY`` (:func:`_copy_all`). Elsewhere one
    ``executemany`` per table.
    """
    if not parts:
        return
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        if _can_copy(raw.dbapi_connection):
            await _copy_all(conn, parts)
            return
    for table, names, rows in parts:
        await conn.execute(sa.insert(table), [dict(zip(names, row, strict=True)) for row in rows])


def _by_position(rows: list[dict[str, Any]]) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """Rows made as dicts by one function (one key order) as their columns and value tuples."""
    if not rows:
        return (), []
    return tuple(rows[0]), [tuple(row.values()) for row in rows]


def _can_copy(adapter: Any) -> bool:
    """Whether SQLAlchemy's asyncpg adapter is the one :func:`_copy_all` was written against: it opens its
    transaction lazily, and ``_copy_all`` opens it through two private names. An adapter without them (another
    SQLAlchemy than the pinned one) gets the plain ``executemany`` path, with one warning."""
    if hasattr(adapter, "_transaction") and callable(getattr(adapter, "_start_transaction", None)):
        return True
    if not _COPY_WARNED:
        _COPY_WARNED.append(True)
        log.warning(
            "SQLAlchemy's asyncpg adapter (%s) has no _transaction/_start_transaction: new rows go by "
            "executemany, not COPY (slower, the same rows)",
            type(adapter).__qualname__,
        )
    return False


_COPY_WARNED: list[bool] = []


async def _copy_all(conn: AsyncConnection, parts: Sequence[_Insert]) -> None:
    """Each table's new rows as one binary ``COPY ... FROM STDIN`` on the connection's asyncpg driver, inside
    the transaction that ``conn`` has begun.

    ``COPY`` takes the rows as they are: asyncpg encodes each value with its column's binary codec, and the
    server stores it without parsing a statement's parameters. The former single statement (each column an
    array parameter, ``INSERT ... SELECT * FROM unnest(...)``) cost 1.6 times the dispatcher's CPU (asyncpg
    checks every array element against three abstract base classes, and the rows had to be turned into
    columns first) and a fifth more of the backend's, for three round trips fewer (benchmarks/README.md).
    Foreign keys are checked at the end of each ``COPY``: the incidents go before their assignments.

    SQLAlchemy's adapter opens its transaction lazily, at its first statement; this may be the first, so
    the transaction is opened here, and nothing is copied unless the driver is inside it. A failure that
    is not the server's answer (a value the codec cannot encode, a lost connection) leaves asyncpg's
    ``COPY`` aborted with a cancel request for the backend on its way, which could reach a later statement:
    the connection is invalidated (the writer makes a new one). A lost connection raises
    ``ConnectionResetError`` (the store is unreachable); a value, the codec's own error (refused).
    """
    raw = await conn.get_raw_connection()
    adapter: Any = raw.dbapi_connection
    driver: asyncpg.Connection = raw.driver_connection
    try:
        if adapter._transaction is None:  # SQLAlchemy 2's asyncpg adapter: its lazy BEGIN, made now
            await adapter._start_transaction()
        if not driver.is_in_transaction():
            raise RuntimeError("the writer's connection is not inside a transaction: nothing copied")
        for table, names, rows in parts:
            await driver.copy_records_to_table(table.name, records=rows, columns=names)
    except Exception as exc:
        if driver.is_closed():
            await conn.invalidate()
            raise ConnectionResetError("the connection to the database was lost while committing") from exc
        if not isinstance(exc, asyncpg.PostgresError):  # not the server's refusal: the connection is dropped
            await conn.invalidate()
        raise


def _flock_beside(database: str) -> int:
    """An exclusive ``flock`` on ``<database>.writer-lock``: the open descriptor, or :class:`StoreLocked`."""
    path = os.path.abspath(os.path.expanduser(database)) + ".writer-lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreLocked(
            f"another dispatcher process is writing to {database} (it holds {path}): one process per database"
        ) from None
    return fd


_INCIDENT_STATE = (
    "closing_loop",
    "closed_at",
    "extensions",
    "reworks",
    "status",
    "updated_at",
    "version",
    "priority",
    "queue",
    "report_count",
    "merged_into",
    "delivery_state",
    "delivery_attempts",
    "delivery_error",
    "delivery_settled_at",
)


@dataclass(slots=True)
class _Rows:
    """What one batch writes, table by table: rows of column values.

    Built once from the batch's :class:`Changes` (:func:`_rows`) and written by either backend's writer:
    each list is one statement for all its rows. Update rows name the row they change by ``b_`` keys.
    The rows every report makes (incidents, assignments, report keys, events) are tuples in the order of
    their table's ``_..._COLUMNS``, their times already as the backend binds them (:data:`_Time`); the
    others are dicts, their times still datetimes.
    """

    incidents: list[tuple[Any, ...]] = field(default_factory=list)  # new incidents
    assignments: list[tuple[Any, ...]] = field(default_factory=list)  # of new incidents, and teams added
    incident_updates: list[dict[str, Any]] = field(default_factory=list)
    assignment_updates: list[dict[str, Any]] = field(default_factory=list)
    reports_gone: list[dict[str, Any]] = field(default_factory=list)  # report ids to delete: split off or moved
    reports: list[dict[str, Any]] = field(default_factory=list)  # joined reports, new or moved here
    steps: list[dict[str, Any]] = field(default_factory=list)  # new escalation steps
    step_updates: list[dict[str, Any]] = field(default_factory=list)
    units: list[dict[str, Any]] = field(default_factory=list)
    report_keys: list[tuple[str]] = field(default_factory=list)
    handovers: list[dict[str, Any]] = field(default_factory=list)
    handover_acks: list[dict[str, Any]] = field(default_factory=list)
    rosters: list[dict[str, Any]] = field(default_factory=list)
    rule_tables: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)


#: How a backend binds a time of the tuple rows: PostgreSQL takes the datetime itself (:func:`_as_is`),
#: SQLite's writer its text (a :class:`_SqliteTimes` lookup).
_Time = Callable[[datetime | None], Any]


def _as_is(value: datetime | None) -> datetime | None:
    return value


def _rows(changes: Changes, time: _Time = _as_is, *, audit: bool = True) -> _Rows:
    """The rows ``changes`` writes: what is new, and of what changed only the columns a move changes.

    ``audit``: False leaves ``audit`` empty (SQLite's writer makes those rows by position itself)."""
    rows = _Rows()
    rows.incidents = [_incident_values(i, time) for i in changes.created]
    shared: _SharedDeadlines = {}
    rows.assignments = [
        _assignment_values(i.id, n, a, time, shared) for i in changes.created for n, a in enumerate(i.assignments)
    ]
    for _, after in changes.updated:
        row = {
            "b_id": after.id,
            "status": after.status.value,
            "updated_at": after.updated_at,
            "version": after.version,
            "priority": after.priority,
            "queue": after.queue,
            "report_count": after.report_count,
            "merged_into": after.merged_into,
            "closing_loop": _loop_json(after.loop),
            "closed_at": after.closed_at,
            "extensions": after.loop.extensions,
            "reworks": after.loop.reworks,
        }
        row.update(_delivery_columns(after))
        rows.incident_updates.append(row)
    for before, after in changes.updated:
        old = {a.team: a for a in before.assignments}
        for position, assignment in enumerate(after.assignments):
            previous = old.get(assignment.team)
            if previous is assignment:
                continue
            if previous is None:
                rows.assignments.append(_assignment_values(after.id, position, assignment, time, shared))
                continue
            row = {"b_incident": after.id, "b_team": assignment.team, "position": position}
            row.update(zip(_STATE_COLUMNS, _assignment_state(assignment, _as_is), strict=True))
            rows.assignment_updates.append(row)
    # (map and attrgetter: no generator made for each new incident, most of which have neither)
    fresh = [(None, i) for i in changes.created if i.reports or any(map(_ESCALATIONS, i.assignments))]
    _children_rows(rows, [*fresh, *changes.updated])
    rows.units = [
        {
            "officer_id": officer_id,
            "status": u.status.value,
            "lat": u.lat,
            "lon": u.lon,
            "position_at": u.position_at,
            "updated_at": u.position_at or _EPOCH,
        }
        for officer_id, u in changes.units.items()
    ]
    rows.report_keys = [(r,) for r in changes.report_ids]  # a retry of one breaks the key
    rows.handovers = [
        {
            "id": h.id,
            "team": h.team,
            "shift_id": h.shift_id,
            "at": h.at,
            "summary": h.summary,
            "incoming_lead": h.incoming_lead,
            "acknowledged_by": h.acknowledged_by,
            "acknowledged_at": h.acknowledged_at,
        }
        for h in changes.handovers
    ]
    # Only the first acknowledgement counts; the hub already answers a second one without a write.
    rows.handover_acks = [
        {"b_id": h.id, "acknowledged_by": h.acknowledged_by, "acknowledged_at": h.acknowledged_at}
        for h in changes.handover_acks
    ]
    rows.rosters = [
        {"version": r.version, "body": r.body, "loaded_at": r.loaded_at, "loaded_by": r.loaded_by}
        for r in changes.rosters
    ]
    rows.rule_tables = [
        {"id": t.id, "version": t.version, "body": t.body, "put_at": t.put_at, "put_by": t.put_by}
        for t in changes.rule_tables
    ]
    if audit:
        rows.audit = [audit_row(e) for e in changes.audit]
    rows.events = [(e.seq, e.incident_id, e.type, time(e.at), e.payload) for e in changes.events]
    return rows


_ESCALATIONS = operator.attrgetter("escalations")


def _children_rows(rows: _Rows, pairs: Sequence[tuple[Incident | None, Incident]]) -> None:
    """Escalation steps and joined reports that are new, changed or (reports, on a split) gone.

    A merged incident's reports move: the row of a report joining its new incident replaces the old one
    (deleted first, with the rows of reports split off, before any report row is inserted).
    """
    gone: set[str] = set()
    for before, after in pairs:
        old_steps = {(a.team, e.kind, e.step): e for a in before.assignments for e in a.escalations} if before else {}
        for assignment in after.assignments:
            for e in assignment.escalations:
                previous = old_steps.get((assignment.team, e.kind, e.step))
                if previous is None:
                    rows.steps.append(_escalation_row(after.id, assignment.team, e))
                elif previous != e:
                    rows.step_updates.append(
                        {
                            "b_incident": after.id,
                            "b_team": assignment.team,
                            "b_kind": e.kind,
                            "b_step": e.step,
                            "state": e.state.value,
                            "settled_at": e.settled_at,
                        }
                    )
        old_reports = {r.report.report_id for r in before.reports} if before else set()
        now_reports = {r.report.report_id for r in after.reports}
        for position, attached in enumerate(after.reports, start=1):
            if attached.report.report_id not in old_reports:
                rows.reports.append(_report_row(after.id, position, attached))
        gone.update(old_reports - now_reports)
    gone.update(r["report_id"] for r in rows.reports)
    rows.reports_gone = [{"report_id": r} for r in sorted(gone)]


def _escalation_row(incident_id: int, team: str, e: Escalation) -> dict[str, Any]:
    return {
        "incident_id": incident_id,
        "team": team,
        "kind": e.kind,
        "step": e.step,
        "level": e.level,
        "due_at": e.due_at,
        "state": e.state.value,
        "settled_at": e.settled_at,
    }


def _report_row(incident_id: int, position: int, attached: AttachedReport) -> dict[str, Any]:
    r = attached.report
    return {
        "report_id": r.report_id,
        "incident_id": incident_id,
        "position": position,
        "category": r.category,
        "description": r.description,
        "zone": r.zone,
        "lat": r.lat,
        "lon": r.lon,
        "severity": r.severity,
        "reporter": r.reporter,
        "reporter_kind": r.reporter_kind,
        "exercise": r.exercise,
        "occurred_at": r.occurred_at,
        "attached_at": attached.at,
        "merged_from": attached.merged_from,
        **_field_columns(r),
    }


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


#: The columns of a new incident's row, in the order :func:`_incident_values` gives them.
_NEW_INCIDENT_COLUMNS = (
    "id",
    "report_id",
    "category",
    "reported_category",
    "description",
    "zone",
    "zones",
    "lat",
    "lon",
    "severity",
    "reporter",
    "reporter_kind",
    "exercise",
    "occurred_at",
    "status",
    "module",
    "queue",
    "priority",
    "rule_id",
    "table_version",
    "handover",
    "escalation",
    "reported_at",
    "updated_at",
    "version",
    "report_count",
    "merged_into",
    "ack_within_s",
    "arrive_within_s",
    "resolve_within_s",
    "resolve_within_work",
    "closing_loop",
    "closed_at",
    "extensions",
    "reworks",
    "delivery_state",
    "delivery_attempts",
    "delivery_error",
    "delivery_settled_at",
    "place",
    "accuracy_m",
    "photos",
)


def _incident_values(incident: Incident, time: _Time) -> tuple[Any, ...]:
    report = incident.report
    promises = incident.promises
    resolve = promises.resolve_within
    loop = incident.loop
    d = incident.delivery
    return (
        incident.id,
        report.report_id,
        incident.category,
        report.category,
        report.description,
        report.zone,
        ",".join(incident.zones),
        report.lat,
        report.lon,
        report.severity,
        report.reporter,
        report.reporter_kind,
        report.exercise,
        time(report.occurred_at),
        incident.status._value_,
        incident.module,
        incident.queue,
        incident.priority,
        incident.rule_id,
        incident.table_version,
        incident.handover,
        _escalation_json(incident.escalation),
        time(incident.reported_at),
        time(incident.updated_at),
        incident.version,
        incident.report_count,
        incident.merged_into,
        _seconds(promises.ack_within),
        _seconds(promises.arrive_within),
        resolve.total_seconds() if isinstance(resolve, timedelta) else None,
        str(resolve) if isinstance(resolve, WorkSpan) else None,
        _loop_json(loop),
        time(incident.closed_at),
        loop.extensions if loop.requests else 0,  # (most incidents have asked nothing: no count to make)
        loop.reworks if loop.verifications else 0,
        d.state._value_ if d else None,
        d.attempts if d else 0,
        (d.last_error or "")[:512] or None if d else None,
        time(d.settled_at) if d else None,
        report.place,
        report.accuracy_m,
        ",".join(report.photos) or None,
    )


@lru_cache(maxsize=256)
def _escalation_json(chain: tuple[EscalationTarget, ...]) -> str:
    """The chain as JSON; cached: every incident of a rule carries the rule's chain (immutable, hashable)."""
    return orjson.dumps(
        [{"after_s": t.after.total_seconds(), "level": t.level, "name": t.name, "title": t.title} for t in chain]
    ).decode()


_NO_LOOP = Loop()


def _loop_json(loop: Loop) -> str | None:
    """Closing the loop as JSON (None when nothing of it applies: the common case costs no text).

    A loop that holds only what its rule asked (no request, check or verification yet: every new
    incident's) is one of a few per rule table, so its text is cached.
    """
    if loop == _NO_LOOP:
        return None
    if not (loop.requests or loop.checks or loop.verifications):
        return _rule_loop_json(loop)
    return _loop_text(loop)


@lru_cache(maxsize=256)
def _rule_loop_json(loop: Loop) -> str:
    return _loop_text(loop)


def _loop_text(loop: Loop) -> str:
    window = loop.verify_within
    return orjson.dumps(
        {
            "verify_within": format_window(window) if window is not None else None,
            "max_extensions": loop.max_extensions,
            "extension_approver": loop.extension_approver,
            **loop.records(),
        }
    ).decode()


def _loop(text: str | None) -> Loop:
    if text is None:
        return _NO_LOOP
    data = orjson.loads(text)

    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value).astimezone(UTC) if value is not None else None

    def at(value: str) -> datetime:
        return datetime.fromisoformat(value).astimezone(UTC)

    return Loop(
        verify_within=parse_window(data["verify_within"]) if data["verify_within"] is not None else None,
        max_extensions=data["max_extensions"],
        extension_approver=data["extension_approver"],
        requests=tuple(
            Request(
                id=r["id"],
                kind=RequestKind(r["kind"]),
                team=r["team"],
                reason=r["reason"],
                until=at(r["until"]),
                state=RequestState(r["state"]),
                requested_by=r["requested_by"],
                requested_at=at(r["requested_at"]),
                needs=tuple(r["needs"]),
                approvals=tuple(Approval(role=a["role"], actor=a["actor"], at=at(a["at"])) for a in r["approvals"]),
                decided_at=when(r["decided_at"]),
                refusal=r["refusal"],
            )
            for r in data["requests"]
        ),
        checks=tuple(
            Deadline(
                kind=DeadlineKind(d["kind"]),
                due_at=at(d["due_at"]),
                state=DeadlineState(d["state"]),
                settled_at=when(d["settled_at"]),
            )
            for d in data["checks"]
        ),
        verifications=tuple(
            Verification(
                at=at(v["at"]),
                verifier=v["verifier"],
                passed=v["passed"],
                reason=v["reason"],
                photos=tuple(v["photos"]),
                flags=tuple(v["flags"]),
            )
            for v in data["verifications"]
        ),
    )


def _field_columns(report: Report) -> dict[str, Any]:
    """What the field app adds to a report: its place code, GPS accuracy and photos (comma-separated ids)."""
    return {"place": report.place, "accuracy_m": report.accuracy_m, "photos": ",".join(report.photos) or None}


def _delivery_columns(incident: Incident) -> dict[str, Any]:
    d = incident.delivery
    return {
        "delivery_state": d.state.value if d else None,
        "delivery_attempts": d.attempts if d else 0,
        "delivery_error": (d.last_error or "")[:512] or None if d else None,
        "delivery_settled_at": d.settled_at if d else None,
    }


def _seconds(window: timedelta | None) -> float | None:
    return None if window is None else window.total_seconds()


def _window(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


_KINDS = TEAM_DEADLINE_KINDS
_STATE_COLUMNS = (
    "state",
    "updated_at",
    "role",
    "officer",
    "tried",
    "waiting",
    *(f"{kind.value}_{column}" for kind in _KINDS for column in ("due_at", "state", "settled_at")),
    "acked_at",
    "arrived_at",
    "resolved_at",
)


#: A batch's deadline columns already made, by the identity of the deadlines' tuple: (that tuple, its columns).
#: A new incident's assignments share one tuple of deadlines (``open_incident``), so its columns are made once.
_SharedDeadlines = dict[int, tuple[tuple[Deadline, ...], tuple[Any, ...]]]


def _deadline_columns(deadlines: tuple[Deadline, ...], time: _Time) -> tuple[Any, ...]:
    """Due time, state and settled time of each team deadline kind (:data:`_KINDS`), None for a kind not held."""
    by_kind = {d.kind: d for d in deadlines}
    columns: list[Any] = []
    for kind in _KINDS:
        deadline = by_kind.get(kind)
        if deadline is None:
            columns += (None, None, None)
        else:
            columns += (time(deadline.due_at), _VALUES[deadline.state], time(deadline.settled_at))
    return tuple(columns)


def _assignment_state(assignment: Assignment, time: _Time, shared: _SharedDeadlines | None = None) -> tuple[Any, ...]:
    """The columns an assignment's moves change (:data:`_STATE_COLUMNS`): state, officer and each deadline.

    ``shared``: the batch's deadline columns made so far (same ``time``), to reuse and add to."""
    deadlines = assignment.deadlines
    if shared is None:
        kinds = _deadline_columns(deadlines, time)
    else:
        # By identity, the tuple kept beside its columns: an id is only unique while its object lives.
        found = shared.get(id(deadlines))
        if found is not None and found[0] is deadlines:
            kinds = found[1]
        else:
            kinds = _deadline_columns(deadlines, time)
            shared[id(deadlines)] = (deadlines, kinds)
    return (
        _VALUES[assignment.state],
        time(assignment.updated_at),
        _VALUES[assignment.role],
        assignment.officer,
        ",".join(assignment.tried),
        assignment.waiting,
        *kinds,
        time(assignment.acked_at),
        time(assignment.arrived_at),
        time(assignment.resolved_at),
    )


#: Enum members to their stored text: a dict lookup, where ``.value`` is a descriptor call on every row.
_VALUES: dict[Enum, str] = {member: member.value for enum in (AssignmentState, Role, DeadlineState) for member in enum}
#: The columns of a new assignment's row, in the order :func:`_assignment_values` gives them.
_NEW_ASSIGNMENT_COLUMNS = ("incident_id", "team", "position", "dispatched_at", *_STATE_COLUMNS)


def _assignment_values(
    incident_id: int, position: int, assignment: Assignment, time: _Time, shared: _SharedDeadlines | None = None
) -> tuple[Any, ...]:
    return (
        incident_id,
        assignment.team,
        position,
        time(assignment.dispatched_at),
        *_assignment_state(assignment, time, shared),
    )


_NEW_REPORT_KEY_COLUMNS = ("report_id",)
_NEW_EVENT_COLUMNS = ("seq", "incident_id", "type", "at", "payload")

_INCIDENT_UPDATE = (
    incident_t.update()
    .where(incident_t.c.id == sa.bindparam("b_id"))
    .values({key: sa.bindparam(key) for key in _INCIDENT_STATE})
)
_ASSIGNMENT_UPDATE = (
    assignment_t.update()
    .where(assignment_t.c.incident_id == sa.bindparam("b_incident"))
    .where(assignment_t.c.team == sa.bindparam("b_team"))
    .values({key: sa.bindparam(key) for key in ("position", *_STATE_COLUMNS)})
)
_STEP_UPDATE = (
    escalation_t.update()
    .where(escalation_t.c.incident_id == sa.bindparam("b_incident"))
    .where(escalation_t.c.team == sa.bindparam("b_team"))
    .where(escalation_t.c.kind == sa.bindparam("b_kind"))
    .where(escalation_t.c.step == sa.bindparam("b_step"))
    .values(state=sa.bindparam("state"), settled_at=sa.bindparam("settled_at"))
)
_HANDOVER_ACK = (
    handover_t.update()
    .where(handover_t.c.id == sa.bindparam("b_id"), handover_t.c.acknowledged_by.is_(None))
    .values(acknowledged_by=sa.bindparam("acknowledged_by"), acknowledged_at=sa.bindparam("acknowledged_at"))
)
_UNIT_COLUMNS = ("status", "lat", "lon", "position_at", "updated_at")


@lru_cache(maxsize=4)
def _units_upsert(dialect: str) -> Any:
    insert: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(unit_t)
    return statement.on_conflict_do_update(
        index_elements=[unit_t.c.officer_id], set_={c: statement.excluded[c] for c in _UNIT_COLUMNS}
    )


# -- SQLite: the same rows as plain sqlite3 statements, run on the writer's thread --------------------


def _commit_sqlite(conn: sqlite3.Connection, *, changes: Changes) -> None:
    transact(conn, _sqlite_steps(changes))


class _SqliteTimes(dict[datetime | None, str | None]):
    """A batch's times as SQLite's text: ``times[value]``, each distinct time formatted once (most of a batch's
    share a few), None as None. Its ``__getitem__`` is the batch's :data:`_Time`: a lookup that finds costs no
    Python frame (a 100-report batch looks up some 4,000 times)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(((None, None),))

    def __missing__(self, value: datetime) -> str:
        text = self[value] = _sqlite_time(value)
        return text


def _sqlite_steps(changes: Changes) -> list[Step]:
    """The statements of ``rows`` in the order :meth:`SqlIncidentStore._write` runs them, times as text.

    New rows are by position, each table's as one :class:`Insert` (one JSON text, see ``sqlite_writer.write``;
    bound by position where they cannot go so); the rare updates keep their names (their keys are ``b_`` ones).
    """
    times = _SqliteTimes()
    time = times.__getitem__
    rows = _rows(changes, time, audit=False)

    def insert(table: sa.Table, table_rows: list[dict[str, Any]]) -> Step:
        if not table_rows:
            return ("", ())
        names = tuple(table_rows[0])
        return (_sqlite_insert(table.name, names), _sqlite_values(table, names, table_rows, times))

    def insert_values(table: sa.Table, names: tuple[str, ...], table_rows: list[tuple[Any, ...]]) -> Step:
        return (_sqlite_insert(table.name, names), table_rows)

    def update(table: sa.Table, statement: str, table_rows: list[dict[str, Any]]) -> Step:
        return (statement, _sqlite_times(table, table_rows, times) if table_rows else ())

    return [
        insert_values(incident_t, _NEW_INCIDENT_COLUMNS, rows.incidents),
        update(incident_t, _SQLITE_INCIDENT_UPDATE, rows.incident_updates),
        insert_values(assignment_t, _NEW_ASSIGNMENT_COLUMNS, rows.assignments),
        update(assignment_t, _SQLITE_ASSIGNMENT_UPDATE, rows.assignment_updates),
        (_SQLITE_REPORT_DELETE, rows.reports_gone),
        insert(report_t, rows.reports),
        insert(escalation_t, rows.steps),
        update(escalation_t, _SQLITE_STEP_UPDATE, rows.step_updates),
        update(unit_t, _SQLITE_UNITS_UPSERT, rows.units),
        insert_values(report_key_t, _NEW_REPORT_KEY_COLUMNS, rows.report_keys),
        insert(handover_t, rows.handovers),
        update(handover_t, _SQLITE_HANDOVER_ACK, rows.handover_acks),
        insert(roster_t, rows.rosters),
        insert(rule_table_t, rows.rule_tables),
        insert_values(audit_t, AUDIT_COLUMNS, [audit_values(e, time(e.at)) for e in changes.audit]),
        insert_values(event_t, _NEW_EVENT_COLUMNS, rows.events),
    ]


def _sqlite_time(value: datetime) -> str:
    """A time as SQLite stores it (:class:`UtcDateTime`): UTC text with microseconds."""
    zone = value.tzinfo
    if zone is not UTC:
        if zone is None:
            raise ValueError("naive datetime refused: pass timezone-aware UTC times")
        value = value.astimezone(UTC)
    # Without its "+00:00": the same text as the naive copy's, without making the copy.
    return value.isoformat(" ", "microseconds")[:-6]


def _sqlite_values(
    table: sa.Table, names: tuple[str, ...], rows: list[dict[str, Any]], cache: _SqliteTimes
) -> list[list[Any]]:
    """Each row's values in the order of ``names`` (its keys), time columns as SQLite's text.

    Every row of a list is made by one function, from one literal, so its keys come in one order; a row
    with more or fewer keys is refused rather than written into the wrong columns.
    """
    timed = [n for n, name in enumerate(names) if name in _TIME_COLUMNS[table.name]]
    values: list[list[Any]] = []
    for row in rows:
        if len(row) != len(names):
            raise ValueError(f"rows of {table.name} with different columns: {sorted(row)} and {sorted(names)}")
        line = list(row.values())
        for n in timed:
            line[n] = cache[line[n]]
        values.append(line)
    return values


def _sqlite_times(table: sa.Table, rows: list[dict[str, Any]], cache: _SqliteTimes) -> list[dict[str, Any]]:
    """``rows`` with their time columns as SQLite's text (changed in place: the rows are this batch's own)."""
    names = [name for name in rows[0] if name in _TIME_COLUMNS[table.name]]
    if names:
        for row in rows:
            for name in names:
                row[name] = cache[row[name]]
    return rows


@lru_cache(maxsize=64)
def _sqlite_insert(table: str, names: tuple[str, ...]) -> Insert:
    """New rows of ``table`` by position; the columns that may hold floats are its ``Float`` ones."""
    return Insert(table, names, tuple(n for n, name in enumerate(names) if name in _FLOAT_COLUMNS[table]))


def _sqlite_update(table: sa.Table, columns: Sequence[str], where: dict[str, str], extra: str = "") -> str:
    """``UPDATE table SET column = :column ... WHERE key = :b_key ...`` (``where``: column → parameter)."""
    assigned = ", ".join(f'"{c}" = :{c}' for c in columns)
    matched = " AND ".join(f'"{c}" = :{p}' for c, p in where.items())
    return f'UPDATE "{table.name}" SET {assigned} WHERE {matched}{extra}'


_TIME_COLUMNS = {
    table.name: frozenset(c.name for c in table.columns if isinstance(c.type, UtcDateTime))
    for table in SQLModel.metadata.tables.values()
}
_FLOAT_COLUMNS = {
    table.name: frozenset(c.name for c in table.columns if isinstance(c.type, sa.Float))
    for table in SQLModel.metadata.tables.values()
}
_SQLITE_INCIDENT_UPDATE = _sqlite_update(incident_t, _INCIDENT_STATE, {"id": "b_id"})
_SQLITE_ASSIGNMENT_UPDATE = _sqlite_update(
    assignment_t, ("position", *_STATE_COLUMNS), {"incident_id": "b_incident", "team": "b_team"}
)
_SQLITE_STEP_UPDATE = _sqlite_update(
    escalation_t,
    ("state", "settled_at"),
    {"incident_id": "b_incident", "team": "b_team", "kind": "b_kind", "step": "b_step"},
)
_SQLITE_HANDOVER_ACK = _sqlite_update(
    handover_t, ("acknowledged_by", "acknowledged_at"), {"id": "b_id"}, " AND acknowledged_by IS NULL"
)
_SQLITE_REPORT_DELETE = f'DELETE FROM "{report_t.name}" WHERE report_id = :report_id'
_SQLITE_UNITS_UPSERT = (
    f'INSERT INTO "{unit_t.name}" ("officer_id", ' + ", ".join(f'"{c}"' for c in _UNIT_COLUMNS) + ") "
    "VALUES (:officer_id, " + ", ".join(f":{c}" for c in _UNIT_COLUMNS) + ")"
    " ON CONFLICT (officer_id) DO UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in _UNIT_COLUMNS)
)


async def _find_reports(conn: AsyncConnection, report_ids: Collection[str]) -> dict[str, int]:
    """Each known report id's incident now: the incident it opened, or the one it joined (or was merged into)."""
    found: dict[str, int] = {}
    for chunk in _chunks(list(report_ids)):
        query = sa.select(incident_t.c.report_id, incident_t.c.id).where(incident_t.c.report_id.in_(chunk))
        found.update({r: i for r, i in (await conn.execute(query)).all()})
        joined = sa.select(report_t.c.report_id, report_t.c.incident_id).where(report_t.c.report_id.in_(chunk))
        found.update({r: i for r, i in (await conn.execute(joined)).all()})
    return found


def _find_reports_sqlite(conn: sqlite3.Connection, *, report_ids: list[str]) -> dict[str, int]:
    """The incident holding each of ``report_ids`` that is stored (first reports, then joined ones)."""
    found: dict[str, int] = {}
    for chunk in _chunks(report_ids):
        marks = ", ".join("?" * len(chunk))
        for table, incident in ((incident_t.name, "id"), (report_t.name, "incident_id")):
            query = f'SELECT report_id, "{incident}" FROM "{table}" WHERE report_id IN ({marks})'
            found.update(conn.execute(query, chunk).fetchall())
    return found


# Loading runs once per assignment at start (100,000 deadlines and more): enum lookups by plain dicts
# keep it out of Enum.__call__.
_DEADLINE_STATES = {s.value: s for s in DeadlineState}
_ROLES = {r.value: r for r in Role}
_ASSIGNMENT_STATES = {s.value: s for s in AssignmentState}


def _handover(row: Any) -> HandoverRecord:
    return HandoverRecord(
        id=row.id,
        team=row.team,
        shift_id=row.shift_id,
        at=row.at,
        summary=row.summary,
        incoming_lead=row.incoming_lead,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
    )


def _rule_table(row: Any, body: str | None) -> RuleTableRecord:
    return RuleTableRecord(id=row.id, version=row.version, put_at=row.put_at, put_by=row.put_by, body=body)


def _event(row: Any) -> StoredEvent:
    return StoredEvent(seq=row.seq, incident_id=row.incident_id, type=row.type, at=row.at, payload=row.payload)


class _Hydrator:
    """Builds incidents from their rows, sharing equal values among everything it builds.

    Every value is immutable, so incidents may share them: the team names, states and routing
    strings, the times (the assignments of one report share their dispatch and due times), the
    deadlines of an assignment (equal for every team sent at once), escalation steps, the escalation
    chain and the promised windows (equal for every incident of a rule). One hydrator serves one
    load; its tables are dropped with it. Rows are plain tuples in the order of the ``_*_COLUMNS``
    below, with times as the driver gives them (see :func:`_select`).
    """

    def __init__(self) -> None:
        self._values: dict[Any, Any] = {}
        self._times: dict[Any, datetime] = {}
        self._deadlines: dict[tuple[Any, ...], tuple[Deadline, ...]] = {}
        self._steps: dict[tuple[Any, ...], Escalation] = {}
        self._chains: dict[str, tuple[EscalationTarget, ...]] = {}
        self._promises: dict[tuple[Any, ...], Promises] = {}
        self._lists: dict[str, tuple[str, ...]] = {}

    def share(self, value: Any) -> Any:
        """The first equal string seen in this load (``None`` as it is)."""
        if value is None:
            return None
        return self._values.setdefault(value, value)

    def time(self, value: Any) -> Any:
        """An aware UTC datetime from a stored time (SQLite's text, PostgreSQL's timestamptz), shared."""
        if value is None:
            return None
        found = self._times.get(value)
        if found is None:
            if isinstance(value, str):
                found = datetime.fromisoformat(value).replace(tzinfo=UTC)
            else:
                found = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
            found = self._times[value] = self._times.setdefault(found, found)
        return found

    def listed(self, text: str) -> tuple[str, ...]:
        found = self._lists.get(text)
        if found is None:
            found = self._lists[text] = tuple(self.share(x) for x in text.split(",") if x)
        return found

    def chain(self, text: str) -> tuple[EscalationTarget, ...]:
        found = self._chains.get(text)
        if found is None:
            found = self._chains[text] = tuple(
                EscalationTarget(
                    after=timedelta(seconds=t["after_s"]),
                    level=self.share(t["level"]),
                    name=self.share(t["name"]),
                    title=self.share(t["title"]),
                )
                for t in orjson.loads(text)
            )
        return found

    def promises(self, key: tuple[Any, ...]) -> Promises:
        found = self._promises.get(key)
        if found is None:
            ack, arrive, resolve, resolve_work = key
            found = self._promises[key] = Promises(
                ack_within=_window(ack),
                arrive_within=_window(arrive),
                resolve_within=parse_work_span(resolve_work) if resolve_work is not None else _window(resolve),
            )
        return found

    def deadlines(self, key: tuple[Any, ...]) -> tuple[Deadline, ...]:
        """The deadlines of an assignment from its nine deadline columns (due, state, settled per kind)."""
        found = self._deadlines.get(key)
        if found is None:
            found = self._deadlines[key] = tuple(
                Deadline(
                    kind=kind,
                    due_at=self.time(key[n]),
                    state=_DEADLINE_STATES[key[n + 1]],
                    settled_at=self.time(key[n + 2]),
                )
                for n, kind in zip((0, 3, 6), _KINDS, strict=True)
                if key[n] is not None
            )
        return found

    def step(self, key: tuple[Any, ...]) -> Escalation:
        """An escalation step from (kind, step, level, due_at, state, settled_at)."""
        found = self._steps.get(key)
        if found is None:
            kind, step, level, due_at, state, settled_at = key
            found = self._steps[key] = Escalation(
                kind=self.share(kind),
                step=step,
                level=self.share(level),
                due_at=self.time(due_at),
                state=_ESCALATION_STATES[state],
                settled_at=self.time(settled_at),
            )
        return found

    def attached(self, row: tuple[Any, ...]) -> AttachedReport:
        (_, _, report_id, category, description, zone, lat, lon, severity, reporter, reporter_kind, exercise,
         occurred_at, attached_at, merged_from, place, accuracy_m, photos) = row  # fmt: skip
        report = Report(
            report_id=report_id,
            category=self.share(category),
            description=description,
            zone=self.share(zone),
            lat=lat,
            lon=lon,
            severity=severity,
            reporter=reporter,
            reporter_kind=self.share(reporter_kind),
            exercise=exercise,
            occurred_at=self.time(occurred_at),
            place=place,
            accuracy_m=accuracy_m,
            photos=tuple(photos.split(",")) if photos else (),
        )
        return AttachedReport(report=report, at=self.time(attached_at), merged_from=merged_from)

    def assignment(self, row: tuple[Any, ...], steps: tuple[Escalation, ...]) -> Assignment:
        _, team, _, role, state, dispatched_at, updated_at = row[:7]
        officer, tried, waiting, acked_at, arrived_at, resolved_at = row[16:]
        return Assignment(
            team=self.share(team),
            role=_ROLES[role],
            state=_ASSIGNMENT_STATES[state],
            dispatched_at=self.time(dispatched_at),
            updated_at=self.time(updated_at),
            deadlines=self.deadlines(row[7:16]),
            officer=self.share(officer),
            tried=self.listed(tried),
            waiting=waiting,
            escalations=steps,
            acked_at=self.time(acked_at),
            arrived_at=self.time(arrived_at),
            resolved_at=self.time(resolved_at),
        )

    async def build(self, conn: AsyncConnection, rows: Sequence[Any], in_page: Any = None) -> list[Incident]:
        """The incidents of ``rows`` (from :func:`_select` of the incident columns) with their children.

        ``in_page`` (a condition on the incident table that selects exactly ``rows``) reads each kind
        of child in one query; without it the children are read by ``IN`` lists of ids.
        """
        if not rows:
            return []
        assignments: dict[int, list[Any]] = {}
        steps: dict[tuple[int, str], list[Escalation]] = {}
        joined: dict[int, list[Any]] = {}
        for a in await _children(conn, assignment_t, _ASSIGNMENT_COLUMNS, rows, in_page):
            assignments.setdefault(a[0], []).append(a)
        for e in await _children(conn, escalation_t, _ESCALATION_COLUMNS, rows, in_page):
            steps.setdefault((e[0], e[1]), []).append(self.step(e[2:]))
        many = [r for r in rows if r[_REPORT_COUNT] > 1]
        for j in await _children(conn, report_t, _REPORT_COLUMNS, many, in_page, joined=True):
            joined.setdefault(j[0], []).append(j)
        share, time = self.share, self.time
        incidents = []
        for row in rows:
            (incident_id, report_id, reported_category, description, zone, lat, lon, severity, reporter,
             reporter_kind, exercise, occurred_at, status, module, queue, zones, priority, rule_id, table_version,
             category, handover, escalation, reported_at, updated_at, version, _, merged_into, ack_within_s,
             arrive_within_s, resolve_within_s, delivery_state, delivery_attempts, delivery_error,
             delivery_settled_at, resolve_within_work, closing_loop, place, accuracy_m, photos,
             closed_at) = row  # fmt: skip
            incidents.append(
                Incident(
                    id=incident_id,
                    report=Report(
                        report_id=report_id,
                        category=share(reported_category),
                        description=description,
                        zone=share(zone),
                        lat=lat,
                        lon=lon,
                        severity=severity,
                        reporter=reporter,
                        reporter_kind=share(reporter_kind),
                        exercise=exercise,
                        occurred_at=time(occurred_at),
                        place=place,
                        accuracy_m=accuracy_m,
                        photos=tuple(photos.split(",")) if photos else (),
                    ),
                    status=_INCIDENT_STATUSES[status],
                    module=share(module),
                    queue=share(queue),
                    zones=self.listed(zones),
                    priority=priority,
                    rule_id=share(rule_id),
                    table_version=share(table_version),
                    category=share(category),
                    handover=share(handover),
                    escalation=self.chain(escalation),
                    reported_at=time(reported_at),
                    updated_at=time(updated_at),
                    version=version,
                    assignments=tuple(
                        self.assignment(a, tuple(sorted(steps.get((incident_id, a[1]), ()), key=_step_order)))
                        for a in sorted(assignments.get(incident_id, ()), key=_position)
                    ),
                    promises=self.promises((ack_within_s, arrive_within_s, resolve_within_s, resolve_within_work)),
                    reports=tuple(self.attached(j) for j in sorted(joined.get(incident_id, ()), key=_report_position)),
                    merged_into=merged_into,
                    loop=_loop(closing_loop),
                    delivery=Delivery(
                        department=handover,
                        state=DeliveryState(delivery_state),
                        attempts=delivery_attempts,
                        last_error=delivery_error,
                        settled_at=time(delivery_settled_at),
                    )
                    if delivery_state is not None and handover is not None
                    else None,
                    closed_at=time(closed_at),
                )
            )
        return incidents


_INCIDENT_COLUMNS = (
    "id", "report_id", "reported_category", "description", "zone", "lat", "lon", "severity", "reporter",
    "reporter_kind", "exercise", "occurred_at", "status", "module", "queue", "zones", "priority", "rule_id",
    "table_version", "category", "handover", "escalation", "reported_at", "updated_at", "version", "report_count",
    "merged_into", "ack_within_s", "arrive_within_s", "resolve_within_s", "delivery_state", "delivery_attempts",
    "delivery_error", "delivery_settled_at", "resolve_within_work", "closing_loop", "place", "accuracy_m", "photos",
    "closed_at",
)  # fmt: skip
_REPORT_COUNT = _INCIDENT_COLUMNS.index("report_count")
_ASSIGNMENT_COLUMNS = (
    "incident_id", "team", "position", "role", "state", "dispatched_at", "updated_at",
    *(f"{kind.value}_{column}" for kind in _KINDS for column in ("due_at", "state", "settled_at")),
    "officer", "tried", "waiting", "acked_at", "arrived_at", "resolved_at",
)  # fmt: skip
_ESCALATION_COLUMNS = ("incident_id", "team", "kind", "step", "level", "due_at", "state", "settled_at")
_REPORT_COLUMNS = (
    "incident_id", "position", "report_id", "category", "description", "zone", "lat", "lon", "severity", "reporter",
    "reporter_kind", "exercise", "occurred_at", "attached_at", "merged_from", "place", "accuracy_m", "photos",
)  # fmt: skip
_INCIDENT_STATUSES = {s.value: s for s in IncidentStatus}
_ESCALATION_STATES = {s.value: s for s in EscalationState}
_position = operator.itemgetter(2)  # of an assignment row
_report_position = operator.itemgetter(1)  # of a joined report's row
_step_order = operator.attrgetter("kind", "step")


def _select(conn: AsyncConnection, table: sa.Table, columns: Sequence[str]) -> sa.Select[Any]:
    """``SELECT columns`` with times as the driver returns them: the hydrator converts and shares them
    itself (one parse per distinct time instead of one per value)."""
    raw = sa.String() if conn.dialect.name == "sqlite" else sa.DateTime(timezone=True)
    return sa.select(
        *(
            sa.type_coerce(table.c[name], raw).label(name)
            if isinstance(table.c[name].type, UtcDateTime)
            else table.c[name]
            for name in columns
        )
    )


async def _children(
    conn: AsyncConnection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Any],
    in_page: Any,
    *,
    joined: bool = False,
) -> list[Any]:
    """The rows of ``table`` (assignments, escalation steps, joined reports) belonging to ``rows``."""
    if not rows:
        return []
    if in_page is not None:
        query = _select(conn, table, columns).join_from(table, incident_t, incident_t.c.id == table.c.incident_id)
        query = query.where(in_page)
        if joined:
            query = query.where(incident_t.c.report_count > 1)
        return list((await conn.execute(query)).all())
    found: list[Any] = []
    for chunk in _chunks([r[0] for r in rows]):
        query = _select(conn, table, columns).where(table.c.incident_id.in_(chunk))
        found.extend((await conn.execute(query)).all())
    return found


async def _hydrate(conn: AsyncConnection, query: Any) -> list[Incident]:
    """The incidents a query of the incident table selects (``query`` gets the columns to read)."""
    rows = (await conn.execute(query(_select(conn, incident_t, _INCIDENT_COLUMNS)))).all()
    return await _Hydrator().build(conn, rows)
