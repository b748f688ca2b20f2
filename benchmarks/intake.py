"""Intake benchmark: how fast the dispatcher takes reports, and how soon the board shows them.

Extra packages: none (uses the project's venv: orjson, websockets, asyncpg, sqlalchemy, and
uvloop when installed).

It starts ``dispatcher serve`` as a separate process on a free port on 127.0.0.1 with a fresh
database (a SQLite file in a temporary folder by default; with
``--database-url postgresql+asyncpg://root@127.0.0.1:5432/test`` a new database
``bench_intake_<pid>`` is created through the database named in the URL, and dropped at the end),
waits for ``/readyz``, then runs two phases:

throughput
    ``--concurrency`` keep-alive connections each send ``POST /api/v1/incidents`` and await its
    201 (a closed loop) for ``--duration`` seconds (after ``--warmup`` seconds that are not
    counted), never more than ``--max-requests`` requests. Reports req/s, latency percentiles,
    errors, the server's CPU time per request, and checks that every 201 was stored. With
    ``--batch N`` each request is ``POST /api/v1/incidents/batch`` with N reports, and counts as
    done when its 200 says all N were created; reports/s and CPU per report are given beside req/s.

latency
    one board websocket (``/ws/board``) is connected; reports are sent open-loop at ``--rate``
    per second for ``--latency-duration`` seconds. For each report the time from just before its
    POST is written to the arrival of its ``IncidentReported`` event (matched by report_id) on the
    board is measured: when the frame's bytes reached this process (the websocket connection's
    ``data_received``), and, beside it, when the watching task had read it through the library
    (about 0.1 ms later). Reports never seen on the board must be 0.

The client is a minimal HTTP/1.1 client on asyncio streams (Content-Length framing), run under
uvloop when it is installed, because it shares the machine's cores with the server;
``--client-procs N`` spreads the throughput phase over N processes.

Run from the repository root with the project's venv::

    .venv/bin/python benchmarks/intake.py                       # SQLite, defaults
    .venv/bin/python benchmarks/intake.py --database-url postgresql+asyncpg://root@127.0.0.1:5432/test
    .venv/bin/python benchmarks/intake.py --phases throughput --profile-out /tmp/intake.txt
    .venv/bin/python benchmarks/intake.py --phases throughput --batch 100   # 100 reports per request

``--profile-out`` runs py-spy (``--py-spy PATH``, not a project dependency) on the server during
the measured throughput window: ``.svg`` writes a flame graph, ``.json`` speedscope, anything
else py-spy's raw collapsed stacks plus a printed summary of the hottest functions.

Every request loop is bounded in time and count; traffic goes to loopback addresses only. The
exit status is 0 when every check passed (no errors, every 201 stored, every report on the board).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from _common import (
    LOOPBACK,
    REPO_ROOT,
    REPORT_MIX,
    BenchError,
    Database,
    HttpConnection,
    Server,
    auth_headers,
    create_database,
    drop_database,
    http_get,
    latency_summary,
    loop_factory,
    machine_info,
    make_tempdir,
    run_async,
    thread_cpu_per_item,
    thread_times,
)
from websockets.asyncio.client import ClientConnection
from websockets.frames import DATA_OPCODES, Frame

INCIDENTS_PATH = b"/api/v1/incidents"
BATCH_PATH = b"/api/v1/incidents/batch"
# (category, zone): a mix of rules, from the five-team joint duty at the five-way intersection
# down to two-team dispatches. Each report makes two events (IncidentReported, UnitsDispatched).
MIX = tuple((category.encode(), zone.encode()) for category, zone in REPORT_MIX)  # bytes, for the bodies
NETWORK_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError)


def report_body(report_id: bytes, n: int, description: bytes) -> bytes:
    category, zone = MIX[n % len(MIX)]
    return b'{"report_id":"%s","category":"%s","zone":"%s","description":"%s"}' % (
        report_id,
        category,
        zone,
        description,
    )


def batch_body(tag: bytes, first: int, size: int, description: bytes) -> bytes:
    """A JSON array of ``size`` reports numbered from ``first`` (the body of ``POST /api/v1/incidents/batch``)."""
    return b"[%s]" % b",".join(report_body(b"%s-%d" % (tag, n), n, description) for n in range(first, first + size))


def created_in(answer: bytes) -> int:
    """The ``created`` count of a batch answer (it ends with the counts; nothing else is parsed)."""
    at = answer.rfind(b'"created":')
    if at < 0:
        return 0
    end = at + len(b'"created":')
    digits = end
    while digits < len(answer) and answer[digits : digits + 1].isdigit():
        digits += 1
    return int(answer[end:digits] or b"0")


def make_description(size: int) -> bytes:
    base = b"bench intake report: queue of cars at the junction, vendor stalls on the road. "
    return (base * (size // len(base) + 1))[: max(1, size)].rstrip() or b"x"


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- throughput: closed loop over C keep-alive connections --------------------------------------


@dataclass
class ClosedLoopState:
    deadline: float
    max_requests: int
    tag: bytes
    description: bytes
    request_timeout: float
    batch: int = 0  # reports per request through the batch door; 0: one per request through the single door
    bucket_start: float = 0.0
    sent: int = 0
    ok: int = 0  # reports stored (one per 201; a batch's ``created``)
    requests_ok: int = 0
    errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    error_kinds: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    per_second: Counter[int] = field(default_factory=Counter)
    last_done: float = 0.0


async def closed_loop_worker(state: ClosedLoopState, host: str, port: int) -> None:
    conn = HttpConnection(host, port)
    perf = time.perf_counter
    try:
        while True:
            if perf() >= state.deadline or state.sent >= state.max_requests:
                return
            state.sent += 1
            n = state.sent
            if state.batch:
                path = BATCH_PATH
                body = batch_body(state.tag, (n - 1) * state.batch, state.batch, state.description)
            else:
                path = INCIDENTS_PATH
                body = report_body(b"%s-%d" % (state.tag, n), n, state.description)
            started = perf()
            try:
                async with asyncio.timeout(state.request_timeout):
                    status, answer = await conn.request(b"POST", path, body)
            except NETWORK_ERRORS as exc:
                state.errors += 1
                state.error_kinds[type(exc).__name__] += 1
                conn.close()
                await asyncio.sleep(0.05)  # do not spin on a refusing server
                continue
            done = perf()
            state.last_done = done
            stored = 1 if status == 201 and not state.batch else created_in(answer) if status == 200 else 0
            if stored and (not state.batch or stored == state.batch):
                state.ok += stored
                state.requests_ok += 1
                state.latencies.append(done - started)
                state.per_second[int(done - state.bucket_start)] += stored
            else:
                state.errors += 1
                state.statuses[status] += 1
    finally:
        conn.close()


async def closed_loop(
    host: str,
    port: int,
    *,
    connections: int,
    seconds: float,
    max_requests: int,
    tag: bytes,
    description: bytes,
    request_timeout: float,
    batch: int = 0,
) -> ClosedLoopState:
    started = time.perf_counter()
    state = ClosedLoopState(
        deadline=started + seconds,
        max_requests=max_requests,
        tag=tag,
        description=description,
        request_timeout=request_timeout,
        batch=batch,
        bucket_start=started,
    )
    workers = [asyncio.create_task(closed_loop_worker(state, host, port)) for _ in range(connections)]
    # Every worker stops by itself at the deadline; the extra margin covers the last requests.
    done, pending = await asyncio.wait(workers, timeout=seconds + request_timeout + 10)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            state.errors += 1
            state.error_kinds[f"worker:{type(task.exception()).__name__}"] += 1
    return state


async def throughput_client(params: dict[str, Any], gate: Any = None) -> dict[str, Any]:
    """One client process's share of the throughput phase (warm-up, then the measured window)."""
    host, port = params["host"], params["port"]
    description = params["description"]
    if params["warmup"] > 0:
        warm = await closed_loop(
            host,
            port,
            connections=params["connections"],
            seconds=params["warmup"],
            max_requests=params["max_requests"],
            tag=b"warm-%s" % params["tag"],
            description=description,
            request_timeout=params["request_timeout"],
            batch=params["batch"],
        )
    else:
        warm = None
    if gate is not None:
        await gate()
    cpu_before = cpu_self()
    started = time.perf_counter()
    state = await closed_loop(
        host,
        port,
        connections=params["connections"],
        seconds=params["duration"],
        max_requests=params["max_requests"],
        tag=params["tag"],
        description=description,
        request_timeout=params["request_timeout"],
        batch=params["batch"],
    )
    return {
        "warmup_ok": warm.ok if warm else 0,
        "warmup_errors": warm.errors if warm else 0,
        "started": started,
        "ended": state.last_done or time.perf_counter(),
        "sent": state.sent,
        "ok": state.ok,
        "requests_ok": state.requests_ok,
        "errors": state.errors,
        "statuses": dict(state.statuses),
        "error_kinds": dict(state.error_kinds),
        "latencies": state.latencies,
        "per_second": dict(state.per_second),
        "client_cpu_s": cpu_self() - cpu_before,
    }


def _throughput_process(params: dict[str, Any], barrier: Any, results: Any) -> None:
    """Entry point of a client process (``--client-procs`` > 1)."""

    async def gate() -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, barrier.wait, 60)  # every client warmed up
        await loop.run_in_executor(None, barrier.wait, 120)  # the parent has prepared: go

    try:
        results.put(("ok", run_async(throughput_client(params, gate))))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        with contextlib.suppress(Exception):
            barrier.abort()
        results.put(("error", f"{type(exc).__name__}: {exc}"))


async def run_throughput_clients(
    args: argparse.Namespace, server: Server, db: Database, profiler: Profiler | None
) -> dict[str, Any]:
    procs = max(1, args.client_procs)
    base = {
        "host": LOOPBACK,
        "port": server.port,
        "duration": args.duration,
        "warmup": args.warmup,
        "request_timeout": args.request_timeout,
        "description": make_description(args.description_bytes),
        "batch": args.batch,
    }
    shares = [args.concurrency // procs + (1 if i < args.concurrency % procs else 0) for i in range(procs)]
    caps = [args.max_requests // procs + (1 if i < args.max_requests % procs else 0) for i in range(procs)]
    run_tag = b"t%d" % os.getpid()
    server_cpu_before: float | None = None
    db_cpu_before: dict[int, float] = {}

    analyzed_s: float | None = None

    async def between_warmup_and_window() -> None:
        nonlocal analyzed_s, db_cpu_before
        if args.pg_analyze and db.backend == "postgresql":
            began = time.perf_counter()
            await db.analyze()
            analyzed_s = round(time.perf_counter() - began, 3)
        db_cpu_before = await db.backend_cpu()

    threads_before: dict[int, tuple[float, float, int, int]] = {}

    def on_start() -> None:
        nonlocal server_cpu_before, threads_before
        server_cpu_before = server.cpu_seconds()
        threads_before = thread_times(server.pid)
        if profiler is not None:
            profiler.start()

    if procs == 1:

        async def gate() -> None:
            await between_warmup_and_window()
            on_start()

        parts = [
            await throughput_client(
                {**base, "connections": shares[0], "max_requests": caps[0], "tag": run_tag + b"-0"}, gate
            )
        ]
    else:
        ctx = multiprocessing.get_context("spawn")
        shares_params = [
            {**base, "connections": shares[i], "max_requests": caps[i], "tag": run_tag + b"-%d" % i}
            for i in range(procs)
            if shares[i] > 0
        ]
        # The parent joins the barrier too, so the server's CPU is sampled as the window opens.
        barrier = ctx.Barrier(len(shares_params) + 1)
        results = ctx.Queue()
        children = [
            ctx.Process(target=_throughput_process, args=(params, barrier, results), daemon=True)
            for params in shares_params
        ]
        for child in children:
            child.start()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, barrier.wait, 60 + args.warmup + args.request_timeout)
            await between_warmup_and_window()
            await loop.run_in_executor(None, barrier.wait, 60)
        except Exception as exc:  # a broken barrier means a child failed
            raise BenchError(f"client processes did not start together: {exc!r}") from exc
        on_start()
        parts = []
        limit = time.monotonic() + args.duration + args.request_timeout + 60
        for _ in children:
            remaining = max(1.0, limit - time.monotonic())
            kind, value = await loop.run_in_executor(None, results.get, True, remaining)
            if kind != "ok":
                raise BenchError(f"a client process failed: {value}")
            parts.append(value)
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
    server_cpu_after = server.cpu_seconds()
    threads_after = thread_times(server.pid)
    db_cpu_after = await db.backend_cpu()
    if profiler is not None:
        profiler.wait()
    # A backend that ended in the window loses its share; one that began in it counts whole (both rare: the
    # server's pool keeps its connections).
    db_cpu = sum(cpu - db_cpu_before.get(pid, 0.0) for pid, cpu in db_cpu_after.items()) if db_cpu_after else None

    latencies = [x for part in parts for x in part["latencies"]]
    ok = sum(p["ok"] for p in parts)
    requests_ok = sum(p["requests_ok"] for p in parts)
    errors = sum(p["errors"] for p in parts)
    started = min(p["started"] for p in parts)
    ended = max(p["ended"] for p in parts)
    elapsed = max(1e-9, ended - started)
    statuses: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    per_second: Counter[int] = Counter()
    for part in parts:
        statuses.update({str(k): v for k, v in part["statuses"].items()})
        kinds.update(part["error_kinds"])
        per_second.update({int(k): v for k, v in part["per_second"].items()})
    server_cpu = (
        server_cpu_after - server_cpu_before if server_cpu_after is not None and server_cpu_before is not None else None
    )
    client_cpu = sum(p["client_cpu_s"] for p in parts)
    return {
        "connections": args.concurrency,
        "client_procs": procs,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "elapsed_s": round(elapsed, 3),
        "requests": sum(p["sent"] for p in parts),
        "ok": ok,
        "batch": args.batch,
        "requests_ok": requests_ok,
        "errors": errors,
        "error_statuses": dict(statuses),
        "error_kinds": dict(kinds),
        "req_per_s": round(requests_ok / elapsed, 1),
        "reports_per_s": round(ok / elapsed, 1),
        "events_per_s": round(2 * ok / elapsed, 1),
        "latency": latency_summary(latencies),
        "per_second_ok": [per_second.get(i, 0) for i in range(int(args.duration) + 1)],
        "server_cpu_s": round(server_cpu, 2) if server_cpu is not None else None,
        "server_cpu_ms_per_req": (
            round(1000 * server_cpu / requests_ok, 3) if server_cpu is not None and requests_ok else None
        ),
        "server_cpu_ms_per_report": round(1000 * server_cpu / ok, 3) if server_cpu is not None and ok else None,
        "server_cpu_utilisation": round(server_cpu / elapsed, 2) if server_cpu is not None else None,
        "server_threads_per_report": thread_cpu_per_item(server.pid, threads_before, threads_after, ok) if ok else [],
        "db_cpu_s": round(db_cpu, 2) if db_cpu is not None else None,
        "db_cpu_ms_per_report": round(1000 * db_cpu / ok, 3) if db_cpu is not None and ok else None,
        "db_cpu_utilisation": round(db_cpu / elapsed, 2) if db_cpu is not None else None,
        "client_cpu_s": round(client_cpu, 2),
        "client_cpu_ms_per_req": round(1000 * client_cpu / ok, 3) if ok else None,
        "pg_analyze_before_window_s": analyzed_s,
        "warmup_ok": sum(p["warmup_ok"] for p in parts),
        "warmup_errors": sum(p["warmup_errors"] for p in parts),
    }


async def writer_batches(server: Server) -> dict[str, float]:
    """The writer's batches so far, from ``/metrics``: how they were applied, their number and mean size."""
    status, body = await http_get(LOOPBACK, server.port, "/metrics", timeout_s=60)
    found: dict[str, float] = {}
    if status != 200:
        return found
    for line in body.decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("dispatcher_writer_batches_applied_total{"):
            found[name.partition('how="')[2].partition('"')[0]] = float(value)
        elif name.startswith(("dispatcher_writer_batch_size_count{", "dispatcher_writer_batch_size_sum{")):
            found[name.partition("{")[0].removeprefix("dispatcher_writer_batch_size_")] = float(value)
    return found


async def stored_incident_count(server: Server) -> int | None:
    status, body = await http_get(LOOPBACK, server.port, "/api/v1/incidents?limit=1", timeout_s=60)
    if status != 200:
        return None
    return int(orjson.loads(body)["count"])


# -- latency: open loop at a fixed rate, watched on the board ---------------------------------------


class StampedBoard(ClientConnection):
    """The board's websocket connection, noting when each message's bytes reached this process.

    The library hands a message to ``recv`` a loop turn or more after its bytes arrive, and its own parsing
    (about 0.1 ms a message here, on the cores the server shares) would count as the server's otherwise:
    ``arrivals`` holds, in order, the time of the ``data_received`` call that completed each message.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: deque[float] = deque()
        self._chunk_at = 0.0

    def data_received(self, data: bytes) -> None:
        self._chunk_at = time.perf_counter()
        super().data_received(data)

    def process_event(self, event: Any) -> None:
        if self.response is not None and isinstance(event, Frame) and event.opcode in DATA_OPCODES and event.fin:
            self.arrivals.append(self._chunk_at)
        super().process_event(event)


async def receive(ws: StampedBoard) -> tuple[str | bytes, float]:
    """The board's next message and when its bytes arrived (see :class:`StampedBoard`)."""
    message = await ws.recv()
    return message, ws.arrivals.popleft()


@dataclass
class BoardWatch:
    seen: dict[str, float] = field(default_factory=dict)  # report_id -> its IncidentReported's bytes arrived
    read: dict[str, float] = field(default_factory=dict)  # report_id -> the watching task had read it
    snapshot_seq: int = 0
    snapshot_incidents: int = 0
    snapshot_bytes: int = 0
    snapshot_ms: float = 0.0
    events: int = 0
    event_types: Counter[str] = field(default_factory=Counter)
    other_frames: Counter[str] = field(default_factory=Counter)
    gaps: int = 0
    out_of_order: int = 0
    last_seq: int = 0
    closed: str | None = None


async def watch_board(ws: StampedBoard, watch: BoardWatch, stop_at: float) -> None:
    perf = time.perf_counter
    from websockets.exceptions import ConnectionClosed

    try:
        while perf() < stop_at:
            try:
                async with asyncio.timeout(max(0.01, stop_at - perf())):
                    message, arrived = await receive(ws)
            except TimeoutError:
                return
            read = perf()
            frame = orjson.loads(message)
            if frame.get("kind") != "event":  # a heartbeat ({"kind": "heartbeat", "seq": last}) or else
                watch.other_frames[str(frame.get("kind"))] += 1
                continue
            seq = frame.get("seq", 0)
            if seq != watch.last_seq + 1:
                if seq <= watch.last_seq:
                    watch.out_of_order += 1
                else:
                    watch.gaps += 1
            watch.last_seq = max(watch.last_seq, seq)
            watch.events += 1
            kind = frame.get("type", "")
            watch.event_types[kind] += 1
            if kind == "IncidentReported":
                report_id = frame["data"].get("report_id")
                if report_id is not None and report_id not in watch.seen:
                    watch.seen[report_id] = arrived
                    watch.read[report_id] = read
    except ConnectionClosed as exc:
        watch.closed = f"code {exc.rcvd.code if exc.rcvd else None}: {exc.rcvd.reason if exc.rcvd else ''}"


class ConnectionPool:
    """Idle keep-alive connections, most recently used first; at most ``size`` exist."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self._idle: asyncio.LifoQueue[HttpConnection] = asyncio.LifoQueue()
        for _ in range(size):
            self._idle.put_nowait(HttpConnection(host, port))
        self.size = size

    async def warm(self, count: int) -> None:
        conns = [self._idle.get_nowait() for _ in range(min(count, self._idle.qsize()))]
        try:
            await asyncio.gather(*(c.connect() for c in conns))
        finally:
            for conn in reversed(conns):
                self._idle.put_nowait(conn)

    async def acquire(self) -> HttpConnection:
        return await self._idle.get()

    def release(self, conn: HttpConnection) -> None:
        self._idle.put_nowait(conn)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()


async def run_latency(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    count = max(1, min(int(args.rate * args.latency_duration), args.max_requests))
    interval = 1.0 / args.rate
    description = make_description(args.description_bytes)
    tag = b"l%d" % os.getpid()
    watch = BoardWatch()
    reader: asyncio.Task[None] | None = None
    pool: ConnectionPool | None = None

    connect_started = time.perf_counter()
    connection = await connect(
        f"ws://{LOOPBACK}:{server.port}/ws/board",
        create_connection=StampedBoard,
        additional_headers=auth_headers(),
        open_timeout=30,
        max_size=512 * 1024 * 1024,
        max_queue=4096,
        compression=None,
        proxy=None,
        ping_interval=None,
    )
    assert isinstance(connection, StampedBoard)
    ws = connection
    try:
        async with asyncio.timeout(60):
            first, _ = await receive(ws)
            snapshot = orjson.loads(first)
            if snapshot.get("kind") != "snapshot":
                raise BenchError(f"the board's first frame is not a snapshot: {first[:200]!r}")
            watch.snapshot_incidents = len(snapshot["incidents"])
            watch.snapshot_bytes = len(first)
            while snapshot.get("more"):  # a larger snapshot comes in pages (docs/api.md)
                page, _ = await receive(ws)
                snapshot = orjson.loads(page)
                watch.snapshot_incidents += len(snapshot["incidents"])
                watch.snapshot_bytes += len(page)
        watch.snapshot_ms = round(1000 * (time.perf_counter() - connect_started), 1)
        watch.snapshot_seq = watch.last_seq = int(snapshot["seq"])
        del snapshot, first

        pool = ConnectionPool(LOOPBACK, server.port, args.latency_connections)
        await pool.warm(min(args.latency_connections, 16))

        send_at: dict[bytes, float] = {}
        scheduled: dict[bytes, float] = {}
        answered: dict[bytes, float] = {}
        lags: list[float] = []
        statuses: Counter[str] = Counter()
        error_kinds: Counter[str] = Counter()

        async def one(n: int, target: float) -> None:
            report_id = b"%s-%d" % (tag, n)
            body = report_body(report_id, n, description)
            conn = await pool.acquire()
            try:
                sent = time.perf_counter()
                lags.append(sent - target)
                try:
                    async with asyncio.timeout(args.request_timeout):
                        status, _ = await conn.request(b"POST", INCIDENTS_PATH, body)
                except NETWORK_ERRORS as exc:
                    error_kinds[type(exc).__name__] += 1
                    conn.close()
                    return
                if status == 201:
                    answered[report_id] = time.perf_counter()
                    send_at[report_id] = sent
                    scheduled[report_id] = target
                else:
                    statuses[str(status)] += 1
            finally:
                pool.release(conn)

        cpu_before = server.cpu_seconds()
        threads_before = thread_times(server.pid)
        phase_limit = args.latency_duration + args.request_timeout + args.board_wait + 30
        reader = asyncio.create_task(watch_board(ws, watch, time.perf_counter() + phase_limit))
        tasks: set[asyncio.Task[None]] = set()
        first_send = time.perf_counter() + 0.05
        for n in range(count):
            target = first_send + n * interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(n, target))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sending_ended = time.perf_counter()
        if tasks:
            _, pending = await asyncio.wait(set(tasks), timeout=args.request_timeout + 5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        server_cpu = server.cpu_seconds()
        threads_after = thread_times(server.pid)

        # Wait (bounded) for the board to show every report that was answered 201.
        board_deadline = time.perf_counter() + args.board_wait
        while time.perf_counter() < board_deadline and not reader.done():
            if all(rid.decode() in watch.seen for rid in send_at):
                break
            await asyncio.sleep(0.02)
    finally:
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if pool is not None:
            pool.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await ws.close()

    e2e: list[float] = []
    e2e_read: list[float] = []
    e2e_scheduled: list[float] = []
    worst_per_second: dict[int, float] = {}
    http: list[float] = []
    board_after_http: list[float] = []
    unseen: list[str] = []
    for rid, sent in send_at.items():
        http.append(answered[rid] - sent)
        arrived = watch.seen.get(rid.decode())
        if arrived is None:
            unseen.append(rid.decode())
            continue
        e2e.append(arrived - sent)
        e2e_read.append(watch.read[rid.decode()] - sent)
        second = int(sent - first_send)
        worst_per_second[second] = max(worst_per_second.get(second, 0.0), arrived - sent)
        e2e_scheduled.append(arrived - scheduled[rid])
        board_after_http.append(arrived - answered[rid])
    elapsed = max(1e-9, sending_ended - first_send)
    errors = sum(statuses.values()) + sum(error_kinds.values())
    lags.sort()
    return {
        "target_rate_per_s": args.rate,
        "duration_s": args.latency_duration,
        "connections_max": args.latency_connections,
        "reports_scheduled": count,
        "reports_sent": len(lags),
        "achieved_send_rate_per_s": round(len(lags) / elapsed, 1),
        "send_lag_ms": {
            "p50": round(1000 * lags[len(lags) // 2], 3) if lags else None,
            "max": round(1000 * lags[-1], 3) if lags else None,
        },
        "ok": len(send_at),
        "errors": errors,
        "error_statuses": dict(statuses),
        "error_kinds": dict(error_kinds),
        "board_latency": latency_summary(e2e),
        # The same to the moment the watching task had the message from the library (the figure before i14-latency).
        "board_latency_read": latency_summary(e2e_read),
        # From the time the open-loop schedule meant to send it: includes waiting for a free
        # connection when all --latency-connections were busy (no coordinated omission).
        "board_latency_from_schedule": latency_summary(e2e_scheduled),
        # The slowest report sent in each second: shows whether a tail is one stall or spread out.
        "board_latency_max_ms_per_second": [
            round(1000 * worst_per_second.get(i, 0.0), 1) for i in range(int(args.latency_duration) + 1)
        ],
        "http_latency": latency_summary(http),
        "board_minus_http": latency_summary(board_after_http, points=(50, 99)),
        "board_before_http_response": sum(1 for x in board_after_http if x < 0),
        "unseen_on_board": len(unseen),
        "unseen_examples": unseen[:5],
        "board": {
            "snapshot_seq": watch.snapshot_seq,
            "snapshot_incidents": watch.snapshot_incidents,
            "snapshot_bytes": watch.snapshot_bytes,
            "connect_to_snapshot_ms": watch.snapshot_ms,
            "events": watch.events,
            "event_types": dict(watch.event_types),
            "other_frames": dict(watch.other_frames),
            "seq_gaps": watch.gaps,
            "seq_out_of_order": watch.out_of_order,
            "closed": watch.closed,
        },
        "server_cpu_utilisation": (
            round((server_cpu - cpu_before) / max(1e-9, time.perf_counter() - first_send), 2)
            if server_cpu is not None and cpu_before is not None
            else None
        ),
        # Everything the server did while the reports came in (the board's frames, the audit rows, its timers),
        # per report answered: at a low rate the comparable figure when wall times are the machine's noise.
        "server_cpu_ms_per_report": (
            round(1000 * (server_cpu - cpu_before) / len(send_at), 3)
            if server_cpu is not None and cpu_before is not None and send_at
            else None
        ),
        # The same per thread (user and system time, context switches): the event loop's is "main"; under
        # uvicorn the busiest other one is the SQLite writer's thread. /proc's ticks are 10 ms: run >= 10 s.
        "server_threads_per_report": (
            thread_cpu_per_item(server.pid, threads_before, threads_after, len(send_at)) if send_at else []
        ),
    }


# -- profiling (py-spy, optional) ------------------------------------------------------------------


class Profiler:
    """``py-spy record`` on the server for the measured throughput window."""

    def __init__(self, py_spy: str, pid: int, out: Path, seconds: float, rate: int, *, blocking: bool) -> None:
        self.py_spy, self.pid, self.out, self.seconds, self.rate = py_spy, pid, out, seconds, rate
        self.blocking = blocking
        suffix = out.suffix.lower()
        self.format = {".svg": "flamegraph", ".json": "speedscope"}.get(suffix, "raw")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = out.with_name(out.name + ".log")

    def start(self) -> None:
        command = [
            self.py_spy,
            "record",
            "--pid",
            str(self.pid),
            "--duration",
            str(max(1, int(self.seconds))),
            "--rate",
            str(self.rate),
            "--format",
            self.format,
            *([] if self.blocking else ["--nonblocking"]),
            "--output",
            str(self.out),
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def find_py_spy(explicit: str | None) -> str:
    for candidate in (explicit, shutil.which("py-spy"), "/tmp/pyspy/bin/py-spy"):
        if candidate and Path(candidate).exists():
            return candidate
    raise BenchError("py-spy not found: pip install --target /tmp/pyspy py-spy, then --py-spy /tmp/pyspy/bin/py-spy")


def _short_frame(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``path/to/file.py:func`` (py-spy already shortens paths)."""
    name, _, location = frame.rpartition(" (")
    if not name:
        return frame
    path = location.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("/lib/"):
                path = path.split("/", 1)[-1]
            break
    return f"{path}:{name}"


def _package(path: str) -> str:
    """The package (first path part) or the stdlib module a frame's file belongs to."""
    head = path.split("/", 1)[0]
    return head.removesuffix(".py")


# Leaf frames of threads that sit waiting (the anyio worker pool, executors): not CPU work.
_WAIT_LEAVES = frozenset(
    {
        "threading.py:Condition.wait",
        "threading.py:Event.wait",
        "threading.py:Thread.join",
        "queue.py:Queue.get",
        "selectors.py:EpollSelector.select",
    }
)
_PROJECT = ("dispatcher/", "gateways/", "rules/")


def summarize_collapsed(path: Path, top: int = 20) -> dict[str, Any]:
    """Where the server's busy samples went, from py-spy's raw (collapsed) output: self samples
    per function and per package, and inclusive samples of the project's own functions. Samples
    of threads parked in a wait are counted apart as ``waiting``; percentages are of busy samples."""
    self_counts: Counter[str] = Counter()
    package_counts: Counter[str] = Counter()
    project_counts: Counter[str] = Counter()
    samples = waiting = 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_short_frame(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
            if not frames:
                continue
            if frames[-1] in _WAIT_LEAVES:
                waiting += count
                continue
            samples += count
            leaf = frames[-1]
            self_counts[leaf] += count
            package_counts[_package(leaf.rsplit(":", 1)[0])] += count
            for frame in {f for f in frames if f.startswith(_PROJECT) and f != "server/cli.py:serve"}:
                if not frame.startswith("server/cli.py"):
                    project_counts[frame] += count

    def rows(counter: Counter[str], key: str = "function") -> list[dict[str, Any]]:
        return [
            {key: name, "samples": n, "percent": round(100 * n / samples, 1) if samples else 0.0}
            for name, n in counter.most_common(top)
        ]

    return {
        "samples": samples,
        "waiting_samples": waiting,
        "self": rows(self_counts),
        "self_by_package": rows(package_counts, "package"),
        "inclusive_project": rows(project_counts),
    }


# -- the run -------------------------------------------------------------------------------------------


def http_server(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    """``Server`` arguments for ``--http-server``: none for ``dispatcher serve``, a command otherwise."""
    if args.http_server == "uvicorn":
        return {}
    if args.http_server == "bare":

        def bare(port: int) -> list[str]:
            return [
                sys.executable,
                *("-m", "uvicorn", "--app-dir", str(Path(__file__).resolve().parent)),
                *("--host", LOOPBACK, "--port", str(port), "--no-access-log"),
                *("--log-level", args.server_log_level.lower()),
                "_bare_app:app",
            ]

        return {"command": bare, "env": {}}
    granian = Path(sys.executable).parent / "granian"
    if not granian.exists():
        raise BenchError(f"--http-server granian: no {granian} (pip install granian into this venv)")
    env = {"DISPATCHER_DATABASE_URL": database_url, "DISPATCHER_LOG_LEVEL": args.server_log_level.upper()}

    def command(port: int) -> list[str]:
        return [
            str(granian),
            *("--interface", "asgi", "--factory", "--workers", "1", "--loop", "uvloop"),
            *("--host", LOOPBACK, "--port", str(port), "--working-dir", str(Path(__file__).resolve().parent)),
            *("--log-level", args.server_log_level.lower(), "--no-access-log"),
            "_granian_app:app",
        ]

    return {"command": command, "env": env}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Intake benchmark of the dispatcher: throughput (closed loop) and board latency (open loop).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    db = parser.add_argument_group("database")
    db.add_argument(
        "--database-url",
        default=None,
        help="omit for a fresh SQLite file in a temp folder; postgresql+asyncpg://root@127.0.0.1:5432/ADMIN_DB "
        "creates a fresh database bench_intake_<pid> through ADMIN_DB and drops it at the end",
    )
    db.add_argument("--pg-admin-db", default="test", help="admin database when the URL names none")
    db.add_argument("--keep-db", action="store_true", help="keep the PostgreSQL database and the temp folder")
    db.add_argument(
        "--pg-analyze",
        action="store_true",
        help="PostgreSQL: ANALYZE the fresh database after the warm-up, before the measured window "
        "(what autovacuum does within a minute when it is on); off by default: the fresh, never analyzed "
        "database is what a new deployment meets",
    )
    parser.add_argument("--phases", default="throughput,latency", help="comma-separated: throughput, latency")
    tp = parser.add_argument_group("throughput phase")
    tp.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    tp.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring (not counted)")
    tp.add_argument("--concurrency", type=int, default=64, help="keep-alive connections, one request in flight each")
    tp.add_argument("--client-procs", type=int, default=1, help="client processes sharing the connections")
    tp.add_argument("--max-requests", type=int, default=200_000, help="hard cap on requests per phase")
    tp.add_argument(
        "--batch",
        type=int,
        default=0,
        help="reports per request through POST /api/v1/incidents/batch (1-500); 0: one per POST /api/v1/incidents",
    )
    lat = parser.add_argument_group("latency phase")
    lat.add_argument("--rate", type=float, default=200.0, help="reports per second, open loop")
    lat.add_argument("--latency-duration", type=float, default=10.0, help="seconds of sending")
    lat.add_argument("--latency-connections", type=int, default=64, help="keep-alive connections at most")
    lat.add_argument("--board-wait", type=float, default=10.0, help="seconds to wait for stragglers on the board")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds before a request counts as failed")
    parser.add_argument("--description-bytes", type=int, default=120, help="size of each report's description")
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--server-log-level", default="info")
    parser.add_argument(
        "--http-server",
        choices=("uvicorn", "granian", "bare"),
        default="uvicorn",
        help="uvicorn: `dispatcher serve` (httptools, uvloop); granian: the same application under granian "
        "(one worker, uvloop; granian is not a project dependency: install it into the venv to compare); "
        "bare: the HTTP stack's floor, uvicorn and FastAPI answering the report door with nothing behind it "
        "(benchmarks/_bare_app.py: validation, a token check and a 201 of the dispatcher's length; throughput only)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write the result (default benchmarks/results/intake-<backend>-<UTC time>.json)",
    )
    prof = parser.add_argument_group("profiling (py-spy, not a project dependency)")
    prof.add_argument("--profile-out", type=Path, default=None, help=".svg, .json (speedscope) or raw collapsed text")
    prof.add_argument("--py-spy", default=None, help="path of the py-spy binary")
    prof.add_argument("--profile-rate", type=int, default=100, help="samples per second")
    prof.add_argument(
        "--profile-blocking",
        action="store_true",
        help="let py-spy pause the server for each sample (exact stacks, but it slows the server down much more)",
    )
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phases) - {"throughput", "latency"}
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    for name in ("duration", "rate", "latency_duration"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.duration > 600 or args.latency_duration > 600:
        parser.error("phases are capped at 600 s")
    if args.concurrency < 1 or args.client_procs < 1 or args.latency_connections < 1 or args.max_requests < 1:
        parser.error("--concurrency, --client-procs, --latency-connections and --max-requests must be >= 1")
    if not 0 <= args.batch <= 500:
        parser.error("--batch must be 0 (the single door) or 1 to 500")
    if args.client_procs > args.concurrency:
        parser.error("--client-procs cannot exceed --concurrency")
    if args.profile_out is not None and "throughput" not in args.phases:
        parser.error("--profile-out profiles the throughput phase: include it in --phases")
    return args


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    _, loop_name = loop_factory()
    tempdir = make_tempdir()
    result: dict[str, Any] = {
        "benchmark": "intake",
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "client": {"event_loop": loop_name, "http": "raw asyncio streams, HTTP/1.1 keep-alive"},
        "config": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in {"json", "py_spy"}
        },
        "phases": {},
        "checks": {},
    }
    db: Database | None = None
    server: Server | None = None
    try:
        db = await create_database(args.database_url, tempdir, admin_db=args.pg_admin_db, keep=args.keep_db)
        result["database"] = db.describe()
        result["machine"]["database_backend"] = db.backend
        server = Server(db.url, tempdir, log_level=args.server_log_level, **http_server(args, db.url))
        started = time.monotonic()
        server.start()
        ready = await server.wait_ready(args.startup_timeout)
        result["server"] = {
            "pid": server.pid,
            "port": server.port,
            "startup_s": round(time.monotonic() - started, 2),
            "rule_table": ready.get("rule_table"),
        }
        print(
            f"server pid {server.pid} on {LOOPBACK}:{server.port}, {db.server_version}, "
            f"ready in {result['server']['startup_s']} s",
            flush=True,
        )

        if "throughput" in args.phases:
            profiler = None
            if args.profile_out is not None:
                args.profile_out.parent.mkdir(parents=True, exist_ok=True)
                profiler = Profiler(
                    find_py_spy(args.py_spy),
                    server.pid,
                    args.profile_out,
                    args.duration,
                    args.profile_rate,
                    blocking=args.profile_blocking,
                )
            print(
                f"throughput: {args.concurrency} connections x {args.duration:g} s "
                f"(+{args.warmup:g} s warm-up), {args.client_procs} client process(es) ...",
                flush=True,
            )
            phase = await run_throughput_clients(args, server, db, profiler)
            stored = await stored_incident_count(server)
            expected = phase["ok"] + phase["warmup_ok"]
            phase["stored_incidents"] = stored
            phase["writer_batches"] = await writer_batches(server)
            phase["server_rss_mib"] = server.rss_mib()
            result["phases"]["throughput"] = phase
            result["checks"]["throughput_no_errors"] = phase["errors"] == 0 and phase["warmup_errors"] == 0
            result["checks"]["every_201_stored"] = stored == expected
            if profiler is not None:
                result["profile"] = {"path": str(args.profile_out), "format": profiler.format}
                if profiler.format == "raw" and args.profile_out.exists():
                    result["profile"].update(summarize_collapsed(args.profile_out))

        if "latency" in args.phases:
            print(
                f"latency: {args.rate:g} reports/s open loop for {args.latency_duration:g} s, one board websocket ...",
                flush=True,
            )
            phase = await run_latency(args, server)
            result["phases"]["latency"] = phase
            result["checks"]["latency_no_errors"] = phase["errors"] == 0
            result["checks"]["every_report_on_board"] = phase["unseen_on_board"] == 0 and phase["ok"] > 0
            result["checks"]["board_in_order"] = (
                phase["board"]["seq_gaps"] == 0 and phase["board"]["seq_out_of_order"] == 0
            )
            result["checks"]["board_not_dropped"] = phase["board"]["closed"] is None
    finally:
        if server is not None:
            server.stop()
            result.setdefault("server", {}).update(
                {"exit_code": server.exit_code, "stop_s": server.stop_seconds, "killed": server.killed}
            )
            if server.exit_code not in (0, -signal.SIGTERM, None) or server.killed:
                result["server"]["log_tail"] = server.log_tail(20)
        if db is not None:
            try:
                await drop_database(db)
            except Exception as exc:  # noqa: BLE001 - reported, the run's figures still stand
                print(f"warning: could not drop database {db.name}: {exc}", file=sys.stderr)
        if args.keep_db:
            print(f"kept {tempdir}", file=sys.stderr)
        else:
            shutil.rmtree(tempdir, ignore_errors=True)
    # uvicorn re-raises the SIGTERM it handled once it has shut down, so -15 is a clean stop.
    result["checks"]["server_stopped_cleanly"] = (
        server is not None and server.exit_code in (0, -signal.SIGTERM) and not server.killed
    )
    result["ok"] = all(result["checks"].values())
    return result


def _fmt_ms(summary: dict[str, Any], keys: tuple[str, ...] = ("p50", "p90", "p99", "max")) -> str:
    if not summary.get("count"):
        return "n/a"
    return "  ".join(f"{k} {summary[f'{k}_ms']:.1f}" for k in keys if f"{k}_ms" in summary) + " ms"


def print_summary(result: dict[str, Any]) -> None:
    machine = result["machine"]
    db = result.get("database", {})
    print()
    print(f"== intake benchmark: {db.get('server_version', '?')} ==")
    print(
        f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), Python {machine['python']}, "
        f"client loop {result['client']['event_loop']}"
    )
    if db.get("settings"):
        print("database: " + ", ".join(f"{k}={v}" for k, v in sorted(db["settings"].items())))
        if db["settings"].get("autovacuum") == "off":
            print("  note: autovacuum is off, so the fresh tables are never analyzed unless --pg-analyze")
    tp = result["phases"].get("throughput")
    if tp:
        per = f"{tp['batch']} reports per request" if tp.get("batch") else "one report per request"
        print(
            f"throughput: {tp['reports_per_s']:.0f} reports/s, {tp['req_per_s']:.0f} req/s ({per}; {tp['ok']} stored "
            f"in {tp['elapsed_s']:.1f} s, {tp['connections']} connections, {tp['client_procs']} client proc), "
            f"errors {tp['errors']}"
        )
        print(f"  latency   {_fmt_ms(tp['latency'], ('p50', 'p90', 'p99', 'max'))}")
        print(
            f"  server CPU {tp['server_cpu_ms_per_report']} ms/report, {tp['server_cpu_ms_per_req']} ms/req "
            f"({tp['server_cpu_utilisation']} cores busy), "
            f"client CPU {tp['client_cpu_ms_per_req']} ms/req, server RSS {tp['server_rss_mib']} MiB"
        )
        for row in tp.get("server_threads_per_report", []):
            print(
                f"  per report, {row['thread']:>9}: user {row['user_ms']:.3f} + system {row['system_ms']:.3f} ms CPU, "
                f"{row['voluntary_switches']:.2f} + {row['involuntary_switches']:.2f} (involuntary) context switches"
            )
        if tp.get("db_cpu_ms_per_report") is not None:
            both = tp["server_cpu_ms_per_report"] + tp["db_cpu_ms_per_report"]
            print(
                f"  database backends' CPU {tp['db_cpu_ms_per_report']} ms/report ({tp['db_cpu_utilisation']} cores "
                f"busy); server + database {both:.3f} ms/report"
            )
        print(f"  per second: {tp['per_second_ok']}")
        print(f"  stored incidents {tp['stored_incidents']} (201s incl. warm-up {tp['ok'] + tp['warmup_ok']})")
        batches = tp.get("writer_batches") or {}
        if batches.get("count"):
            applied = ", ".join(f"{int(v)} {k}" for k, v in sorted(batches.items()) if k not in ("count", "sum"))
            print(
                f"  writer batches {int(batches['count'])}, {batches['sum'] / batches['count']:.0f} commands each"
                + (f" ({applied})" if applied else "")
            )
    lat = result["phases"].get("latency")
    if lat:
        board = lat["board"]
        print(
            f"latency: {lat['achieved_send_rate_per_s']:.0f}/s sent of {lat['target_rate_per_s']:g}/s target, "
            f"{lat['ok']} x 201, errors {lat['errors']}, unseen on board {lat['unseen_on_board']}"
        )
        print(f"  POST -> board event  {_fmt_ms(lat['board_latency'])}")
        print(f"  (read by the task)   {_fmt_ms(lat['board_latency_read'])}")
        print(f"  (from schedule)      {_fmt_ms(lat['board_latency_from_schedule'])}")
        print(f"  POST -> 201          {_fmt_ms(lat['http_latency'])}")
        print(
            f"  board frame before the 201: {lat['board_before_http_response']} of {lat['board_latency']['count']}; "
            f"server CPU {lat['server_cpu_ms_per_report']} ms/report ({lat['server_cpu_utilisation']} cores busy)"
        )
        print(f"  slowest per second:  {lat['board_latency_max_ms_per_second']} ms")
        for row in lat["server_threads_per_report"]:
            print(
                f"  per report, {row['thread']:>9}: user {row['user_ms']:.3f} + system {row['system_ms']:.3f} ms CPU, "
                f"{row['voluntary_switches']:.2f} + {row['involuntary_switches']:.2f} (involuntary) context switches"
            )
        print(
            f"  board snapshot: {board['snapshot_incidents']} incidents, {board['snapshot_bytes'] / 1e6:.1f} MB "
            f"in {board['connect_to_snapshot_ms']} ms; events {board['events']}, gaps {board['seq_gaps']}, "
            f"send lag max {lat['send_lag_ms']['max']} ms"
        )
    profile = result.get("profile")
    if profile and profile.get("self"):
        print(
            f"profile ({profile['samples']} busy samples, {profile['waiting_samples']} waiting, {profile['path']}): "
            "top self time"
        )
        for row in profile["self"][:12]:
            print(f"  {row['percent']:5.1f}%  {row['function']}")
        print("  self time by package")
        for row in profile["self_by_package"][:12]:
            print(f"  {row['percent']:5.1f}%  {row['package']}")
        print("  inclusive time of the project's functions")
        for row in profile["inclusive_project"][:15]:
            print(f"  {row['percent']:5.1f}%  {row['function']}")
    elif profile:
        print(f"profile written to {profile['path']}")
    failed = [name for name, ok in result["checks"].items() if not ok]
    print("checks: " + ("all passed" if not failed else "FAILED " + ", ".join(failed)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run_async(main_async(args))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    print_summary(result)
    path = args.json
    if path is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        path = REPO_ROOT / "benchmarks" / "results" / f"intake-{result['database']['backend']}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"result: {path}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
