"""The batch door's answer, byte for byte, for batches that take every path of the door.

The answers were recorded from the door as it was before it validated a batch in one call and built its
outcomes directly (``tests/fixtures/batch_answers.json``, written by this module with ``RECORD_BATCH_ANSWERS=1``
at commit 0521559): the same requests must be answered with the same bytes, on each backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from dispatcher.accounts import Role
from dispatcher.settings import Settings
from server.app import create_app
from tests.conftest import HubRig, api_client, sign_in_as

BATCH = "/api/v1/incidents/batch"
HOME = {"lat": 28.848, "lon": 118.912}  # the five-way junction
FAR = {"lat": 28.9, "lon": 118.8}
RECORDED = Path(__file__).parent / "fixtures" / "batch_answers.json"


def five_way(report_id: str, **extra: Any) -> dict[str, Any]:
    return {"report_id": report_id, "category": "traffic.congestion", "zone": "five-way", "description": "堵", **extra}


#: Valid items only (validated together): created, joined, known within the batch, an unknown zone.
ALL_VALID = [
    five_way("a", location=HOME, reporter="张三", reporter_kind="citizen", severity=3),
    five_way("b", location=HOME, description="还堵"),  # joins a
    five_way("a", location=HOME),  # known: earlier in this batch
    five_way("c", location=FAR, zone="market", occurred_at="2026-06-12T07:55:00+08:00", accuracy_m=12.5),
    five_way("lost", zone="atlantis"),  # valid as a model, refused by the rule table
    {"report_id": "d", "description": "工资拖欠三个月", "zone": "town-centre"},  # classified by keywords
    {
        "report_id": "e",
        "category": "labour.wage_arrears",
        "description": "欠薪",
        "zone": "town-centre",
        "exercise": True,
    },
]
#: Valid and invalid items (each validated on its own): known from the first batch, refusals of every kind.
MIXED = [
    five_way("c", location=FAR),  # known: the first batch stored it
    {"report_id": "nul", "category": "traffic.congestion", "zone": "five-way", "description": "a\x00b"},
    42,
    {"report_id": "no-place", "description": "x"},
    {"report_id": "s\u00e9", "zone": "five-way", "description": "x"},  # a report_id outside the pattern
    {"zone": "five-way", "description": "x", "extra": 1.5},
    five_way("f", location={"lat": 28.86, "lon": 118.95}),
    five_way("b", location=HOME),  # known: it joined a
    five_way("lost", zone="atlantis"),
]


async def _answers(crew: HubRig) -> dict[str, str]:
    app = create_app(Settings(database_url=crew.url, rate_per_s=0), hub=crew.hub)
    try:
        async with api_client(app) as admin:
            first = await admin.post(BATCH, json=ALL_VALID)
            second = await admin.post(BATCH, json=MIXED)
        officer = await sign_in_as(app, Role.FIELD_OFFICER, township="ershili", officer_id="ms-01")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=officer) as http:
            # Receipts only, but for an incident the officer was sent to.
            third = await http.post(BATCH, json=[five_way("a", location=HOME), five_way("g", location=FAR)])
    finally:
        await app.state.context.directory.close()
    for answer in (first, second, third):
        assert answer.status_code == 200, answer.text
    return {"all_valid": first.text, "mixed": second.text, "receipts": third.text}


async def test_the_batch_door_answers_byte_for_byte_as_before(crew: HubRig) -> None:
    answers = await _answers(crew)
    if os.environ.get("RECORD_BATCH_ANSWERS") == "1":
        RECORDED.write_bytes(orjson.dumps(answers, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        pytest.skip("recorded")
    recorded = orjson.loads(RECORDED.read_bytes())
    kinds = {name: [o["outcome"] for o in orjson.loads(text)["data"]] for name, text in answers.items()}
    assert {"created", "joined", "known", "refused"} <= set(kinds["all_valid"]) | set(kinds["mixed"])
    assert answers == recorded
