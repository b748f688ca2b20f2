"""The PostgreSQL commit of a writer batch alone: the dispatcher's CPU in it, the backend's CPU, the wall time.

A hub on a virtual clock, on a fresh database ``bench_pg_commit_<pid>`` created through the database named in
the URL (dropped at the end), takes ``--batches`` batches of ``--group`` reports (the intake benchmark's mix of
rules: five, three and two teams), each batch queued at once so that it commits as one writer batch. Around
each call of the store's ``commit`` the process's CPU time and the wall time are taken; the CPU of the
database's backends (``/proc`` of the pids in ``pg_stat_activity``) is taken around the whole run. The
database server shares the machine's cores, so its CPU is half of what a batch costs.

    .venv/bin/python benchmarks/pg_commit.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test
    .venv/bin/python benchmarks/pg_commit.py --database-url ... --alter 'DROP INDEX ix_incident_zone'

Loopback only; every loop is bounded by ``--batches`` (at most 1,000) and ``--group`` (at most 500).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import mixed_report, process_cpu_seconds, require_loopback

from dispatcher.alarm import ManualAlarm
from dispatcher.clock import VirtualClock
from dispatcher.feed import EventFeed
from dispatcher.hub import Hub
from dispatcher.settings import BUNDLED_TABLE
from dispatcher.sql_store import SqlIncidentStore
from dispatcher.store import Changes
from rules import compile_table, load_table


class TimedStore(SqlIncidentStore):
    """The store with each commit's process CPU and wall time noted (the event loop does nothing else then)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.cpu: list[float] = []
        self.wall: list[float] = []
        self.noting = False

    async def commit(self, changes: Changes) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        await super().commit(changes)
        if self.noting:
            self.cpu.append(time.process_time() - cpu)
            self.wall.append(time.perf_counter() - wall)


async def admin_of(url: str, statement: str) -> None:
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _backend_cpu(admin: asyncpg.Connection, name: str) -> dict[int, float]:
    pids = [r[0] for r in await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)]
    return {pid: cpu for pid in pids if (cpu := process_cpu_seconds(pid)) is not None}


async def measure(url: str, name: str, admin: asyncpg.Connection, args: argparse.Namespace) -> dict[str, Any]:
    clock = VirtualClock(datetime(2026, 6, 1, tzinfo=UTC))
    store = TimedStore(url)
    hub = Hub(
        store=store,
        rules=compile_table(load_table(BUNDLED_TABLE)),
        clock=clock,
        alarm=ManualAlarm(),
        feed=EventFeed(queue_size=100_000),
        duplicate_radius_m=0.0,
    )
    description = ("x" * args.description_bytes)[: args.description_bytes]
    await hub.start()
    try:
        for statement in args.alter:  # after the migrations, before any row
            await admin_of(url, statement)
        n = 0
        for _ in range(args.warmup):  # statements prepared, caches filled
            await hub.report_many([mixed_report(n + k, description) for k in range(args.group)], clock.now())
            n += args.group
        store.noting = True
        before = await _backend_cpu(admin, name)
        for _ in range(args.batches):
            clock.advance(timedelta(seconds=1))
            outcomes = await hub.report_many([mixed_report(n + k, description) for k in range(args.group)], clock.now())
            n += args.group
            failed = [o for o in outcomes if isinstance(o, BaseException)]
            if failed:
                raise SystemExit(f"a report failed: {failed[0]!r}")
        after = await _backend_cpu(admin, name)
    finally:
        await hub.stop()
    backend = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
    return {
        "commits": len(store.cpu),
        "cpu_ms": statistics.median(store.cpu) * 1e3,
        "cpu_mean_ms": statistics.mean(store.cpu) * 1e3,
        "wall_ms": statistics.median(store.wall) * 1e3,
        "backend_ms": backend * 1e3 / max(1, len(store.cpu)),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    parsed = make_url(args.database_url)
    require_loopback(parsed.host or "127.0.0.1")
    admin = await asyncpg.connect(parsed.set(drivername="postgresql").render_as_string(hide_password=False))
    name = f"bench_pg_commit_{os.getpid()}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = parsed.set(database=name).render_as_string(hide_password=False)
            return await measure(url, name, admin, args)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="PostgreSQL (asyncpg) admin URL on 127.0.0.1")
    parser.add_argument("--group", type=int, default=100, help="reports per batch")
    parser.add_argument("--batches", type=int, default=200, help="batches measured")
    parser.add_argument("--warmup", type=int, default=10, help="batches before measuring")
    parser.add_argument("--description-bytes", type=int, default=120)
    parser.add_argument(
        "--alter",
        action="append",
        default=[],
        help="run this statement on the fresh database first (to learn what a constraint or an index costs: "
        "'ALTER TABLE assignment DROP CONSTRAINT assignment_incident_id_fkey')",
    )
    args = parser.parse_args()
    if not 1 <= args.group <= 500 or not 1 <= args.batches <= 1_000 or not 0 <= args.warmup <= 100:
        parser.error("--group 1-500, --batches 1-1000, --warmup 0-100")
    result = asyncio.run(run(args))
    per = result["commits"]
    print(
        f"{per} commits of {args.group} reports: dispatcher CPU in commit median {result['cpu_ms']:.2f} ms "
        f"(mean {result['cpu_mean_ms']:.2f}), wall median {result['wall_ms']:.2f} ms, "
        f"database backends' CPU {result['backend_ms']:.2f} ms a batch; "
        f"together {(result['cpu_ms'] + result['backend_ms']) / args.group:.4f} ms a report"
    )


if __name__ == "__main__":
    main()
