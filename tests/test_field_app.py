"""The field app's page, worker and manifest as served, its labels, and the classifier route it asks as the
officer types (the same classification as routing)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dispatcher.accounts import Role
from dispatcher.settings import Settings
from rules import RuleBook
from server.app import create_app
from tests.conftest import HubRig, api_client, sign_in_as

FIELD = Path(__file__).resolve().parent.parent / "gateways" / "static" / "field"
LANGS = {name: json.loads((FIELD / "i18n" / f"{name}.json").read_text(encoding="utf-8")) for name in ("zh-CN", "en")}


@pytest.fixture
async def officer(rig: HubRig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=rig.url), hub=rig.hub)
    headers = await sign_in_as(app, Role.FIELD_OFFICER, township="ershili", officer_id="tp-01")
    async with api_client(app, headers) as http:
        yield http


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_page_worker_and_manifest_are_served_without_a_token(officer: httpx.AsyncClient) -> None:
    anonymous = {"Authorization": ""}
    for path in ("/field", "/field/place/ESL-S-001"):
        page = await officer.get(path, headers=anonymous)
        assert page.status_code == 200 and '<script src="/field/assets/field.js" defer>' in page.text
    worker = await officer.get("/field/sw.js", headers=anonymous)
    assert worker.status_code == 200 and worker.headers["service-worker-allowed"] == "/field"
    assert worker.headers["content-type"].startswith("text/javascript")
    manifest = await officer.get("/field/manifest.webmanifest", headers=anonymous)
    assert manifest.headers["content-type"] == "application/manifest+json"
    body = manifest.json()
    assert body["start_url"] == "/field" and body["display"] == "standalone" and body["lang"] == "zh-CN"
    # Everything the worker keeps for offline opening is there to be kept.
    shell = re.findall(r"'(/[^']+)'", (FIELD / "sw.js").read_text(encoding="utf-8").split("const DATA_PATHS")[0])
    for path in shell:
        assert (await officer.get(path, headers=anonymous)).status_code == 200, path


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_app_files_are_gzipped_for_a_client_that_takes_it_and_revalidated_by_etag(
    officer: httpx.AsyncClient,
) -> None:
    anonymous = {"Authorization": ""}
    for path, file in (("/field", "index.html"), ("/field/assets/field.js", "field.js"),
                       ("/field/assets/zh-CN.json", "i18n/zh-CN.json")):  # fmt: skip
        raw = (FIELD / file).read_bytes()
        plain = await officer.get(path, headers={**anonymous, "Accept-Encoding": "identity"})
        assert plain.status_code == 200 and plain.content == raw and "content-encoding" not in plain.headers
        packed = await officer.get(path, headers={**anonymous, "Accept-Encoding": "gzip, deflate, br"})
        assert packed.headers["content-encoding"] == "gzip" and packed.headers["vary"] == "Accept-Encoding"
        assert packed.content == raw  # httpx inflates it
        assert int(packed.headers["content-length"]) < len(raw) / 2
        again = await officer.get(path, headers={**anonymous, "If-None-Match": packed.headers["etag"]})
        assert again.status_code == 304 and not again.content
    assert (await officer.get("/field/assets/sw.js", headers=anonymous)).status_code == 404
    assert (await officer.get("/field/assets/..%2Fboard.py", headers=anonymous)).status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_classify_answers_what_routing_would_choose_with_the_words(
    officer: httpx.AsyncClient, bundled_rules: RuleBook
) -> None:
    assert bundled_rules.classifier is not None
    for text in ("五岔口路口拥堵，有车辆违停", "公司拖欠工资三个月", "traffic jam at the market", "今天天气很好"):
        answer = await officer.get("/api/v1/rules/classify", params={"description": text})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        expected = bundled_rules.classifier.classify(text)
        assert body["category"] == expected.category
        assert [(r["category"], r["score"]) for r in body["ranking"]] == list(expected.ranking)
        for entry in body["ranking"]:
            found = [h.word for h in expected.hits if h.category == entry["category"]]
            assert entry["words"] == found and entry["name"] and entry["name_en"]
    jam = (await officer.get("/api/v1/rules/classify", params={"description": "路口拥堵"})).json()
    assert jam["category"] == "traffic.congestion" and jam["ranking"][0]["name"] == "交通拥堵"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_classify_refuses_an_empty_or_missing_description(officer: httpx.AsyncClient) -> None:
    for params in ({}, {"description": ""}, {"description": "x" * 4001}):
        answer = await officer.get("/api/v1/rules/classify", params=params)
        assert answer.status_code == 422 and "description" in answer.text


def test_both_languages_have_the_same_labels_and_every_label_the_app_names() -> None:
    zh, en = LANGS["zh-CN"], LANGS["en"]
    assert set(zh) == set(en)
    assert all(isinstance(v, str) and v.strip() for d in (zh, en) for v in d.values())
    script = (FIELD / "field.js").read_text(encoding="utf-8")
    page = (FIELD / "index.html").read_text(encoding="utf-8")
    named = set(re.findall(r"\bt\('([a-zA-Z_.\-]+)'", script))
    named |= set(re.findall(r'data-i18n(?:-placeholder)?="([^"]+)"', page))
    # Keys built from values: states, statuses, actions, deadline kinds, outbox states, place kinds.
    named |= {f"unit.{s}" for s in ("dispatched", "acknowledged", "en_route", "on_scene", "resolved", "returned")}
    named |= {f"status.{s}" for s in ("reported", "dispatched", "acknowledged", "en_route", "on_scene", "resolved")}
    named |= {f"action.{a}" for a in ("acknowledge", "en-route", "on-scene", "resolve", "return")}
    named |= {f"kind.{k}" for k in ("ack", "arrive", "resolve")}
    named |= {f"outbox.state.{s}" for s in ("waiting", "sending", "refused")}
    named |= {f"place.kind.{k}" for k in ("household", "shop", "stall", "facility")}
    assert len(named) > 100
    for lang, labels in LANGS.items():
        assert sorted(named - set(labels)) == [], lang


def test_the_app_never_puts_data_into_html() -> None:
    """Text from the server goes in as text: no innerHTML, outerHTML, insertAdjacentHTML or document.write."""
    script = (FIELD / "field.js").read_text(encoding="utf-8")
    code = re.sub(r"(?m)\s//.*$", "", re.sub(r"/\*.*?\*/", "", script, flags=re.S))  # comments may name them
    assert "el(" in code and "textContent" in code
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code, sink
