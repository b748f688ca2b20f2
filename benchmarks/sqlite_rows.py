"""The SQLite writer's Python per batch: building a batch's rows (``_sqlite_steps``), and binding them.

A hub on a virtual clock, on a throw-away SQLite database in a temporary directory, takes ``--batches`` batches
of ``--group`` reports (the intake benchmark's mix of rules: five, three and two teams), each with the audit entry
the single door adds per request (``--audit``: entries a batch, default one per report). The store's ``commit``
keeps each batch's :class:`Changes`. Then, on the captured batches only (no hub, no event loop):

- ``rows``: ``_sqlite_steps(changes)``, the rows and statements the writer's thread builds;
- ``rows+bind``: the same steps run (``sqlite_writer.write``: new rows as one JSON text a table) into an
  in-memory copy of the schema with no indexes or foreign keys, inside a transaction rolled back after each
  batch: the binding's Python and SQLite's row-building, without the disk;
- ``rows+executemany``: the same, every step bound row by row (``executemany``, the way before the JSON rows).

``--merge N`` joins each N captured batches into one (``--group 1 --merge 31``: a writer batch of the single
door, 31 reports, each with a time of its own). Each is repeated ``--rounds`` times over all captured batches;
printed: µs a report, best round and median.

    .venv/bin/python benchmarks/sqlite_rows.py
    .venv/bin/python benchmarks/sqlite_rows.py --group 1 --batches 620 --merge 31   # the single door's shape

Bounded: ``--batches`` at most 1,000, ``--group`` at most 500, ``--rounds`` at most 200.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import mixed_report

from dispatcher import sql_store, sqlite_writer
from dispatcher.alarm import ManualAlarm
from dispatcher.audit_entries import AuditEntry
from dispatcher.clock import VirtualClock
from dispatcher.feed import EventFeed
from dispatcher.hub import Hub
from dispatcher.settings import BUNDLED_TABLE
from dispatcher.sql_store import SqlIncidentStore
from dispatcher.store import Changes
from rules import compile_table, load_table


class CapturingStore(SqlIncidentStore):
    """The store, keeping every batch's changes once ``capturing`` is set."""

    def __init__(self, url: str) -> None:
        super().__init__(url, durable=False)
        self.captured: list[Changes] = []
        self.capturing = False

    async def commit(self, changes: Changes) -> None:
        await super().commit(changes)
        if self.capturing:
            self.captured.append(changes)


def _entry(at: datetime) -> AuditEntry:
    return AuditEntry(
        at=at,
        action="POST /api/v1/incidents",
        outcome=201,
        actor="intake-bench",
        township="demo",
        target="/api/v1/incidents",
        source="127.0.0.1",
    )


async def capture(path: str, args: argparse.Namespace) -> tuple[list[Changes], str]:
    clock = VirtualClock(datetime(2026, 6, 1, tzinfo=UTC))
    store = CapturingStore(f"sqlite+aiosqlite:///{path}")
    hub = Hub(
        store=store,
        rules=compile_table(load_table(BUNDLED_TABLE)),
        clock=clock,
        alarm=ManualAlarm(),
        feed=EventFeed(queue_size=1_000_000),
        duplicate_radius_m=0.0,
    )
    description = "x" * args.description_bytes
    await hub.start()
    try:
        store.capturing = True
        n = 0
        for _ in range(args.batches):
            clock.advance(timedelta(milliseconds=7))
            outcomes = await hub.report_many([mixed_report(n + k, description) for k in range(args.group)], clock.now())
            n += args.group
            if any(isinstance(o, BaseException) for o in outcomes):
                raise SystemExit("a report failed")
    finally:
        await hub.stop()
    audit = args.group if args.audit is None else args.audit
    for changes in store.captured:
        at = changes.events[0].at if changes.events else clock.now()
        changes.audit = [_entry(at) for _ in range(audit)]
    merged = [
        _joined(store.captured[start : start + args.merge]) for start in range(0, len(store.captured), args.merge)
    ]
    return merged, path


def _joined(parts: list[Changes]) -> Changes:
    joined = Changes()
    for part in parts:
        joined.created += part.created
        joined.updated += part.updated
        joined.events += part.events
        joined.units.update(part.units)
        joined.report_ids += part.report_ids
        joined.audit += part.audit
    return joined


def schema_copy(path: str) -> sqlite3.Connection:
    """An in-memory database with the tables of ``path`` (no index, no foreign key: only the binding counts)."""
    source = sqlite3.connect(path)
    tables = [
        row[0]
        for row in source.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    ]
    source.close()
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for sql in tables:
        conn.execute(sql)
    return conn


def rounds(function: Any, batches: list[Changes], count: int) -> list[float]:
    spent: list[float] = []
    for _ in range(count):
        start = time.thread_time()
        for changes in batches:
            function(changes)
        spent.append(time.thread_time() - start)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", type=int, default=100, help="reports per batch")
    parser.add_argument("--batches", type=int, default=30, help="batches captured")
    parser.add_argument("--rounds", type=int, default=40, help="repetitions over the captured batches")
    parser.add_argument("--audit", type=int, default=None, help="audit entries a batch (default: one a report)")
    parser.add_argument("--merge", type=int, default=1, help="captured batches joined into one")
    parser.add_argument("--description-bytes", type=int, default=120)
    args = parser.parse_args()
    if not 1 <= args.group <= 500 or not 1 <= args.batches <= 1_000 or not 1 <= args.rounds <= 200:
        parser.error("--group 1-500, --batches 1-1000, --rounds 1-200")
    if not 1 <= args.merge <= args.batches:
        parser.error("--merge 1 to --batches")
    with tempfile.TemporaryDirectory(prefix="bench_sqlite_rows_") as scratch:
        batches, path = asyncio.run(capture(str(Path(scratch) / "rows.db"), args))
        conn = schema_copy(path)
    reports = sum(len(c.report_ids) for c in batches)

    def bind(changes: Changes) -> None:
        conn.execute("BEGIN")
        sqlite_writer.write(conn, sql_store._sqlite_steps(changes))
        conn.execute("ROLLBACK")

    def executemany(changes: Changes) -> None:
        conn.execute("BEGIN")
        for statement, rows in sql_store._sqlite_steps(changes):
            if rows:
                if isinstance(statement, sqlite_writer.Insert):
                    statement = sqlite_writer._plain_insert(statement)
                conn.executemany(statement, rows)
        conn.execute("ROLLBACK")

    for name, function in (
        ("rows", sql_store._sqlite_steps),
        ("rows+bind", bind),
        ("rows+executemany", executemany),
    ):
        spent = rounds(function, batches, args.rounds)
        print(
            f"{name}: {min(spent) * 1e6 / reports:.2f} µs a report best, "
            f"{statistics.median(spent) * 1e6 / reports:.2f} median "
            f"({len(batches)} batches of {reports // len(batches)} reports, {args.rounds} rounds)"
        )


if __name__ == "__main__":
    main()
