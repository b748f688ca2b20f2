"""The SQLite commit of a 100-report batch alone: its CPU by statement, under a setting or without an index.

Replays the rows of the first ``--reports`` incidents of a database that ``intake.py --keep-db`` kept (their
assignments and events, under new ids), as the writer commits a batch (``BEGIN IMMEDIATE``, one
``executemany`` per table, ``COMMIT``), into a copy of that database, ``--batches`` times; between batches a
second connection commits one audit row, as the server's audit trail does. Prints the writer thread's CPU per
batch (median) for each statement, and the WAL frames a batch wrote. The copy is deleted at the end.

    .venv/bin/python benchmarks/intake.py --phases throughput --batch 100 --keep-db    # prints "kept DIR"
    .venv/bin/python benchmarks/sqlite_commit.py DIR/bench.db
    .venv/bin/python benchmarks/sqlite_commit.py DIR/bench.db --synchronous NORMAL
    .venv/bin/python benchmarks/sqlite_commit.py DIR/bench.db --by name
    .venv/bin/python benchmarks/sqlite_commit.py DIR/bench.db --pragma cache_size=-16000
    .venv/bin/python benchmarks/sqlite_commit.py DIR/bench.db --drop-index ix_incident_zone
    .venv/bin/python benchmarks/sqlite_commit.py DIR/bench.db --by chunks --busy

``--by chunks`` inserts up to 64 rows with one statement (chunks of 64, 32, ... 1 rows), a form tried on branch
i14-batch and left out (``benchmarks/README.md``). ``--busy`` replays on a thread of its own while the main thread runs
Python without pause, as the server's writer thread commits while the event loop works: it adds each batch's
wall time, which shows how long the writer's thread waited for the GIL between its runs of SQLite.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

STEPS = ("begin", "incident", "assignment", "report_key", "event", "commit")


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]


def spin(stop: threading.Event) -> int:
    """Python work until ``stop`` is set (the event loop's share of the GIL): how many rounds it did."""
    rounds = 0
    while not stop.is_set():
        for n in range(200):
            {"n": n, "text": str(n)}
        rounds += 1
    return rounds


def chunks(table: str, names: list[str], rows: list[Any]) -> list[tuple[str, list[list[Any]]]]:
    """``rows`` as multi-row inserts of 64, 32, 16... rows: each statement with its one row of values."""
    found: list[tuple[str, list[list[Any]]]] = []
    size, start = 64, 0
    while start < len(rows):
        while size > len(rows) - start:
            size //= 2
        row = f"({', '.join('?' * len(names))})"
        statement = f'INSERT INTO "{table}" ({", ".join(names)}) VALUES {", ".join([row] * size)}'
        found.append((statement, [[value for line in rows[start : start + size] for value in line]]))
        start += size
    return found


def insert(table: str, names: list[str], by: str) -> str:
    marks = ", ".join(f":{n}" for n in names) if by == "name" else ", ".join("?" * len(names))
    return f'INSERT INTO "{table}" ({", ".join(names)}) VALUES ({marks})'


def frames_by_tree(conn: sqlite3.Connection, wal: Path) -> list[tuple[str, str, int, int]]:
    """The log's frames by the B-tree (table or index) their page belongs to, and by the page's kind (leaf,
    internal, overflow): (tree, kind, frames, distinct pages), most frames first. The page numbers are read from
    the frames' headers (the log's format: a 32-byte header, then per frame a 24-byte header and the page)."""
    data = wal.read_bytes()
    page_size = int.from_bytes(data[8:12], "big")
    numbers = [int.from_bytes(data[at : at + 4], "big") for at in range(32, len(data) - 23, 24 + page_size)]
    owner = {page: (name, kind) for name, page, kind in conn.execute("SELECT name, pageno, pagetype FROM dbstat")}
    frames: dict[tuple[str, str], list[int]] = {}
    for number in numbers:
        frames.setdefault(owner.get(number, ("(free)", "")), []).append(number)
    found = [(name, kind, len(pages), len(set(pages))) for (name, kind), pages in frames.items()]
    return sorted(found, key=lambda row: (-row[2], row[0]))


_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")


def later(row: tuple[Any, ...], days: int) -> tuple[Any, ...]:
    """``row`` with every stored time (``UtcDateTime``'s text) ``days`` later: a replayed batch's times then sort
    after the stored ones, as a new batch's do in the server, and land at their indexes' right-hand ends."""
    shift = timedelta(days=days)
    return tuple(
        (datetime.fromisoformat(v) + shift).isoformat(sep=" ") if isinstance(v, str) and _TIME.fullmatch(v) else v
        for v in row
    )


def replay(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    if args.page_size:  # the copy rebuilt with pages of this size (a new database's PRAGMA page_size)
        rebuild = sqlite3.connect(path, isolation_level=None)
        rebuild.execute("PRAGMA journal_mode=DELETE")
        rebuild.execute(f"PRAGMA page_size={args.page_size}")
        rebuild.execute("VACUUM")
        rebuild.close()
    conn = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, isolation_level=None)  # the audit trail's connection
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={args.synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    other.execute(f"PRAGMA synchronous={args.synchronous}")
    for pragma in args.pragma:
        conn.execute(f"PRAGMA {pragma}")
    for index in args.drop_index:
        conn.execute(f'DROP INDEX "{index}"')
    names = {t: columns(conn, t) for t in ("incident", "assignment", "event")}
    incidents = conn.execute("SELECT * FROM incident ORDER BY id LIMIT ?", (args.reports,)).fetchall()
    if not incidents:
        raise SystemExit(f"{args.database}: no incidents to replay (run intake.py with --keep-db first)")
    first, last = incidents[0][0], incidents[-1][0]
    assignments = conn.execute("SELECT * FROM assignment WHERE incident_id BETWEEN ? AND ?", (first, last)).fetchall()
    events = conn.execute("SELECT * FROM event WHERE incident_id BETWEEN ? AND ?", (first, last)).fetchall()
    top_id, top_seq = conn.execute("SELECT max(id), (SELECT max(seq) FROM event) FROM incident").fetchone()
    statements = {t: insert(t, n, "name" if args.by == "name" else "position") for t, n in names.items()}
    statements["report_key"] = insert("report_key", ["report_id"], args.by)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    spent: dict[str, list[float]] = {step: [] for step in STEPS}
    walls: list[float] = []
    names["report_key"] = ["report_id"]
    frames = 0
    for n in range(args.batches):
        shift, seq_shift = top_id + 1 - first + n * len(incidents), top_seq + n * len(events)
        days = 0 if args.same_times else 1000 * (n + 1)
        rows: dict[str, list[Any]] = {
            "incident": [later((r[0] + shift, f"{r[1]}-replay{n}", *r[2:]), days) for r in incidents],
            "assignment": [later((r[0] + shift, *r[1:]), days) for r in assignments],
            "event": [later((r[0] + seq_shift, r[1] + shift, *r[2:]), days) for r in events],
        }
        rows["report_key"] = [(r[1],) for r in rows["incident"]]
        if args.by == "name":
            rows = {t: [dict(zip(names.get(t, ["report_id"]), r, strict=True)) for r in rs] for t, rs in rows.items()}
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO audit (at, actor, action, outcome) VALUES ('2026-12-04 00:00:00', 'x', 'y', 200)")
        other.execute("COMMIT")
        if n == args.batches - 1:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # an empty log: what the last batch adds is its own
        began = time.perf_counter()
        marks = [time.thread_time()]
        conn.execute("BEGIN IMMEDIATE")
        marks.append(time.thread_time())
        for table in ("incident", "assignment", "report_key", "event"):
            if args.by == "chunks":
                for statement, chunk in chunks(table, names[table], rows[table]):
                    conn.executemany(statement, chunk)
            else:
                conn.executemany(statements[table], rows[table])
            marks.append(time.thread_time())
        conn.execute("COMMIT")
        marks.append(time.thread_time())
        walls.append(time.perf_counter() - began)
        for step, start, end in zip(STEPS, marks[:-1], marks[1:], strict=True):
            spent[step].append(end - start)
        if n == args.batches - 1:
            frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
            trees = frames_by_tree(conn, Path(f"{path}-wal"))
    conn.close()
    other.close()
    totals = [sum(parts) for parts in zip(*spent.values(), strict=True)]
    return {
        "rows": {"incident": len(incidents), "assignment": len(assignments), "event": len(events)},
        "ms": {step: statistics.median(v) * 1e3 for step, v in spent.items()},
        "total_ms": (statistics.median(totals) * 1e3, statistics.mean(totals) * 1e3),
        "wall_ms": statistics.median(walls) * 1e3,
        "wal_frames": frames,
        "trees": trees,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database", type=Path, help="a SQLite file intake.py kept (it is copied, not changed)")
    parser.add_argument("--reports", type=int, default=100, help="reports per batch")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL", "OFF"), default="FULL")
    parser.add_argument(
        "--by", choices=("position", "name", "chunks"), default="position", help="how values are bound and sent"
    )
    parser.add_argument("--busy", action="store_true", help="replay on a thread while the main thread runs Python")
    parser.add_argument(
        "--switch-interval", type=float, default=None, help="sys.setswitchinterval (s; Python's default 0.005)"
    )
    parser.add_argument(
        "--pragma", action="append", default=[], help="PRAGMA this on the writer's connection (cache_size=-16000)"
    )
    parser.add_argument(
        "--same-times", action="store_true", help="replay the rows' times as stored (before: 1,000 days on a batch)"
    )
    parser.add_argument("--page-size", type=int, default=0, help="rebuild the copy with pages of this size first")
    parser.add_argument("--trees", action="store_true", help="the last batch's WAL frames by B-tree")
    parser.add_argument("--drop-index", action="append", default=[], help="drop this index in the copy first")
    args = parser.parse_args()
    if not 1 <= args.batches <= 10_000 or not 1 <= args.reports <= 1_000:
        parser.error("--batches 1-10000, --reports 1-1000")
    with tempfile.TemporaryDirectory(prefix="sqlite-commit-") as folder:
        copy = Path(folder) / "copy.db"
        shutil.copyfile(args.database, copy)
        if args.switch_interval is not None:
            sys.setswitchinterval(args.switch_interval)
        if args.busy:
            found: dict[str, Any] = {}
            stop = threading.Event()

            def run() -> None:
                try:
                    found.update(replay(args, copy))
                finally:
                    stop.set()

            worker = threading.Thread(target=run, name="replay")
            worker.start()
            spin(stop)
            worker.join()
            result = found
        else:
            result = replay(args, copy)
    rows = result["rows"]
    print(
        f"SQLite {sqlite3.sqlite_version}, synchronous={args.synchronous}, by {args.by}, "
        f"pragmas {', '.join(args.pragma) or 'none'}, "
        f"dropped {', '.join(args.drop_index) or 'no index'}, "
        f"page size {args.page_size or 'as stored'}; a batch: {rows['incident']} incidents, "
        f"{rows['assignment']} assignments, {rows['event']} events, {args.batches} batches"
        + (", beside a busy main thread" if args.busy else "")
    )
    median, mean = result["total_ms"]
    print(f"writer thread CPU a batch: median {median:.2f} ms, mean {mean:.2f} ms (the mean holds the checkpoints)")
    print(f"wall time a batch: median {result['wall_ms']:.2f} ms")
    print("  " + "  ".join(f"{step} {ms:.2f}" for step, ms in result["ms"].items()))
    print(f"WAL frames written by the last batch: {result['wal_frames']}")
    if args.trees:
        print(
            "  by B-tree (frames, distinct pages): "
            + ", ".join(f"{name} {kind} {count} ({pages})" for name, kind, count, pages in result["trees"])
        )


if __name__ == "__main__":
    main()
