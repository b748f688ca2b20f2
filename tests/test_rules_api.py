"""The rules API in process (the hub on a virtual clock): catalogue, explain, putting a table in force."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from dispatcher.core.incidents import Report
from dispatcher.settings import BUNDLED_TABLE, Settings
from server.app import create_app
from tests.conftest import HubRig, api_client


@pytest.fixture
async def client(rig: HubRig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=rig.url), hub=rig.hub)
    async with api_client(app) as http:
        yield http


async def test_catalogue_names_each_category_with_its_board_class(client: httpx.AsyncClient) -> None:
    answer = (await client.get("/api/v1/rules/catalogue")).json()
    entries = {c["id"]: c for c in answer["data"]}
    assert entries["labour.wage_arrears"]["board_class"] == "劳动和社会保障"
    assert entries["traffic.congestion"]["name"] == "交通拥堵"


async def test_explain_answers_why(client: httpx.AsyncClient) -> None:
    answer = await client.get(
        "/api/v1/rules/explain", params={"category": "traffic.accident", "zone": "five-way", "severity": 4}
    )
    body = answer.json()
    assert answer.status_code == 200
    assert body["decision"]["rule"] == "five-way-joint-enforcement"
    assert [t["rule"] for t in body["also_held"]] == ["traffic-accident", "traffic"]


async def test_a_new_table_goes_live_and_open_incidents_keep_their_promises(
    client: httpx.AsyncClient, rig: HubRig
) -> None:
    before = (
        await rig.hub.report(
            Report(report_id="old", category="traffic.congestion", description="d", zone="five-way"), rig.clock.now()
        )
    ).incident
    text = BUNDLED_TABLE.read_text(encoding="utf-8")
    newer = text.replace('version: "ershili-2026.11-1"', 'version: "ershili-2026.12-1"').replace(
        "      ack_within: 3m\n      arrive_within: 10m", "      ack_within: 1m\n      arrive_within: 10m"
    )
    put = await client.put("/api/v1/rules", content=newer.encode(), headers={"content-type": "application/yaml"})
    assert put.status_code == 200, put.text
    assert put.json()["previous"] == "ershili-2026.11-1"

    after = (
        await rig.hub.report(
            Report(report_id="new", category="traffic.congestion", description="d", zone="five-way"), rig.clock.now()
        )
    ).incident
    assert (after.table_version, before.table_version) == ("ershili-2026.12-1", "ershili-2026.11-1")
    old_ack = (await rig.hub.get(before.id)).assignments[0].deadlines[0]
    new_ack = after.assignments[0].deadlines[0]
    assert (old_ack.due_at - before.reported_at).total_seconds() == 180
    assert (new_ack.due_at - after.reported_at).total_seconds() == 60


async def test_a_table_with_errors_is_refused_and_the_old_one_stays(client: httpx.AsyncClient, rig: HubRig) -> None:
    text = BUNDLED_TABLE.read_text(encoding="utf-8")
    broken = text.replace("lead: traffic-police\n", "lead: nobody\n", 1)
    ambiguous = text.replace("    precedence: 10  #", "    precedence: 0  #")

    invalid = await client.put("/api/v1/rules", content=broken.encode())
    refused = await client.put("/api/v1/rules", content=ambiguous.encode())

    assert invalid.status_code == 422 and "unknown team 'nobody'" in invalid.text
    assert refused.status_code == 422 and {f["kind"] for f in refused.json()["findings"]} >= {"overlap"}
    assert rig.hub.rules.version == "ershili-2026.11-1"


async def test_a_table_for_another_township_is_refused_naming_both(client: httpx.AsyncClient, rig: HubRig) -> None:
    text = BUNDLED_TABLE.read_text(encoding="utf-8")
    other = text.replace("township: {id: ershili, name: 廿里镇", "township: {id: huaxi, name: 华墅乡", 1).replace(
        'version: "ershili-2026.11-1"', 'version: "huaxi-2026.12-1"'
    )
    assert other != text

    put = await client.put("/api/v1/rules", content=other.encode(), headers={"content-type": "application/yaml"})

    assert put.status_code == 409, put.text
    assert (put.json()["township"], put.json()["serving"]) == ("huaxi", "ershili")
    assert "'huaxi'" in put.json()["detail"] and "'ershili'" in put.json()["detail"]
    assert rig.hub.rules.version == "ershili-2026.11-1"
    still = await rig.hub.report(
        Report(report_id="after", category="traffic.congestion", description="d", zone="five-way"), rig.clock.now()
    )
    assert still.created and still.incident.table_version == "ershili-2026.11-1"


# On a loader without a budget the bomb runs for minutes on the event loop: the timeout (a signal,
# which interrupts it) makes that a failure rather than a hang.
@pytest.mark.timeout(30)
async def test_yaml_that_stands_for_too_much_is_refused_with_its_line(client: httpx.AsyncClient, rig: HubRig) -> None:
    # Each line holds nine aliases of the line before: 9^9 values in under 400 bytes once expanded.
    bomb = "table: 1\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    )
    nested = "table: 1\nzones: " + "[" * 200 + "]" * 200 + "\n"
    itself = "table: 1\nzones: &z [*z]\n"

    answers = [await client.put("/api/v1/rules", content=text.encode()) for text in (bomb, nested, itself)]

    assert [a.status_code for a in answers] == [422, 422, 422]
    problems = [a.json()["problems"] for a in answers]
    assert [(p[0]["line"], p[0]["file"]) for p in problems] == [
        (7, "<uploaded table>"),
        (2, "<uploaded table>"),
        (2, "<uploaded table>"),
    ]
    assert "once its aliases are expanded" in problems[0][0]["message"]
    assert "nested more than 64 deep" in problems[1][0]["message"]
    assert "inside the node it names" in problems[2][0]["message"]
    assert rig.hub.rules.version == "ershili-2026.11-1"
