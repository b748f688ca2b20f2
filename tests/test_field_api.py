"""The API the field officer's app uses (docs/field.md), in process, on SQLite and PostgreSQL: photos, photos on
reports, notes and steps, retries that never double, my tasks, places, and the officer's live feed."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import segno
from PIL import Image

from dispatcher.accounts import Account, Principal, Role, TokenInfo, TokenKind
from dispatcher.field_store import Place
from dispatcher.settings import Settings
from gateways.compression import GZIP_MIN_BYTES
from gateways.evidence import recover_refs
from gateways.field_api import field_feed
from server.app import create_app
from tests.conftest import START, HubRig, sign_in_as
from tests.test_board_feed import FakeBoard
from tests.test_media import _png_claiming as png_claiming
from tests.test_media import exif_with_time_and_gps, image_bytes

FIVE_WAY = {"lat": 28.848, "lon": 118.912}
TRAFFIC_OFFICER, SAME_TEAM, STRANGER = "tp-02", "tp-01", "lo-01"  # tp-02 is posted at the five-way junction


@dataclass
class Field:
    app: Any
    admin: httpx.AsyncClient
    officer: httpx.AsyncClient  # tp-02: the traffic police's officer at the junction
    teammate: httpx.AsyncClient  # tp-01: same team, holds nothing
    stranger: httpx.AsyncClient  # lo-01: the labour office's, holds nothing of the junction
    rig: HubRig


@pytest.fixture
async def field(crew: HubRig, tmp_path: Path) -> AsyncIterator[Field]:
    app = create_app(Settings(database_url=crew.url, media_dir=tmp_path / "media"), hub=crew.hub)
    context = app.state.context
    await context.directory.open()
    await context.field.open()
    heads = [
        await sign_in_as(app),
        await sign_in_as(app, Role.FIELD_OFFICER, name="officer-tp02", township="ershili", officer_id=TRAFFIC_OFFICER),
        await sign_in_as(app, Role.FIELD_OFFICER, name="officer-tp01", township="ershili", officer_id=SAME_TEAM),
        await sign_in_as(app, Role.FIELD_OFFICER, name="officer-lo01", township="ershili", officer_id=STRANGER),
    ]
    transport = httpx.ASGITransport(app=app)
    clients = [httpx.AsyncClient(transport=transport, base_url="http://test", headers=h) for h in heads]
    try:
        admin, officer, teammate, stranger = clients
        yield Field(app, admin, officer, teammate, stranger, crew)
    finally:
        for client in clients:
            await client.aclose()
        await context.field.close()
        await context.directory.close()


async def upload(client: httpx.AsyncClient, data: bytes, name: str = "p.jpg", **form: Any) -> httpx.Response:
    return await client.post("/api/v1/media", files={"file": (name, data, "image/jpeg")}, data=form)


async def report(client: httpx.AsyncClient, report_id: str, **extra: Any) -> httpx.Response:
    body = {"report_id": report_id, "category": "traffic.congestion", "description": "五岔口拥堵", "location": FIVE_WAY}
    return await client.post("/api/v1/incidents", json={**body, **extra})


# -- photos -----------------------------------------------------------------------------------------


async def test_an_upload_is_content_addressed_idempotent_and_records_the_phone_and_the_exif(field: Field) -> None:
    data = image_bytes("JPEG", (1024, 768), exif=exif_with_time_and_gps())
    first = await upload(field.officer, data, taken_at="2026-06-12T08:16:00+08:00", lat="28.8481", lon="118.9121",
                         accuracy_m="12.5")  # fmt: skip
    assert first.status_code == 201, first.text
    body = first.json()
    sha = body["id"]
    assert len(sha) == 64
    assert (body["content_type"], body["bytes"], body["width"], body["height"]) == ("image/jpeg", len(data), 1024, 768)
    assert body["taken_at"].startswith("2026-06-12T00:16:00")  # stored in UTC
    assert (body["lat"], body["lon"], body["accuracy_m"]) == (28.8481, 118.9121, 12.5)
    assert body["exif_taken_at"] == "2026-06-12T08:15:30+08:00"
    assert body["exif_lat"] == pytest.approx(28.848) and body["exif_lon"] == pytest.approx(118.912)
    assert (body["url"], body["thumbnail_url"]) == (f"/api/v1/media/{sha}", f"/api/v1/media/{sha}/thumbnail")

    again = await upload(field.officer, data)
    assert again.status_code == 200 and again.json() == body  # the first upload's record, not this one's form

    got = await field.officer.get(body["url"])
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "image/jpeg"
    assert "immutable" in got.headers["cache-control"]
    thumb = await field.officer.get(body["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as small:
        assert small.size == (320, 240)


async def test_refused_uploads_say_why_and_store_nothing(field: Field, tmp_path: Path) -> None:
    gif = await upload(field.officer, b"GIF89a" + b"\0" * 64, "x.gif")
    assert gif.status_code == 415 and "JPEG, PNG or WebP" in gif.json()["detail"]
    broken = await upload(field.officer, b"\xff\xd8\xff\xe0" + b"\x13" * 4000)
    assert broken.status_code == 422 and "could not be decoded" in broken.json()["detail"]
    field.app.state.context.settings.media_max_bytes = 2048
    big = await upload(field.officer, image_bytes("PNG", (400, 400)) + b"\0" * 4096, "big.png")
    assert big.status_code == 413
    missing = await field.officer.post("/api/v1/media", data={"lat": "1"})
    assert missing.status_code == 422
    assert [p for p in (tmp_path / "media").rglob("*") if p.is_file()] == []


async def test_a_photo_is_seen_by_its_uploader_and_the_readers_of_incidents_that_name_it(field: Field) -> None:
    sha = (await upload(field.admin, image_bytes("PNG"), "a.png")).json()["id"]
    url = f"/api/v1/media/{sha}"
    for outsider in (field.officer, field.stranger):
        assert (await outsider.get(url)).status_code == 404  # not named by anything it may read
    assert (await field.officer.get("/api/v1/media/" + "f" * 64)).status_code == 404  # the same answer as unknown
    assert (await field.officer.get("/api/v1/media/not-a-hash")).status_code == 404

    made = await report(field.admin, "photo-1", photos=[sha])
    assert made.status_code == 201, made.text
    assert made.json()["photos"] == [sha]
    assert made.json()["assignments"][0]["officer"] == TRAFFIC_OFFICER
    assert (await field.officer.get(url)).status_code == 200  # holds the incident's assignment
    assert (await field.officer.get(url + "/thumbnail")).status_code == 200
    assert (await field.stranger.get(url)).status_code == 404
    assert (await field.stranger.get(url + "/thumbnail")).status_code == 404


async def test_a_reference_lost_in_a_crash_after_the_commit_is_recorded_again_from_the_event_at_start(
    field: Field, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = (await upload(field.admin, image_bytes("PNG"), "c.png")).json()["id"]
    url = f"/api/v1/media/{sha}"
    photo_store = field.app.state.context.field

    async def stopped(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the process stopped here")  # after the report's commit, before its reference

    monkeypatch.setattr(photo_store, "add_refs", stopped)
    try:
        lost = await report(field.admin, "crash-1", photos=[sha])
        assert lost.status_code == 500
    except RuntimeError:
        pass  # the in-process transport hands the application's exception over
    monkeypatch.undo()
    await report(field.admin, "after-1", location={"lat": 28.80, "lon": 118.95})  # later events, no photo
    hub = field.rig.hub
    named = [e for e in await hub.store.events_since(0, limit=100) if sha in e.payload]
    assert [e.type for e in named] == ["IncidentReported"]  # the change and the photo's name, committed
    assert (await field.officer.get(url)).status_code == 404  # its officer cannot see it: no reference

    township = hub.rules.township_id
    assert await recover_refs(hub.store, photo_store, township, hub.last_seq, page=2) == 1  # page by page
    assert (await field.officer.get(url)).status_code == 200
    assert (await field.stranger.get(url)).status_code == 404
    assert await recover_refs(hub.store, photo_store, township, hub.last_seq) == 1  # idempotent
    assert await photo_store.referencing(sha, township) == [named[0].incident_id]


async def test_photos_and_places_named_by_a_report_must_exist(field: Field) -> None:
    unknown = "ab" * 32
    refused = await report(field.officer, "bad-photo", photos=[unknown])
    assert refused.status_code == 422 and unknown in refused.text
    too_many = await report(field.officer, "many", photos=["ab" * 32] * 7)
    assert too_many.status_code == 422
    not_hex = await report(field.officer, "nothex", photos=["XYZ"])
    assert not_hex.status_code == 422
    no_place = await report(field.officer, "bad-place", place="NOPE-1")
    assert no_place.status_code == 422 and "NOPE-1" in no_place.text
    listed = await field.admin.get("/api/v1/incidents")
    assert listed.json()["count"] == 0  # nothing of them was stored

    sha = (await upload(field.officer, image_bytes("JPEG"))).json()["id"]
    batch = await field.officer.post(
        "/api/v1/incidents/batch",
        json=[
            {"report_id": "b-1", "category": "traffic.congestion", "description": "堵", "location": FIVE_WAY,
             "photos": [sha], "accuracy_m": 8},
            {"report_id": "b-2", "category": "traffic.congestion", "description": "堵", "zone": "market",
             "photos": [unknown]},
        ],
    )  # fmt: skip
    outcomes = batch.json()["data"]
    assert [o["outcome"] for o in outcomes] == ["created", "refused"]
    assert unknown in outcomes[1]["problem"]
    detail = (await field.admin.get(f"/api/v1/incidents/{outcomes[0]['id']}")).json()
    assert (detail["photos"], detail["accuracy_m"]) == ([sha], 8)
    reported = next(e for e in detail["timeline"] if e["type"] == "IncidentReported")
    assert reported["data"]["photos"] == [sha] and reported["data"]["accuracy_m"] == 8


# -- notes and steps: photos, and retries that never double -----------------------------------------------


async def test_a_note_with_photos_is_added_once_per_note_id(field: Field) -> None:
    incident = (await report(field.admin, "n-1")).json()
    sha = (await upload(field.officer, image_bytes("JPEG"))).json()["id"]
    note = {"text": "到场查看", "photos": [sha], "note_id": "phone-7f3a-0001"}
    first = await field.officer.post(f"/api/v1/incidents/{incident['id']}/notes", json=note)
    assert first.status_code == 201, first.text
    retried = await asyncio.gather(
        *(field.officer.post(f"/api/v1/incidents/{incident['id']}/notes", json=note) for _ in range(3))
    )
    assert [r.status_code for r in retried] == [200, 200, 200]
    other = await field.officer.post(f"/api/v1/incidents/{incident['id']}/notes", json={**note, "note_id": "k2"})
    assert other.status_code == 201
    timeline = (await field.admin.get(f"/api/v1/incidents/{incident['id']}")).json()["timeline"]
    notes = [e["data"] for e in timeline if e["type"] == "NoteAdded"]
    assert [(n["note_id"], n["photos"]) for n in notes] == [("phone-7f3a-0001", [sha]), ("k2", [sha])]
    missing = await field.officer.post(
        f"/api/v1/incidents/{incident['id']}/notes", json={"text": "x", "photos": ["cd" * 32]}
    )
    assert missing.status_code == 422 and "cd" * 32 in missing.text


async def test_a_note_key_is_remembered_across_a_restart(field: Field) -> None:
    incident = (await report(field.admin, "n-2")).json()
    note = {"text": "记录", "note_id": "k-restart"}
    assert (await field.admin.post(f"/api/v1/incidents/{incident['id']}/notes", json=note)).status_code == 201
    hub = await field.rig.restart()
    field.app.state.context.townships.first.hub = hub
    assert (await field.admin.post(f"/api/v1/incidents/{incident['id']}/notes", json=note)).status_code == 200
    timeline = await hub.timeline(incident["id"])
    assert sum(1 for e in timeline if e.type == "NoteAdded") == 1


async def test_a_step_sent_twice_answers_already_and_a_resolution_carries_its_note_and_photos(field: Field) -> None:
    incident = (await report(field.admin, "s-1")).json()
    step = f"/api/v1/incidents/{incident['id']}/assignments/traffic-police"
    first = await field.officer.post(f"{step}/acknowledge")
    assert first.status_code == 200 and first.json()["outcome"] == "applied"
    again = await field.officer.post(f"{step}/acknowledge")
    assert again.status_code == 200, again.text
    assert again.json()["outcome"] == "already" and again.headers["x-step-outcome"] == "already"
    # Past it: en route, then the acknowledgement retried once more is still "already".
    assert (await field.officer.post(f"{step}/en-route")).json()["outcome"] == "applied"
    assert (await field.officer.post(f"{step}/acknowledge")).json()["outcome"] == "already"
    # Somebody else's account did not take that step: a conflict, as before.
    assert (await field.admin.post(f"{step}/acknowledge")).status_code == 409
    # A step never taken and not allowed now is a conflict too.
    skipped = await field.officer.post(f"/api/v1/incidents/{incident['id']}/assignments/police-station/on-scene")
    assert skipped.status_code in (403, 409)

    sha = (await upload(field.officer, image_bytes("JPEG"))).json()["id"]
    resolved = await field.officer.post(f"{step}/resolve", json={"note": "已疏导", "photos": [sha]})
    assert resolved.status_code == 200 and resolved.json()["outcome"] == "applied"
    twice = await field.officer.post(f"{step}/resolve", json={"note": "已疏导", "photos": [sha]})
    assert twice.json()["outcome"] == "already"
    timeline = (await field.admin.get(f"/api/v1/incidents/{incident['id']}")).json()["timeline"]
    moves = [e["data"] for e in timeline if e["type"] == "UnitMoved" and e["data"]["team"] == "traffic-police"]
    assert [m["to_state"] for m in moves] == ["acknowledged", "en_route", "resolved"]
    assert (moves[-1]["note"], moves[-1]["photos"]) == ("已疏导", [sha])
    assert (await field.admin.get(f"/api/v1/media/{sha}")).status_code == 200  # the command room reads it


async def test_a_retried_return_answers_already(field: Field) -> None:
    incident = (await report(field.admin, "r-1")).json()
    step = f"/api/v1/incidents/{incident['id']}/assignments/traffic-police/return"
    assert (await field.officer.post(step, json={"reason": "不是交警的事"})).json()["outcome"] == "applied"
    assert (await field.officer.post(step, json={"reason": "不是交警的事"})).json()["outcome"] == "already"


# -- my tasks -----------------------------------------------------------------------------------------


async def test_my_tasks_are_sorted_by_priority_then_the_running_deadline_and_the_team_view_adds_the_team(
    field: Field,
) -> None:
    a = (await report(field.admin, "t-1")).json()
    field.rig.clock.advance(timedelta(minutes=1))
    b = (await report(field.admin, "t-2", location={"lat": 28.80, "lon": 118.95}, severity=5)).json()
    mine = (await field.officer.get("/api/v1/me/assignments")).json()
    holder_b = b["assignments"][0]["officer"]
    expected = [a["id"]] + ([b["id"]] if holder_b == TRAFFIC_OFFICER else [])
    assert sorted(item["id"] for item in mine["data"]) == sorted(expected)
    assert mine["seq"] == field.rig.hub.last_seq and mine["scope"] == "mine"
    task = next(item for item in mine["data"] if item["id"] == a["id"])["task"]
    assert (task["team"], task["state"], task["officer"], task["mine"]) == ("traffic-police", "dispatched",
                                                                           TRAFFIC_OFFICER, True)  # fmt: skip
    assert task["deadline"]["kind"] == "ack"
    ack_due = next(d["due_at"] for d in a["assignments"][0]["deadlines"] if d["kind"] == "ack")
    assert task["deadline"]["due_at"] == ack_due

    await field.officer.post(f"/api/v1/incidents/{a['id']}/assignments/traffic-police/acknowledge")
    after = next(i for i in (await field.officer.get("/api/v1/me/assignments")).json()["data"] if i["id"] == a["id"])
    assert after["task"]["deadline"]["kind"] in ("arrive", "resolve")

    team = (await field.teammate.get("/api/v1/me/assignments", params={"scope": "team"})).json()
    assert {item["id"] for item in team["data"]} == {a["id"], b["id"]}
    keys = [(i["priority"], i["task"]["deadline"]["due_at"] if i["task"]["deadline"] else "~") for i in team["data"]]
    assert keys == sorted(keys)
    held_by_teammate = [i["id"] for i in (a, b) if i["assignments"][0]["officer"] == SAME_TEAM]
    assert [i["id"] for i in (await field.teammate.get("/api/v1/me/assignments")).json()["data"]] == held_by_teammate
    assert (await field.officer.get("/api/v1/me/assignments", params={"scope": "all"})).status_code == 422


async def test_the_task_list_is_a_summary_of_each_task_in_the_same_order_as_the_assignments(field: Field) -> None:
    await report(field.admin, "s-1")
    field.rig.clock.advance(timedelta(minutes=1))
    await report(field.admin, "s-2", location={"lat": 28.80, "lon": 118.95}, severity=5)
    for client, params in ((field.officer, {}), (field.teammate, {"scope": "team"})):
        whole = (await client.get("/api/v1/me/assignments", params=params)).json()
        answer = await client.get("/api/v1/me/tasks", params=params)
        tasks = answer.json()
        assert [(i["id"], i["task"]["team"], i["task"]["deadline"]) for i in tasks["data"]] == [
            (i["id"], i["task"]["team"], i["task"]["deadline"]) for i in whole["data"]
        ]
        assert {(i["task"]["team_name"], i["task"]["team_name_en"]) for i in tasks["data"]} == {
            ("交警中队", "Traffic police squadron")
        }
        assert (tasks["seq"], tasks["count"], tasks["scope"]) == (whole["seq"], whole["count"], whole["scope"])
        for summary, incident in zip(tasks["data"], whole["data"], strict=True):
            task = summary.pop("task")
            assert {k: incident[k] for k in summary} == summary  # the same values, a few of the keys
            assert {k: task[k] for k in incident["task"]} == incident["task"]
            assert "assignments" not in summary and "reporter" not in summary
        assert tasks["data"] and len(answer.content) < len(orjson.dumps(whole)) / 5
    assert (await field.admin.get("/api/v1/me/tasks")).status_code == 403
    assert (await field.officer.get("/api/v1/me/tasks", params={"scope": "all"})).status_code == 422


async def test_a_large_task_list_is_sent_gzip_compressed_when_taken_and_a_small_answer_as_it_is(field: Field) -> None:
    for i in range(6):  # a kilometre apart: six incidents of the traffic police, not one joined six times
        place = {"lat": 28.848 + i / 100, "lon": 118.912}
        await report(field.admin, f"z-{i}", location=place, reporter="13812345678")
    gzip_only = {"accept-encoding": "gzip"}
    team = {"scope": "team"}
    for path in ("/api/v1/me/tasks", "/api/v1/me/assignments"):
        packed = await field.teammate.get(path, params=team, headers=gzip_only)
        plain = await field.teammate.get(path, params=team, headers={"accept-encoding": "identity"})
        refused = await field.teammate.get(path, params=team, headers={"accept-encoding": "gzip;q=0, identity"})
        assert packed.status_code == plain.status_code == 200, packed.text
        assert packed.headers["content-encoding"] == "gzip" and "accept-encoding" in packed.headers["vary"].lower()
        assert int(packed.headers["content-length"]) < len(plain.content) / 3  # the bytes sent, compressed
        assert len(plain.content) >= GZIP_MIN_BYTES
        assert "content-encoding" not in plain.headers and "content-encoding" not in refused.headers
        # The same JSON either way, the reporters masked for a field officer as the edge masks plain answers.
        assert packed.json() == plain.json() == refused.json() and len(packed.json()["data"]) == 6
    small = await field.stranger.get("/api/v1/me/tasks", headers=gzip_only)  # holds nothing: a few bytes
    assert small.status_code == 200 and small.json()["data"] == []
    assert len(small.content) < GZIP_MIN_BYTES and "content-encoding" not in small.headers
    # A complainant of a sensitive category stays masked for the officer in a compressed answer too.
    await field.admin.post("/api/v1/incidents", json={"report_id": "z-l", "category": "labour.wage_arrears",
        "description": "欠薪", "zone": "market", "reporter": "13812345678"})  # fmt: skip
    labour = await field.stranger.get("/api/v1/me/assignments", params=team, headers=gzip_only)
    assert labour.headers["content-encoding"] == "gzip"
    assert [i["reporter"] for i in labour.json()["data"]] == ["***"]
    assert {i["reporter"] for i in (await field.admin.get("/api/v1/incidents")).json()["data"]} == {"13812345678"}
    catalogue = await field.officer.get("/api/v1/rules/catalogue", headers=gzip_only)
    assert catalogue.headers["content-encoding"] == "gzip" and catalogue.json()["data"]
    # The report doors answer as before, whatever the client takes.
    made = await field.admin.post("/api/v1/incidents", json={"report_id": "z-9", "category": "traffic.congestion",
        "description": "五岔口拥堵" * 100, "location": FIVE_WAY}, headers=gzip_only)  # fmt: skip
    assert made.status_code in (200, 201) and "content-encoding" not in made.headers


# -- places ----------------------------------------------------------------------------------------


PLACES = [
    Place(code="ESL-S-001", kind="shop", name="五岔口杂货店", address="廿里镇五岔口1号", township="ershili",
          zone="five-way", lat=28.848, lon=118.912, contact_name="张三", contact_phone="13812345678"),
    Place(code="ESL-H-002", kind="household", name="李家", address="廿里镇集镇路2号", township="ershili"),
]  # fmt: skip


async def test_a_place_shows_its_contact_masked_for_officers_and_its_incidents_open_first(field: Field) -> None:
    await field.app.state.context.field.put_places(PLACES)
    first = (await report(field.admin, "p-1", place="ESL-S-001")).json()
    await field.admin.post(f"/api/v1/incidents/{first['id']}/cancel", json={"reason": "误报"})
    second = (await report(field.admin, "p-2", place="ESL-S-001", location={"lat": 28.7, "lon": 118.8})).json()
    assert second["place"] == "ESL-S-001"

    seen = (await field.officer.get("/api/v1/places/ESL-S-001")).json()
    assert (seen["kind"], seen["name"], seen["zone"]) == ("shop", "五岔口杂货店", "five-way")
    assert seen["contact"] == {"name": "张三", "phone": "138****5678"}
    assert [(i["id"], i["open"]) for i in seen["incidents"]] == [(second["id"], True), (first["id"], False)]
    full = (await field.admin.get("/api/v1/places/ESL-S-001")).json()
    assert full["contact"]["phone"] == "13812345678"
    bare = (await field.officer.get("/api/v1/places/ESL-H-002")).json()
    assert (bare["contact"], bare["location"], bare["incidents"]) == ({"name": None, "phone": None}, None, [])
    assert (await field.officer.get("/api/v1/places/ESL-X-404")).status_code == 404


def qr_png(text: str, scale: int = 8) -> bytes:
    out = io.BytesIO()
    segno.make_qr(text).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


async def test_a_photo_of_a_place_code_is_decoded_on_the_server(field: Field) -> None:
    url = "https://dispatch.ershili.example/field/place/ESL-S-001"
    decoded = await field.officer.post("/api/v1/places/decode", files={"file": ("qr.png", qr_png(url), "image/png")})
    assert decoded.status_code == 200, decoded.text
    assert decoded.json() == {"code": "ESL-S-001", "text": url}
    bare = await field.officer.post(
        "/api/v1/places/decode", files={"file": ("q.png", qr_png("ESL-H-002"), "image/png")}
    )
    assert bare.json()["code"] == "ESL-H-002"
    blank = await field.officer.post(
        "/api/v1/places/decode", files={"file": ("b.png", image_bytes("PNG"), "image/png")}
    )
    assert blank.status_code == 422 and "no place code" in blank.json()["detail"]
    junk = await field.officer.post("/api/v1/places/decode", files={"file": ("j.png", b"not an image", "image/png")})
    assert junk.status_code == 422
    bomb = await field.officer.post("/api/v1/places/decode", files={"file": ("b.png", png_claiming(60_000, 60_000))})
    assert bomb.status_code == 422 and "pixels" in bomb.json()["detail"]


# -- the officer's live feed ----------------------------------------------------------------------------


def officer_socket(field: Field, officer_id: str) -> FakeBoard:
    account = Account(f"officer-{officer_id}", Role.FIELD_OFFICER, "ershili", officer_id=officer_id)
    token = TokenInfo(1, account.name, TokenKind.DEVICE, None, START, None)
    return FakeBoard(field.rig.hub, read_limit=10_000, principal=Principal(account, token))


async def test_the_field_feed_sends_an_officer_only_its_incidents_events(field: Field) -> None:
    hub = field.rig.hub
    mine_socket, stranger_socket = officer_socket(field, TRAFFIC_OFFICER), officer_socket(field, STRANGER)
    team_socket = officer_socket(field, SAME_TEAM)
    feeds = [
        asyncio.create_task(field_feed(mine_socket, after=None, scope="mine")),  # type: ignore[arg-type]
        asyncio.create_task(field_feed(stranger_socket, after=None, scope="mine")),  # type: ignore[arg-type]
        asyncio.create_task(field_feed(team_socket, after=None, scope="team")),  # type: ignore[arg-type]
    ]
    for socket in (mine_socket, stranger_socket, team_socket):
        await asyncio.wait_for(socket.first_frame.wait(), timeout=5)
    start = hub.last_seq
    assert [s.sent[0] for s in (mine_socket, team_socket)] == [
        {"kind": "hello", "seq": start, "scope": "mine"},
        {"kind": "hello", "seq": start, "scope": "team"},
    ]
    ours = (await report(field.admin, "f-1")).json()  # the junction: tp-02 is sent
    elsewhere = (
        await field.admin.post(
            "/api/v1/incidents",
            json={"report_id": "f-2", "category": "labour.wage_arrears", "description": "欠薪", "zone": "market"},
        )
    ).json()
    await field.officer.post(f"/api/v1/incidents/{ours['id']}/assignments/traffic-police/acknowledge")
    last = hub.last_seq
    await asyncio.wait_for(mine_socket.until_seq(last), timeout=5)
    await asyncio.wait_for(team_socket.until_seq(last), timeout=5)

    def incidents_of(socket: FakeBoard) -> set[int]:
        return {f["data"]["incident_id"] for f in socket.sent if f["kind"] == "event"}

    assert incidents_of(mine_socket) == {ours["id"]}
    assert incidents_of(team_socket) == {ours["id"]}
    types = [f["type"] for f in mine_socket.sent if f["kind"] == "event"]
    assert types[:2] == ["IncidentReported", "UnitsDispatched"] and types[-1] == "UnitMoved"
    # The stranger was sent none of them (its labour-office matter went to a labour officer, maybe itself).
    stranger_incidents = incidents_of(stranger_socket)
    assert ours["id"] not in stranger_incidents
    assert stranger_incidents <= {elsewhere["id"]}

    # Resuming with ?after= sends what came after, filtered the same way, without a gap.
    resumed_socket = officer_socket(field, TRAFFIC_OFFICER)
    resumed = asyncio.create_task(field_feed(resumed_socket, after=start, scope="mine"))  # type: ignore[arg-type]
    await asyncio.wait_for(resumed_socket.until_seq(last), timeout=5)

    def events(socket: FakeBoard) -> list[int]:
        return [f["seq"] for f in socket.sent if f["kind"] == "event"]

    assert events(resumed_socket) == events(mine_socket)
    for socket in (mine_socket, stranger_socket, team_socket, resumed_socket):
        socket.gone.set()
    await asyncio.wait_for(asyncio.gather(*feeds, resumed), timeout=5)
    assert orjson.dumps(mine_socket.sent)  # every frame was JSON

    # After the events of each version of an incident, its tasks as they stand: once per version.
    frames = [f for f in mine_socket.sent if f["kind"] == "tasks"]
    assert [f["incident_id"] for f in frames] == [ours["id"]] * len(frames)
    assert len({f["version"] for f in frames}) == len(frames)
    now = next(i for i in (await field.officer.get("/api/v1/me/tasks")).json()["data"] if i["id"] == ours["id"])
    assert frames[-1]["tasks"] == [orjson.loads(orjson.dumps(now))] and now["task"]["state"] == "acknowledged"
    assert not [f for f in stranger_socket.sent if f["kind"] == "tasks" and f["incident_id"] == ours["id"]]

    # A task taken away (reassigned to the teammate) leaves an empty tasks frame on the first officer's feed.
    again_socket = officer_socket(field, TRAFFIC_OFFICER)
    again = asyncio.create_task(field_feed(again_socket, after=None, scope="mine"))  # type: ignore[arg-type]
    await asyncio.wait_for(again_socket.first_frame.wait(), timeout=5)
    handed = await field.admin.post(
        f"/api/v1/incidents/{ours['id']}/assignments/traffic-police/officer", json={"officer": SAME_TEAM}
    )
    assert handed.status_code == 200, handed.text
    await asyncio.wait_for(again_socket.until_seq(hub.last_seq), timeout=5)
    gone = [f for f in again_socket.sent if f["kind"] == "tasks"]
    assert gone and gone[-1]["incident_id"] == ours["id"] and gone[-1]["tasks"] == []
    again_socket.gone.set()
    await asyncio.wait_for(again, timeout=5)


# -- the officer's status ---------------------------------------------------------------------------------


async def test_a_field_officer_sets_its_own_status_and_position_with_accuracy(field: Field) -> None:
    own = f"/api/v1/units/{TRAFFIC_OFFICER}/status"
    off = await field.officer.post(own, json={"status": "off_duty"})
    assert off.status_code == 200, off.text
    assert (off.json()["status"], off.json()["on_duty"]) == ("off_duty", False)
    # Off duty, it is not chosen: the junction's report goes to another officer of the team.
    made = (await report(field.admin, "st-1")).json()
    assert made["assignments"][0]["officer"] not in (TRAFFIC_OFFICER, None)
    back = await field.officer.post(own, json={"status": "available", "location": FIVE_WAY, "accuracy_m": 6.5})
    assert back.status_code == 200, back.text
    body = back.json()
    assert (body["status"], body["on_duty"], body["location"], body["accuracy_m"]) == ("available", True, FIVE_WAY, 6.5)
    assert body["position_at"] is not None
    assert (await field.officer.post(own, json={"location": FIVE_WAY, "accuracy_m": -1})).status_code == 422
    assert (
        await field.officer.post(f"/api/v1/units/{SAME_TEAM}/status", json={"status": "off_duty"})
    ).status_code == 403


async def test_the_field_feed_closes_with_4401_when_the_officer_signs_out(field: Field) -> None:
    directory = field.app.state.context.directory
    await directory.create_account(
        "officer-phone",
        Role.FIELD_OFFICER,
        "ershili",
        START,
        officer_id=TRAFFIC_OFFICER,
        password="correct horse battery",
    )
    token, principal = await directory.sign_in("officer-phone", "correct horse battery", START)
    phone = FakeBoard(field.rig.hub, read_limit=1000, app=field.app, principal=principal)
    connection = asyncio.create_task(field_feed(phone, after=None, scope="mine"))  # type: ignore[arg-type]
    await asyncio.wait_for(phone.first_frame.wait(), timeout=5)
    assert phone.sent[0]["kind"] == "hello" and not connection.done()
    signed_out = await field.officer.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert signed_out.status_code == 204
    await asyncio.wait_for(connection, timeout=5)
    assert phone.closed == (4401, "signed out")
