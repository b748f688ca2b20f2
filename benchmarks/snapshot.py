"""Snapshot benchmark: restarting with many open incidents, and boards connecting under intake.

Run by hand from the repository root:

    .venv/bin/python benchmarks/snapshot.py                      # SQLite, 100,000 open incidents
    .venv/bin/python benchmarks/snapshot.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test
    .venv/bin/python benchmarks/snapshot.py --keep-filled /tmp/filled.db          # fill once, keep it
    .venv/bin/python benchmarks/snapshot.py --filled /tmp/filled.db --checkout ../other-worktree

1. **Fill** (not timed): ``--open`` open incidents written through the real hub and store in this
   process (the intake benchmark's mix: five-team congestion at the five-way intersection, market,
   wage and food matters). One in a hundred was reported three days ago and has missed all its
   deadlines and raised its whole escalation chains (so the open alarms are rebuilt at start);
   the others are reported a day ahead, so no deadline falls due while the benchmark runs (use a
   kept database within a day). ``--keep-filled``
   keeps the filled database (a SQLite file, or a PostgreSQL database of that name) and
   ``--filled`` reuses one: every run then starts from a copy of it (a file copy, or
   ``CREATE DATABASE ... TEMPLATE``), so two checkouts are measured on the same data.
2. **Restart**: ``dispatcher serve`` from ``--checkout`` (default: this one) is started on the
   copy; timed from the process's spawn until ``/readyz`` answers 200 (imports, migrations check,
   loading the open incidents, re-arming, the roster), and its resident memory then.
3. **Boards under intake**: reports are POSTed open-loop at ``--rate`` per second for
   ``--duration`` seconds; ``--board-at`` seconds in, ``--boards`` board feeds connect at once and
   each reads its whole snapshot (one frame, or pages until ``more`` is false) and then the live
   events. Measured: POST latency p50/p99 over the whole run and over the reports sent while a
   snapshot was being received; each board's time to the end of its snapshot and its size.
   Checked: every board sees the events after its snapshot in ``seq`` order with no gap and no
   duplicate, as many open incidents as the API counts at that ``seq`` (the last board only).

Every loop is bounded in count and time; traffic goes to 127.0.0.1 only. No assertion on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from _common import (
    LOOPBACK,
    REPORT_MIX,
    BenchError,
    Database,
    HttpConnection,
    Server,
    auth_headers,
    create_database,
    drop_database,
    latency_summary,
    machine_info,
    make_tempdir,
    require_loopback,
    run_async,
)

MIX = REPORT_MIX
INCIDENTS_PATH = b"/api/v1/incidents"


# -- filling ------------------------------------------------------------------------------------


async def fill(url: str, count: int, now: datetime) -> dict[str, Any]:
    """Write ``count`` open incidents through the hub (no roster, duplicates off)."""
    from dispatcher.alarm import ManualAlarm
    from dispatcher.clock import VirtualClock
    from dispatcher.core.incidents import Report
    from dispatcher.feed import EventFeed
    from dispatcher.hub import Hub
    from dispatcher.settings import BUNDLED_TABLE
    from dispatcher.sql_store import SqlIncidentStore
    from rules import compile_table, load_table

    rules = compile_table(load_table(BUNDLED_TABLE))
    hub = Hub(
        store=SqlIncidentStore(url, durable=False),
        rules=rules,
        clock=VirtualClock(now),
        alarm=ManualAlarm(),
        feed=EventFeed(queue_size=10),
        duplicate_radius_m=0,
    )
    began = time.perf_counter()
    await hub.start()
    try:
        late = max(1, count // 100)
        past = now - timedelta(days=3)

        async def reports(first: int, last: int, at: datetime) -> None:
            for start in range(first, last, 500):
                await asyncio.gather(
                    *(
                        hub.report(
                            Report(
                                report_id=f"fill-{n}",
                                category=MIX[n % len(MIX)][0],
                                zone=MIX[n % len(MIX)][1],
                                description=f"filled report {n}: queue of cars at the junction, stalls on the road",
                            ),
                            at,
                        )
                        for n in range(start, min(start + 500, last))
                    )
                )

        await reports(0, late, past)
        missed = 0
        for _ in range(50):  # every deadline and escalation step of the late ones, up to a day ago
            fired = await hub.fire_due(now - timedelta(days=1))
            missed += fired
            if not fired:
                break
        await reports(late, count, now + timedelta(days=1))
        return {"open_incidents": len(hub.open_incidents()[1]), "missed": missed, "alarms": len(hub.alarms)}
    finally:
        await hub.stop()
        print(f"filled {count} incidents in {time.perf_counter() - began:.0f} s", flush=True)


async def copy_database(source: Database, tempdir: Path, n: int) -> Database:
    """A copy of the filled database for one run."""
    if source.backend == "sqlite":
        path = tempdir / f"run-{n}.db"
        shutil.copyfile(source.name, path)
        # Written back before the server starts: the copy's writeback must not stall the server's fsyncs.
        await asyncio.to_thread(os.sync)
        return Database(backend="sqlite", url=f"sqlite+aiosqlite:///{path}", tempdir=tempdir, name=str(path))
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"bench_snapshot_run_{os.getpid()}_{n}"
    conn = await asyncpg.connect(**source.admin, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source.name}"')
    finally:
        await conn.close()
    url = make_url(source.url).set(database=name).render_as_string(hide_password=False)
    copy = Database(backend="postgresql", url=url, tempdir=tempdir, name=name, admin=source.admin)
    await copy.analyze()
    return copy


async def prepared(args: argparse.Namespace, tempdir: Path, now: datetime) -> tuple[Database, bool, dict[str, Any]]:
    """The filled database: reused (``--filled``) or filled now. Returns it, whether to drop it, and fill facts."""
    sqlite = args.database_url is None or args.database_url.startswith("sqlite")
    if args.filled:
        if sqlite:
            return (
                Database(backend="sqlite", url=f"sqlite+aiosqlite:///{args.filled}", tempdir=tempdir, name=args.filled),
                False,
                {},
            )
        db = await create_database(args.database_url, tempdir, keep=True)
        await drop_database_named(db, db.name)
        db.name = args.filled
        return db, False, {}
    db = await create_database(args.database_url, tempdir, keep=bool(args.keep_filled))
    if args.keep_filled:
        if sqlite:
            db.name = args.keep_filled
            db.url = f"sqlite+aiosqlite:///{args.keep_filled}"
        else:
            await drop_database_named(db, db.name)
            db = await rename_database(db, args.keep_filled)
    facts = await fill(db.url, args.open, now)
    await db.analyze()
    return db, not args.keep_filled, facts


async def drop_database_named(db: Database, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(**db.admin, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def rename_database(db: Database, name: str) -> Database:
    import asyncpg
    from sqlalchemy.engine import make_url

    conn = await asyncpg.connect(**db.admin, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    db.name = name
    db.url = make_url(db.url).set(database=name).render_as_string(hide_password=False)
    return db


# -- boards ---------------------------------------------------------------------------------------


@dataclass
class Board:
    connected_at: float = 0.0
    snapshot_done_at: float = 0.0
    snapshot_seq: int = 0
    snapshot_incidents: int = 0
    snapshot_bytes: int = 0
    snapshot_frames: int = 0
    largest_frame: int = 0
    events: int = 0
    last_seq: int = 0
    problems: list[str] = field(default_factory=list)


async def run_board(port: int, board: Board, stop_at: float) -> None:
    from websockets.asyncio.client import connect

    board.connected_at = time.perf_counter()
    async with connect(
        f"ws://{LOOPBACK}:{port}/ws/board",
        additional_headers=auth_headers(),
        open_timeout=60,
        max_size=1024 * 1024 * 1024,
        max_queue=64,
        compression=None,
        proxy=None,
        ping_interval=None,
    ) as ws:
        complete = False
        while time.perf_counter() < stop_at:
            try:
                async with asyncio.timeout(max(0.1, stop_at - time.perf_counter())):
                    text = await ws.recv()
            except TimeoutError:
                break
            message = orjson.loads(text)
            kind = message.get("kind")
            if kind in ("snapshot", "snapshot_page"):
                if complete:
                    board.problems.append(f"a {kind} frame after the snapshot ended")
                board.snapshot_frames += 1
                board.snapshot_bytes += len(text)
                board.largest_frame = max(board.largest_frame, len(text))
                board.snapshot_incidents += len(message.get("incidents", ()))
                board.snapshot_seq = board.last_seq = int(message["seq"])
                if not message.get("more", False):
                    complete = True
                    board.snapshot_done_at = time.perf_counter()
            elif kind == "event":
                if not complete:
                    board.problems.append("an event before the snapshot ended")
                seq = int(message["seq"])
                if seq != board.last_seq + 1:
                    board.problems.append(f"seq {seq} after {board.last_seq}")
                board.last_seq = seq
                board.events += 1
        if not complete:
            board.problems.append("the snapshot did not end in time")


def boards_process(port: int, authorization: dict[str, str], count: int, seconds: float, out: Any) -> None:
    """Run ``count`` boards for at most ``seconds`` in a process of their own, so that reading and
    parsing their snapshots does not delay the intake client; sends back (boards, errors)."""
    import _common

    _common._AUTHORIZATION = f"Authorization: {authorization['Authorization']}\r\n".encode() if authorization else b""

    async def run() -> tuple[list[Board], list[str]]:
        boards = [Board() for _ in range(count)]
        stop_at = time.perf_counter() + seconds
        results = await asyncio.gather(*(run_board(port, b, stop_at) for b in boards), return_exceptions=True)
        return boards, [repr(r) for r in results if isinstance(r, BaseException)]

    boards, errors = run_async(run())
    # Times as offsets from connecting: this process's clock is not the parent's.
    out.send(([(b, b.snapshot_done_at - b.connected_at if b.snapshot_done_at else None) for b in boards], errors))
    out.close()


# -- intake -----------------------------------------------------------------------------------------


async def drive(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    count = int(args.rate * args.duration)
    interval = 1.0 / args.rate
    pool: list[HttpConnection] = []
    for _ in range(args.connections):
        conn = HttpConnection(LOOPBACK, server.port)
        await conn.connect()
        pool.append(conn)
    free: asyncio.Queue[HttpConnection] = asyncio.Queue()
    for conn in pool:
        free.put_nowait(conn)
    sent_at: list[float] = []
    latency: list[float] = []
    errors: dict[str, int] = {}
    boards_proc: multiprocessing.Process | None = None
    receiver, sender = multiprocessing.Pipe(duplex=False)
    boards_at = 0.0
    tag = os.getpid()

    async def one(n: int) -> None:
        conn = await free.get()
        body = orjson.dumps(
            {
                "report_id": f"snap-{tag}-{n}",
                "category": MIX[n % len(MIX)][0],
                "zone": MIX[n % len(MIX)][1],
                "description": "bench snapshot report: queue of cars at the junction",
            }
        )
        began = time.perf_counter()
        try:
            async with asyncio.timeout(args.request_timeout):
                status, _ = await conn.request(b"POST", INCIDENTS_PATH, body)
            if status == 201:
                sent_at.append(began)
                latency.append(time.perf_counter() - began)
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
            free.put_nowait(conn)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            conn.close()
            fresh = HttpConnection(LOOPBACK, server.port)
            with contextlib.suppress(OSError):
                await fresh.connect()
            free.put_nowait(fresh)

    tasks: set[asyncio.Task[None]] = set()
    first = time.perf_counter() + 0.05
    board_stop = first + args.duration + args.board_wait
    cpu_before = server.cpu_seconds()
    for n in range(count):
        target = first + n * interval
        if boards_proc is None and target - first >= args.board_at:
            boards_at = time.perf_counter()
            boards_proc = multiprocessing.Process(
                target=boards_process,
                args=(server.port, auth_headers(), args.boards, board_stop - boards_at, sender),
                daemon=True,
            )
            boards_proc.start()
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks), timeout=args.request_timeout + 5)
    cpu_after = server.cpu_seconds()
    ended = time.perf_counter()
    # The boards keep reading live events until the intake has been seen through (bounded by board_stop).
    boards: list[Board] = []
    snapshot_seconds: list[float | None] = []
    board_errors: list[str] = []
    if boards_proc is not None:
        if await asyncio.to_thread(receiver.poll, max(1.0, board_stop - time.perf_counter() + 30)):
            results, board_errors = receiver.recv()
            boards = [b for b, _ in results]
            snapshot_seconds = [t for _, t in results]
        else:
            board_errors = ["the boards did not report in time"]
        boards_proc.join(timeout=10)
        if boards_proc.is_alive():
            boards_proc.kill()
    for conn in pool:
        conn.close()

    window_start = boards_at
    window_end = boards_at + max((t if t is not None else ended - boards_at for t in snapshot_seconds), default=0.0)
    during = [lat for s, lat in zip(sent_at, latency, strict=True) if window_start <= s <= window_end]
    before = [lat for s, lat in zip(sent_at, latency, strict=True) if s < window_start]
    after = [lat for s, lat in zip(sent_at, latency, strict=True) if s > window_end]
    count_api = await open_count(server)
    return {
        "reports_sent": count,
        "reports_created": len(latency),
        "errors": errors,
        "achieved_rate": round(len(latency) / max(1e-9, ended - first), 1),
        "latency_all_ms": latency_summary(latency),
        # The slow answers, as (seconds after the first report was due, ms): where the stalls fall.
        "slow_answers": [
            (round(s - first, 2), round(lat * 1000)) for s, lat in zip(sent_at, latency, strict=True) if lat > 0.25
        ][:500],
        "boards_connected_s": round(boards_at - first, 2) if boards_proc is not None else None,
        "latency_before_boards_ms": latency_summary(before),
        "latency_during_snapshots_ms": latency_summary(during),
        "latency_after_snapshots_ms": latency_summary(after),
        "server_cpu_seconds": round((cpu_after or 0) - (cpu_before or 0), 2),
        "boards": [
            {
                "snapshot_seconds": round(t, 2) if t is not None else None,
                "snapshot_incidents": b.snapshot_incidents,
                "snapshot_mb": round(b.snapshot_bytes / 1e6, 1),
                "frames": b.snapshot_frames,
                "largest_frame_kb": round(b.largest_frame / 1e3, 1),
                "events_after": b.events,
                "last_seq": b.last_seq,
                "problems": b.problems[:5],
            }
            for b, t in zip(boards, snapshot_seconds, strict=True)
        ],
        "board_errors": board_errors,
        "open_incidents_now": count_api,
    }


async def open_count(server: Server) -> int | None:
    conn = HttpConnection(LOOPBACK, server.port)
    try:
        await conn.connect()
        status, body = await conn.request(b"GET", b"/api/v1/incidents?open=true&limit=1")
        return int(orjson.loads(body)["count"]) if status == 200 else None
    except (OSError, TimeoutError, ValueError, KeyError):
        return None
    finally:
        conn.close()


# -- a run ----------------------------------------------------------------------------------------


async def one_run(args: argparse.Namespace, source: Database, tempdir: Path, n: int) -> dict[str, Any]:
    db = await copy_database(source, tempdir, n)
    workdir = tempdir / f"server-{n}"
    workdir.mkdir()
    env: dict[str, str] = {}
    if args.checkout:
        env["PYTHONPATH"] = args.checkout
    server = Server(db.url, workdir, log_level="warning", env=env)
    if args.checkout:
        server_command = [sys.executable, "-c", "from dispatcher.cli import main; main()"]
        import _common

        original = _common.dispatcher_command
        _common.dispatcher_command = lambda: server_command
    try:
        began = time.perf_counter()
        server.start()
        await server.wait_ready(timeout_s=args.ready_timeout)
        ready = time.perf_counter() - began
        rss = server.rss_mib()
        result: dict[str, Any] = {"restart_seconds": round(ready, 2), "rss_mib_after_restart": rss}
        print(f"  run {n}: ready in {ready:.1f} s, RSS {rss} MiB", flush=True)
        if args.rate > 0 and args.duration > 0:
            result["intake"] = await drive(args, server)
            result["rss_mib_after_intake"] = server.rss_mib()
        return result
    finally:
        server.stop()
        if args.checkout:
            _common.dispatcher_command = original
        if db.backend == "postgresql":
            await drop_database_named(source, db.name)
        else:
            await asyncio.to_thread(Path(db.name).unlink, missing_ok=True)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if args.database_url and not args.database_url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        require_loopback(make_url(args.database_url).host or LOOPBACK)
    tempdir = make_tempdir()
    now = datetime.now(UTC)
    source, drop, facts = await prepared(args, tempdir, now)
    try:
        runs = [await one_run(args, source, tempdir, n) for n in range(args.runs)]
    finally:
        if drop and source.backend == "postgresql":
            await drop_database(source)
        shutil.rmtree(tempdir, ignore_errors=True)
    restart = [r["restart_seconds"] for r in runs]
    return {
        "backend": source.backend,
        "checkout": args.checkout or ".",
        "open_incidents": args.open,
        "fill": facts,
        "runs": runs,
        "median_restart_seconds": statistics.median(restart) if restart else None,
        "machine": machine_info(),
        "load_average": os.getloadavg(),
    }


def print_summary(result: dict[str, Any]) -> None:
    print(f"{result['backend']}: {result['open_incidents']} open incidents, load average {result['load_average']}")
    for n, run in enumerate(result["runs"]):
        line = f"  run {n}: restart {run['restart_seconds']} s, RSS {run['rss_mib_after_restart']} MiB"
        intake = run.get("intake")
        if intake:
            a, d = intake["latency_all_ms"], intake["latency_during_snapshots_ms"]
            b, z = intake["latency_before_boards_ms"], intake["latency_after_snapshots_ms"]
            line += (
                f"; intake {intake['achieved_rate']}/s p50 {a.get('p50_ms')} p99 {a.get('p99_ms')} ms"
                f" (before boards: p50 {b.get('p50_ms')} p99 {b.get('p99_ms')} ms;"
                f" while snapshots: p50 {d.get('p50_ms')} p99 {d.get('p99_ms')} ms, n={d.get('count')};"
                f" after: p50 {z.get('p50_ms')} p99 {z.get('p99_ms')} ms)"
                f"; errors {intake['errors']}"
            )
            for b in intake["boards"]:
                line += (
                    f"\n    board: snapshot {b['snapshot_seconds']} s, {b['snapshot_incidents']} incidents,"
                    f" {b['snapshot_mb']} MB in {b['frames']} frames (largest {b['largest_frame_kb']} kB),"
                    f" {b['events_after']} events after, problems {b['problems']}"
                )
            if intake["board_errors"]:
                line += f"\n    board errors: {intake['board_errors']}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="PostgreSQL on 127.0.0.1 (default: a SQLite file)")
    parser.add_argument("--open", type=int, default=100_000, help="open incidents to fill")
    parser.add_argument("--filled", default=None, help="reuse a filled SQLite file or PostgreSQL database")
    parser.add_argument("--keep-filled", default=None, help="keep the filled database under this file or name")
    parser.add_argument("--checkout", default=None, help="run the server from this source tree")
    parser.add_argument("--runs", type=int, default=1, help="runs on copies of the filled database (0: fill only)")
    parser.add_argument("--rate", type=float, default=200.0, help="reports per second (0: restart only)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of intake (bounded)")
    parser.add_argument("--board-at", type=float, default=5.0, help="seconds into the intake when boards connect")
    parser.add_argument("--boards", type=int, default=3)
    parser.add_argument("--board-wait", type=float, default=60.0, help="seconds boards may read after the intake")
    parser.add_argument("--connections", type=int, default=64, help="HTTP keep-alive connections for the intake")
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.checkout:
        args.checkout = str(Path(args.checkout).resolve())
    if args.rate * args.duration > 20_000:
        raise BenchError("at most 20,000 reports per run")
    result = run_async(main_async(args))
    print_summary(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
