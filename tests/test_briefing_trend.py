"""The month-by-month trend of the briefing document in one pass equals the township's figures computed
month by month (``compute`` of each month), on a small hand-made history spanning several months, on both
backends."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatcher.briefing import CHINA, Period, Stage, Unit, UnitFigures, compute, document, trend
from tests.test_briefing import History

H = timedelta(hours=1)
D = timedelta(days=1)
M = timedelta(minutes=1)


def at(month: int, day: int, hour: int = 10) -> datetime:
    """A time in the township's civil time (the months are Beijing months)."""
    return datetime(2026, month, day, hour, tzinfo=CHINA)


async def months_history(engine: AsyncEngine) -> None:
    """March to June 2026 (Beijing time); nothing before March."""
    h = History(engine)
    steps = (("acknowledged", 2 * M), ("on_scene", 30 * M), ("resolved", 5 * H))
    # 1: March, due in April, still open at the end of June: overdue open in April, May and June's rows
    # only as far as it is due in their month (April), received in March.
    await h.incident(1, at=at(3, 25), team="market", team_state="acknowledged", resolve_within=10 * D)
    # 2: April, due 2 May, closed 5 May: due in May, closed late; open past its deadline across April's end.
    await h.incident(2, at=at(4, 28), team="traffic", resolve_within=4 * D, moves=steps, closed_after=7 * D)
    # 3: reported 1 May 02:00 Beijing (30 April in UTC): May's, not April's.
    await h.incident(3, at=at(5, 1, 2), team="traffic", moves=steps, closed_after=6 * H)
    # 4: a drill in April, closed on time: counts nowhere.
    await h.incident(4, at=at(4, 10), team="traffic", moves=steps, closed_after=H, exercise=True)
    # 5 merged into 6 in May: counts once, as 6 (closed on time, with an extension and a rework).
    await h.incident(5, at=at(5, 12), team="market", status="merged", merged_into=6)
    await h.incident(6, at=at(5, 12), team="court", resolve_within=3 * D, moves=steps, closed_after=2 * D)
    # 7: sent back (回退) in May, no current lead: received, accepted (it had a lead), never due.
    await h.incident(7, at=at(5, 20), team="labour", team_state="returned", status="reported", rule_id="r-wage")
    await h.event(7, "AssignmentReturned", at(5, 20) + H, team="labour", rule_id="r-wage", reason="not ours")
    # 8: June, in triage: received, not accepted.
    await h.incident(8, at=at(6, 3), queue="triage", rule_id=None)
    # 9: June, acknowledged on 30 June 23:59 Beijing, arrived in July: June's ack only.
    await h.incident(
        9,
        at=at(6, 30, 23),
        team="market",
        team_state="on_scene",
        moves=(("acknowledged", 59 * M), ("on_scene", 2 * H)),
    )
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE incident SET extensions = 1, reworks = 1 WHERE id = 6"))


async def month_by_month(engine: AsyncEngine, period: Period) -> list[tuple[str, UnitFigures | None]]:
    """The trend as the document computed it before: the township's figures of each month on their own."""
    out: list[tuple[str, UnitFigures | None]] = []
    for name, start, end in period.months:
        month = await compute(engine, start=start, end=end, by=Unit.TOWNSHIP)
        out.append((name, month.units[0] if month.units else None))
    return out


@pytest.mark.parametrize("text", ["2026", "2026-Q2", "2026-05"])
async def test_the_trend_in_one_pass_equals_the_months_computed_one_by_one(engine: AsyncEngine, text: str) -> None:
    await months_history(engine)
    period = Period.parse(text)
    assert await trend(engine, months=period.months) == await month_by_month(engine, period)


async def test_the_trend_reads_the_months_off_the_history(engine: AsyncEngine) -> None:
    """The right answers read off the history above (so the comparison is not of two empty lists)."""
    await months_history(engine)
    got = dict(await trend(engine, months=Period.parse("2026").months))
    assert got["2026-01"] is None and got["2026-02"] is None  # nothing reported before March
    figures = {
        m: (u.received, u.accepted, u.due, u.closed, u.due_closed, u.on_time, u.overdue_open, u.extended, u.reworked)
        for m, u in got.items()
        if u is not None
    }
    assert figures["2026-03"] == (1, 1, 0, 0, 0, 0, 0, 0, 0)
    assert figures["2026-04"] == (1, 1, 1, 0, 0, 0, 1, 0, 0)  # 2; 1 due and open
    assert figures["2026-05"] == (3, 3, 3, 3, 3, 2, 0, 1, 1)  # 3, 6, 7; due 2 (late), 3, 6
    assert figures["2026-06"] == (2, 1, 0, 0, 0, 0, 0, 0, 0)  # 8, 9
    assert figures["2026-07"] == (0, 0, 1, 0, 0, 0, 1, 0, 0)  # 9, due 1 July, open
    june = got["2026-06"]
    assert june is not None and set(june.stages) == {Stage.ACK} and june.stages[Stage.ACK].median_s == 59 * 60


async def test_the_document_carries_the_trend(engine: AsyncEngine) -> None:
    await months_history(engine)
    period = Period.parse("2026-Q2")
    doc = await document(engine, township="ershili", period=period)
    assert doc.trend == await month_by_month(engine, period)


def test_months_that_do_not_follow_one_another_are_refused() -> None:
    q2 = Period.parse("2026-Q2").months
    with pytest.raises(ValueError, match="follow one another"):
        asyncio.run(trend(None, months=(q2[0], q2[2])))  # type: ignore[arg-type]
