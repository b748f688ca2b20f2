"""The briefing document (简报): named periods, the most frequent matters, the ranking by composite score,
the monthly trend, and the HTML and XLSX renderings, on the hand-made June of tests/test_briefing.py (its
answers are written there, incident by incident) on both backends."""

from __future__ import annotations

import asyncio
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from dispatcher.briefing import CHINA, Hotspot, Period, Stage, Unit, document, hotspots
from dispatcher.roster_file import BUNDLED_ROSTER, read_roster
from dispatcher.settings import BUNDLED_TABLE
from dispatcher.sql_store import SqlIncidentStore, build_engine
from gateways.briefing_document import names_of, render_html, render_xlsx, tables
from rules.loader import load_table
from server.cli import app
from tests.test_briefing import JULY, JUNE, History, june_history


async def june(engine: AsyncEngine) -> None:
    await june_history(History(engine))
    # categories for 高发统计: two jams (1 and 2), one stall (3), the drill (4) a jam too, 6 a wage dispute.
    async with engine.begin() as conn:
        for ids, category in (((1, 2, 4), "traffic.congestion"), ((3,), "market.stall"), ((6,), "labour.wages")):
            await conn.execute(
                sa.text("UPDATE incident SET category = :c WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"c": category, "ids": list(ids)},
            )


@pytest.mark.parametrize(
    ("text", "name", "start", "months"),
    [
        ("2026-11", "2026-11", datetime(2026, 11, 1, tzinfo=CHINA), ["2026-11"]),
        ("2026-Q4", "2026-Q4", datetime(2026, 10, 1, tzinfo=CHINA), ["2026-10", "2026-11", "2026-12"]),
        ("2026-q1", "2026-Q1", datetime(2026, 1, 1, tzinfo=CHINA), ["2026-01", "2026-02", "2026-03"]),
        ("2026", "2026", datetime(2026, 1, 1, tzinfo=CHINA), [f"2026-{m:02d}" for m in range(1, 13)]),
    ],
)
def test_periods_are_named_in_beijing_time(text: str, name: str, start: datetime, months: list[str]) -> None:
    period = Period.parse(text)
    assert (period.name, period.start, [m for m, _, _ in period.months]) == (name, start, months)
    assert period.end == period.months[-1][2]
    assert period.start.astimezone(UTC) == start.astimezone(UTC)
    assert all(a[2] == b[1] for a, b in zip(period.months, period.months[1:], strict=False))


def test_a_running_period_is_read_up_to_now_and_an_ended_or_future_one_whole() -> None:
    quarter = Period.parse("2026-Q4")
    now = datetime(2026, 11, 12, 9, 30, tzinfo=CHINA)
    running = quarter.so_far(now)
    assert (running.name, running.start, running.end, running.running) == ("2026-Q4", quarter.start, now, True)
    # the trend's months up to now: December, not begun, is left out; November ends now
    assert [(m, e) for m, _, e in running.months] == [
        ("2026-10", datetime(2026, 11, 1, tzinfo=CHINA)),
        ("2026-11", now),
    ]
    assert quarter.so_far(quarter.end) is quarter and quarter.so_far(datetime(2027, 3, 1, tzinfo=CHINA)) is quarter
    assert quarter.so_far(quarter.start) is quarter and not quarter.running  # not begun: nothing is cut


@pytest.mark.parametrize("text", ["2026-13", "2026-Q5", "26-11", "2026-11-01", "november", "1999"])
def test_other_periods_are_refused_with_the_forms_allowed(text: str) -> None:
    with pytest.raises(ValueError, match="period"):
        Period.parse(text)


async def test_hotspots_count_received_incidents_without_drills_or_merged_ones(engine: AsyncEngine) -> None:
    await june(engine)
    by_category = await hotspots(engine, start=JUNE, end=JULY, by="category")
    # 4 (a drill) and 5 (merged into 6) are left out; 7 and 8 have no category.
    assert by_category == [
        Hotspot(key="traffic.congestion", received=2),
        Hotspot(key=None, received=2),
        Hotspot(key="labour.wages", received=1),
        Hotspot(key="market.stall", received=1),
    ]
    by_zone = await hotspots(engine, start=JUNE, end=JULY, by="zone")
    assert by_zone == [Hotspot(key="market-square", received=5), Hotspot(key="north-road", received=1)]


async def test_the_document_ranks_teams_by_composite_score(engine: AsyncEngine) -> None:
    await june(engine)
    doc = await document(engine, township="廿里镇", period=Period.parse("2026-06"))
    # traffic: 2 due, both closed, 1 on time → 60 × 0.5 + 40 × 1 = 70; market: its one due matter open → 0;
    # court: nothing due in June → no score, listed last.
    assert [(r.rank, r.figures.unit, r.score) for r in doc.ranking] == [
        (1, "traffic", 70.0),
        (2, "market", 0.0),
        (None, "court", None),
    ]
    assert doc.township_figures is not None
    whole = doc.township_figures
    assert (whole.received, whole.accepted, whole.due, whole.on_time, whole.overdue_open) == (6, 5, 3, 1, 1)
    assert [m for m, _ in doc.trend] == ["2026-06"]
    assert doc.trend[0][1] == whole
    assert {u.unit for u in doc.by[Unit.OFFICER].units} == {"tp-01", "tp-02", None}


async def test_a_quarter_has_its_months_in_the_trend(engine: AsyncEngine) -> None:
    await june(engine)
    doc = await document(engine, township="廿里镇", period=Period.parse("2026-Q2"))
    months = {m: (u.received if u else 0) for m, u in doc.trend}
    # 9 was reported on 29 May (UTC), the six others of the count in June.
    assert months == {"2026-04": 0, "2026-05": 1, "2026-06": 6}


async def test_html_and_xlsx_carry_the_same_tables(engine: AsyncEngine) -> None:
    await june(engine)
    doc = await document(engine, township="廿里镇", period=Period.parse("2026-06"))
    page = render_html(doc)
    assert "<script" not in page and "src=" not in page and "<link" not in page  # one file, nothing fetched
    # the ranking and the categories; a month's trend is one point per line, so it is a table only
    assert "廿里镇 简报 2026-06" in page and page.count("<svg") == 2
    quarter = render_html(await document(engine, township="廿里镇", period=Period.parse("2026-Q2")))
    assert quarter.count("<svg") == 3
    book = openpyxl.load_workbook(io.BytesIO(render_xlsx(doc)))
    assert book.sheetnames == [title for title, _, _ in tables(doc)]
    whole = book["全镇"]
    assert [c.value for c in whole[1]][:8] == [
        "单位",
        "受理",
        "立案",
        "应结案",
        "结案",
        "结案率",
        "按期结案率",
        "逾期未结",
    ]
    row = [c.value for c in whole[2]]
    assert row[:8] == ["廿里镇", 6, 5, 3, 3, pytest.approx(2 / 3), pytest.approx(1 / 3), 1]
    assert whole.cell(row=2, column=6).number_format == "0.0%"
    ranking = [[c.value for c in r] for r in book["组团排名"].iter_rows(min_row=2)]
    assert [r[:3] for r in ranking] == [[1, "traffic", 70.0], [2, "market", 0.0], [None, "court", None]]


def test_the_report_command_writes_both_files(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dispatcher.db'}"

    async def fill() -> None:
        store = SqlIncidentStore(url, durable=False)
        await store.open()
        await store.close()
        engine = build_engine(url, durable=False)
        try:
            await june(engine)
        finally:
            await engine.dispose()

    asyncio.run(fill())
    out_html, out_xlsx = tmp_path / "b.html", tmp_path / "b.xlsx"
    args = ["report", "--period", "2026-06", "--township", "ershili", "--database-url", url]
    result = CliRunner().invoke(app, [*args, "--html", str(out_html), "--xlsx", str(out_xlsx)])
    assert result.exit_code == 0, result.output
    assert "廿里镇 简报 2026-06" in out_html.read_text(encoding="utf-8")
    sheet = openpyxl.load_workbook(out_xlsx)["按组团"]
    traffic = next(r for r in sheet.iter_rows(min_row=2, values_only=True) if r[0] == "traffic")
    assert traffic[1:5] == (2, 2, 2, 3)
    wrong = CliRunner().invoke(app, [*args, "--township", "elsewhere", "--html", str(out_html)])
    assert wrong.exit_code != 0 and "ershili" in wrong.output
    nowhere = CliRunner().invoke(app, args)
    assert nowhere.exit_code != 0 and "--html" in nowhere.output


async def bundled_names(engine: AsyncEngine) -> None:
    """June's teams by the bundled rule table's ids (the hand-made history uses short ones of its own)."""
    async with engine.begin() as conn:
        for old, new in (("traffic", "traffic-police"), ("market", "market-supervision")):
            await conn.execute(sa.text("UPDATE assignment SET team = :new WHERE team = :old"), {"old": old, "new": new})


async def test_units_are_shown_by_name_and_keyed_by_id(engine: AsyncEngine) -> None:
    await june(engine)
    await bundled_names(engine)
    doc = await document(engine, township="廿里镇", period=Period.parse("2026-06"))
    table = load_table(BUNDLED_TABLE)
    names = names_of(table, read_roster(BUNDLED_ROSTER).officers)
    ranking = next(rows for title, _, rows in tables(doc, names) if title == "组团排名")
    assert [r[:3] for r in ranking] == [[1, "交警中队", 70.0], [2, "市场监管所", 0.0], [None, "人民法庭", None]]
    officers = next(rows for title, _, rows in tables(doc, names) if title == "岗位赋分依据 (人员)")
    assert {r[0] for r in officers} == {"中队长 (陈帆平)", "交警 (孟新霞)", "(无)"}  # tp-01, tp-02, no officer
    categories = next(rows for title, _, rows in tables(doc, names) if title == "高发统计 (类别)")
    assert categories[0] == ["交通拥堵", 2]  # traffic.congestion

    fragment = render_html(doc, fragment=True, names=names)
    # the name is what a reader sees; the id stays the key the page follows
    assert "<td class='name' title='traffic-police'>交警中队</td>" in fragment
    assert "data-by='team' data-unit='traffic-police' data-figure='due'>2</a>" in fragment
    assert not re.search(r">\s*traffic-police\s*<", fragment)
    english = render_html(doc, names=names_of(table, lang="en"))
    assert "Traffic police squadron" in english and "Teams ranked" in english and "Ershili town" in english
    assert "交警中队" not in english and "<html lang='en'>" in english

    # the workbook: the name first, the id in a last column 编号
    book = openpyxl.load_workbook(io.BytesIO(render_xlsx(doc, names)))
    sheet = book["按组团"]
    heads = [c.value for c in sheet[1]]
    assert (heads[0], heads[-1]) == ("组团", "编号")
    rows = {r[0]: r for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert rows["交警中队"][-1] == "traffic-police" and rows["交警中队"][1:5] == (2, 2, 2, 3)
    assert [c.value for c in book["组团排名"][2]][-1] == "traffic-police"


async def test_an_unknown_unit_is_shown_by_its_id(engine: AsyncEngine) -> None:
    await june(engine)
    doc = await document(engine, township="廿里镇", period=Period.parse("2026-06"))
    names = names_of(load_table(BUNDLED_TABLE))  # "traffic" is no team of the table
    ranking = next(rows for title, _, rows in tables(doc, names) if title == "组团排名")
    assert [r[1] for r in ranking] == ["traffic", "market", "人民法庭"]  # court is one


async def test_stage_times_are_in_minutes_and_hours(engine: AsyncEngine) -> None:
    await june(engine)
    doc = await document(engine, township="廿里镇", period=Period.parse("2026-06"))
    assert doc.township_figures is not None
    stages = doc.township_figures.stages
    ack, resolve = stages[Stage.ACK].median_s, stages[Stage.RESOLVE].median_s
    assert (ack, resolve) == (60.0, 3600.0)  # a minute to acknowledge, an hour to resolve (tests/test_briefing.py)
    title, heads, rows = tables(doc)[0]
    assert title == "全镇"
    shown = dict(zip(heads, rows[0], strict=True))
    assert (shown["响应中位 (分钟)"], shown["办结中位 (小时)"]) == (1.0, 1.0)
    assert not any("秒" in h for h in heads)
    assert "<td>3,600.0</td>" not in render_html(doc)
    whole = openpyxl.load_workbook(io.BytesIO(render_xlsx(doc)))["全镇"]
    column = [c.value for c in whole[1]].index("办结中位 (小时)") + 1
    cell = whole.cell(row=2, column=column)
    assert cell.value == 1.0 and cell.number_format == "0.0"


async def test_a_period_without_incidents_says_so(engine: AsyncEngine) -> None:
    await june(engine)
    doc = await document(engine, township="廿里镇", period=Period.parse("2026-01"))
    page = render_html(doc)
    assert "2026-01 无受理、应结案或结案的事件." in page
    assert page.count("<svg") == 0  # no empty charts
    ranking = re.search(r"<table data-table='组团排名'>.*?</table>", page)
    assert ranking is not None and "<td class='empty' colspan='6'>(无)</td>" in ranking.group(0)
    june_page = render_html(await document(engine, township="廿里镇", period=Period.parse("2026-06")))
    assert "无受理、应结案或结案的事件" not in june_page


async def test_a_zero_is_no_link_and_a_zero_score_is_one(engine: AsyncEngine) -> None:
    await june(engine)
    doc = await document(engine, township="廿里镇", period=Period.parse("2026-06"))
    fragment = render_html(doc, fragment=True)
    # court received its wage dispute (6) in June, due only in July: nothing to follow behind its 0 due
    assert "data-unit='court' data-figure='received'>1</a>" in fragment
    assert "data-unit='court' data-figure='due'" not in fragment
    # market's score 0.0 is made by its one due matter, open past its deadline: that one is followed
    assert "data-unit='market' data-figure='due'>0.0</a>" in fragment
