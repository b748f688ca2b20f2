"""A Mosquitto of the test's own on a free loopback port (restartable on that port), and MQTT helpers.

When the ``mosquitto`` binary is missing, MQTT tests are skipped on a developer's machine but
**fail** under ``CI=true``. Every wait here is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REPO = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = REPO / "deploy" / "mosquitto"
SHIPPED_ACL = SHIPPED_CONFIG / "acl"


def mosquitto_binary() -> str:
    """The path of ``mosquitto``; skips (fails under CI=true) when it is not installed."""
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )
    if found is None:
        message = "the mosquitto binary is not installed"
        if IN_CI:
            pytest.fail(message + "; CI=true requires it (.ci/run installs it)")
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(name: str) -> str:
    """A name no other test uses (topic prefixes, client ids): no test sees another's messages."""
    return f"{name}-{uuid.uuid4().hex[:10]}"


class Broker:
    """``mosquitto -c`` in a child process with persistence in ``workdir``; restartable on its port."""

    def __init__(self, workdir: Path, *, passwd: Path | None = None, acl: Path | None = None) -> None:
        self.binary = mosquitto_binary()
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.config = workdir / "mosquitto.conf"
        auth = (
            f"allow_anonymous false\npassword_file {passwd}\n" if passwd is not None else "allow_anonymous true\n"
        ) + (f"acl_file {acl}\n" if acl is not None else "")
        # The settings of deploy/mosquitto/mosquitto.conf that matter for delivery, on a loopback port.
        # Run as root, Mosquitto drops to user "mosquitto", who could not write the persistence file here.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n{user}{auth}"
            f"persistence true\npersistence_location {workdir}/\nautosave_interval 60\n"
            "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 1000\nset_tcp_nodelay true\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
        )

    @classmethod
    def shipped(cls, workdir: Path, config_dir: Path) -> Broker:
        """A broker run by ``deploy/mosquitto/mosquitto.conf`` itself, with its ``passwd`` and ``acl`` taken from
        ``config_dir``: only the listener (a free loopback port), the folders and the log's destination differ."""
        broker = cls(workdir)
        text = (SHIPPED_CONFIG / "mosquitto.conf").read_text(encoding="utf-8")
        for old, new in (
            ("listener 1883\n", f"listener {broker.port} 127.0.0.1\n"),
            ("/mosquitto/config/", f"{config_dir}/"),
            ("/mosquitto/data/", f"{workdir}/"),
            ("log_dest stdout\n", "log_dest stderr\n"),
        ):
            if old not in text:
                raise AssertionError(f"deploy/mosquitto/mosquitto.conf no longer has {old!r}: adapt Broker.shipped")
            text = text.replace(old, new)
        user = "user root\n" if os.geteuid() == 0 else ""
        broker.config.write_text(user + text, encoding="utf-8")
        return broker

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> Broker:
        log = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return self
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen in time")

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file (sessions, queued messages) and exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


@contextlib.asynccontextmanager
async def client(url: str, *, identifier: str | None = None, **kwargs: Any) -> AsyncIterator[aiomqtt.Client]:
    """An MQTT 5 client on ``mqtt://[user:password@]127.0.0.1:port``."""
    from gateways.mqtt import BrokerAddress
    from gateways.mqtt.gateway import NO_DELAY

    address = BrokerAddress.parse(url)
    async with aiomqtt.Client(
        address.host,
        address.port,
        username=address.username,
        password=address.password,
        identifier=identifier or unique("test"),
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=10,
        socket_options=NO_DELAY,
        **kwargs,
    ) as connected:
        connected.pending_calls_threshold = 10_000
        yield connected


class Collector:
    """Subscribes and keeps every message, decoded as JSON, per topic; waits are bounded."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()

    async def run(self, connected: aiomqtt.Client) -> None:
        async for message in connected.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            self.messages.append((message.topic.value, orjson.loads(payload)))
            self._changed.set()

    def on(self, topic: str) -> list[Any]:
        return [body for t, body in self.messages if t == topic]

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()
