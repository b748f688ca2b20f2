from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import ServerProcess


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A started dispatcher process on each backend (see ``database_url``)."""
    process = ServerProcess(database_url, tmp_path / "server.log").start()
    try:
        yield process
    finally:
        process.stop()
