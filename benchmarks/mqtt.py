"""MQTT benchmark: durable intake over MQTT QoS 1, and publish → dispatch notice latency.

Extra packages: none (the project's venv: aiomqtt, orjson, httpx-free loopback HTTP from _common).
Needs the ``mosquitto`` binary: the benchmark starts its own broker on a free loopback port
(persistence in a temporary folder, ``max_queued_messages 0``, ``max_inflight_messages 1000``: the
settings of deploy/mosquitto/mosquitto.conf), and a real ``dispatcher serve --mqtt-url`` process
with a fresh database (a SQLite file by default; ``--database-url postgresql+asyncpg://...`` makes
a new PostgreSQL database and drops it at the end).

throughput
    ``--reports`` reports are published at QoS 1 by ``--publishers`` connections, each keeping
    ``--window`` publishes in flight. The dispatcher acknowledges each to the broker only after
    committing it, so the figure is the rate at which reports became **durable**: the count of
    reports the dispatcher created (its ``/api/v1/mqtt/stats``), sampled from the moment
    ``--warmup-reports`` were stored until all were. At the end every report must be in the
    database exactly once.

latency
    reports are published open-loop at ``--rate`` per second for ``--latency-duration`` seconds
    while a subscriber listens on the lead team's dispatch topic; for each report, the time from
    just before its publish to the arrival of its ``UnitsDispatched`` notice (matched by
    report_id). ``--devices`` simulated phones (simulations/devices.py) send positions meanwhile.

Run from the repository root::

    .venv/bin/python benchmarks/mqtt.py                   # SQLite, 3 runs, median
    .venv/bin/python benchmarks/mqtt.py --database-url postgresql+asyncpg://root@127.0.0.1:5432/test
    .venv/bin/python benchmarks/mqtt.py --runs 1 --phases throughput --profile-out /tmp/mqtt.txt

``--profile-out`` runs py-spy (as ``intake.py`` does: ``--py-spy PATH``, not a project dependency) on the
server for ``--profile-seconds`` from the start of the throughput phase: ``.svg`` a flame graph, ``.json``
speedscope, anything else py-spy's raw collapsed stacks plus a printed summary of the hottest functions.

Every loop is bounded in count and time; traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
from _common import (
    LOOPBACK,
    REPO_ROOT,
    BenchError,
    Server,
    create_database,
    drop_database,
    free_port,
    http_get,
    latency_summary,
    machine_info,
    make_tempdir,
)

sys.path.insert(0, str(REPO_ROOT))
from intake import Profiler, find_py_spy, summarize_collapsed

from gateways.mqtt.gateway import NO_DELAY
from simulations.devices import DeviceConfig, run_devices

FIVE_WAY = {"category": "traffic.congestion", "zone": "five-way"}


class Mosquitto:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise BenchError("the mosquitto binary is not installed")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        user = "user root\n" if os.geteuid() == 0 else ""
        (workdir / "mosquitto.conf").write_text(
            f"listener {self.port} {LOOPBACK}\nallow_anonymous true\n{user}persistence true\n"
            f"persistence_location {workdir}/\nautosave_interval 60\nmax_queued_messages 0\nmax_queued_bytes 0\n"
            "max_inflight_messages 1000\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error\nlog_type warning\n"
        )

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        with open(self.workdir / "mosquitto.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.workdir / "mosquitto.conf")], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise BenchError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)


async def stats(server: Server) -> dict[str, Any]:
    status, body = await http_get(LOOPBACK, server.port, "/api/v1/mqtt/stats", timeout_s=5)
    if status != 200:
        raise BenchError(f"/api/v1/mqtt/stats answered {status}")
    return dict(orjson.loads(body))


async def wait_connected(server: Server, timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if (await stats(server))["state"] == "connected":
                return
            await asyncio.sleep(0.05)


def mqtt_client(url: str) -> aiomqtt.Client:
    port = int(url.rsplit(":", 1)[1])
    c = aiomqtt.Client(
        LOOPBACK,
        port,
        identifier=f"bench-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
        socket_options=NO_DELAY,
    )
    c.pending_calls_threshold = 100_000
    return c


def report(report_id: str) -> bytes:
    return orjson.dumps({"report_id": report_id, **FIVE_WAY, "description": "集市日五岔口拥堵 benchmark report"})


async def throughput(
    args: argparse.Namespace, broker: Mosquitto, server: Server, topic: str, profiler: Profiler | None = None
) -> dict[str, Any]:
    total = args.reports
    ids = [f"tp-{n:07d}" for n in range(total)]

    async def publisher(share: list[str]) -> None:
        async with mqtt_client(broker.url) as client:
            window = asyncio.Semaphore(args.window)

            async def one(report_id: str) -> None:
                try:
                    await client.publish(topic, report(report_id), qos=1, timeout=30)
                finally:
                    window.release()

            tasks = []
            for report_id in share:
                await window.acquire()
                tasks.append(asyncio.create_task(one(report_id)))
            await asyncio.gather(*tasks)

    base = (await stats(server))["received"].get("reports_created", 0)
    started = time.monotonic()
    cpu_before = server.cpu_seconds() or 0.0
    if profiler is not None:
        profiler.start()
    shares = [ids[i :: args.publishers] for i in range(args.publishers)]
    publishing = asyncio.gather(*(publisher(s) for s in shares))
    samples: list[tuple[float, int]] = []
    published_at: float | None = None
    async with asyncio.timeout(args.timeout):
        while True:
            created = (await stats(server))["received"].get("reports_created", 0) - base
            samples.append((time.monotonic(), created))
            if publishing.done() and published_at is None:
                publishing.result()
                published_at = time.monotonic() - started
            if created >= total:
                break
            await asyncio.sleep(0.05)
    await publishing
    elapsed = samples[-1][0] - started
    # The notices of those reports (seven messages each: two events on board/events, five teams)
    # go out through the outbox behind the intake; wait for it to catch up before going on.
    async with asyncio.timeout(args.timeout):
        while True:
            lag = (await stats(server))["outbox"]["lag"]
            if lag == 0:
                break
            await asyncio.sleep(0.05)
    outbox_done = time.monotonic() - started
    cpu = (server.cpu_seconds() or 0.0) - cpu_before  # intake and the outbox's notices so far
    warm = next((t, c) for t, c in samples if c >= args.warmup_reports)
    rate = (samples[-1][1] - warm[1]) / max(1e-9, samples[-1][0] - warm[0])
    status, body = await http_get(LOOPBACK, server.port, "/api/v1/incidents?limit=1", timeout_s=10)
    stored = orjson.loads(body)["count"] if status == 200 else None
    if profiler is not None:
        await asyncio.to_thread(profiler.wait)
    return {
        "reports": total,
        "durable_reports_per_s": round(rate, 1),
        "overall_reports_per_s": round(total / elapsed, 1),
        "publishers_done_s": round(published_at or elapsed, 2),
        "seconds": round(elapsed, 2),
        "notices_all_out_s": round(outbox_done, 2),
        "server_cpu_ms_per_report": round(1000 * cpu / total, 3),
        "stored": stored,
        "stored_ok": stored == base + total,
    }


async def latency(args: argparse.Namespace, broker: Mosquitto, server: Server, prefix: str) -> dict[str, Any]:
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    all_seen = asyncio.Event()
    n_reports = int(args.rate * args.latency_duration)
    run = uuid.uuid4().hex[:6]
    devices: Any = None  # a forked process running the phones
    if args.devices:
        # The phones get their own process: in the measuring loop their ~1,000 notices/s would be
        # queueing delay of the benchmark client, not of the dispatcher.
        config = DeviceConfig(
            mqtt_url=broker.url,
            prefix=prefix,
            officers=args.devices,
            duration_s=args.latency_duration + args.notice_wait + 5,
            work_tasks=False,
            position_every_s=1.0,
        )
        devices = multiprocessing.get_context("fork").Process(target=_phones, args=(config,), daemon=True)
        devices.start()
    async with mqtt_client(broker.url) as listener, mqtt_client(broker.url) as publisher:
        await listener.subscribe(f"{prefix}teams/traffic-police/dispatch", qos=1)

        async def listen() -> None:
            async for message in listener.messages:
                arrived = time.perf_counter()
                body = orjson.loads(message.payload if isinstance(message.payload, bytes) else b"{}")
                report_id = (body.get("incident") or {}).get("report_id")
                if body.get("type") == "UnitsDispatched" and report_id in sent and report_id not in seen:
                    seen[report_id] = arrived
                    if len(seen) == n_reports:
                        all_seen.set()

        listening = asyncio.create_task(listen())
        created_before = (await stats(server))["received"].get("reports_created", 0)
        start = time.perf_counter()
        pending = []
        for n in range(n_reports):
            target = start + n / args.rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            report_id = f"lat-{run}-{n:06d}"
            sent[report_id] = time.perf_counter()
            pending.append(asyncio.create_task(publisher.publish(f"{prefix}reports", report(report_id), qos=1)))
        await asyncio.gather(*pending)
        # Where a backlog sits when the sending ends: reports not yet stored, or notices not yet out.
        at_end = await stats(server)
        behind = {
            "reports_not_yet_stored": len(sent) - (at_end["received"].get("reports_created", 0) - created_before),
            "outbox_lag_events": at_end["outbox"]["lag"],
        }
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.notice_wait):
                await all_seen.wait()
        listening.cancel()
    if devices is not None:
        devices.terminate()
        devices.join(timeout=10)
    delays = [seen[r] - sent[r] for r in seen]
    return {
        "rate": args.rate,
        "sent": len(sent),
        "notices_missing": len(sent) - len(seen),
        "backlog_when_sending_ended": behind,
        "publish_to_dispatch_notice": latency_summary(delays),
        "devices": args.devices,
    }


def _phones(config: DeviceConfig) -> None:
    asyncio.run(run_devices(config))


async def one_run(args: argparse.Namespace, n: int) -> dict[str, Any]:
    workdir = make_tempdir()
    broker = Mosquitto(workdir)
    broker.start()
    db = await create_database(args.database_url, workdir, admin_db=args.pg_admin_db)
    prefix = f"bench/{uuid.uuid4().hex[:8]}/"
    server = Server(
        db.url,
        workdir,
        log_level="warning",
        extra_args=["--mqtt-url", broker.url],
        env={"DISPATCHER_MQTT_PREFIX": prefix, "DISPATCHER_MQTT_CLIENT_ID": f"bench-dispatcher-{n}"},
    )
    # The machine may be shared: say how busy it was when the run began and ended.
    result: dict[str, Any] = {"run": n, "database": db.backend, "loadavg_1min_before": os.getloadavg()[0]}
    try:
        server.start()
        await server.wait_ready()
        await wait_connected(server)
        if "throughput" in args.phases:
            profiler = None
            if args.profile_out is not None:
                out = args.profile_out if args.runs == 1 else args.profile_out.with_stem(f"{args.profile_out.stem}-{n}")
                py_spy = find_py_spy(args.py_spy)
                profiler = Profiler(py_spy, server.pid, out, args.profile_seconds, args.profile_rate, blocking=False)
            result["throughput"] = await throughput(args, broker, server, f"{prefix}reports", profiler)
            print(f"run {n} throughput: {json.dumps(result['throughput'])}", flush=True)
            if profiler is not None and profiler.format == "raw" and profiler.out.exists():
                print_profile(profiler.out, summarize_collapsed(profiler.out))
        if "latency" in args.phases:
            result["latency"] = await latency(args, broker, server, prefix)
            print(f"run {n} latency: {json.dumps(result['latency'])}", flush=True)
        print(f"run {n} load average (1 min) before {result['loadavg_1min_before']:.2f}", flush=True)
    finally:
        result["loadavg_1min_after"] = os.getloadavg()[0]
        server.stop()
        broker.stop()
        await drop_database(db)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def print_profile(path: Path, profile: dict[str, Any]) -> None:
    print(f"profile ({profile['samples']} busy samples, {profile['waiting_samples']} waiting, {path}):")
    for title, key, name in (
        ("self, by function", "self", "function"),
        ("self, by package", "self_by_package", "package"),
        ("inclusive, the project's functions", "inclusive_project", "function"),
    ):
        print(f"  {title}:")
        for row in profile[key][:15]:
            print(f"    {row['percent']:5.1f} %  {row[name]}")


def median_of(runs: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(float(value))
    return round(statistics.median(values), 2) if values else None


async def main(args: argparse.Namespace) -> int:
    runs = [await one_run(args, n + 1) for n in range(args.runs)]
    summary = {
        "machine": machine_info(),
        "args": {k: v for k, v in vars(args).items()},
        "runs": runs,
        "median": {
            "durable_reports_per_s": median_of(runs, "throughput", "durable_reports_per_s"),
            "overall_reports_per_s": median_of(runs, "throughput", "overall_reports_per_s"),
            "server_cpu_ms_per_report": median_of(runs, "throughput", "server_cpu_ms_per_report"),
            "latency_p50_ms": median_of(runs, "latency", "publish_to_dispatch_notice", "p50_ms"),
            "latency_p99_ms": median_of(runs, "latency", "publish_to_dispatch_notice", "p99_ms"),
        },
    }
    print(json.dumps(summary["median"], indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2, default=str))
    ok = all(r.get("throughput", {}).get("stored_ok", True) for r in runs) and all(
        r.get("latency", {}).get("notices_missing", 0) == 0 for r in runs
    )
    return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--database-url", default=None, help="default: a fresh SQLite file; or a loopback PostgreSQL URL"
    )
    parser.add_argument("--pg-admin-db", default="test")
    parser.add_argument("--phases", default="throughput,latency")
    parser.add_argument("--runs", type=int, default=3, help="fresh broker, database and server each; medians reported")
    parser.add_argument("--reports", type=int, default=20_000, help="throughput: reports in all")
    parser.add_argument("--warmup-reports", type=int, default=2_000, help="throughput: not counted in the rate")
    parser.add_argument("--publishers", type=int, default=2, help="throughput: publishing connections")
    parser.add_argument("--window", type=int, default=200, help="throughput: publishes in flight per connection")
    parser.add_argument("--timeout", type=float, default=180.0, help="throughput: seconds before giving up")
    parser.add_argument("--rate", type=float, default=200.0, help="latency: reports per second, open loop")
    parser.add_argument("--latency-duration", type=float, default=10.0, help="latency: seconds of sending")
    parser.add_argument("--notice-wait", type=float, default=10.0, help="latency: seconds to wait for stragglers")
    parser.add_argument("--devices", type=int, default=20, help="latency: simulated phones sending positions")
    parser.add_argument("--json-out", type=Path, default=None)
    prof = parser.add_argument_group("profiling (throughput phase)")
    prof.add_argument("--profile-out", type=Path, default=None, help=".svg, .json (speedscope) or raw collapsed text")
    prof.add_argument("--profile-seconds", type=float, default=10.0, help="from the start of the throughput phase")
    prof.add_argument("--profile-rate", type=int, default=100, help="samples per second")
    prof.add_argument("--py-spy", default=None, help="default: py-spy on PATH, else /tmp/pyspy/bin/py-spy")
    args = parser.parse_args(argv)
    if args.profile_out is not None and "throughput" not in args.phases:
        parser.error("--profile-out profiles the throughput phase: include it in --phases")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
