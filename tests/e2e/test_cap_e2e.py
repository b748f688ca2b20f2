"""CAP 1.2 public notices through a real server process: issued over the API, served to anyone as XML and Atom,
every document validated against the CAP 1.2 XSD (shared data, see tests/cap_schema.py) and read back in."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from gateways.cap import read_cap
from tests.cap_schema import cap_schema
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

ATOM = "{http://www.w3.org/2005/Atom}"
ROAD_CLOSED: dict[str, Any] = {
    "category": ["Transport"],
    "response_type": ["Avoid"],
    "urgency": "Expected",
    "severity": "Moderate",
    "certainty": "Observed",
    "text": {
        "zh-CN": {
            "event": "道路封闭",
            "headline": "集市日五岔口封闭",
            "description": "今日集市，五岔口 7:00-12:00 禁止机动车通行。",
            "instruction": "请绕行廿里大道。",
        },
        "en": {
            "event": "Road closed",
            "headline": "Five-way junction closed on market day",
            "description": "Market day: no motor traffic at the five-way junction from 7:00 to 12:00.",
            "instruction": "Take Ershili Avenue instead.",
        },
    },
}


def _typhoon(**changes: Any) -> dict[str, Any]:
    return {
        "category": ["Met", "Safety"],
        "response_type": ["Evacuate"],
        "urgency": "Immediate",
        "severity": "Severe",
        "certainty": "Likely",
        "area": {"circle": {"lat": 28.8485, "lon": 118.9125, "radius_m": 2500}},
        "text": {
            "zh-CN": {
                "event": "台风",
                "headline": "台风撤离",
                "description": "台风将至，低洼地带立即撤离。",
                "area_desc": "廿里镇低洼地带",
            },
            "en": {
                "event": "Typhoon",
                "headline": "Typhoon evacuation",
                "description": "Leave low-lying areas now.",
                "area_desc": "Low-lying parts of Ershili",
            },
        },
        **changes,
    }


def _fetch(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)  # no token: public notices are public


async def test_notices_are_issued_served_and_valid(server: ServerProcess) -> None:
    schema = cap_schema()
    served: dict[int, bytes] = {}

    def document(alert_id: int) -> dict[str, Any]:
        answer = _fetch(f"{server.base_url}/cap/alerts/{alert_id}.xml")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/cap+xml")
        schema.validate(answer.text)
        served[alert_id] = answer.content
        return read_cap(answer.content)

    async with server.client() as admin:
        report = {
            "report_id": "cap-1",
            "category": "traffic.congestion",
            "zone": "five-way",
            "description": "集市日拥堵",
        }
        incident = (await admin.post("/api/v1/incidents", json=report)).json()["id"]

        # from an incident: its zone (a circle) is the area by default
        made = await admin.post("/api/v1/alerts", json={**ROAD_CLOSED, "incident_id": incident})
        assert made.status_code == 201, made.text
        first = made.json()
        assert first["status"] == "Actual" and first["msg_type"] == "Alert"
        alert = document(first["id"])
        assert alert["identifier"] == first["identifier"] and alert["incidents"] == str(incident)
        assert [i["language"] for i in alert["info"]] == ["zh-CN", "en"]
        assert alert["info"][0]["area"][0] == {
            "area_desc": "五岔口",
            "polygon": [],
            "circle": ["28.848000,118.912000 0.120"],
            "geocode": [],
        }
        assert alert["info"][1]["headline"] == "Five-way junction closed on market day"
        assert alert["sent"].utcoffset().total_seconds() == 8 * 3600  # the township's time, as CAP writes it

        # an update over a polygon zone, then a cancel: each names what it replaces
        update = await admin.post(
            "/api/v1/alerts",
            json={**ROAD_CLOSED, "msg_type": "Update", "references": [first["id"]], "area": {"zone": "town-centre"}},
        )
        assert update.status_code == 201, update.text
        updated = document(update.json()["id"])
        assert updated["references"] == [(first["sender"], first["identifier"], first["sent"])]
        assert updated["incidents"] == str(incident)  # carried over from the notice it updates
        assert updated["info"][0]["area"][0]["polygon"] and updated["info"][0]["area"][0]["area_desc"] == "廿里集镇"
        cancel = await admin.post(
            "/api/v1/alerts", json={**ROAD_CLOSED, "msg_type": "Cancel", "references": [update.json()["id"]]}
        )
        assert cancel.status_code == 201, cancel.text
        assert document(cancel.json()["id"])["msg_type"] == "Cancel"
        again = await admin.post(
            "/api/v1/alerts", json={**ROAD_CLOSED, "msg_type": "Update", "references": [update.json()["id"]]}
        )
        assert again.status_code == 409 and "already cancelled" in again.text

        # on its own, a circle given; and a drill: Exercise, never Actual
        typhoon = await admin.post("/api/v1/alerts", json=_typhoon())
        assert typhoon.status_code == 201, typhoon.text
        assert document(typhoon.json()["id"])["info"][0]["area"][0]["circle"] == ["28.848500,118.912500 2.500"]
        drill_report = {**report, "report_id": "cap-drill", "exercise": True}
        drill = (await admin.post("/api/v1/incidents", json=drill_report)).json()["id"]
        exercise = await admin.post("/api/v1/alerts", json={**ROAD_CLOSED, "incident_id": drill})
        assert exercise.status_code == 201 and exercise.json()["status"] == "Exercise"
        drilled = document(exercise.json()["id"])
        assert drilled["status"] == "Exercise" and drilled["note"].startswith("演练")
        actual = await admin.post("/api/v1/alerts", json={**ROAD_CLOSED, "incident_id": drill, "exercise": False})
        assert actual.status_code == 422 and "never Actual" in actual.text
        follow = await admin.post(
            "/api/v1/alerts", json={**ROAD_CLOSED, "msg_type": "Update", "references": [exercise.json()["id"]]}
        )
        assert follow.status_code == 201 and document(follow.json()["id"])["status"] == "Exercise"

        listed = (await admin.get("/api/v1/alerts")).json()["data"]
    issued = [a["id"] for a in listed]
    assert sorted(issued, reverse=True) == issued and len(issued) == 6

    # the Atom feed lists them all, newest first, each linking to its document
    feed = _fetch(f"{server.base_url}/cap/feed.xml")
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("application/atom+xml")
    entries = ET.fromstring(feed.content).findall(f"{ATOM}entry")
    links = [e.find(f"{ATOM}link").get("href") for e in entries]  # type: ignore[union-attr]
    assert links == [f"{server.base_url}/cap/alerts/{i}.xml" for i in issued]
    assert {c.get("term") for c in entries[0].findall(f"{ATOM}category")} == {"Exercise", "Update"}

    # immutable and durable: after a restart every document is served byte for byte as issued
    server.stop()
    server.start()
    for alert_id, body in served.items():
        assert _fetch(f"{server.base_url}/cap/alerts/{alert_id}.xml").content == body
    assert _fetch(f"{server.base_url}/cap/alerts/999.xml").status_code == 404
    assert _fetch(f"{server.base_url}/cap/alerts/1.xml").status_code == 404  # event 1 is no notice


REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"text": {"zh-CN": ROAD_CLOSED["text"]["zh-CN"]}}, "missing en"),
    ({"msg_type": "Update"}, "must name the notices"),
    ({"references": [1]}, "an Alert references nothing"),
    ({"area": {"zone": "moon"}}, "unknown zone"),
    ({"area": {"zone": "five-way", "circle": {"lat": 1, "lon": 1, "radius_m": 5}}}, "exactly one of"),
    ({"urgency": "Soon"}, "urgency"),
    ({"msg_type": "Cancel", "references": [777]}, "no notice 777"),
    ({"text": {**ROAD_CLOSED["text"], "en": {**ROAD_CLOSED["text"]["en"], "headline": "bell\x07"}}}, "U+0007"),
    ({}, "give an area"),
]


async def test_a_bad_notice_is_refused_and_nothing_is_issued(server: ServerProcess) -> None:
    async with server.client() as admin:
        for change, problem in REFUSALS:
            refused = await admin.post("/api/v1/alerts", json={**ROAD_CLOSED, **change})
            assert refused.status_code == 422 and problem in refused.text, (change, refused.text)
        assert (await admin.get("/api/v1/alerts")).json()["data"] == []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as anybody:
        anonymous = await anybody.post("/api/v1/alerts", json=_typhoon())
    assert anonymous.status_code == 401
    assert _fetch(f"{server.base_url}/cap/feed.xml").status_code == 200
