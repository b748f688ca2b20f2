"""Replicas benchmark: reports per second with 1, 2 and 3 replicas serving 30 townships on PostgreSQL, and the
failover time (kill -9 of a township's owner to the first report of that township accepted again).

Extra packages: none (the project's venv: httpx, asyncpg). Needs the test PostgreSQL
(``DISPATCHER_TEST_POSTGRES_URL``, default postgresql+asyncpg://postgres@127.0.0.1:5432/test).

The county is made the way the tests make it (tests/e2e/county.py): ``--townships`` townships from the quick
test table, each in a database of its own, plus the county database (accounts, leases); all are dropped at
the end. Replicas are real ``dispatcher serve`` processes (``DISPATCHER_REPLICA_ID``) on free loopback ports.

throughput
    for each count in ``--replicas``: start that many replicas, wait until their leases settle, then
    ``--concurrency`` client loops post reports (``POST /api/v1/incidents``, each to the next township and the
    next replica in turn, so most are carried to their owner) for ``--duration`` seconds, never more than
    ``--max-reports``. Every report must be answered 201; reports/s counts them. The most connections each
    replica held meanwhile (``pg_stat_activity`` by ``application_name``, sampled every 0.2 s) is printed.

failover
    with three replicas running: a client posts a report of ``ershili`` every ``--probe-ms`` to the replicas
    that survive; the owner of ``ershili`` is killed (kill -9); the time from the kill to the first 201 of a
    report of ``ershili`` sent after it is the failover time. A fresh replica is started in the dead one's
    place before the next round. ``--failovers`` rounds; the median is printed.

Run from the repository root::

    .venv/bin/python benchmarks/replicas.py
    .venv/bin/python benchmarks/replicas.py --replicas 1 3 --duration 10 --failovers 3

Every loop is bounded in time and count; traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from server.app import replica_application_name  # noqa: E402
from tests.conftest import POSTGRES_URL, _asyncpg_dsn  # noqa: E402
from tests.e2e.county import County, owner_of, settled, until  # noqa: E402
from tests.e2e.server import ServerProcess  # noqa: E402


def _report(report_id: str) -> dict[str, str]:
    return {"report_id": report_id, "category": "order.noise", "zone": "square", "description": "广场噪音"}


def _env(args: argparse.Namespace) -> dict[str, str]:
    return {"DISPATCHER_ACCESS_LOG": "false", "DISPATCHER_DB_CONNECTIONS": str(args.db_connections)}


async def _start(county: County, ids: list[str], args: argparse.Namespace) -> list[ServerProcess]:
    ttl = args.lease_ttl
    replicas = []
    for replica_id in ids:
        replica = county.replica(replica_id, lease_ttl_s=ttl, env=_env(args))
        replica.log_level = "warning"
        await asyncio.to_thread(replica.start, 600.0)
        replicas.append(replica)
    await until(lambda: all(settled(r) for r in replicas), "the replicas settled", 600)
    return replicas


def _stop(replicas: list[ServerProcess]) -> None:
    for replica in replicas:
        if replica.process is not None and replica.process.poll() is None:
            replica.process.terminate()
    for replica in replicas:
        replica.stop()


async def throughput(county: County, count: int, args: argparse.Namespace, run: str) -> dict[str, object]:
    replicas = await _start(county, [f"{run}{n}" for n in range(count)], args)
    try:
        taken = 0
        refused: dict[str, int] = {}
        end = time.monotonic() + args.duration
        limits = httpx.Limits(max_connections=args.concurrency)
        async with httpx.AsyncClient(headers=replicas[0].headers, timeout=30, limits=limits) as http:

            async def loop(worker: int) -> None:
                nonlocal taken
                n = 0
                while time.monotonic() < end and taken < args.max_reports:
                    township = county.ids[(worker + n) % len(county.ids)]
                    replica = replicas[(worker + n) % len(replicas)]
                    answer = await http.post(
                        f"{replica.base_url}/api/v1/incidents",
                        params={"township": township},
                        json=_report(f"{run}-{worker}-{n}"),
                    )
                    n += 1
                    if answer.status_code == 201:
                        taken += 1
                    else:
                        status = f"http_{answer.status_code}"
                        refused[status] = refused.get(status, 0) + 1

            names = [replica_application_name(f"{run}{n}") for n in range(count)]
            most: dict[str, int] = {}
            watcher = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
            watching = asyncio.create_task(_connections(watcher, names, most, end))
            try:
                started = time.monotonic()
                await asyncio.gather(*(loop(w) for w in range(args.concurrency)))
                elapsed = time.monotonic() - started
                await watching
            finally:
                watching.cancel()
                await watcher.close()
        return {
            "replicas": count,
            "reports": taken,
            "seconds": elapsed,
            "per_s": taken / elapsed,
            "most_connections": most,
            **refused,
        }
    finally:
        await asyncio.to_thread(_stop, replicas)


async def _connections(watcher: asyncpg.Connection, names: list[str], most: dict[str, int], end: float) -> None:
    """Every 0.2 s until ``end``: the most connections each replica held (``pg_stat_activity`` by application_name)."""
    query = "SELECT application_name, count(*) FROM pg_stat_activity WHERE application_name = ANY($1) GROUP BY 1"
    while time.monotonic() < end:
        for name, held in await watcher.fetch(query, names):
            most[name] = max(most.get(name, 0), int(held))
        await asyncio.sleep(0.2)


async def failover(county: County, args: argparse.Namespace) -> list[float]:
    replicas = await _start(county, ["f0", "f1", "f2"], args)
    times = []
    try:
        async with httpx.AsyncClient(headers=replicas[0].headers, timeout=10) as http:
            for round_ in range(args.failovers):
                owner = owner_of("ershili", replicas)
                assert owner is not None, "nobody serves ershili"
                survivors = [r for r in replicas if r is not owner]
                await asyncio.to_thread(owner.kill_hard)
                killed = time.monotonic()
                n = 0
                while True:
                    assert time.monotonic() - killed < 120, "ershili not served again within 120 s"
                    target = survivors[n % len(survivors)]
                    try:
                        answer = await http.post(
                            f"{target.base_url}/api/v1/incidents",
                            params={"township": "ershili"},
                            json=_report(f"failover-{round_}-{n}"),
                        )
                    except httpx.TransportError:
                        answer = None
                    n += 1
                    if answer is not None and answer.status_code == 201:
                        break
                    await asyncio.sleep(args.probe_ms / 1000)
                times.append(time.monotonic() - killed)
                print(f"failover {round_ + 1}: {times[-1]:.2f} s ({n} probes)", flush=True)
                fresh = county.replica(f"f{3 + round_}", lease_ttl_s=args.lease_ttl, env=_env(args))
                fresh.log_level = "warning"
                await asyncio.to_thread(fresh.start, 600.0)
                replicas = [*survivors, fresh]
                await until(lambda: all(settled(r) for r in replicas), "the replicas settled", 600)  # noqa: B023
    finally:
        await asyncio.to_thread(_stop, replicas)
    return times


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench_replicas_"))
    county = County(folder, args.townships)
    await county.create()
    try:
        print(
            f"{args.townships} townships, lease ttl {args.lease_ttl} s, {args.db_connections} connections per "
            f"replica, load {os.getloadavg()}",
            flush=True,
        )
        for count in args.replicas:
            row = await throughput(county, count, args, f"r{count}")
            print(f"throughput: {row} (load {os.getloadavg()[0]:.1f})", flush=True)
        if args.failovers:
            times = await failover(county, args)
            print(
                f"failover: median {statistics.median(times):.2f} s of {len(times)} "
                f"[{min(times):.2f}-{max(times):.2f}] (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    finally:
        await county.drop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--townships", type=int, default=30)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per replica count")
    parser.add_argument("--max-reports", type=int, default=50_000)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--probe-ms", type=float, default=100.0, help="failover: between two probe reports")
    parser.add_argument(
        "--db-connections", type=int, default=12, help="DISPATCHER_DB_CONNECTIONS of every replica (its budget)"
    )
    parser.add_argument("--lease-ttl", type=float, default=3.0, help="DISPATCHER_LEASE_TTL_S of every replica")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
