"""How smooth is the board with 1,000 open incidents and 50 events a second?

    .venv/bin/python benchmarks/board.py                       # 3 runs of 30 s, medians printed
    .venv/bin/python benchmarks/board.py --runs 1 --seconds 10 --incidents 300 --rate 20

Each run starts ``dispatcher serve`` with a fresh SQLite database on a free loopback port, creates
``--incidents`` open incidents over HTTP (five-way matters with five teams, wage disputes with
three, a few for triage), opens the board in a headless Chromium (Debian's ``/usr/bin/chromium``
through Playwright, 1600x900), waits until every row is drawn, then drives ``--rate`` events per
second for ``--seconds`` over HTTP, open loop: units acknowledging, setting off, arriving and
resolving, notes, new reports, resolved incidents closed. Measured inside the page:

* frames: the interval between animation frames during the drive (p50/p95/p99/max, and how many
  were longer than 50 ms);
* long tasks (``PerformanceObserver('longtask')``, tasks over 50 ms): count, total and longest;
* event → DOM: from the moment a feed frame arrives in the page to the end of the flush that drew
  it (the rows are in the DOM then); and from the event's server timestamp (same machine clock) to
  that flush;
* correctness at the end: the rows drawn are exactly the open incidents, and the board's last seq
  is the server's.

No assertion on time: the script prints the figures (and ``--json`` writes them). Every wait is
bounded; traffic goes to loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import statistics
import time
import zlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
from _common import Server, auth_headers, machine_info, make_tempdir  # benchmarks/ is the script's folder

CHROMIUM = "/usr/bin/chromium"
FIVE_WAY = {"category": "traffic.congestion", "zone": "five-way", "description": "集市日五岔口拥堵"}
WAGES = {"category": "labour.wage_arrears", "zone": "town-centre", "description": "拖欠农民工工资"}
TRIAGE = {"zone": "market", "description": "你好，请问一下"}
TRACE_CATEGORIES = ["devtools.timeline", "disabled-by-default-devtools.timeline", "v8.execute", "blink.user_timing"]
QUANTILES = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("max", 100.0))
NEXT_ACTION = {"dispatched": "acknowledge", "acknowledged": "en-route", "en_route": "on-scene", "on_scene": "resolve"}

# Installed before the board's own script: records frame intervals, long tasks, and when each
# feed frame arrived; board.onFlush (called by the board after each flush) settles the latencies.
PROBE = """
(() => {
  const probe = window.__probe = { frames: [], longtasks: [], arrivals: [], latencies: [], serverLat: [],
    recording: false, lastFrame: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (probe.recording) probe.longtasks.push(e.duration);
  }).observe({ type: 'longtask', buffered: false });
  const frame = (t) => {
    if (probe.recording && probe.lastFrame) probe.frames.push(t - probe.lastFrame);
    probe.lastFrame = t;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  const Real = window.WebSocket;
  window.WebSocket = class extends Real {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => {
        if (!probe.recording) return;
        const head = ev.data.slice(0, 48);
        const m = /"seq":(\\d+)/.exec(head);
        if (!m || head.indexOf('"kind":"event"') < 0) return;
        const at = /"at":"([^"]+)"/.exec(ev.data);
        const stamp = at ? Date.parse(at[1].replace(/(\\.\\d{3})\\d+/, '$1')) : NaN;
        probe.arrivals.push([Number(m[1]), performance.now(), stamp]);
      });
    }
  };
  let next = 0;
  const settle = (seq) => {
    const t = performance.now();
    const wall = Date.now();
    const a = probe.arrivals;
    while (next < a.length && a[next][0] <= seq) {
      probe.latencies.push(t - a[next][1]);
      if (Number.isFinite(a[next][2])) probe.serverLat.push(wall - a[next][2]);
      next += 1;
    }
  };
  const hook = () => { if (window.board) window.board.onFlush = settle; else setTimeout(hook, 10); };
  hook();
})();
"""


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 2)


async def create_incidents(
    http: httpx.AsyncClient, count: int, rng: random.Random, only: dict[str, str] | None = None
) -> None:
    bodies = []
    for n in range(count):
        roll = rng.random()
        body = only or (FIVE_WAY if roll < 0.5 else WAGES if roll < 0.97 else TRIAGE)
        bodies.append({**body, "report_id": f"bench-{n}"})
    sem = asyncio.Semaphore(16)

    async def send(body: dict[str, Any]) -> None:
        async with sem:
            answer = await http.post("/api/v1/incidents", json=body)
            answer.raise_for_status()

    await asyncio.gather(*(send(b) for b in bodies))


async def drive(
    http: httpx.AsyncClient, seconds: float, rate: float, rng: random.Random, start_id: int
) -> dict[str, Any]:
    """Open-loop operations at ``rate`` per second; each makes one event (a report makes two)."""
    listed = (await http.get("/api/v1/incidents", params={"open": "true", "limit": 500})).json()["data"]
    offset = 500
    while offset < 5000:
        page = (await http.get("/api/v1/incidents", params={"open": "true", "limit": 500, "offset": offset})).json()
        if not page["data"]:
            break
        listed += page["data"]
        offset += 500
    units = [(i["id"], a["team"], a["state"]) for i in listed for a in i["assignments"]]
    state = {(iid, team): st for iid, team, st in units}
    resolved: list[int] = []
    sent = 0
    errors = 0
    new_reports = 0
    tasks: set[asyncio.Task[Any]] = set()
    coro: Coroutine[Any, Any, Any]
    started = time.monotonic()

    async def call(method: str, url: str, body: dict[str, Any]) -> httpx.Response | None:
        nonlocal errors
        try:
            answer = await http.request(method, url, json=body)
        except httpx.HTTPError:
            errors += 1
            return None
        if answer.status_code >= 400:
            errors += 1
        return answer

    async def move(iid: int, team: str, action: str) -> None:
        answer = await call("POST", f"/api/v1/incidents/{iid}/assignments/{team}/{action}", {"actor": "bench"})
        if answer is not None and answer.status_code == 200:
            data = answer.json()
            state[(iid, team)] = next(a["state"] for a in data["assignments"] if a["team"] == team)
            if data["status"] == "resolved":
                resolved.append(iid)

    async def report(n: int) -> None:
        answer = await call("POST", "/api/v1/incidents", {**FIVE_WAY, "report_id": f"bench-live-{n}"})
        if answer is not None and answer.status_code == 201:
            for a in answer.json()["assignments"]:
                state[(answer.json()["id"], a["team"])] = a["state"]

    while True:
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            break
        due = sent / rate
        if due > elapsed:
            await asyncio.sleep(due - elapsed)
        roll = rng.random()
        movable = [k for k, v in state.items() if v in NEXT_ACTION]
        if roll < 0.10:
            new_reports += 1
            coro = report(new_reports)
        elif roll < 0.15 and resolved:
            coro = call("POST", f"/api/v1/incidents/{resolved.pop()}/close", {"actor": "bench"})
        elif roll < 0.30:
            iid = rng.choice(listed)["id"]
            coro = call("POST", f"/api/v1/incidents/{iid}/notes", {"text": f"备注 {sent}", "author": "bench"})
        elif movable:
            iid, team = rng.choice(movable)
            action = NEXT_ACTION[state[(iid, team)]]
            state[(iid, team)] = "busy"  # one move in flight per unit
            coro = _restore_on_fail(move(iid, team, action), state, (iid, team))
        else:
            continue
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    return {"operations": sent, "errors": errors, "seconds": round(time.monotonic() - started, 2)}


async def _restore_on_fail(coro: Any, state: dict[Any, str], key: Any) -> None:
    try:
        await coro
    finally:
        if state.get(key) == "busy":
            state[key] = "dispatched"


async def one_run(args: argparse.Namespace, run: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    rng = random.Random(args.seed + run)
    workdir = make_tempdir()
    server = Server(f"sqlite+aiosqlite:///{workdir / 'board.db'}", workdir, log_level="warning")
    server.start()
    try:
        await server.wait_ready()
        async with httpx.AsyncClient(base_url=server.base, timeout=30, headers=auth_headers()) as http:
            t0 = time.monotonic()
            await create_incidents(http, args.incidents, rng)
            setup_s = time.monotonic() - t0
            open_count = (await http.get("/api/v1/incidents", params={"open": "true", "limit": 1})).json()["count"]
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=args.chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                try:
                    context = await browser.new_context(viewport={"width": 1600, "height": 900})
                    token = auth_headers()["Authorization"].removeprefix("Bearer ")
                    await context.add_init_script(f"sessionStorage.setItem('board.token', {token!r});")
                    page = await context.new_page()
                    await page.add_init_script(PROBE)
                    t1 = time.monotonic()
                    await page.goto(f"{server.base}/board")
                    await page.wait_for_function(
                        "n => document.querySelectorAll('#incidents [data-incident-id]').length === n",
                        arg=open_count,
                        timeout=60_000,
                    )
                    first_render_s = time.monotonic() - t1
                    seq_before = (await http.get("/readyz")).json()["last_seq"]
                    if args.trace and run == 1:
                        await browser.start_tracing(page=page, path=str(args.trace), categories=TRACE_CATEGORIES)
                    load_before = os.getloadavg()[0]
                    await page.evaluate("() => { window.__probe.recording = true; }")
                    driven = await drive(http, args.seconds, args.rate, rng, open_count)
                    load_after = os.getloadavg()[0]
                    if args.trace and run == 1:
                        await browser.stop_tracing()
                    last_seq = (await http.get("/readyz")).json()["last_seq"]
                    await page.wait_for_function("seq => window.board.lastSeq() === seq", arg=last_seq, timeout=30_000)
                    await page.wait_for_timeout(300)  # the last flush
                    await page.evaluate("() => { window.__probe.recording = false; }")
                    probe = await page.evaluate(
                        "() => ({frames: __probe.frames, longtasks: __probe.longtasks,"
                        " latencies: __probe.latencies, serverLat: __probe.serverLat,"
                        " rows: Array.from(document.querySelectorAll('#incidents [data-incident-id]'))"
                        ".map(r => Number(r.dataset.incidentId))})"
                    )
                finally:
                    await browser.close()
            api_open = set()
            offset = 0
            while True:
                page_data = (
                    await http.get("/api/v1/incidents", params={"open": "true", "limit": 500, "offset": offset})
                ).json()["data"]
                if not page_data:
                    break
                api_open |= {i["id"] for i in page_data}
                offset += 500
    finally:
        server.stop()
    events = last_seq - seq_before
    frames = probe["frames"]
    rows = probe["rows"]
    return {
        "run": run,
        "incidents_created": args.incidents,
        "setup_s": round(setup_s, 2),
        "first_render_s": round(first_render_s, 2),
        "events": events,
        "events_per_s": round(events / driven["seconds"], 1),
        "operations": driven["operations"],
        "http_errors": driven["errors"],
        "frames": len(frames),
        "frame_ms": {"p50": pct(frames, 50), "p95": pct(frames, 95), "p99": pct(frames, 99), "max": pct(frames, 100)},
        "frames_over_50ms": sum(1 for f in frames if f > 50),
        "longtasks": len(probe["longtasks"]),
        "longtask_total_ms": round(sum(probe["longtasks"]), 1),
        "longtask_max_ms": round(max(probe["longtasks"], default=0), 1),
        "event_to_dom_ms": {
            q: pct(probe["latencies"], n) for q, n in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
        },
        "server_event_to_dom_ms": {
            q: pct(probe["serverLat"], n) for q, n in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
        },
        "events_measured": len(probe["latencies"]),
        "rows_match_open_incidents": sorted(rows) == sorted(api_open) and len(rows) == len(set(rows)),
        "open_at_end": len(api_open),
        "load_average_1m": [round(load_before, 2), round(load_after, 2)],
    }


# -- many boards: the fan-out of one report's events (--feeds N) -------------------------------------------------


class RawFeed(asyncio.Protocol):
    """A board feed read with as little work per frame as a client can do in Python (``--feed-client raw``).

    The handshake asks for ``permessage-deflate`` as Chromium does; frames are cut from the stream by hand, a
    compressed message (RSV1) inflated with the connection's context, the server's pings answered (uvicorn
    closes a connection that does not), and only an event's ``incident_id`` read. The library client spends
    most of its time per frame in its own machinery: with 500 feeds in the same two cores as the server it
    measured itself more than the server.
    """

    def __init__(self, authorization: dict[str, str], arrived: dict[int, float], connected: asyncio.Event) -> None:
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.authorization = authorization
        self.arrived = arrived
        self.connected = connected
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.inflate: Any = None
        self.takeover = True
        self.fragments: list[bytes] = []
        self.compressed = False
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        headers = "".join(f"{k}: {v}\r\n" for k, v in self.authorization.items())
        self.transport.write(
            (
                "GET /ws/board HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {self.key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                f"{headers}\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).decode("latin-1").lower()
            del buffer[: end + 4]
            if not head.startswith("http/1.1 101"):
                raise RuntimeError(f"the board feed was refused: {head[:80]}")
            self.upgraded = True
            if "permessage-deflate" in head:
                self.inflate = zlib.decompressobj(-15)
                self.takeover = "server_no_context_takeover" not in head
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1] & 0x7F
            at = 2
            if second == 126:
                if len(buffer) < 4:
                    return
                second, at = int.from_bytes(buffer[2:4], "big"), 4
            elif second == 127:
                if len(buffer) < 10:
                    return
                second, at = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < at + second:
                return
            payload = bytes(buffer[at : at + second])
            del buffer[: at + second]
            self._frame(first, payload, now)

    def _frame(self, first: int, payload: bytes, now: float) -> None:
        opcode = first & 0x0F
        if opcode == 0x9:  # ping: a pong with the same payload, masked as every client frame (RFC 6455 §5.3)
            mask = b"\x00\x00\x00\x00"  # a zero mask leaves the payload as it is
            assert self.transport is not None and len(payload) < 126
            self.transport.write(bytes((0x8A, 0x80 | len(payload))) + mask + payload)
            return
        if opcode in (0x8, 0xA):  # close (the server's; the connection ends), pong
            return
        if opcode in (0x1, 0x2):
            self.fragments = [payload]
            self.compressed = bool(first & 0x40)
        else:  # continuation
            self.fragments.append(payload)
        if not first & 0x80:
            return
        message = b"".join(self.fragments)
        self.fragments = []
        if self.compressed:
            if not self.takeover:
                self.inflate = zlib.decompressobj(-15)
            message = self.inflate.decompress(message + b"\x00\x00\xff\xff")
        if message.startswith(b'{"kind":"event"'):
            incident = orjson.loads(message)["data"].get("incident_id")
            if isinstance(incident, int):
                self.arrived[incident] = now
        elif message.startswith(b'{"kind":"snapshot') and not orjson.loads(message).get("more", False):
            self.connected.set()


def feeds_process(
    port: int,
    authorization: dict[str, str],
    count: int,
    seconds: float,
    ready: Any,
    stop: Any,
    out: Any,
    client: str = "raw",
) -> None:
    """``count`` board feeds (websocket clients with permessage-deflate, as Chromium asks) in a process of their
    own until ``stop`` is set (at most ``seconds``); says so on ``ready`` once every one has its snapshot, then
    sends back, per board,
    ``{incident_id: monotonic time its last frame arrived}`` (CLOCK_MONOTONIC is the machine's, not the process's).
    ``client``: ``raw`` (:class:`RawFeed`) or ``websockets`` (the library's asyncio client, parsing every frame)."""
    from _common import run_async
    from websockets.asyncio.client import connect

    stopped: asyncio.Future[Any]  # one watcher of ``stop`` per process (see run)

    async def one_raw(arrived: dict[int, float], connected: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        transport, feed = await loop.create_connection(
            lambda: RawFeed(authorization, arrived, connected), "127.0.0.1", port
        )
        try:
            await asyncio.wait({stopped, feed.lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            transport.close()
        lost = feed.lost.result() if feed.lost.done() else None
        if lost is not None:
            raise lost
        if feed.lost.done() and not stopped.done():
            raise RuntimeError("the server closed the board feed")

    async def one(arrived: dict[int, float], connected: asyncio.Event) -> None:
        if client == "raw":
            return await one_raw(arrived, connected)
        stop_at = time.monotonic() + seconds
        async with connect(
            f"ws://127.0.0.1:{port}/ws/board",
            additional_headers=authorization,
            open_timeout=120,
            max_size=64 * 1024 * 1024,
            proxy=None,
            ping_interval=None,
        ) as ws:
            while time.monotonic() < stop_at and not stop.is_set():
                try:
                    async with asyncio.timeout(0.25):
                        text = await ws.recv()
                except TimeoutError:
                    continue
                now = time.monotonic()
                message = orjson.loads(text)
                if message.get("kind") == "event":
                    incident = (message.get("data") or {}).get("incident_id")
                    if isinstance(incident, int):
                        arrived[incident] = now
                elif not message.get("more", False):
                    connected.set()

    async def run() -> tuple[list[dict[int, float]], list[str]]:
        nonlocal stopped
        stopped = asyncio.ensure_future(asyncio.to_thread(stop.wait, seconds))
        boards: list[dict[int, float]] = [{} for _ in range(count)]
        connected = [asyncio.Event() for _ in range(count)]
        tasks = []
        for board, flag in zip(boards, connected, strict=True):
            tasks.append(asyncio.ensure_future(one(board, flag)))
            await asyncio.sleep(0.002)  # not all at once: the handshakes queue in the server's backlog
        async with asyncio.timeout(120):
            await asyncio.gather(*(f.wait() for f in connected))
        ready.send(True)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return boards, [repr(r) for r in results if isinstance(r, BaseException)]

    boards, errors = run_async(run())
    out.send((boards, errors))
    out.close()


async def fanout_run(args: argparse.Namespace, run: int) -> dict[str, Any]:
    """Reports posted one at a time while ``args.feeds`` board feeds follow: for every (report, board), the time
    from sending the POST to that board receiving the report's last event frame."""
    import multiprocessing

    from _common import process_cpu_seconds, sign_in

    workdir = make_tempdir()
    server = Server(f"sqlite+aiosqlite:///{workdir / 'board.db'}", workdir, log_level="warning")
    server.start()
    procs: list[multiprocessing.Process] = []
    try:
        await server.wait_ready()
        await sign_in(server.port)
        async with httpx.AsyncClient(base_url=server.base, timeout=30, headers=auth_headers()) as http:
            # Enough five-way matters that every officer of the five teams holds ``max_tasks``: from then on a
            # report's teams all wait, as at the market-day peak the issue measured.
            await create_incidents(http, args.incidents, random.Random(args.seed + run), only=FIVE_WAY)
            seconds = 90.0 + args.reports / args.report_rate
            per_proc = -(-args.feeds // args.feed_procs)
            readies, outs = [], []
            stop = multiprocessing.Event()
            for n in range(args.feed_procs):
                count = min(per_proc, args.feeds - n * per_proc)
                if count <= 0:
                    break
                ready_r, ready_w = multiprocessing.Pipe(duplex=False)
                out_r, out_w = multiprocessing.Pipe(duplex=False)
                proc = multiprocessing.Process(
                    target=feeds_process,
                    args=(server.port, auth_headers(), count, seconds, ready_w, stop, out_w, args.feed_client),
                    daemon=True,
                )
                proc.start()
                procs.append(proc)
                readies.append(ready_r)
                outs.append(out_r)
            for ready in readies:
                if not await asyncio.to_thread(ready.poll, 150):
                    raise RuntimeError("the board feeds did not all connect in time")
                ready.recv()
            await asyncio.sleep(1.0)
            load_before = os.getloadavg()[0]
            cpu_before = process_cpu_seconds(server.pid) or 0.0
            sys_before = _system_cpu_seconds(server.pid)
            clients_before = sum(process_cpu_seconds(proc.pid) or 0.0 for proc in procs if proc.pid is not None)
            sent: dict[int, float] = {}
            first = time.monotonic()
            for n in range(args.reports):
                delay = first + n / args.report_rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                at = time.monotonic()
                answer = await http.post("/api/v1/incidents", json={**FIVE_WAY, "report_id": f"fan-{run}-{n}"})
                answer.raise_for_status()
                sent[answer.json()["id"]] = at
            await asyncio.sleep(2.0)
            cpu = (process_cpu_seconds(server.pid) or 0.0) - cpu_before
            sys_cpu = _system_cpu_seconds(server.pid) - sys_before
            clients_cpu = sum(process_cpu_seconds(p.pid) or 0.0 for p in procs if p.pid is not None) - clients_before
            load_after = os.getloadavg()[0]
            seq = (await http.get("/readyz")).json()["last_seq"]
            frames_per_report = await _frames_per_report(http, sorted(sent))
        stop.set()
        boards: list[dict[int, float]] = []
        errors: list[str] = []
        for out in outs:
            if await asyncio.to_thread(out.poll, 30):
                got, errs = out.recv()
                boards.extend(got)
                errors.extend(errs)
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        server.stop()
    latencies = sorted(
        (board[incident] - at) * 1000 for board in boards for incident, at in sent.items() if incident in board
    )
    missing = sum(1 for board in boards for incident in sent if incident not in board)
    return {
        "run": run,
        "feeds": args.feeds,
        "reports": len(sent),
        "event_frames_per_report": frames_per_report,
        "post_to_last_frame_ms": {q: pct(latencies, n) for q, n in QUANTILES},
        "deliveries": len(latencies),
        "missing": missing,
        "feed_errors": errors[:5],
        "server_cpu_ms_per_report": round(cpu * 1000 / max(1, len(sent)), 1),
        "server_system_cpu_ms_per_report": round(sys_cpu * 1000 / max(1, len(sent)), 1),  # of which in the kernel
        "feed_clients_cpu_ms_per_report": round(clients_cpu * 1000 / max(1, len(sent)), 1),
        "last_seq": seq,
        "load_average_1m": [round(load_before, 2), round(load_after, 2)],
    }


def _system_cpu_seconds(pid: int) -> float:
    """The process's CPU time in the kernel (``stime``): at 500 boards mostly the socket writes."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


async def _frames_per_report(http: httpx.AsyncClient, incidents: list[int]) -> float | None:
    counts = []
    for incident in incidents[:20]:
        answer = await http.get(f"/api/v1/incidents/{incident}")
        if answer.status_code == 200:
            counts.append(len(answer.json()["timeline"]))
    return statistics.median(counts) if counts else None


def median_of(runs: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for r in runs:
        v: Any = r
        for p in path:
            v = v[p]
        if v is not None:
            values.append(v)
    return round(statistics.median(values), 2) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="operations (≈ events) per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--json", type=Path, help="write every run and the medians here")
    parser.add_argument("--trace", type=Path, help="write a Chrome trace of the first run's drive here")
    fan = parser.add_argument_group("many boards (no browser): --feeds N")
    fan.add_argument("--feeds", type=int, default=0, help="board feeds following the reports (0: the browser run)")
    fan.add_argument("--feed-procs", type=int, default=4, help="client processes sharing the feeds")
    fan.add_argument(
        "--feed-client",
        choices=("raw", "websockets"),
        default="raw",
        help="raw: frames cut by hand, only an event's incident read (RawFeed); websockets: the library's client",
    )
    fan.add_argument("--reports", type=int, default=40, help="reports posted while the feeds follow")
    fan.add_argument("--report-rate", type=float, default=2.0, help="reports per second, one at a time")
    args = parser.parse_args()
    if args.feeds:
        if not (1 <= args.feeds <= 2000 and 1 <= args.feed_procs <= 16 and 1 <= args.reports <= 1000):
            parser.error("feeds 1-2000, feed-procs 1-16, reports 1-1000")
        if args.incidents == parser.get_default("incidents"):
            args.incidents = 100  # enough that every officer of the five teams is busy
        fan_runs = []
        for run in range(1, args.runs + 1):
            result = asyncio.run(fanout_run(args, run))
            print(json.dumps(result, ensure_ascii=False), flush=True)
            fan_runs.append(result)
        summary = {q: median_of(fan_runs, "post_to_last_frame_ms", q) for q in ("p50", "p95", "p99", "max")} | {
            key: median_of(fan_runs, key)
            for key in (
                "server_cpu_ms_per_report",
                "server_system_cpu_ms_per_report",
                "feed_clients_cpu_ms_per_report",
            )
        }
        print(json.dumps({"medians": summary, "machine": machine_info()}, ensure_ascii=False, indent=1))
        if args.json:
            args.json.write_text(
                json.dumps({"runs": fan_runs, "medians": summary, "machine": machine_info()}, indent=1)
            )
        return
    if not (1 <= args.runs <= 10 and 1 <= args.incidents <= 5000 and 0 < args.rate <= 500 and 0 < args.seconds <= 300):
        parser.error("runs 1-10, incidents 1-5000, rate up to 500/s, seconds up to 300")
    runs = []
    for run in range(1, args.runs + 1):
        result = asyncio.run(one_run(args, run))
        print(json.dumps(result, ensure_ascii=False), flush=True)
        runs.append(result)
    medians = {
        "first_render_s": median_of(runs, "first_render_s"),
        "events_per_s": median_of(runs, "events_per_s"),
        "frame_ms_p50": median_of(runs, "frame_ms", "p50"),
        "frame_ms_p95": median_of(runs, "frame_ms", "p95"),
        "frame_ms_p99": median_of(runs, "frame_ms", "p99"),
        "frame_ms_max": median_of(runs, "frame_ms", "max"),
        "frames_over_50ms": median_of(runs, "frames_over_50ms"),
        "longtasks": median_of(runs, "longtasks"),
        "longtask_total_ms": median_of(runs, "longtask_total_ms"),
        "longtask_max_ms": median_of(runs, "longtask_max_ms"),
        "event_to_dom_ms_p50": median_of(runs, "event_to_dom_ms", "p50"),
        "event_to_dom_ms_p95": median_of(runs, "event_to_dom_ms", "p95"),
        "event_to_dom_ms_p99": median_of(runs, "event_to_dom_ms", "p99"),
        "server_event_to_dom_ms_p50": median_of(runs, "server_event_to_dom_ms", "p50"),
        "server_event_to_dom_ms_p99": median_of(runs, "server_event_to_dom_ms", "p99"),
        "all_rows_matched": all(r["rows_match_open_incidents"] for r in runs),
    }
    print(json.dumps({"medians": medians, "machine": machine_info()}, ensure_ascii=False, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "medians": medians, "machine": machine_info()}, indent=1))


if __name__ == "__main__":
    main()
