"""The standard doors' reads at volume: Open311 ``GET requests.json`` (the specification's cap of 1,000 records,
each with its last public note) and the CAP Atom feed.

Starts ``dispatcher serve`` (fresh SQLite database, free loopback port), posts ``--requests`` Open311 requests with a
``citizen_app`` key (a public note on every other one) and ``--notices`` CAP notices, then times each read
``--repeat`` times from one client over loopback, one at a time (duplicate joining off, so that each request is an
incident of its own). Prints medians and maxima; no assertion on time.

    .venv/bin/python benchmarks/interop.py
    .venv/bin/python benchmarks/interop.py --requests 1000 --notices 50 --repeat 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import free_port  # benchmarks/ is the script's folder

PASSWORD = "bench-admin-password-0123"
NOTICE = {
    "category": ["Transport"],
    "urgency": "Expected",
    "severity": "Moderate",
    "certainty": "Observed",
    "area": {"zone": "five-way"},
    "text": {
        "zh-CN": {"event": "道路封闭", "headline": "五岔口封闭", "description": "集市日封闭"},
        "en": {"event": "Road closed", "headline": "Five-way closed", "description": "Closed on market day"},
    },
}


def _timed(http: httpx.Client, url: str, repeat: int) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(repeat):
        started = time.perf_counter()
        answer = http.get(url)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        size = len(answer.content)
    return statistics.median(times), max(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--notices", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "DISPATCHER_ADMIN_PASSWORD": PASSWORD,
            "DISPATCHER_RATE_PER_S": "0",
            "DISPATCHER_DUPLICATE_RADIUS_M": "0",
        }
        database = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        command = [sys.executable, "-m", "server", "serve", "--port", str(port), "--database-url", database]
        server = subprocess.Popen([*command, "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            else:
                raise SystemExit("the server did not get ready in 60 s")
            token = httpx.post(f"{base}/api/v1/auth/token", data={"username": "admin", "password": PASSWORD}).json()
            with httpx.Client(
                base_url=base, timeout=60, headers={"Authorization": f"Bearer {token['access_token']}"}
            ) as admin:
                admin.post("/api/v1/accounts", json={"name": "bench-app", "role": "citizen_app", "township": "ershili"})
                key = admin.post("/api/v1/accounts/bench-app/tokens", json={"label": "bench"}).json()["token"]
                for n in range(options.requests):
                    made = admin.post(
                        "/open311/v2/requests.json",
                        data={
                            "api_key": key,
                            "service_code": "traffic.illegal_parking",
                            "lat": "28.8481",
                            "long": "118.9121",
                            "description": f"乱停车 {n}",
                        },
                        headers={"Authorization": ""},
                    )
                    made.raise_for_status()
                    if n % 2 == 0:
                        incident = made.json()[0]["service_request_id"]
                        admin.post(f"/api/v1/incidents/{incident}/notes", json={"text": "已派交警", "public": True})
                for _ in range(options.notices):
                    admin.post("/api/v1/alerts", json=NOTICE).raise_for_status()
            with httpx.Client(base_url=base, timeout=60) as anybody:
                for name, url in [
                    ("Open311 GET requests.json (all)", "/open311/v2/requests.json"),
                    ("Open311 GET requests.xml (all)", "/open311/v2/requests.xml"),
                    ("Open311 GET requests/1.json", "/open311/v2/requests/1.json"),
                    ("Open311 GET services.json", "/open311/v2/services.json"),
                    ("CAP GET feed.xml", "/cap/feed.xml"),
                ]:
                    median, worst, size = _timed(anybody, url, options.repeat)
                    print(f"{name:34} median {median:7.1f} ms   max {worst:7.1f} ms   {size:>9,} bytes")
        finally:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    main()
