"""Shared helpers for the dispatcher benchmarks: the server under test, a fresh database, a tiny
HTTP/1.1 keep-alive client, statistics and a description of the machine.

Everything here talks only to loopback addresses (127.0.0.0/8, ::1): a database or server URL
naming any other host is refused. Every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import ipaddress
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatcher.core.incidents import Report

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


class BenchError(RuntimeError):
    """The benchmark cannot go on (the server did not start, a host is not loopback...)."""


# -- loopback only -----------------------------------------------------------------------------


def require_loopback(host: str | None) -> None:
    """Refuse any host that is not a loopback address: this benchmark sends traffic nowhere else."""
    if not host:
        raise BenchError("a host is required (loopback only)")
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise BenchError(f"host {host!r} is not a loopback address; this benchmark only talks to loopback") from None
    if not address.is_loopback:
        raise BenchError(f"host {host!r} is not a loopback address; this benchmark only talks to loopback")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# -- event loop --------------------------------------------------------------------------------


def loop_factory() -> tuple[Any, str]:
    """uvloop's loop factory when it is installed, else asyncio's default; and its name."""
    try:
        import uvloop
    except ImportError:
        return None, "asyncio"
    return uvloop.new_event_loop, f"uvloop {importlib.metadata.version('uvloop')}"


def run_async(coro: Any) -> Any:
    factory, _ = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


# -- a fresh database --------------------------------------------------------------------------


@dataclass
class Database:
    """The database the server under test writes to; ``url`` is what the server is given."""

    backend: str  # "sqlite" or "postgresql"
    url: str
    tempdir: Path
    name: str = ""
    admin: dict[str, Any] = field(default_factory=dict)
    keep: bool = False
    server_version: str = ""
    settings: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "name": self.name,
            "server_version": self.server_version,
            "settings": self.settings,
        }

    async def backend_cpu(self) -> dict[int, float]:
        """PostgreSQL: CPU seconds so far of each server backend connected to the benchmark database, by pid.

        The database server runs on the same cores as the dispatcher: its share of a report counts too.
        Only the backends of this database are read (``pg_stat_activity``), not the server's shared
        processes (WAL writer, checkpointer), which other databases on the machine use as well.
        """
        if self.backend != "postgresql":
            return {}
        import asyncpg

        conn = await asyncpg.connect(**self.admin, timeout=10)
        try:
            pids = [r[0] for r in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", self.name)]
        finally:
            await conn.close()
        return {pid: cpu for pid in pids if (cpu := process_cpu_seconds(pid)) is not None}

    async def analyze(self) -> None:
        """PostgreSQL: ``ANALYZE`` the benchmark database (what autovacuum would do in time)."""
        if self.backend != "postgresql":
            return
        import asyncpg

        conn = await asyncpg.connect(**{**self.admin, "database": self.name}, timeout=10)
        try:
            await conn.execute("ANALYZE")
        finally:
            await conn.close()


async def create_database(url: str | None, tempdir: Path, *, admin_db: str = "test", keep: bool = False) -> Database:
    """A fresh, empty database: a SQLite file in ``tempdir`` by default, or a new PostgreSQL
    database ``bench_intake_<pid>`` created through ``admin_db`` on the loopback server in ``url``."""
    from sqlalchemy.engine import make_url

    if url is None or make_url(url).get_backend_name() == "sqlite":
        import sqlite3

        path = tempdir / "bench.db"
        if url is not None:
            database = make_url(url).database
            if database and database != ":memory:":
                raise BenchError("for SQLite the benchmark makes its own file; give no path (or omit --database-url)")
        return Database(
            backend="sqlite",
            url=f"sqlite+aiosqlite:///{path}",
            tempdir=tempdir,
            name=str(path),
            keep=keep,
            server_version=f"SQLite {sqlite3.sqlite_version}",
            # What the server's store sets on every connection (dispatcher/sql_store.py).
            settings={"journal_mode": "WAL", "synchronous": "FULL"},
        )

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise BenchError(f"unsupported backend {parsed.get_backend_name()!r}: use SQLite or postgresql+asyncpg")
    if parsed.get_driver_name() != "asyncpg":
        raise BenchError("use the asyncpg driver: postgresql+asyncpg://user@127.0.0.1:5432/admin_db")
    host = parsed.host or LOOPBACK
    require_loopback(host)
    import asyncpg

    name = f"bench_intake_{os.getpid()}"
    admin = {
        "host": host,
        "port": parsed.port or 5432,
        "user": parsed.username or "root",
        "password": parsed.password,
        "database": parsed.database or admin_db,
    }
    conn = await asyncpg.connect(**admin, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
        version = str(await conn.fetchval("SHOW server_version"))
        rows = await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
            ["autovacuum", "fsync", "synchronous_commit", "shared_buffers", "wal_sync_method", "max_connections"],
        )
        settings = {r["name"]: r["setting"] for r in rows}
    finally:
        await conn.close()
    server_url = parsed.set(database=name, host=host).render_as_string(hide_password=False)
    return Database(
        backend="postgresql",
        url=server_url,
        tempdir=tempdir,
        name=name,
        admin=admin,
        keep=keep,
        server_version=f"PostgreSQL {version}",
        settings=settings,
    )


async def drop_database(db: Database) -> None:
    if db.backend != "postgresql" or db.keep:
        return
    import asyncpg

    conn = await asyncpg.connect(**db.admin, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
    finally:
        await conn.close()


# -- the server under test ---------------------------------------------------------------------


def dispatcher_command() -> list[str]:
    """The ``dispatcher`` console script of the interpreter running the benchmark (the venv's)."""
    script = Path(sys.executable).parent / "dispatcher"
    if script.exists():
        return [str(script)]
    found = shutil.which("dispatcher")
    if found:
        return [found]
    return [sys.executable, "-c", "from server.cli import main; main()"]


class Server:
    """``dispatcher serve`` in a process of its own, on a free loopback port, logging to a file."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        *,
        log_level: str = "info",
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        command: Callable[[int], list[str]] | None = None,
    ) -> None:
        """``command(port)``: another server than ``dispatcher serve`` (its settings then come from ``env``)."""
        self.database_url = database_url
        self.command = command
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.workdir = workdir
        self.log_level = log_level
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"
        self.exit_code: int | None = None
        self.stop_seconds: float | None = None
        self.killed = False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        command = (
            self.command(self.port)
            if self.command
            else [
                *dispatcher_command(),
                "serve",
                "--host",
                LOOPBACK,
                "--port",
                str(self.port),
                "--database-url",
                self.database_url,
                "--log-level",
                self.log_level,
                *self.extra_args,
            ]
        )
        env = dict(os.environ)
        env.pop("DISPATCHER_DATABASE_URL", None)
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        # The benchmark signs in as the administrator (see sign_in) and measures the intake, not the pacing.
        env["DISPATCHER_ADMIN_PASSWORD"] = BENCH_PASSWORD
        env["DISPATCHER_RATE_PER_S"] = "0"
        # Every report its own incident, as the figures so far were measured: the benchmarks send reports placed only
        # by the five-way's and the market's zones, which since issue 17 join an open incident there (duplicates).
        env.setdefault("DISPATCHER_DUPLICATE_RADIUS_M", "0")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    async def wait_ready(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Poll ``/readyz`` until it answers 200; raises when the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise BenchError(f"the server exited with {self.proc and self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, body = await http_get(LOOPBACK, self.port, "/readyz", timeout_s=2.0)
                if status == 200:
                    import orjson

                    await sign_in(self.port)
                    return dict(orjson.loads(body))
                last_error = f"/readyz answered {status}"
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.1)
        raise BenchError(f"the server was not ready within {timeout_s:.0f} s ({last_error}):\n{self.log_tail()}")

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL."""
        if self.proc is None or self.exit_code is not None:
            return
        started = time.monotonic()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(timeout=10)
        self.exit_code = self.proc.returncode
        self.stop_seconds = round(time.monotonic() - started, 3)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the server process (all its threads) has used so far."""
        if self.proc is None:
            return None
        if self.command is None:
            return process_cpu_seconds(self.pid)
        # Another server may answer from worker processes (granian does): the whole tree's time.
        return sum(process_cpu_seconds(pid) or 0.0 for pid in (self.pid, *descendants(self.pid)))

    def rss_mib(self) -> float | None:
        if self.proc is None:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            return None
        return None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def process_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / ticks


def thread_times(pid: int) -> dict[int, tuple[float, float, int, int]]:
    """Each thread of ``pid`` so far: user and system CPU seconds, voluntary and involuntary context switches."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[float, float, int, int]] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                switches = {
                    key: int(value)
                    for key, _, value in (line.partition(":") for line in (task / "status").read_text().splitlines())
                    if key.endswith("ctxt_switches")
                }
            except (OSError, IndexError, ValueError):
                continue  # the thread ended meanwhile
            found[int(task.name)] = (
                int(fields[11]) / ticks,
                int(fields[12]) / ticks,
                switches.get("voluntary_ctxt_switches", 0),
                switches.get("nonvoluntary_ctxt_switches", 0),
            )
    return found


def thread_cpu_per_item(
    pid: int,
    before: dict[int, tuple[float, float, int, int]],
    after: dict[int, tuple[float, float, int, int]],
    items: int,
) -> list[dict[str, Any]]:
    """Per thread that ran between ``before`` and ``after`` (:func:`thread_times`), per item: user and system
    ms, voluntary and involuntary context switches; the process's main thread (``tid`` == ``pid``) first."""
    rows: list[dict[str, Any]] = []
    for tid, (user, system, voluntary, involuntary) in after.items():
        old = before.get(tid, (0.0, 0.0, 0, 0))
        used = (user - old[0], system - old[1], voluntary - old[2], involuntary - old[3])
        if used[0] + used[1] <= 0 and used[2] + used[3] == 0:
            continue
        rows.append(
            {
                "thread": "main" if tid == pid else f"tid {tid}",
                "user_ms": round(1000 * used[0] / items, 3),
                "system_ms": round(1000 * used[1] / items, 3),
                "voluntary_switches": round(used[2] / items, 2),
                "involuntary_switches": round(used[3] / items, 2),
            }
        )
    rows.sort(key=lambda row: (row["thread"] != "main", -(row["user_ms"] + row["system_ms"])))
    return rows


def descendants(pid: int) -> list[int]:
    """The processes under ``pid`` (children, their children...), read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


# -- a minimal HTTP/1.1 keep-alive client --------------------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection on asyncio streams with Content-Length framing.

    Deliberately tiny so the client costs the shared CPUs as little as possible: the request
    head is prebuilt, the response head is scanned for the few headers that matter.
    """

    __slots__ = ("_head_prefix", "host", "last_used", "max_idle", "port", "reader", "writer")

    def __init__(self, host: str, port: int, *, max_idle: float = 4.0) -> None:
        require_loopback(host)
        self.host = host
        self.port = port
        # uvicorn closes a keep-alive connection after 5 s idle: reconnect before that rather
        # than race its close with a request.
        self.max_idle = max_idle
        self.last_used = 0.0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._head_prefix = f"Host: {host}:{port}\r\n".encode()

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.last_used = time.monotonic()
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def connected(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: bytes, path: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request and read its whole response: (status, body)."""
        now = time.monotonic()
        if self.writer is None or self.reader is None or self.reader.at_eof() or now - self.last_used > self.max_idle:
            self.close()
            await self.connect()
        self.last_used = now
        assert self.writer is not None and self.reader is not None
        if body:
            head = b"%s %s HTTP/1.1\r\n%s%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
                method,
                path,
                self._head_prefix,
                _AUTHORIZATION,
                len(body),
            )
            self.writer.write(head + body)
        else:
            self.writer.write(b"%s %s HTTP/1.1\r\n%s%s\r\n" % (method, path, self._head_prefix, _AUTHORIZATION))
        return await self.read_response()

    async def read_response(self) -> tuple[int, bytes]:
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 ") and not head.startswith(b"HTTP/1.0 "):
            raise ValueError(f"not an HTTP response: {head[:40]!r}")
        status = int(head[9:12])
        lower = head.lower()
        index = lower.find(b"\r\ncontent-length:")
        if index >= 0:
            end = lower.index(b"\r\n", index + 2)
            length = int(lower[index + 17 : end])
            body = await self.reader.readexactly(length) if length else b""
        elif b"\r\ntransfer-encoding: chunked" in lower:
            body = await self._read_chunked()
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:  # no framing: the body runs to the end of the connection
            body = await self.reader.read(16 * 1024 * 1024)
            self.close()
            return status, body
        if b"\r\nconnection: close" in lower:
            self.close()
        else:
            self.last_used = time.monotonic()
        return status, body

    async def _read_chunked(self) -> bytes:
        assert self.reader is not None
        parts: list[bytes] = []
        for _ in range(1_000_000):  # bounded: a response of a million chunks is an error anyway
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # trailers are not used: the empty line
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        raise ValueError("too many chunks")


BENCH_PASSWORD = "benchmark-admin-password"
#: The ``Authorization`` header line every request carries once ``sign_in`` ran (empty before).
_AUTHORIZATION = b""


def auth_headers() -> dict[str, str]:
    """The bearer header for clients other than ``HttpConnection`` (the board websocket)."""
    return {"Authorization": _AUTHORIZATION.decode().partition(": ")[2].strip()} if _AUTHORIZATION else {}


async def sign_in(port: int, password: str = BENCH_PASSWORD) -> None:
    """Sign in as ``admin`` (OAuth2 password form); every later ``HttpConnection`` request carries the token."""
    global _AUTHORIZATION
    import orjson

    conn = HttpConnection(LOOPBACK, port)
    try:
        form = b"username=admin&password=" + password.encode()
        assert conn.writer is None
        await conn.connect()
        assert conn.writer is not None
        conn.writer.write(
            b"POST /api/v1/auth/token HTTP/1.1\r\nHost: %s:%d\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s"
            % (LOOPBACK.encode(), port, len(form), form)
        )
        status, body = await conn.read_response()
    finally:
        conn.close()
    if status != 200:
        raise BenchError(f"signing in as admin answered {status}: {body[:200]!r}")
    _AUTHORIZATION = b"Authorization: Bearer %s\r\n" % orjson.loads(body)["access_token"].encode()


async def http_get(host: str, port: int, path: str, *, timeout_s: float = 10.0) -> tuple[int, bytes]:
    conn = HttpConnection(host, port)
    try:
        async with asyncio.timeout(timeout_s):
            return await conn.request(b"GET", path.encode())
    finally:
        conn.close()


# -- statistics --------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (q in 0..100); None when empty."""
    if not sorted_values:
        return None
    if q <= 0:
        return sorted_values[0]
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n*q/100)
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


def latency_summary(seconds: Sequence[float], points: Sequence[float] = (50, 90, 99, 99.9)) -> dict[str, Any]:
    """Latencies in milliseconds: count, mean, the given percentiles and the max."""
    values = sorted(seconds)
    out: dict[str, Any] = {"count": len(values)}
    if not values:
        return out
    out["mean_ms"] = round(1000 * sum(values) / len(values), 3)
    out["min_ms"] = round(1000 * values[0], 3)
    for q in points:
        key = f"p{q:g}".replace(".", "_") + "_ms"
        out[key] = round(1000 * (percentile(values, q) or 0.0), 3)
    out["max_ms"] = round(1000 * values[-1], 3)
    return out


# -- the machine ---------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_total_mib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total_mib = int(line.split()[1]) // 1024
                break
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    versions = {}
    for package in (
        "township-dispatcher",
        "fastapi",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "sqlalchemy",
        "aiosqlite",
        "asyncpg",
        "pydantic",
        "orjson",
        "websockets",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    git_commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        if result.returncode == 0:
            git_commit = result.stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": affinity,
        "cpu_model": cpu_model,
        "mem_total_mib": mem_total_mib,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": versions,
        "git_commit": git_commit,
    }


def make_tempdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="bench_intake_"))


#: The categories and zones of the benchmarks' synthetic reports, taken in turn (intake, opening, snapshot, writers).
REPORT_MIX = (
    ("traffic.congestion", "five-way"),
    ("market.unlicensed_vendor", "market"),
    ("labour.wage_arrears", "town-centre"),
    ("food.safety_complaint", "town-centre"),
)


def mixed_report(n: int, description: str) -> Report:
    """Report ``r-<n>``, of the ``n``-th category and zone of :data:`REPORT_MIX` in turn."""
    category, zone = REPORT_MIX[n % len(REPORT_MIX)]
    return Report(report_id=f"r-{n}", category=category, description=description, zone=zone)
