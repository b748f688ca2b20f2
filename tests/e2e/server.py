"""A real dispatcher process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: The administrator's password of every test server (set at its first start, signed in with after each start).
ADMIN_PASSWORD = "e2e-admin-password-0123"


class ServerProcess:
    """``python -m server serve`` in a child process; output goes to ``log_path``.

    Once ready it signs in as ``admin``: ``headers`` (and ``client()``) carry the bearer token.
    """

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        admin_password: str | None = ADMIN_PASSWORD,
        log_level: str = "warning",
    ) -> None:
        """``admin_password=None``: start without ``DISPATCHER_ADMIN_PASSWORD`` and do not sign in."""
        self.log_level = log_level
        self.database_url = database_url
        self.log_path = log_path
        self.port = port or free_port()
        self.admin_password = admin_password
        self.env = {k: v for k, v in os.environ.items() if k != "DISPATCHER_ADMIN_PASSWORD"}
        # Tests talk to 127.0.0.1 only: a webhook a test (or the API fuzzer) subscribes elsewhere is refused.
        self.env["DISPATCHER_WEBHOOK_HOSTS"] = "127.0.0.1"
        if admin_password is not None:
            self.env["DISPATCHER_ADMIN_PASSWORD"] = admin_password
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/board"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self) -> httpx.AsyncClient:
        """An HTTP client of this server signed in as the administrator."""
        return httpx.AsyncClient(base_url=self.base_url, timeout=10, headers=self.headers)

    def sign_in(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
        answer = httpx.post(
            f"{self.base_url}/api/v1/auth/token", data={"username": username, "password": password}, timeout=30
        )
        answer.raise_for_status()
        token: str = answer.json()["access_token"]
        return token

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        command = [sys.executable, "-m", "server", "serve", "--port", str(self.port)]
        command += ["--database-url", self.database_url, "--log-level", self.log_level]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    if self.admin_password is not None:
                        self.token = self.sign_in(password=self.admin_password)
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout_s} s:\n{self.log_path.read_text()}")

    def kill_hard(self) -> None:
        """``kill -9``: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
