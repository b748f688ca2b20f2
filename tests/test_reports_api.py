"""``/api/v1/reports/*`` in process on the hand-made June of tests/test_briefing.py: a leader reads the
briefing as HTML and XLSX and follows a figure to its incidents; bad periods are refused with what is
wrong; a field officer is refused."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import openpyxl
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatcher.accounts import Role
from dispatcher.settings import Settings
from dispatcher.sql_store import build_engine
from server.app import create_app
from tests.conftest import HubRig, api_client, sign_in_as
from tests.test_briefing import JUNE, D, History, june_history

AFTER_JUNE = datetime(2026, 7, 1, tzinfo=UTC)  # June 30 16:00 UTC ends June in Beijing time
MID_JUNE = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)  # 16:00 in Beijing


@pytest.fixture
async def engine(rig: HubRig) -> AsyncIterator[AsyncEngine]:
    engine = build_engine(rig.url, durable=False)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_a_leader_reads_the_briefing_and_follows_a_figure(rig: HubRig, engine: AsyncEngine) -> None:
    rig.clock.advance_to(AFTER_JUNE)  # June read once it ended (a running period is read up to now)
    await june_history(History(engine))
    app = create_app(Settings(database_url=rig.url), hub=rig.hub)
    async with api_client(app, await sign_in_as(app, Role.SUPERVISION)) as supervision:
        page = await supervision.get("/api/v1/reports/briefing", params={"period": "2026-06"})
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        # traffic's 2 due incidents, as a link the page follows
        assert "data-by='team' data-unit='traffic' data-figure='due'>2</a>" in page.text
        behind = await supervision.get(
            "/api/v1/reports/incidents", params={"period": "2026-06", "by": "team", "unit": "traffic", "figure": "due"}
        )
        assert behind.status_code == 200, behind.text
        assert [i["incident_id"] for i in behind.json()["incidents"]] == [1, 2]
        late = await supervision.get(
            "/api/v1/reports/incidents", params={"period": "2026-06", "unit": "traffic", "figure": "late"}
        )
        assert [i["incident_id"] for i in late.json()["incidents"]] == [2]
        open_past = await supervision.get(
            "/api/v1/reports/incidents",
            params={"period": "2026-06", "by": "module", "unit": "enforcement", "figure": "overdue_open"},
        )
        assert [i["incident_id"] for i in open_past.json()["incidents"]] == [3]
        nobody = await supervision.get("/api/v1/reports/incidents", params={"period": "2026-06", "figure": "received"})
        assert [i["incident_id"] for i in nobody.json()["incidents"]] == [
            8,
            7,
        ]  # no current lead: sent back (15 June), triage (21 June)
        book = await supervision.get("/api/v1/reports/briefing", params={"period": "2026-06", "format": "xlsx"})
        assert book.status_code == 200
        assert 'filename="briefing-2026-06.xlsx"' in book.headers["content-disposition"]
        sheet = openpyxl.load_workbook(io.BytesIO(book.content))["全镇"]
        assert [c.value for c in sheet[2]][1:5] == [6, 5, 3, 3]
        for bad in ("2026-13", "soon", "2026-Q9"):
            refused = await supervision.get("/api/v1/reports/briefing", params={"period": bad})
            assert refused.status_code == 422 and "period" in refused.text
        wrong_figure = await supervision.get("/api/v1/reports/incidents", params={"period": "2026-06", "figure": "x"})
        assert wrong_figure.status_code == 422

    officer = await sign_in_as(app, Role.FIELD_OFFICER, officer_id="tp-01")
    async with api_client(app, officer) as field:
        assert (await field.get("/api/v1/reports/briefing", params={"period": "2026-06"})).status_code == 403
        assert (
            await field.get("/api/v1/reports/incidents", params={"period": "2026-06", "figure": "due"})
        ).status_code == 403


async def test_units_carry_their_names_in_the_language_asked(rig: HubRig, engine: AsyncEngine) -> None:
    rig.clock.advance_to(AFTER_JUNE)  # June read once it ended (a running period is read up to now)
    await june_history(History(engine))
    app = create_app(Settings(database_url=rig.url), hub=rig.hub)
    async with api_client(app, await sign_in_as(app, Role.SUPERVISION)) as supervision:
        chinese = await supervision.get("/api/v1/reports/briefing", params={"period": "2026-06"})
        english = await supervision.get("/api/v1/reports/briefing", params={"period": "2026-06", "lang": "en"})
        # court is a team of the rule table (人民法庭); the hand-made "traffic" is not, and keeps its id
        assert "<td class='name' title='court'>人民法庭</td>" in chinese.text
        assert "<td class='name' title='court'>People&#x27;s tribunal</td>" in english.text
        assert "<td class='name' title='traffic'>traffic</td>" in english.text
        assert "Teams ranked" in english.text and "组团排名" not in english.text.replace("data-table='组团排名'", "")
        refused = await supervision.get("/api/v1/reports/briefing", params={"period": "2026-06", "lang": "fr"})
        assert refused.status_code == 422
        query = {"period": "2026-06", "by": "team", "unit": "court", "figure": "received"}
        behind = (await supervision.get("/api/v1/reports/incidents", params=query)).json()
        assert behind["unit_name"] == "人民法庭" and {i["unit_name"] for i in behind["incidents"]} == {"人民法庭"}
        behind_en = (await supervision.get("/api/v1/reports/incidents", params=query | {"lang": "en"})).json()
        assert behind_en["unit_name"] == "People's tribunal"
        nobody = await supervision.get("/api/v1/reports/incidents", params={"period": "2026-06", "figure": "received"})
        assert nobody.json()["unit_name"] is None
        scores = (await supervision.get("/api/v1/assessment", params={"period": "2026-06", "lang": "en"})).json()
        assert {s["unit"]: s["name"] for s in scores["modules"]}["service"] == "Service"
        assert {s["unit"]: s["name"] for s in scores["teams"]}["traffic"] == "traffic"


async def test_a_running_period_counts_what_was_due_up_to_now(rig: HubRig, engine: AsyncEngine) -> None:
    history = History(engine)
    await june_history(history)
    # 90: reported on 11 June, due on 21 June: not due yet when June is read on the 12th
    await history.incident(90, at=JUNE + 10 * D, team="market", resolve_within=10 * D)
    app = create_app(Settings(database_url=rig.url), hub=rig.hub)
    query = {"period": "2026-06", "by": "township", "figure": "due"}
    now = rig.clock.now()
    assert now == MID_JUNE
    async with api_client(app, await sign_in_as(app, Role.SUPERVISION)) as supervision:
        so_far = (await supervision.get("/api/v1/reports/incidents", params=query)).json()["incidents"]
        page = await supervision.get("/api/v1/reports/briefing", params={"period": "2026-06"})
        rig.clock.advance_to(AFTER_JUNE)
        ended = (await supervision.get("/api/v1/reports/incidents", params=query)).json()["incidents"]
    due_at = {i["incident_id"]: datetime.fromisoformat(i["due_at"]) for i in ended}
    assert {i["incident_id"] for i in so_far} == {k for k, at in due_at.items() if at < now}
    assert 0 < len(so_far) < len(ended)  # some of June's incidents fall due after the 12th
    assert "统计期间: 2026-06-01 至 2026-06-12 16:00 (截至目前, 期间未结束, 北京时间)" in page.text
