"""Working days and working hours: the calendar (chinese-calendar's data, the township's own years),
the rule table's ``5wd``/``8wh``, and exact due times on the virtual clock through the real hub.

The 2026 Spring Festival as the package records it (and as the State Council announced it): days
off from Sunday 15 February to Monday 23 February; Saturdays 14 and 28 February are make-up
working days (调休). Office hours are the default 08:30–12:00 and 14:00–17:30, Asia/Shanghai.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from dispatcher.core.events import DeadlineKind
from dispatcher.core.incidents import CalendarUnknown, Report
from dispatcher.settings import BUNDLED_TABLE
from dispatcher.store import IncidentFilter
from rules import RuleTableError, compile_table, load_source_text, load_table, load_table_text
from rules.checker import Finding, check, check_for_service
from rules.matcher import RuleBook
from rules.workdays import BeyondCalendar, WorkCalendar, WorkSpan, YearDays, parse_window
from tests.conftest import HubRig
from tests.test_rules import BASE, table

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI).astimezone(UTC)


CALENDAR = WorkCalendar.build(tz=SHANGHAI)


def test_the_package_knows_the_2026_spring_festival_and_its_make_up_saturdays() -> None:
    assert CALENDAR.is_working_day(date(2026, 2, 13))  # Friday
    assert CALENDAR.is_working_day(date(2026, 2, 14))  # Saturday, worked (调休)
    assert not any(CALENDAR.is_working_day(date(2026, 2, d)) for d in range(15, 24))  # the holiday
    assert CALENDAR.is_working_day(date(2026, 2, 24))
    assert CALENDAR.is_working_day(date(2026, 2, 28))  # Saturday, worked
    assert not CALENDAR.is_working_day(date(2026, 3, 7))  # an ordinary Saturday
    assert max(CALENDAR.years) == 2026


@pytest.mark.parametrize(
    ("start", "window", "due"),
    [
        # Friday before the festival: Sat 14 counts (1), 15–23 do not, then 24, 25, 26, 27.
        (local(2026, 2, 13, 10, 0), "5wd", local(2026, 2, 27, 17, 30)),
        # Counting starts the next day, whatever the hour: Thursday evening, 2wd → Fri, Sat 14 (worked).
        (local(2026, 2, 12, 23, 0), "2wd", local(2026, 2, 14, 17, 30)),
        # A report on the holiday itself.
        (local(2026, 2, 17, 9, 0), "1wd", local(2026, 2, 24, 17, 30)),
        # Friday 16:00: 1.5 h left that day, the worked Saturday gives 3.5 h in the morning, 3 h more by 17:00.
        (local(2026, 2, 13, 16, 0), "8wh", local(2026, 2, 14, 17, 0)),
        # Saturday 14 at 17:00 → 0.5 h, then nothing until Tuesday 24 at 08:30: 3.5 h → 12:00 exactly.
        (local(2026, 2, 14, 17, 0), "4wh", local(2026, 2, 24, 12, 0)),
        # Ending exactly at a close is due then, not at the next opening; starting at lunch waits for 14:00.
        (local(2026, 3, 2, 12, 30), "3wh", local(2026, 3, 2, 17, 0)),
        (local(2026, 3, 2, 14, 0), "3wh", local(2026, 3, 2, 17, 0)),
        # An ordinary weekend is skipped: Friday 6 March 17:00 → Monday 9 March.
        (local(2026, 3, 6, 17, 0), "2wh", local(2026, 3, 9, 10, 0)),
        # Clock durations are plain additions.
        (local(2026, 2, 13, 10, 0), "7d", local(2026, 2, 20, 10, 0)),
    ],
)
def test_exact_due_times_across_the_spring_festival(start: datetime, window: str, due: datetime) -> None:
    assert CALENDAR.due(start, parse_window(window)) == due


def test_a_deadline_beyond_the_known_years_is_an_error_that_says_so() -> None:
    with pytest.raises(BeyondCalendar, match=r"knows 2004–2026 only.*2027-01-01.*add the year 2027"):
        CALENDAR.due(local(2026, 12, 28, 9, 0), WorkSpan(5, "wd"))
    # Within the year it is answered.
    assert CALENDAR.due(local(2026, 12, 28, 9, 0), WorkSpan(3, "wd")) == local(2026, 12, 31, 17, 30)


def test_the_townships_own_year_extends_and_overrides_the_package() -> None:
    year = YearDays(year=2027, holidays=frozenset({date(2027, 1, 1)}), workdays=frozenset({date(2027, 1, 9)}))
    calendar = WorkCalendar.build(tz=SHANGHAI, township_years=[year])
    # 29, 30, 31 Dec; Fri 1 Jan off; Mon 4, Tue 5.
    assert calendar.due(local(2026, 12, 28, 9, 0), WorkSpan(5, "wd")) == local(2027, 1, 5, 17, 30)
    assert calendar.is_working_day(date(2027, 1, 9))  # a Saturday the township works
    # Replacing a year the package knows: 17 February 2026 becomes a working day.
    replaced = WorkCalendar.build(
        tz=SHANGHAI, township_years=[YearDays(year=2026, holidays=frozenset(), workdays=frozenset())]
    )
    assert replaced.is_working_day(date(2026, 2, 17)) and not replaced.is_working_day(date(2026, 2, 14))


WORKING_TABLE = table(
    """\
  - id: vendors
    when: {category: market.vendor}
    then: {module: enforcement, lead: squad, ack_within: 10m, resolve_within: 5wd}
  - id: noise
    when: {category: noise}
    then: {module: enforcement, lead: police, resolve_within: 8wh}
"""
)


def test_the_table_takes_working_time_and_its_own_calendar() -> None:
    text = WORKING_TABLE + (
        'office_hours: ["09:00-12:00", "13:00-18:00"]\n'
        "working_days:\n  - {year: 2027, holidays: [2027-01-01], workdays: []}\n"
    )
    book = compile_table(load_table_text(text))
    assert book.rules[0].decision.resolve_within == WorkSpan(5, "wd")
    assert book.work_calendar.due(local(2026, 12, 28, 9, 0), WorkSpan(5, "wd")) == local(2027, 1, 5, 18, 0)
    assert book.work_calendar.due(local(2026, 3, 2, 12, 0), WorkSpan(8, "wh")) == local(2026, 3, 3, 12, 0)


def test_a_calendar_file_is_included_like_any_section(tmp_path: Path) -> None:
    (tmp_path / "days.yaml").write_text("working_days:\n  - {year: 2027, holidays: [2027-01-01]}\n")
    (tmp_path / "t.yaml").write_text("include: [days.yaml]\n" + WORKING_TABLE)
    book = compile_table(load_table(tmp_path / "t.yaml"))
    assert 2027 in book.work_calendar.years


RULES_LINE = BASE.count("\n") + 2  # the first rule's line in ``table(...)``


@pytest.mark.parametrize(
    ("extra", "line", "fragment"),
    [
        ("    then: {module: enforcement, lead: squad, ack_within: 1wd}\n", RULES_LINE + 2, "clock time"),
        ("    then: {module: enforcement, lead: squad, resolve_within: 0wd}\n", RULES_LINE + 2, "longer than zero"),
        ("    then: {module: enforcement, lead: squad, resolve_within: 5wx}\n", RULES_LINE + 2, "is not a duration"),
    ],
)
def test_bad_working_time_is_reported_with_file_and_line(extra: str, line: int, fragment: str) -> None:
    text = table("  - id: vendors\n    when: {category: market.vendor}\n" + extra)
    with pytest.raises(RuleTableError) as raised:
        load_table_text(text, source="demo.yaml")
    problems = raised.value.problems
    assert any(p.line == line and fragment in p.message and p.file == "demo.yaml" for p in problems), problems


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ('office_hours: ["08:30-12:00", "11:00-17:30"]\n', "overlap"),
        ('office_hours: ["17:30-08:30"]\n', "must end after they start"),
        ("working_days:\n  - {year: 2027, holidays: [2028-01-01]}\n", "is not in 2027"),
        ("working_days:\n  - {year: 2027, holidays: [2027-01-02], workdays: [2027-01-02]}\n", "both a holiday"),
        ("working_days:\n  - {year: 2027}\n  - {year: 2027}\n", "given twice"),
    ],
)
def test_bad_calendar_sections_are_refused(section: str, fragment: str) -> None:
    lines = WORKING_TABLE.count("\n")
    with pytest.raises(RuleTableError) as raised:
        load_table_text(WORKING_TABLE + section, source="demo.yaml")
    problems = raised.value.problems
    assert any(fragment in p.message and p.line > lines for p in problems), problems


# -- through the hub, on the virtual clock ------------------------------------------------------


@pytest.fixture(scope="module")
def working_rules() -> RuleBook:
    text = BUNDLED_TABLE.read_text(encoding="utf-8")
    labour = "      arrive_within: 1d\n      resolve_within: 7d\n"
    assert labour in text
    return compile_table(
        load_table_text(text.replace(labour, labour.replace("7d", "5wd")), base_dir=BUNDLED_TABLE.parent)
    )


def wages(report_id: str) -> Report:
    return Report(report_id=report_id, category="labour.wage_arrears", description="欠薪", zone="town-centre")


async def test_a_labour_dispute_reported_before_the_festival_is_due_after_it(
    database_url: str, working_rules: RuleBook
) -> None:
    at = local(2026, 2, 13, 10, 0)
    rig = HubRig(database_url, working_rules, start=at)
    await rig.hub.start()
    try:
        incident = (await rig.hub.report(wages("w1"), at)).incident
        due = {a.team: a.deadline(DeadlineKind.RESOLVE) for a in incident.assignments}
        assert {d.due_at for d in due.values() if d is not None} == {local(2026, 2, 27, 17, 30)}
        assert incident.promises.resolve_within == WorkSpan(5, "wd")
        # The promise survives a restart as working time: a team sent later is counted by the calendar.
        hub = await rig.restart()
        assert (await hub.get(incident.id)).promises.resolve_within == WorkSpan(5, "wd")
        # Sent on the worked Saturday 14th: 24, 25, 26, 27 and the worked Saturday 28th.
        later = local(2026, 2, 14, 9, 0)
        added = await hub.add_team(incident.id, "police-station", later, actor="op")
        added_due = added.assignment("police-station").deadline(DeadlineKind.RESOLVE)
        assert added_due is not None and added_due.due_at == local(2026, 2, 28, 17, 30)
        # The clock-time promises (acknowledge 30m, arrive 1d) fall due first; the working-time one is
        # missed at 17:30 on the 27th, not a second before, for the three teams sent on the 13th.
        rig.clock.advance_to(local(2026, 2, 27, 17, 29, 59))
        await hub.fire_due(rig.clock.now())

        async def resolve_misses() -> list[str]:
            payloads = [orjson.loads(e.payload) for e in await hub.timeline(incident.id) if e.type == "DeadlineMissed"]
            return sorted(p["team"] for p in payloads if p["kind"] == "resolve")

        assert await resolve_misses() == []
        rig.clock.advance_to(local(2026, 2, 27, 17, 30))
        await hub.fire_due(rig.clock.now())
        assert await resolve_misses() == ["court", "judicial-office", "labour-office"]
    finally:
        await rig.hub.stop()


async def test_a_report_whose_deadline_falls_beyond_the_calendar_is_refused_with_the_reason(
    database_url: str, working_rules: RuleBook
) -> None:
    at = local(2026, 12, 28, 10, 0)
    rig = HubRig(database_url, working_rules, start=at)
    await rig.hub.start()
    try:
        with pytest.raises(CalendarUnknown, match="add the year 2027"):
            await rig.hub.report(wages("w2"), at)
        assert await rig.hub.list_incidents(IncidentFilter(), limit=10, offset=0) == ([], 0)
        # A report whose rule promises clock time only is taken as ever.
        traffic = Report(report_id="t1", category="traffic.congestion", description="堵", zone="five-way")
        assert (await rig.hub.report(traffic, at)).created
    finally:
        await rig.hub.stop()


def _calendar_findings(text: str, today: date) -> list[Finding]:
    source = load_source_text(text, source="t.yaml")
    return [f for f in check(compile_table(source.table), source, today=today) if f.kind == "calendar"]


def test_the_check_says_when_working_time_rules_will_soon_need_a_year_the_calendar_does_not_know() -> None:
    autumn, december = date(2026, 10, 1), date(2026, 12, 4)
    assert _calendar_findings(WORKING_TABLE, autumn) == []  # 2027 is more than the notice away
    [finding] = _calendar_findings(WORKING_TABLE, december)
    assert finding.rules == ("vendors", "noise") and finding.file == "t.yaml" and finding.line == RULES_LINE
    assert "does not know 2027" in finding.message and "working_days" in finding.message
    with_2027 = WORKING_TABLE + "working_days:\n  - {year: 2027, holidays: [2027-01-01], workdays: []}\n"
    assert _calendar_findings(with_2027, december) == []
    clock_only = WORKING_TABLE.replace("5wd", "5d").replace("8wh", "8h")
    assert _calendar_findings(clock_only, december) == []  # a table of clock time never needs the calendar


def test_the_calendar_finding_warns_but_does_not_refuse_the_table() -> None:
    source = load_source_text(WORKING_TABLE, source="t.yaml")
    book = compile_table(source.table)
    assert "calendar" in [f.kind for f in check_for_service(book, source, today=date(2026, 12, 20))]
    assert "calendar" not in [f.kind for f in check(book, source)]  # without a day, the table alone decides
