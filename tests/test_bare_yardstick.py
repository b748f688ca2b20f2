"""The HTTP stack's yardstick (``benchmarks/_bare_app.py``, ``intake.py --http-server bare``) does what it claims.

Its figure is read as the floor every single-door request pays: it must validate the report, check the token
and answer a 201 of the dispatcher's length, or the floor would be lower than the stack's.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx
import orjson

BARE = Path(__file__).resolve().parent.parent / "benchmarks" / "_bare_app.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bare_app_under_test", BARE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_the_bare_door_validates_checks_the_token_and_answers_the_dispatchers_length() -> None:
    bare = _load()
    report = {"report_id": "r-1", "category": "traffic.congestion", "zone": "five-way", "description": "cars"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=bare.app), base_url="http://bare") as client:
        token = (await client.post("/api/v1/auth/token", content=b"username=admin&password=x")).json()["access_token"]
        signed = {"Authorization": f"Bearer {token}"}
        assert (await client.post("/api/v1/incidents", json=report)).status_code == 401
        assert (
            await client.post("/api/v1/incidents", json={**report, "report_id": ""}, headers=signed)
        ).status_code == 422
        answer = await client.post("/api/v1/incidents", json=report, headers=signed)
        assert answer.status_code == 201
        body = orjson.loads(answer.content)
        assert body["report_id"] == "r-1" and len(body["assignments"]) == 5
        # The dispatcher answers this report in 3,556 bytes (tests/test_door_output.py); the yardstick within a fifth.
        assert 0.8 * 3556 <= len(answer.content) <= 1.2 * 3556
        assert (await client.get("/api/v1/incidents?limit=1")).json() == {"count": 1}
