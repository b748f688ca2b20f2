"""The writer alone: CPU per report of the hub and its store, without HTTP, in batches of one and of many.

    .venv/bin/python benchmarks/writer.py                       # a durable SQLite file in a temp folder
    .venv/bin/python benchmarks/writer.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test

A hub on a virtual clock takes ``--reports`` five-team reports (the five-way junction's congestion), first
one at a time (each its own writer batch and commit), then ``--group`` at once (they queue together and
commit as one batch). The process's CPU time (every thread: the SQLite writer's included) per report is
the figure, less sensitive to a shared machine than the wall time, which is printed beside it. On
PostgreSQL a database ``bench_writer_<pid>_<n>`` is created through the database named in the URL for each
part and dropped after it. Loopback only; every loop is bounded by ``--reports``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.engine import make_url

from dispatcher.alarm import ManualAlarm
from dispatcher.clock import VirtualClock
from dispatcher.core.incidents import Report
from dispatcher.feed import EventFeed
from dispatcher.hub import Hub
from dispatcher.settings import BUNDLED_TABLE
from dispatcher.sql_store import SqlIncidentStore
from rules import compile_table, load_table


def _report(n: int) -> Report:
    return Report(
        report_id=f"r-{n}",
        category="traffic.congestion",
        description="market-day congestion at the five-way intersection",
        zone="five-way",
    )


async def measure(url: str, reports: int, group: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per report for ``reports`` reports sent ``group`` at a time."""
    clock = VirtualClock(datetime(2026, 6, 1, tzinfo=UTC))
    hub = Hub(
        store=SqlIncidentStore(url),
        rules=compile_table(load_table(BUNDLED_TABLE)),
        clock=clock,
        alarm=ManualAlarm(),
        feed=EventFeed(queue_size=100_000),
        duplicate_radius_m=0.0,
    )
    await hub.start()
    try:
        for n in range(50):  # warm-up: statements prepared, caches filled
            await hub.report(_report(-1 - n), clock.now())
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, reports, group):
            await asyncio.gather(
                *(hub.report(_report(n), clock.now()) for n in range(start, min(reports, start + group)))
            )
        return (time.process_time() - cpu) * 1000 / reports, (time.perf_counter() - wall) * 1000 / reports
    finally:
        await hub.stop()


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def run_part(database_url: str | None, folder: str, reports: int, group: int) -> tuple[float, float]:
    if database_url is None:
        return await measure(f"sqlite+aiosqlite:///{folder}/writer-{group}.db", reports, group)
    name = f"bench_writer_{os.getpid()}_{group}"
    await _admin(database_url, f'CREATE DATABASE "{name}"')
    try:
        return await measure(make_url(database_url).set(database=name).render_as_string(False), reports, group)
    finally:
        await _admin(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="PostgreSQL (asyncpg) admin URL; default SQLite")
    parser.add_argument("--reports", type=int, default=400, help="reports sent one at a time")
    parser.add_argument("--group", type=int, default=64, help="reports sent at once in the second part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for group, reports in ((1, args.reports), (args.group, args.reports * 8)):
            cpu, wall = asyncio.run(run_part(args.database_url, folder, reports, group))
            print(f"{group:>3} at a time: {reports} reports, CPU {cpu:.3f} ms/report, wall {wall:.3f} ms/report")


if __name__ == "__main__":
    main()
