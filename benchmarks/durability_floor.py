"""The floor the durability promise sets: how long this disk takes to make a write durable.

A report is answered ``201`` only after the commit that holds it, and a commit is durable only once the
disk says so (``fsync``): no report can reach the board sooner. This measures, on the filesystem of the
folder given (by default the temporary folder, where ``intake.py`` puts its SQLite database):

* a 4 KiB write followed by ``fsync`` / ``fdatasync``, appended (the file grows) and in place;
* a SQLite commit of 8 rows of 1.5 KB in WAL mode with ``synchronous=FULL`` (the server's), ``NORMAL`` and
  ``OFF``;
* with ``--database-url postgresql://...`` (loopback only), a one-row ``INSERT`` transaction over asyncpg with
  ``synchronous_commit`` on (the server's) and off, in a table created and dropped here.

Each operation ``--count`` times (at most 5,000), ``--gap-ms`` apart (default 20: the pace of 50 reports/s);
medians and percentiles in milliseconds. Nothing else is needed than the project's venv.

    .venv/bin/python benchmarks/durability_floor.py
    .venv/bin/python benchmarks/durability_floor.py --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import latency_summary, require_loopback

ROW = "z" * 1500


def timed(count: int, gap_s: float, operation: Callable[[int], None]) -> dict[str, float]:
    times = []
    for n in range(count):
        started = time.perf_counter()
        operation(n)
        times.append(time.perf_counter() - started)
        time.sleep(gap_s)
    return latency_summary(times)


def file_syncs(folder: Path, count: int, gap_s: float) -> dict[str, dict[str, float]]:
    out = {}
    block = b"x" * 4096
    for name, sync in (("fsync", os.fsync), ("fdatasync", os.fdatasync)):
        path = folder / name
        for how, flags in (("append", os.O_APPEND | os.O_CREAT), ("overwrite", 0)):
            fd = os.open(path, os.O_WRONLY | flags)

            def write(_n: int, fd: int = fd, sync: Callable[[int], None] = sync, append: bool = bool(flags)) -> None:
                if append:
                    os.write(fd, block)  # the file grows: its size (metadata) is synced too
                else:
                    os.pwrite(fd, block, 0)
                sync(fd)

            try:
                out[f"{how} 4 KiB + {name}"] = timed(count, gap_s, write)
            finally:
                os.close(fd)
    return out


def sqlite_commits(folder: Path, count: int, gap_s: float) -> dict[str, dict[str, float]]:
    out = {}
    for mode in ("FULL", "NORMAL", "OFF"):
        conn = sqlite3.connect(folder / f"{mode}.db", isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={mode}")
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")

            def commit(_n: int, conn: sqlite3.Connection = conn) -> None:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO t (body) VALUES (?)", [(ROW,)] * 8)
                conn.execute("COMMIT")

            out[f"SQLite WAL commit, synchronous={mode}"] = timed(count, gap_s, commit)
        finally:
            conn.close()
    return out


async def postgres_commits(url: str, count: int, gap_s: float) -> dict[str, dict[str, float]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    table = f"durability_floor_{os.getpid()}"
    out = {}
    try:
        await conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, body text)")
        for mode in ("on", "off"):
            await conn.execute(f"SET synchronous_commit = {mode}")
            times = []
            for _ in range(count):
                started = time.perf_counter()
                async with conn.transaction():
                    await conn.execute(f"INSERT INTO {table} (body) VALUES ($1)", ROW)
                times.append(time.perf_counter() - started)
                await asyncio.sleep(gap_s)
            out[f"PostgreSQL one-row commit, synchronous_commit={mode}"] = latency_summary(times)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()), help="where the files go")
    parser.add_argument("--count", type=int, default=300, help="operations of each kind (at most 5,000)")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="pause between two operations")
    parser.add_argument("--database-url", help="postgresql://user@127.0.0.1:5432/db: also PostgreSQL's commits")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 5000 or not 0 <= args.gap_ms <= 1000:
        parser.error("--count is 1..5000 and --gap-ms 0..1000")
    url = args.database_url
    if url:
        url = url.replace("postgresql+asyncpg://", "postgresql://")
        from urllib.parse import urlsplit

        require_loopback(urlsplit(url).hostname or "")
    folder = Path(tempfile.mkdtemp(prefix="durability_floor_", dir=args.folder))
    try:
        gap_s = args.gap_ms / 1000
        results = file_syncs(folder, args.count, gap_s) | sqlite_commits(folder, args.count, gap_s)
        if url:
            results |= asyncio.run(postgres_commits(url, args.count, gap_s))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"{args.count} of each, {args.gap_ms:g} ms apart, in {args.folder} (load average {load} at the end); ms:")
    for name, summary in results.items():
        print(f"  {name:52s} p50 {summary['p50_ms']:7.3f}  p90 {summary['p90_ms']:7.3f}  p99 {summary['p99_ms']:7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
