"""A rule table put in force over HTTP survives a restart; every table put in force is stored and listed.

The app runs with its lifespan (the hub starts as ``serve`` starts it: the stored table first, the
file only on the first start) on both backends; a restart is a new app and hub on the same database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from dispatcher.settings import BUNDLED_TABLE, Settings
from rules import RuleBook
from server.app import create_app
from tests.conftest import START, HubRig, api_client

FILE_VERSION = "ershili-2026.11-1"
NEWER_VERSION = "ershili-2026.12-1"


def _newer_table() -> str:
    text = BUNDLED_TABLE.read_text(encoding="utf-8")
    assert f'version: "{FILE_VERSION}"' in text
    return text.replace(f'version: "{FILE_VERSION}"', f'version: "{NEWER_VERSION}"')


@asynccontextmanager
async def running(rig: HubRig, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app on a fresh hub of ``rig`` (built with the file's table), started and stopped by its lifespan."""
    rig.hub = rig._build()
    app = create_app(Settings(database_url=rig.url, gc_freeze=False, **settings), hub=rig.hub)
    async with app.router.lifespan_context(app), api_client(app) as http:
        yield http


async def _in_force(http: httpx.AsyncClient) -> str:
    answer = await http.get("/api/v1/rules")
    assert answer.status_code == 200
    version: str = answer.json()["version"]
    return version


async def test_a_table_put_in_force_over_http_is_in_force_after_a_restart_and_rolls_back(
    database_url: str, bundled_rules: RuleBook
) -> None:
    rig = HubRig(database_url, bundled_rules)
    async with running(rig) as http:
        assert await _in_force(http) == FILE_VERSION
        put = await http.put(
            "/api/v1/rules", content=_newer_table().encode(), headers={"content-type": "application/yaml"}
        )
        assert put.status_code == 200, put.text
        assert (put.json()["version"], put.json()["previous"]) == (NEWER_VERSION, FILE_VERSION)

    async with running(rig) as http:  # a restart: the hub is built from the file again
        assert await _in_force(http) == NEWER_VERSION
        listed = (await http.get("/api/v1/rules/versions")).json()
        assert listed["in_force"] == NEWER_VERSION
        rows = [(v["id"], v["version"], v["put_at"]) for v in listed["data"]]
        assert rows == [(2, NEWER_VERSION, START.isoformat()), (1, FILE_VERSION, START.isoformat())]
        assert listed["data"][1]["put_by"] == "file:ershili.yaml"
        assert listed["data"][0]["put_by"].startswith("admin-")  # the signed-in account

        # Rolling back is putting the older stored table in force again.
        older = await http.get("/api/v1/rules/versions/1")
        assert older.status_code == 200 and older.headers["content-type"].startswith("application/yaml")
        assert older.text == BUNDLED_TABLE.read_text(encoding="utf-8")
        back = await http.put("/api/v1/rules", content=older.content, headers={"content-type": "application/yaml"})
        assert back.status_code == 200, back.text
        assert (back.json()["version"], back.json()["previous"], back.json()["table_id"]) == (
            FILE_VERSION,
            NEWER_VERSION,
            3,
        )
        assert (await http.get("/api/v1/rules/versions/99")).status_code == 404

    async with running(rig) as http:
        assert await _in_force(http) == FILE_VERSION
        assert [v["id"] for v in (await http.get("/api/v1/rules/versions")).json()["data"]] == [3, 2, 1]
        logged = (await http.get("/api/v1/events", params={"since": 0})).json()["data"]
        put_in_force = [
            (e["data"]["table_id"], e["data"]["version"], e["data"]["previous"])
            for e in logged
            if e["type"] == "RulesPutInForce"
        ]
        assert put_in_force == [
            (1, FILE_VERSION, None),
            (2, NEWER_VERSION, FILE_VERSION),
            (3, FILE_VERSION, NEWER_VERSION),
        ]
        assert all("incident_id" not in e["data"] for e in logged if e["type"] == "RulesPutInForce")


async def test_rules_from_file_puts_the_file_in_force_over_the_stored_table_once(
    database_url: str, bundled_rules: RuleBook
) -> None:
    rig = HubRig(database_url, bundled_rules)
    async with running(rig) as http:
        put = await http.put(
            "/api/v1/rules", content=_newer_table().encode(), headers={"content-type": "application/yaml"}
        )
        assert put.status_code == 200, put.text
    async with running(rig, rules_from_file=True) as http:
        assert await _in_force(http) == FILE_VERSION
        versions = (await http.get("/api/v1/rules/versions")).json()["data"]
        newest = versions[0]
        assert (newest["id"], newest["version"], newest["put_by"]) == (3, FILE_VERSION, "file:ershili.yaml")
    async with running(rig, rules_from_file=True) as http:  # the file is the stored table already: no new version
        assert await _in_force(http) == FILE_VERSION
        assert len((await http.get("/api/v1/rules/versions")).json()["data"]) == 3


async def test_a_restart_loads_the_roster_once_and_logs_it(database_url: str, bundled_rules: RuleBook) -> None:
    rig = HubRig(database_url, bundled_rules)
    async with running(rig):
        pass
    async with running(rig) as http:
        logged = (await http.get("/api/v1/events", params={"since": 0})).json()["data"]
    # The first start stored the file's table and roster through the writer; the second found them stored.
    assert [e["type"] for e in logged] == ["RulesPutInForce", "RosterLoaded"]
    assert logged[1]["data"]["actor"] == "file:ershili-roster.yaml"
