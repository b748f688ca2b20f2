"""Open311 GeoReport v2 against a real server process: the ``georeport`` client from the package index for the
calls it makes (services, definitions, requests, one request; JSON and XML), and for the calls it does not make
(``POST requests``, ``tokens``) the specification's example requests, written from the field summary in
shared/data/open311/OPEN311_GEOREPORT_V2_FIELDS.md (source: open311/open311.github.io GeoReport/v2/index.md):
form-encoded ``api_key``, ``service_code``, ``lat``/``long`` or ``address_string``, ``description``,
``attribute[code]``; the answer is a list holding ``service_request_id`` or ``token``; errors are a list of
``{code, description}``.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
from georeport import GeoReport

from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

FIVE_WAY = {"lat": "28.8481", "long": "118.9121"}  # inside the five-way zone's 120 m circle


async def _key(server: ServerProcess, name: str, role: str) -> str:
    """A device token of a new ``role`` account: the key a citizen app or hotline is given."""
    async with server.client() as admin:
        made = await admin.post("/api/v1/accounts", json={"name": name, "role": role, "township": "ershili"})
        assert made.status_code == 201, made.text
        token = await admin.post(f"/api/v1/accounts/{name}/tokens", json={"label": f"{name} open311 key"})
        assert token.status_code == 201, token.text
        key: str = token.json()["token"]
        return key


def _get(url: str, params: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(url, params=params, timeout=10)


def _post(server: ServerProcess, fields: dict[str, str], fmt: str = "json") -> httpx.Response:
    return httpx.post(f"{server.base_url}/open311/v2/requests.{fmt}", data=fields, timeout=10)


async def test_open311_door_with_a_real_client(server: ServerProcess) -> None:
    key = await _key(server, "citizen-app", "citizen_app")
    hotline_key = await _key(server, "hotline-12345", "hotline")
    root = f"{server.base_url}/open311/v2"
    client = GeoReport(root)  # the client passes no key on reads: reading is open, as the specification has it
    xml_client = GeoReport(root, output_format="xml")

    # services: one per catalogue category, grouped by its message-board class, with the GB/T code
    services = await asyncio.to_thread(client.get_service_list)
    by_code = {s["service_code"]: s for s in services}
    async with server.client() as admin:
        catalogue = (await admin.get("/api/v1/rules/catalogue")).json()["data"]
    assert set(by_code) == {c["id"] for c in catalogue} | {"other"}
    assert by_code["traffic.congestion"]["group"] == "交通运输"
    assert by_code["traffic.illegal_parking"]["gbt_code"] == "09009"
    assert by_code["traffic.accident"]["metadata"] is True and by_code["other"]["type"] == "batch"
    xml_services = await asyncio.to_thread(xml_client.get_service_list)
    assert [s["service_code"] for s in xml_services] == [s["service_code"] for s in services]
    assert next(s for s in xml_services if s["service_code"] == "traffic.accident")["metadata"] == "true"

    definition = await asyncio.to_thread(client.get_service_definition, "traffic.accident")
    injured = definition["attributes"][0]
    assert injured["code"] == "injured" and injured["required"] is True
    assert [v["key"] for v in injured["values"]] == ["yes", "no"]
    xml_definition = await asyncio.to_thread(xml_client.get_service_definition, "traffic.accident")
    assert xml_definition["attributes"]["attribute"][0]["code"] == "injured"

    # POST requests (the specification's example: form fields, api_key among them)
    made = _post(
        server, {"api_key": key, "service_code": "traffic.congestion", **FIVE_WAY, "description": "五岔口堵死了"}
    )
    assert made.status_code == 201, made.text
    [receipt] = made.json()
    congestion_id = receipt["service_request_id"]
    assert "token" not in receipt and "交警中队" in receipt["service_notice"]
    async with server.client() as admin:
        incident = (await admin.get(f"/api/v1/incidents/{congestion_id}")).json()
    assert incident["reporter_kind"] == "citizen" and incident["category"] == "traffic.congestion"

    # an attribute the definition asks for: required, checked, and it raises the severity
    refused = _post(server, {"api_key": hotline_key, "service_code": "traffic.accident", **FIVE_WAY})
    assert refused.status_code == 400
    assert refused.json() == [{"code": 400, "description": refused.json()[0]["description"]}]
    assert "attribute[injured]" in refused.json()[0]["description"]
    accident = _post(
        server,
        {
            "api_key": hotline_key,
            "service_code": "traffic.accident",
            "address_string": "五岔口",
            "attribute[injured]": "yes",
            "description": "两车相撞",
            "first_name": "三",
            "last_name": "张",
            "phone": "13800000000",
        },
        fmt="xml",
    )
    assert accident.status_code == 201, accident.text
    accident_id = ET.fromstring(accident.content).findtext("request/service_request_id")
    async with server.client() as admin:
        detail = (await admin.get(f"/api/v1/incidents/{accident_id}")).json()
    assert detail["reporter_kind"] == "hotline" and detail["severity"] == 4 and detail["zone"] == "five-way"
    assert detail["reporter"] == "张 三 / 13800000000" and "[injured] yes" in detail["description"]

    # a matter nobody can place: a token while it waits in triage, the id once a team has it
    pending = _post(server, {"api_key": key, "service_code": "other", **FIVE_WAY, "description": "zzz qqq 说不清"})
    assert pending.status_code == 201, pending.text
    [answer] = pending.json()
    token = answer["token"]
    assert "service_request_id" not in answer
    assert _get(f"{root}/tokens/{token}.json").json() == [{"token": token}]
    async with server.client() as admin:
        triaged = (await admin.get("/api/v1/incidents", params={"status": "reported"})).json()["data"]
        triage_id = next(i["id"] for i in triaged if i["routing"]["queue"] == "triage")
        sent = await admin.post(f"/api/v1/incidents/{triage_id}/teams", json={"team": "traffic-police"})
        assert sent.status_code == 200, sent.text
    assert _get(f"{root}/tokens/{token}.json").json() == [{"service_request_id": str(triage_id), "token": token}]
    token_xml = ET.fromstring(_get(f"{root}/tokens/{token}.xml").content)
    assert token_xml.findtext("request/service_request_id") == str(triage_id)

    # the command room closes the congestion with a public note: closed, with status_notes
    async with server.client() as admin:
        for team in [a["team"] for a in incident["assignments"]]:
            for action in ("acknowledge", "resolve"):
                moved = await admin.post(f"/api/v1/incidents/{congestion_id}/assignments/{team}/{action}")
                assert moved.status_code == 200, moved.text
        # The five-way rule asks for 核查 (issue 15): the command room's check closes it.
        checked = await admin.post(f"/api/v1/incidents/{congestion_id}/verification", json={"passed": True})
        assert checked.status_code == 200 and checked.json()["status"] == "closed", checked.text
        await admin.post(f"/api/v1/incidents/{congestion_id}/notes", json={"text": "内部：交警已到", "public": False})
        await admin.post(f"/api/v1/incidents/{congestion_id}/notes", json={"text": "已疏导，道路畅通", "public": True})
        await admin.post(f"/api/v1/incidents/{congestion_id}/notes", json={"text": "内部：复盘", "public": False})
        officer = {"report_id": "officer-1", "category": "traffic.congestion", "zone": "market", "description": "堵"}
        officers_report = (await admin.post("/api/v1/incidents", json=officer)).json()["id"]

    one = await asyncio.to_thread(client.get_service_request, congestion_id)
    assert one["status"] == "closed" and one["status_notes"] == "已疏导，道路畅通"
    assert one["agency_responsible"] == "交警中队" and one["service_code"] == "traffic.congestion"
    assert one["description"] == "五岔口堵死了" and "reporter" not in one
    assert one["requested_datetime"].endswith("Z") and one["lat"] == pytest.approx(28.8481)
    open_accident = await asyncio.to_thread(xml_client.get_service_request, accident_id)
    assert open_accident["status"] == "open" and open_accident["agency_responsible"] == "交警中队"
    assert open_accident["expected_datetime"] is not None

    # GET requests and its filters; officers' reports are not citizens' requests
    every = await asyncio.to_thread(client.get_service_requests)
    assert {r["service_request_id"] for r in every} == {congestion_id, accident_id, str(triage_id)}
    assert str(officers_report) not in {r["service_request_id"] for r in every}
    closed = await asyncio.to_thread(client.get_service_requests, status="closed")
    assert [r["service_request_id"] for r in closed] == [congestion_id]
    opened = await asyncio.to_thread(client.get_service_requests, status="open", service_code="traffic.accident")
    assert [r["service_request_id"] for r in opened] == [accident_id]
    unplaced = await asyncio.to_thread(client.get_service_requests, service_code="other")
    assert [r["service_request_id"] for r in unplaced] == [str(triage_id)]
    listed = await asyncio.to_thread(client.get_service_requests, service_request_id=f"{accident_id},{officers_report}")
    assert [r["service_request_id"] for r in listed] == [accident_id]
    long_ago = await asyncio.to_thread(
        client.get_service_requests, start_date="2020-01-01T00:00:00Z", end_date="2020-02-01T00:00:00+08:00"
    )
    assert long_ago == []
    xml_listed = await asyncio.to_thread(xml_client.get_service_requests, service_request_id=congestion_id)
    assert xml_listed["status_notes"] == "已疏导，道路畅通"  # one record: xmltodict gives the element itself


async def test_open311_refusals_are_in_the_specifications_shape(server: ServerProcess) -> None:
    key = await _key(server, "citizen-app", "citizen_app")
    root = f"{server.base_url}/open311/v2"

    def error(answer: httpx.Response) -> dict[str, Any]:
        if answer.headers["content-type"].startswith("text/xml"):
            element = ET.fromstring(answer.content).find("error")
            assert element is not None, answer.text
            return {"code": int(element.findtext("code") or 0), "description": element.findtext("description")}
        [only] = answer.json()
        return dict(only)

    no_key = _post(server, {"service_code": "traffic.congestion", **FIVE_WAY, "description": "堵"})
    assert no_key.status_code == 401 and error(no_key)["code"] == 401
    admin_key = _post(server, {"api_key": server.token, "service_code": "traffic.congestion", **FIVE_WAY}, fmt="xml")
    assert admin_key.status_code == 403 and "may not" in str(error(admin_key)["description"])
    nowhere = _post(server, {"api_key": key, "service_code": "traffic.congestion", "description": "堵"})
    assert nowhere.status_code == 400 and "location" in str(error(nowhere)["description"])
    bad_place = _post(server, {"api_key": key, "service_code": "traffic.congestion", "address_string": "火星"})
    assert bad_place.status_code == 400 and "five-way" in str(error(bad_place)["description"])
    off_map = _post(server, {"api_key": key, "service_code": "traffic.congestion", "lat": "91", "long": "118"})
    assert off_map.status_code == 400 and "lat" in str(error(off_map)["description"])
    unknown = _post(server, {"api_key": key, "service_code": "no.such", **FIVE_WAY}, fmt="xml")
    assert unknown.status_code == 400 and "no.such" in str(error(unknown)["description"])
    choice = _post(server, {"api_key": key, "service_code": "traffic.accident", **FIVE_WAY, "attribute[injured]": "?"})
    assert choice.status_code == 400 and "not one of yes, no" in str(error(choice)["description"])
    assert error(_get(f"{root}/requests/999.json"))["code"] == 404
    assert error(_get(f"{root}/tokens/open311-nothing.xml"))["code"] == 404
    assert error(_get(f"{root}/services/no.such.json"))["code"] == 404
    assert error(_get(f"{root}/services.csv"))["code"] == 404
    wide = _get(
        f"{root}/requests.json", params={"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}
    )
    assert wide.status_code == 400 and "90 days" in str(error(wide)["description"])
    naive = _get(f"{root}/requests.json", params={"start_date": "2026-01-01T00:00:00"})
    assert naive.status_code == 400 and "time zone" in str(error(naive)["description"])
    status = _get(f"{root}/requests.xml", params={"status": "pending"})
    assert status.status_code == 400 and "pending" in str(error(status)["description"])
    # nothing of the refused posts was stored
    async with server.client() as admin:
        assert (await admin.get("/api/v1/incidents")).json()["count"] == 0
