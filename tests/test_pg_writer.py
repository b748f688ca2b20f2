"""PostgreSQL's commit of a batch: the new rows go by ``COPY``, one per table, all inside the batch's transaction,
on a connection whose ``timestamptz`` codec is the store's own.

Each test is a way the writer's connection could break a guarantee: a batch half stored, a connection lost in
the middle taken for a refused value, a broken connection kept for the next batch, a time stored shifted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from dispatcher.core.incidents import Report
from dispatcher.sql_store import SqlIncidentStore, _WriterTimes
from dispatcher.store import CommitRefused, StoreUnavailable
from rules import RuleBook
from tests.conftest import HubRig, _asyncpg_dsn, drop_postgres_database, fresh_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_rig(bundled_rules: RuleBook) -> AsyncIterator[HubRig]:
    url = await fresh_postgres_database()
    rig = HubRig(url, bundled_rules, duplicate_radius_m=0.0)
    await rig.hub.start()
    try:
        yield rig
    finally:
        await rig.hub.stop()
        await drop_postgres_database(url)


def _report(report_id: str) -> Report:
    return Report(report_id=report_id, category="traffic.congestion", description="congestion", zone="five-way")


async def _writer_driver(rig: HubRig) -> asyncpg.Connection:
    store = rig.hub.store
    assert isinstance(store, SqlIncidentStore) and store._writer is not None
    raw = await store._writer.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


async def _stored(rig: HubRig, query: str) -> Any:
    conn = await asyncpg.connect(_asyncpg_dsn(rig.url))
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def test_a_batch_refused_at_its_last_table_leaves_no_row_in_the_tables_copied_before(pg_rig: HubRig) -> None:
    await pg_rig.hub.report(_report("first"), pg_rig.clock.now())
    writer = pg_rig.hub._writer
    next_seq = writer.next_seq
    writer.next_seq = 1  # the next batch's events take seqs already stored: the last COPY (events) is refused

    with pytest.raises(CommitRefused):
        await pg_rig.hub.report(_report("second"), pg_rig.clock.now())

    # The incident, its assignments and its report key were copied before the events: none of them stayed.
    assert await _stored(pg_rig, "SELECT count(*) FROM incident") == 1
    assert await _stored(pg_rig, "SELECT count(*) FROM report_key") == 1
    assert await _stored(pg_rig, "SELECT count(*) FROM assignment WHERE incident_id <> 1") == 0
    writer.next_seq = next_seq
    assert (await pg_rig.hub.report(_report("second"), pg_rig.clock.now())).created


async def test_a_connection_lost_between_two_copies_fails_the_batch_as_unreachable_and_the_next_one_stores(
    pg_rig: HubRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    await pg_rig.hub.report(_report("first"), pg_rig.clock.now())
    driver = await _writer_driver(pg_rig)
    pid = driver.get_server_pid()
    real_copy = type(driver).copy_records_to_table
    copies: list[str] = []

    async def copy_then_lose_the_connection(self: asyncpg.Connection, table_name: str, **options: Any) -> Any:
        copies.append(table_name)
        if len(copies) == 2:  # the incidents went; the backend is gone before the assignments
            admin = await asyncpg.connect(_asyncpg_dsn(pg_rig.url))
            try:
                assert await admin.fetchval("SELECT pg_terminate_backend($1, 10000)", pid)
            finally:
                await admin.close()
        return await real_copy(self, table_name, **options)

    # (asyncpg's connections have slots: the method is replaced on the class, which only the writer calls)
    monkeypatch.setattr(type(driver), "copy_records_to_table", copy_then_lose_the_connection)

    with pytest.raises(StoreUnavailable):
        await pg_rig.hub.report(_report("second"), pg_rig.clock.now())

    assert copies == ["incident", "assignment"]  # an outage is not bisected: one try
    assert await _stored(pg_rig, "SELECT count(*) FROM incident") == 1
    outcome = await pg_rig.hub.report(_report("second"), pg_rig.clock.now())  # on a new connection
    assert outcome.created
    assert (await _writer_driver(pg_rig)).get_server_pid() != pid
    assert await _stored(pg_rig, "SELECT count(*) FROM incident") == 2


async def test_a_value_no_codec_can_encode_drops_the_connection_and_fails_only_its_report(pg_rig: HubRig) -> None:
    """asyncpg aborts the ``COPY`` and sends a cancel request for the backend: the next batch takes a new one."""
    pid = (await _writer_driver(pg_rig)).get_server_pid()
    reports = [_report(f"r-{n}") for n in range(6)]
    reports.insert(3, Report(report_id="huge", category="traffic.congestion", description="x", severity=2**40))

    outcomes = await pg_rig.hub.report_many(reports, pg_rig.clock.now())

    refused = [r.report_id for r, o in zip(reports, outcomes, strict=True) if isinstance(o, BaseException)]
    assert refused == ["huge"]
    assert isinstance(outcomes[3], CommitRefused)
    assert (await _writer_driver(pg_rig)).get_server_pid() != pid
    assert await _stored(pg_rig, "SELECT count(*) FROM incident") == 6
    assert (await pg_rig.hub.report(_report("after"), pg_rig.clock.now())).created


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 6, 12, 8, 0, tzinfo=UTC),
        datetime(2026, 6, 12, 16, 0, 0, 123457, tzinfo=timezone(timedelta(hours=8))),  # the same day, in Beijing
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before PostgreSQL's epoch
        datetime(2000, 1, 1, tzinfo=UTC),
    ],
)
async def test_a_time_written_by_the_writer_reads_back_as_the_same_instant_through_asyncpgs_own_codec(
    pg_rig: HubRig, when: datetime
) -> None:
    report = Report(
        report_id="timed", category="traffic.congestion", description="x", zone="five-way", occurred_at=when
    )
    outcome = await pg_rig.hub.report(report, pg_rig.clock.now())

    stored = await _stored(pg_rig, f"SELECT occurred_at FROM incident WHERE id = {outcome.incident.id}")
    assert stored == when and stored.utcoffset() == timedelta(0)
    driver = await _writer_driver(pg_rig)  # and the writer's own decoder reads what asyncpg's would
    assert await driver.fetchval("SELECT occurred_at FROM incident WHERE id = $1", outcome.incident.id) == when


def test_the_writers_time_codec_counts_from_postgresqls_epoch_refuses_naive_times_and_keeps_a_bounded_memory() -> None:
    times = _WriterTimes()
    assert times.encode(datetime(2000, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == (1_000_005,)
    assert times.encode(datetime(2000, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))) == (0,)
    assert times.decode((-1,)) == datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    with pytest.raises(TypeError):
        times.encode(datetime(2026, 6, 12, 8, 0))  # naive: no instant to store
    start = datetime(2026, 6, 12, tzinfo=UTC)
    for n in range(3 * _WriterTimes._KEPT):
        when = start + timedelta(microseconds=n)
        assert times.decode(times.encode(when)) == when
    assert len(times._micros) <= _WriterTimes._KEPT


async def test_an_adapter_without_the_private_names_copy_needs_stores_the_same_rows_by_executemany(
    pg_rig: HubRig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another SQLAlchemy than the pinned one may not have the adapter's lazy-transaction internals: the writer
    then inserts as any other backend does, and says so once, instead of failing every batch."""
    from dispatcher import sql_store

    copies: list[str] = []
    driver = await _writer_driver(pg_rig)
    real_copy = type(driver).copy_records_to_table

    async def counting_copy(self: asyncpg.Connection, table_name: str, **options: Any) -> Any:
        copies.append(table_name)
        return await real_copy(self, table_name, **options)

    monkeypatch.setattr(type(driver), "copy_records_to_table", counting_copy)
    await pg_rig.hub.report(_report("by-copy"), pg_rig.clock.now())
    assert copies  # the pinned adapter: COPY

    copies.clear()
    real_can_copy = sql_store._can_copy
    monkeypatch.setattr(sql_store, "_can_copy", lambda adapter: real_can_copy(object()))  # an adapter without them
    monkeypatch.setattr(sql_store, "_COPY_WARNED", [])
    with caplog.at_level("WARNING", logger="dispatcher.sql_store"):
        outcomes = await pg_rig.hub.report_many([_report("plain-1"), _report("plain-2")], pg_rig.clock.now())

    assert all(not isinstance(o, BaseException) and o.created for o in outcomes)
    assert copies == []
    assert await _stored(pg_rig, "SELECT count(*) FROM incident") == 3
    assert await _stored(pg_rig, "SELECT count(*) FROM assignment") > 3
    assert sum("executemany, not COPY" in r.getMessage() for r in caplog.records) == 1


def test_the_pinned_adapter_class_has_what_copy_needs() -> None:
    """A version bump of SQLAlchemy that renames the adapter's internals fails here, not as a slower writer."""
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

    assert hasattr(AsyncAdapt_asyncpg_connection, "_transaction")  # a slot
    assert callable(getattr(AsyncAdapt_asyncpg_connection, "_start_transaction", None))


async def test_a_report_looked_up_beside_the_writers_commits_never_shares_the_writers_connection(
    pg_rig: HubRig,
) -> None:
    """``Hub.find_report`` (the Open311 token door) runs beside the writer: on the writer's own connection it met a
    batch being committed there, and asyncpg refused the second operation (``InterfaceError``: 503)."""
    import asyncio

    known = await pg_rig.hub.report(_report("known"), pg_rig.clock.now())

    async def look_up() -> None:
        for _ in range(40):
            assert await pg_rig.hub.find_report("known") == known.incident.id

    async def write(tag: str) -> None:
        for n in range(40):
            await pg_rig.hub.report(_report(f"{tag}-{n}"), pg_rig.clock.now())

    await asyncio.gather(look_up(), write("a"), look_up(), write("b"))
    assert await _stored(pg_rig, "SELECT count(*) FROM incident") == 81
