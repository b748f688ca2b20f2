"""The batch door through a real server process: a hotline import of 200 reports with one bad one, then its retry."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateways.schemas import IncidentsBatchPublic
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e


def _report(n: int) -> dict[str, Any]:
    return {
        "report_id": f"hotline-0612-{n:04d}",
        "category": "market.unlicensed_vendor",
        "zone": "market",
        "description": f"热线导入 {n}: 占道经营 (stalls on the road)" + "，东门外摊位占道，行人绕行" * 10,
        "reporter_kind": "hotline",
    }


async def test_a_hotline_import_stores_each_good_report_once_and_names_the_bad_one(server: ServerProcess) -> None:
    reports: list[Any] = [_report(n) for n in range(200)]
    reports[117] = {**_report(117), "severity": 9}  # out of 1..5
    body = orjson.dumps(reports)
    assert len(body) > 64 * 1024  # over the single door's body limit: the batch door's is larger

    async with server.client() as http:
        first = await http.post("/api/v1/incidents/batch", content=body, headers={"content-type": "application/json"})
        again = await http.post("/api/v1/incidents/batch", content=body, headers={"content-type": "application/json"})
        listed = (await http.get("/api/v1/incidents", params={"limit": 1})).json()
        events = (await http.get("/api/v1/events", params={"limit": 5000})).json()

    assert first.status_code == 200, first.text
    answer = IncidentsBatchPublic.model_validate(first.json())
    assert [o.outcome for o in answer.data] == ["refused" if n == 117 else "created" for n in range(200)]
    bad = answer.data[117]
    assert (bad.index, bad.report_id, bad.code) == (117, "hotline-0612-0117", "invalid")
    assert bad.errors and bad.errors[0].field == "severity"
    assert len({o.id for o in answer.data if o.id is not None}) == 199
    assert (answer.created, answer.refused) == (199, 1)

    retried = IncidentsBatchPublic.model_validate(again.json())
    assert [o.outcome for o in retried.data] == ["refused" if n == 117 else "known" for n in range(200)]
    assert [o.id for o in retried.data] == [o.id for o in answer.data]
    assert listed["count"] == 199
    reported = [e for e in events["data"] if e["type"] == "IncidentReported"]
    assert len(reported) == 199
    assert [e["seq"] for e in events["data"]] == list(range(1, events["last_seq"] + 1))  # one log, no gap
