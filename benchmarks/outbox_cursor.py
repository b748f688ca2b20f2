"""The MQTT outbox's cursor saves against a writer on the same SQLite file.

A thread stands in for the hub's writer (its own connection, ``synchronous=FULL``, ``BEGIN IMMEDIATE``, one
row, ``COMMIT``, every 2 ms) while the event loop saves the cursor ``--saves`` times, busy for 1 ms between saves
as a loaded gateway's loop is. It prints how long a save takes and how long the writer waited for SQLite's
write lock (median, p99, max): the wait a cursor save adds to a report's commit.

    .venv/bin/python benchmarks/outbox_cursor.py --saves 400
    .venv/bin/python benchmarks/outbox_cursor.py --saves 100 --idle-ms 100 --rows 100   # about ten saves a second

``--rows``: rows (200 bytes each) per writer commit; the writer's log length before a checkpoint is the hub
writer's (``WAL_AUTOCHECKPOINT_PAGES``). It also prints the process's CPU time per writer commit: what the
cursor's connection adds when its commits checkpoint the log the writer lets grow.

Only ``SqlOutboxCursor``'s public methods are used, so the same file runs against an older checkout
(``PYTHONPATH=. /that/checkout/.venv/bin/python benchmarks/outbox_cursor.py`` from that checkout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from dispatcher.outbox import SqlOutboxCursor
from dispatcher.sql_store import SqlIncidentStore
from dispatcher.sqlite_writer import WAL_AUTOCHECKPOINT_PAGES

WRITER_EVERY_S = 0.002
LOOP_BUSY_S = 0.001


def _writer(path: str, stop: threading.Event, waits: list[float], limit: int, rows: int) -> None:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    row = (b"r" * 200,)
    try:
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")  # as the hub's writer
        conn.execute("CREATE TABLE IF NOT EXISTS bench_writes (x)")
        while not stop.is_set() and len(waits) < limit:
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            waits.append(time.perf_counter() - started)
            conn.executemany("INSERT INTO bench_writes VALUES (?)", [row] * rows)
            conn.execute("COMMIT")
            stop.wait(WRITER_EVERY_S)
    finally:
        conn.close()


def _busy(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def run(saves: int, idle_s: float = 0.0, rows: int = 1) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="outbox-cursor-bench-"))
    url = f"sqlite+aiosqlite:///{folder / 'dispatcher.db'}"
    store = SqlIncidentStore(url)
    await store.open()  # the migrations make the table
    await store.close()
    cursor = SqlOutboxCursor(url, "dispatcher")
    at = datetime.now(UTC)
    await cursor.save(0, at)
    waits: list[float] = []
    stop = threading.Event()
    writer = threading.Thread(target=_writer, args=(str(folder / "dispatcher.db"), stop, waits, 100 * saves, rows))
    cpu = time.process_time()
    writer.start()
    saving = 0.0
    try:
        for seq in range(1, saves + 1):
            started = time.perf_counter()
            await cursor.save(seq, at)
            saving += time.perf_counter() - started
            _busy(LOOP_BUSY_S)
            if idle_s:
                await asyncio.sleep(idle_s)
    finally:
        stop.set()
        writer.join()
    cpu = time.process_time() - cpu
    assert await cursor.load() == saves
    await cursor.close()
    waits.sort()
    return {
        "saves": saves,
        "save_ms_mean": round(saving / saves * 1e3, 3),
        "writer_commits": len(waits),
        "writer_lock_wait_p50_ms": round(waits[len(waits) // 2] * 1e3, 3),
        "writer_lock_wait_p99_ms": round(waits[int(len(waits) * 0.99)] * 1e3, 3),
        "writer_lock_wait_max_ms": round(waits[-1] * 1e3, 3),
        "cpu_ms_per_writer_commit": round(cpu / max(1, len(waits)) * 1e3, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=400)
    parser.add_argument("--idle-ms", type=float, default=0.0, help="the loop idles this long after each save")
    parser.add_argument("--rows", type=int, default=1, help="rows per writer commit")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.saves, args.idle_ms / 1e3, args.rows))))


if __name__ == "__main__":
    main()
