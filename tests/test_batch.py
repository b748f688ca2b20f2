"""The batch door, ``POST /api/v1/incidents/batch``, in process on both backends.

Each report of a batch is answered on its own and in order: one bad report (invalid, an unknown zone, a
value the store refuses) is refused alone with its problem and the others are stored; retries answer
``known`` and repeats ``joined``, never stored twice; a reporter who may not read an incident gets no more
of it than the single door gives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from dispatcher.accounts import Role
from dispatcher.settings import Settings
from dispatcher.store import Changes, CommitRefused, IncidentFilter
from gateways.schemas import IncidentsBatchPublic
from server.app import create_app
from tests.conftest import HubRig, api_client, sign_in_as

BATCH = "/api/v1/incidents/batch"
HOME = {"lat": 28.848, "lon": 118.912}  # the five-way junction
FAR = {"lat": 28.9, "lon": 118.8}  # several kilometres away: no duplicate of HOME


def five_way(report_id: str, **extra: Any) -> dict[str, Any]:
    return {"report_id": report_id, "category": "traffic.congestion", "zone": "five-way", "description": "堵", **extra}


@pytest.fixture
async def app(crew: HubRig) -> AsyncIterator[Any]:
    application = create_app(Settings(database_url=crew.url, rate_per_s=0), hub=crew.hub)
    yield application
    await application.state.context.directory.close()


def _client(app: Any, headers: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers)


def _outcomes(answer: httpx.Response) -> list[tuple[str | None, str]]:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    IncidentsBatchPublic.model_validate(body)  # the answer is what the schema says
    assert [o["index"] for o in body["data"]] == list(range(body["count"]))
    return [(o["report_id"], o["outcome"]) for o in body["data"]]


async def _stored(crew: HubRig) -> list[str]:
    incidents, _ = await crew.hub.list_incidents(IncidentFilter(), limit=500, offset=0)
    return sorted(i.report.report_id for i in incidents)


async def test_one_bad_report_is_refused_alone_and_named_in_its_place(app: Any, crew: HubRig) -> None:
    # Raw JSON, as a hotline import would send it: escapes that the models must refuse, item by item.
    body = (
        b"["
        + orjson.dumps(five_way("good-1"))
        + b',{"report_id":"nul","category":"traffic.congestion","zone":"five-way","description":"a\\u0000b"}'
        + b","
        + orjson.dumps(five_way("lost", zone="atlantis"))
        + b',42,{"report_id":"no-description","zone":"five-way"}'
        + b',{"report_id":"surrogate","zone":"five-way","description":"\\ud800"}'
        + b","
        + orjson.dumps(five_way("good-2", location=FAR, zone="market"))  # good-1 has only the five-way's zone
        + b"]"
    )
    async with api_client(app) as http:
        answer = await http.post(BATCH, content=body, headers={"content-type": "application/json"})

    assert _outcomes(answer) == [
        ("good-1", "created"),
        ("nul", "refused"),
        ("lost", "refused"),
        (None, "refused"),
        ("no-description", "refused"),
        ("surrogate", "refused"),
        ("good-2", "created"),
    ]
    data = answer.json()["data"]
    assert data[1]["errors"] == [
        {"field": "description", "message": "the NUL character (\\u0000) is not allowed in text", "type": "text_nul"}
    ]
    assert {o["code"] for o in data if o["outcome"] == "refused"} == {"invalid"}
    assert data[2]["problem"].startswith("zone: unknown zone 'atlantis'")
    assert data[3]["errors"][0]["field"] == "body"
    assert data[4]["errors"][0]["field"] == "description"
    assert "lone surrogate" in data[5]["problem"]
    assert all("id" not in o and "incident" not in o for o in data if o["outcome"] == "refused")
    assert data[0]["incident"]["report_id"] == "good-1" and data[0]["status"] == data[0]["incident"]["status"]
    assert {k: answer.json()[k] for k in ("count", "created", "known", "joined", "refused")} == {
        "count": 7,
        "created": 2,
        "known": 0,
        "joined": 0,
        "refused": 5,
    }
    assert await _stored(crew) == ["good-1", "good-2"]


async def test_a_value_the_store_refuses_fails_only_its_report(
    app: Any, crew: HubRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer commits the batch in halves until only the poisoned report is refused (``CommitRefused``)."""
    real = crew.hub.store.commit

    async def refusing(changes: Changes) -> None:
        if any(i.report.report_id == "poison" for i in changes.created):
            raise CommitRefused("the database refused a value of the batch (DataError)")
        await real(changes)

    monkeypatch.setattr(crew.hub.store, "commit", refusing)
    reports = [five_way(f"r-{n}", location={"lat": 28.8 + n / 100, "lon": 118.9}) for n in range(6)]
    reports.insert(3, five_way("poison", location={"lat": 28.7, "lon": 118.9}))
    async with api_client(app) as http:
        answer = await http.post(BATCH, json=reports)

    assert _outcomes(answer) == [
        (r["report_id"], "refused" if r["report_id"] == "poison" else "created") for r in reports
    ]
    assert answer.json()["data"][3]["problem"].startswith("not stored, a value of this report was refused")
    assert await _stored(crew) == [f"r-{n}" for n in range(6)]


async def test_retries_answer_known_and_repeats_join_and_nothing_is_stored_twice(app: Any, crew: HubRig) -> None:
    first = [
        five_way("a", location=HOME),
        five_way("b", location=HOME, description="还堵"),  # the same matter close by: joins a
        five_way("a", location=HOME),  # a retry within the batch
        five_way("c", location=FAR),
    ]
    # "d" names only a zone: the market, as "a" is in the five-way's (a small zone: it would join there)
    again = [
        five_way("c", location=FAR),
        five_way("a", location=HOME),
        five_way("b", location=HOME),
        five_way("d", zone="market"),
    ]
    async with api_client(app) as http:
        one = await http.post(BATCH, json=first)
        two = await http.post(BATCH, json=again)
        single = await http.post("/api/v1/incidents", json=five_way("d", zone="market"))

    assert _outcomes(one) == [("a", "created"), ("b", "joined"), ("a", "known"), ("c", "created")]
    assert _outcomes(two) == [("c", "known"), ("a", "known"), ("b", "known"), ("d", "created")]
    assert single.headers["X-Report-Outcome"] == "known"  # the two doors share one idempotency key
    ids = [o["id"] for o in one.json()["data"]]
    assert ids[0] == ids[1] == ids[2] != ids[3]
    assert [o["id"] for o in two.json()["data"]][:3] == [ids[3], ids[0], ids[0]]
    assert await _stored(crew) == ["a", "c", "d"]
    incident = await crew.hub.get(ids[0])
    assert incident.report_count == 2 and [r.report.report_id for r in incident.reports] == ["b"]
    reported = [
        e for e in await crew.hub.events_since(0, limit=1000) if e.type in {"IncidentReported", "ReportAttached"}
    ]
    assert len(reported) == 4  # a, c, d reported, b attached: once each


async def test_over_500_reports_is_refused_whole_and_an_empty_batch_is_answered(app: Any, crew: HubRig) -> None:
    async with api_client(app) as http:
        too_many = await http.post(BATCH, json=[five_way(f"x-{n}") for n in range(501)])
        empty = await http.post(BATCH, json=[])
        not_a_list = await http.post(BATCH, json=five_way("alone"))

    assert too_many.status_code == 422
    assert too_many.json()["code"] == "invalid" and too_many.json()["errors"][0]["field"] == "body"
    assert "at most 500 items" in too_many.json()["errors"][0]["message"]
    assert empty.status_code == 200
    assert empty.json() == {"data": [], "count": 0, "created": 0, "known": 0, "joined": 0, "refused": 0}
    assert not_a_list.status_code == 422
    assert await _stored(crew) == []


async def test_the_batch_door_has_a_larger_body_limit_of_its_own(app: Any, crew: HubRig) -> None:
    long = "x" * 3000
    fits = [five_way(f"long-{n}", description=long, location={"lat": 28.8 + n / 100, "lon": 118.9}) for n in range(30)]
    async with api_client(app) as http:
        single = await http.post("/api/v1/incidents", json=five_way("huge", description="x" * 70_000))
        batch = await http.post(BATCH, json=fits)  # ~90 KB: over the single door's 64 KiB
        huge = await http.post(BATCH, json=[five_way(f"h-{n}", description=long) for n in range(1500)])

    assert single.status_code == 413
    assert [o for _, o in _outcomes(batch)] == ["created"] * 30
    assert huge.status_code == 413
    assert len(await _stored(crew)) == 30


async def test_reporters_get_only_what_they_may_read_and_each_batch_is_audited(app: Any, crew: HubRig) -> None:
    async with api_client(app) as admin:
        made = (await admin.post("/api/v1/incidents", json=five_way("k-1", location=HOME, reporter="李四 139"))).json()
    holder = made["assignments"][0]["officer"]
    others = {a["officer"] for a in made["assignments"]}
    stranger = next(o for o in crew.hub.roster.officers if o not in others)
    batch = [five_way("k-1", location=HOME), five_way("k-2", location=HOME, description="还堵")]

    async with _client(app, await sign_in_as(app, Role.FIELD_OFFICER, township="ershili", officer_id=stranger)) as http:
        trimmed = await http.post(BATCH, json=batch)
    assert _outcomes(trimmed) == [("k-1", "known"), ("k-2", "joined")]
    assert [set(o) for o in trimmed.json()["data"]] == [{"index", "report_id", "outcome", "id", "status"}] * 2
    assert "139" not in trimmed.text

    lead = await sign_in_as(app, Role.MODULE_LEAD, township="ershili", module="labour")
    async with _client(app, lead) as http:
        assert all("incident" not in o for o in (await http.post(BATCH, json=batch)).json()["data"])

    async with _client(app, await sign_in_as(app, Role.FIELD_OFFICER, township="ershili", officer_id=holder)) as http:
        whole = await http.post(BATCH, json=[*batch, five_way("k-3", location=HOME, description="更堵")])
    assert _outcomes(whole) == [("k-1", "known"), ("k-2", "known"), ("k-3", "joined")]
    assert whole.json()["data"][2]["incident"]["report_count"] == 3
    assert whole.json()["data"][0]["incident"]["reporter"] == "李四 139"  # its own assignment, not sensitive

    supervision = await sign_in_as(app, Role.SUPERVISION, township="ershili")
    async with _client(app, supervision) as http:
        assert (await http.post(BATCH, json=batch)).status_code == 403  # as at the single door
        rows = [orjson.loads(line) for line in (await http.get("/api/v1/audit")).text.splitlines()]
    audited = [(r["outcome"], r["detail"]) for r in rows if r["action"] == f"POST {BATCH}"]
    assert audited == [(200, "1 known, 1 joined"), (200, "2 known"), (200, "2 known, 1 joined")]
