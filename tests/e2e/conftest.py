from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import ServerProcess

#: These tests are about the lifecycle and the board: they post the same report at the same place
#: many times on purpose, and must not depend on which shifts run at the hour they run. So teams are
#: sent whole and duplicates are not joined; both are tested in test_dispatch_e2e.py.
PLAIN = {"DISPATCHER_DUPLICATE_RADIUS_M": "0", "DISPATCHER_NO_ROSTER": "true"}


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A started dispatcher process on each backend (see ``database_url``)."""
    process = ServerProcess(database_url, tmp_path / "server.log", env=PLAIN).start()
    try:
        yield process
    finally:
        process.stop()
