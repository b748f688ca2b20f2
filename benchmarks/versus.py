"""The intake and latency benchmarks beside Prometheus Alertmanager, with the ratios, as one command.

    .venv/bin/python benchmarks/versus.py                         # SQLite, 10 s throughput, 50/s latency
    .venv/bin/python benchmarks/versus.py --rounds 3 --json /tmp/versus.json   # interleaved, medians
    .venv/bin/python benchmarks/versus.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test

Each round runs, one after the other on the same machine:

1. the dispatcher: ``benchmarks/intake.py`` (its own process: a fresh database, ``dispatcher serve``), the
   throughput phase (``--concurrency`` keep-alive connections, one report per request, durable: 201 after the
   commit) and the latency phase (``--rate`` reports a second, open loop, POST → the ``IncidentReported`` frame
   on a board websocket);
2. Alertmanager: Debian's ``prometheus-alertmanager`` started here on a free loopback port with a fresh
   storage folder, no cluster, and a webhook receiver served by this script on 127.0.0.1. Throughput: the same
   closed loop of ``POST /api/v2/alerts``, one alert per request, each a new alert (routed to a receiver with
   no integration, so only the intake is measured); latency: the same open-loop rate of alerts routed to the
   webhook (``group_by`` the alert's own label, ``group_wait: 0s``), POST → its webhook request arriving.

Server CPU comes from ``/proc/<pid>/stat`` of each server over the measured window (the less load-sensitive
figure on a shared machine). The ratios printed are the dispatcher's over Alertmanager's (for throughput, above
1 is faster; for CPU and latency, above 1 costs more). Alertmanager keeps alerts in memory: it is not durable,
the dispatcher is. Where ``prometheus-alertmanager`` is not installed (``apt-get install
prometheus-alertmanager``) the script says so and exits 0 without measuring. Every loop is bounded in count and
time; traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (  # benchmarks/ is the script's folder
    LOOPBACK,
    HttpConnection,
    free_port,
    latency_summary,
    machine_info,
    process_cpu_seconds,
    run_async,
)

HERE = Path(__file__).resolve().parent
CANDIDATES = ("prometheus-alertmanager", "alertmanager")


def find_alertmanager(explicit: str | None) -> str | None:
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


# -- the dispatcher: benchmarks/intake.py --------------------------------------------------------------


def run_intake(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    command = [
        sys.executable,
        str(HERE / "intake.py"),
        "--phases",
        "throughput,latency",
        "--duration",
        str(args.duration),
        "--concurrency",
        str(args.concurrency),
        "--rate",
        str(args.rate),
        "--latency-duration",
        str(args.latency_duration),
        "--server-log-level",
        "warning",
        "--json",
        str(out),
    ]
    if args.database_url:
        command += ["--database-url", args.database_url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if not out.exists():
        raise RuntimeError(f"intake.py wrote no result (exit {done.returncode}): {done.stderr[-800:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    tp, lat = result["phases"]["throughput"], result["phases"]["latency"]
    return {
        "per_s": tp["reports_per_s"],
        "cpu_ms": tp["server_cpu_ms_per_report"],
        "latency_p50_ms": lat["board_latency"].get("p50_ms"),
        "latency_p99_ms": lat["board_latency"].get("p99_ms"),
        "errors": tp["errors"] + lat["errors"],
        "checks_ok": result.get("ok"),
    }


# -- Alertmanager ----------------------------------------------------------------------------------------

CONFIG = """
route:
  receiver: none
  group_by: ['n']
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 24h
  routes:
    - receiver: hook
      matchers: ['phase="latency"']
      group_by: ['n']
      group_wait: 0s
receivers:
  - name: none
  - name: hook
    webhook_configs:
      - url: http://{host}:{port}/hook
        send_resolved: false
"""


class Receiver:
    """The webhook receiver: the monotonic time each alert (its ``n`` label) first arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.expected: set[str] = set()
        self.all_in = asyncio.Event()  # every expected alert has arrived

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                now = time.monotonic()
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    for alert in json.loads(body)["alerts"]:
                        self.arrived.setdefault(alert["labels"]["n"], now)
                if self.expected and self.expected.issubset(self.arrived):
                    self.all_in.set()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


def alert_body(n: int, phase: str) -> bytes:
    return (
        b'[{"labels":{"alertname":"report","phase":"%s","n":"%s-%d","zone":"five-way"},'
        b'"annotations":{"description":"%s"}}]' % (phase.encode(), phase.encode(), n, "集市日五岔口拥堵".encode())
    )


async def alertmanager_round(binary: str, args: argparse.Namespace) -> dict[str, Any]:
    receiver = Receiver()
    hook = await asyncio.start_server(receiver.handle, LOOPBACK, 0)
    hook_port = hook.sockets[0].getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="versus-am-"))
    (folder / "am.yml").write_text(CONFIG.format(host=LOOPBACK, port=hook_port))
    port = free_port()
    proc = _start(binary, folder, port)
    try:
        await _wait_ready(port, proc)
        throughput = await _am_throughput(port, proc.pid, args)
        latency = await _am_latency(port, receiver, args)
        return {**throughput, **latency}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        hook.close()
        await hook.wait_closed()
        shutil.rmtree(folder, ignore_errors=True)


def _start(binary: str, folder: Path, port: int) -> subprocess.Popen[bytes]:
    with open(folder / "am.log", "wb") as log:
        return subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'am.yml'}",
                f"--storage.path={folder / 'data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


async def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"alertmanager exited with {proc.returncode}")
        with contextlib.suppress(OSError, ValueError, asyncio.IncompleteReadError):
            conn = HttpConnection(LOOPBACK, port)
            try:
                status, _ = await asyncio.wait_for(conn.request(b"GET", b"/-/ready"), 2)
            finally:
                conn.close()
            if status == 200:
                return
        await asyncio.sleep(0.1)  # polling a process we started for its port: nothing to wait on instead
    raise RuntimeError("alertmanager was not ready in 30 s")


async def _am_throughput(port: int, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    counter = iter(range(args.max_requests))
    ok = errors = 0
    measuring = False

    async def worker() -> None:
        nonlocal ok, errors
        conn = HttpConnection(LOOPBACK, port)
        try:
            for n in counter:
                if time.monotonic() >= stop_at:
                    return
                try:
                    status, _ = await asyncio.wait_for(
                        conn.request(b"POST", b"/api/v2/alerts", alert_body(n, "tp")), 30
                    )
                except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
                    conn.close()
                    status = 0
                if measuring:
                    if status == 200:
                        ok += 1
                    else:
                        errors += 1
        finally:
            conn.close()

    stop_at = time.monotonic() + args.warmup + args.duration
    workers = [asyncio.ensure_future(worker()) for _ in range(args.concurrency)]
    await asyncio.sleep(args.warmup)
    measuring = True
    cpu_before, started = process_cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*workers)
    elapsed = time.monotonic() - started
    cpu = (process_cpu_seconds(pid) or 0.0) - (cpu_before or 0.0)
    return {
        "per_s": round(ok / elapsed, 1),
        "cpu_ms": round(1000 * cpu / ok, 3) if ok else None,
        "errors": errors,
    }


async def _am_latency(port: int, receiver: Receiver, args: argparse.Namespace) -> dict[str, Any]:
    count = min(int(args.rate * args.latency_duration), args.max_requests)
    sent: dict[str, float] = {}
    errors = 0
    pool = [HttpConnection(LOOPBACK, port) for _ in range(8)]
    free: asyncio.Queue[HttpConnection] = asyncio.Queue()
    for conn in pool:
        free.put_nowait(conn)

    async def one(n: int) -> None:
        nonlocal errors
        conn = await free.get()
        try:
            sent[f"latency-{n}"] = time.monotonic()
            status, _ = await asyncio.wait_for(conn.request(b"POST", b"/api/v2/alerts", alert_body(n, "latency")), 30)
            if status != 200:
                errors += 1
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
            conn.close()
            errors += 1
        finally:
            free.put_nowait(conn)

    receiver.expected = {f"latency-{n}" for n in range(count)}
    first = time.monotonic()
    tasks = []
    for n in range(count):
        delay = first + n / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(n)))
    await asyncio.gather(*tasks)
    with contextlib.suppress(TimeoutError):  # stragglers: the webhooks arrive on the receiver's own connections
        await asyncio.wait_for(receiver.all_in.wait(), 10)
    for conn in pool:
        conn.close()
    summary = latency_summary([receiver.arrived[k] - at for k, at in sent.items() if k in receiver.arrived])
    return {
        "latency_p50_ms": summary.get("p50_ms"),
        "latency_p99_ms": summary.get("p99_ms"),
        "latency_errors": errors,
        "unseen": sum(1 for k in sent if k not in receiver.arrived),
    }


# -- the run ---------------------------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alertmanager", default=None, help="the binary (default: prometheus-alertmanager on PATH)")
    parser.add_argument("--database-url", default=None, help="the dispatcher's database (default: a SQLite file)")
    parser.add_argument("--rounds", type=int, default=1, help="dispatcher and Alertmanager in turn, this many times")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds of the throughput phase")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=50.0, help="reports (alerts) per second in the latency phase")
    parser.add_argument("--latency-duration", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=200_000, help="hard cap per phase")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not (1 <= args.rounds <= 10 and 0 < args.duration <= 120 and 0 < args.latency_duration <= 120):
        parser.error("rounds 1-10, durations up to 120 s")
    if not (1 <= args.concurrency <= 512 and 0 < args.rate <= 2000):
        parser.error("concurrency 1-512, rate up to 2000/s")
    binary = find_alertmanager(args.alertmanager)
    if binary is None:
        print(
            "skipped: Prometheus Alertmanager is not installed (Debian: apt-get install prometheus-alertmanager; "
            "or --alertmanager PATH). Nothing was measured."
        )
        return 0
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False, timeout=30)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="versus-") as tmp:
        for n in range(1, args.rounds + 1):
            load = os.getloadavg()[0]
            ours = run_intake(args, Path(tmp) / f"intake-{n}.json")
            theirs = run_async(alertmanager_round(binary, args))
            row = {"round": n, "load_average_1m": round(load, 2), "dispatcher": ours, "alertmanager": theirs}
            print(json.dumps(row, ensure_ascii=False), flush=True)
            rows.append(row)

    def med(side: str, key: str) -> float | None:
        return median([r[side].get(key) for r in rows])

    summary = {
        key: {"dispatcher": med("dispatcher", key), "alertmanager": med("alertmanager", key)}
        for key in ("per_s", "cpu_ms", "latency_p50_ms", "latency_p99_ms")
    }
    for values in summary.values():
        values["ratio"] = ratio(values["dispatcher"], values["alertmanager"])
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print()
    print(
        f"== dispatcher ({backend}, durable) beside {version.stdout.splitlines()[0] if version.stdout else binary} =="
    )
    print(f"medians of {len(rows)} round(s); ratio = dispatcher / Alertmanager")
    labels = {
        "per_s": "throughput, one per request (/s)",
        "cpu_ms": "server CPU per report / alert (ms)",
        "latency_p50_ms": f"at {args.rate:g}/s: POST → board / webhook p50 (ms)",
        "latency_p99_ms": f"at {args.rate:g}/s: POST → board / webhook p99 (ms)",
    }
    for key, label in labels.items():
        v = summary[key]
        print(f"  {label:<48} {v['dispatcher']!s:>10} {v['alertmanager']!s:>10}   × {v['ratio']}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "versus",
                    "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "alertmanager": version.stdout.splitlines()[0] if version.stdout else binary,
                    "rounds": rows,
                    "medians": summary,
                    "machine": machine_info(),
                },
                ensure_ascii=False,
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
