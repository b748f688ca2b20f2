"""What the access log costs a request: the same in-process requests with ``dispatcher.access`` writing its
line (a stream handler on /dev/null, as a console or file would format it), silenced by level, and removed
(``DISPATCHER_ACCESS_LOG=false``), interleaved round by round; median per request of each.

    .venv/bin/python benchmarks/access_log.py [--requests 2000] [--rounds 5]

In process (httpx's ASGI transport, no sockets) and on ``GET /healthz`` (public: the guard lets it by at once;
no store), so that the middleware's share is as large as it can be; ``benchmarks/intake.py`` measures the
whole request path.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from dispatcher.settings import Settings
from server.app import create_app


async def _per_request_us(app: object, requests: int) -> float:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        for _ in range(50):  # warm up
            await http.get("/healthz")
        started = time.perf_counter()
        for _ in range(requests):
            await http.get("/healthz")
        return (time.perf_counter() - started) / requests * 1e6


async def main(requests: int, rounds: int) -> None:
    folder = Path(tempfile.mkdtemp())
    url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    apps = {
        "off": create_app(Settings(database_url=url, access_log=False)),
        "on": create_app(Settings(database_url=url)),
    }
    logger = logging.getLogger("dispatcher.access")
    handler = logging.StreamHandler(DEVNULL)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    times: dict[str, list[float]] = {"removed": [], "silenced by level": [], "writing": []}
    for _ in range(rounds):
        times["removed"].append(await _per_request_us(apps["off"], requests))
        logger.setLevel(logging.WARNING)
        times["silenced by level"].append(await _per_request_us(apps["on"], requests))
        logger.setLevel(logging.INFO)
        times["writing"].append(await _per_request_us(apps["on"], requests))
    for name, values in times.items():
        print(f"{name:>18}: {statistics.median(values):7.1f} µs/request (median of {rounds} rounds of {requests})")
    print(
        f"{'cost of the line':>18}: {statistics.median(times['writing']) - statistics.median(times['removed']):7.1f} µs"
    )


DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - written to for the whole run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
