"""Rule tables: validation with file and line, and which rule routes what (small inline tables)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dispatcher.settings import BUNDLED_TABLE
from rules import RoutingInput, RuleTableError, compile_table, load_table, load_table_text
from rules.durations import format_duration, parse_duration
from rules.matcher import Queue

BASE = """\
table: 1
version: t-1
township: {id: demo, name: 示例镇, name_en: Demo}
party_secretary: {name: 书记, title: 党委书记}
modules:
  - {id: command-room, kind: office, name: 指挥室, name_en: Command room, lead: {name: 主任, title: 主任}}
  - {id: enforcement, kind: main, name: 大执法, name_en: Enforcement, lead: {name: 甲, title: 副镇长}}
teams:
  - {id: traffic, module: enforcement, name: 交警, name_en: Traffic police, department: 县交警大队}
  - {id: police, module: enforcement, name: 派出所, name_en: Police, department: 县公安局}
  - {id: squad, module: enforcement, name: 执法队, name_en: Squad, department: 县执法局}
zones:
  - {id: junction, name: 路口, name_en: Junction, geometry: {type: Point, coordinates: [120.0, 30.0]}, radius_m: 100}
  - id: town
    name: 集镇
    name_en: Town
    geometry: {type: Polygon, coordinates: [[[119.99, 29.99], [120.01, 29.99], [120.01, 30.01], [119.99, 30.01], [119.99, 29.99]]]}
catalogue:
  - {id: traffic.congestion, name: 拥堵, name_en: Congestion, board_class: 交通运输}
  - {id: traffic.accident, name: 事故, name_en: Accident, board_class: 交通运输}
  - {id: market.vendor, name: 摊贩, name_en: Vendor, board_class: 商贸旅游}
  - {id: noise, name: 噪声, name_en: Noise, board_class: 环境保护}
"""


def table(rules: str) -> str:
    return BASE + "rules:\n" + rules


ROUTING_TABLE = table(
    """\
  - id: junction-traffic
    when: {category: traffic.*, zone: junction}
    then: {module: enforcement, lead: traffic, support: [police, squad], priority: 1, ack_within: 2m}
  - id: serious-accident
    when: {category: traffic.accident, severity_at_least: 4}
    then: {module: enforcement, lead: police, support: [traffic]}
  - id: traffic
    when: {category: traffic.*}
    then: {module: enforcement, lead: traffic}
  - id: vendors-in-town
    when: {category: market.vendor, zone: [town]}
    then: {module: enforcement, lead: squad, resolve_within: 7d}
"""
)


@pytest.mark.parametrize(
    ("item", "rule", "queue"),
    [
        (RoutingInput(category="traffic.congestion", zone="junction"), "junction-traffic", None),
        (RoutingInput(category="traffic.accident", zone="junction", severity=5), "serious-accident", None),
        (RoutingInput(category="traffic.accident", zone="junction", severity=1), "junction-traffic", None),
        (RoutingInput(category="traffic.accident", severity=5), "serious-accident", None),
        (RoutingInput(category="traffic.accident", severity=3), "traffic", None),
        (RoutingInput(category="traffic.accident"), "traffic", None),
        (RoutingInput(category="traffic.congestion", lat=30.0, lon=120.0005), "junction-traffic", None),
        (RoutingInput(category="traffic.congestion", lat=30.005, lon=120.005), "traffic", None),
        (RoutingInput(category="market.vendor", lat=30.005, lon=120.005), "vendors-in-town", None),
        (RoutingInput(category="market.vendor", lat=31.0, lon=121.0), None, Queue.ADMISSION),
        (RoutingInput(category="noise", zone="junction"), None, Queue.ADMISSION),
        (RoutingInput(category="ufo", zone="junction"), None, Queue.TRIAGE),
    ],
)
def test_the_most_specific_rule_that_holds_wins(item: RoutingInput, rule: str | None, queue: Queue | None) -> None:
    decision = compile_table(load_table_text(ROUTING_TABLE)).route(item)
    assert decision.rule_id == rule
    assert decision.queue == queue
    if queue is not None:
        assert decision.module == "command-room" and decision.lead is None


def test_decision_carries_owner_teams_deadlines_and_zones() -> None:
    book = compile_table(load_table_text(ROUTING_TABLE))
    decision = book.route(RoutingInput(category="traffic.congestion", lat=30.0, lon=120.0))
    assert (decision.module, decision.lead, decision.support) == ("enforcement", "traffic", ("police", "squad"))
    assert decision.priority == 1
    assert decision.ack_within == timedelta(minutes=2)
    assert decision.resolve_within is None  # no default in this table
    assert decision.zones == ("junction", "town")
    assert decision.escalate_to.title == "副镇长"
    assert book.route(RoutingInput(category="market.vendor", zone="town")).resolve_within == timedelta(days=7)


@pytest.mark.parametrize(
    ("rules", "line", "fragment"),
    [
        (
            "  - id: r\n    when: {category: traffic.*}\n    then: {module: enforcement, lead: nobody}\n",
            26,
            "unknown team 'nobody'",
        ),
        (
            "  - id: r\n    when: {category: trafic.*}\n    then: {module: enforcement, lead: traffic}\n",
            25,
            "no catalogue category falls under 'trafic.*'",
        ),
        (
            "  - id: r\n    when: {category: noise, zone: moon}\n    then: {module: enforcement, lead: traffic}\n",
            25,
            "unknown zone 'moon'",
        ),
        (
            "  - id: r\n    when: {category: noise}\n    then: {module: nowhere, lead: traffic}\n",
            26,
            "unknown module 'nowhere'",
        ),
        (
            "  - id: r\n    when: {category: noise}\n    then: {module: enforcement, lead: traffic, support: [traffic]}\n",
            26,
            "also listed as support",
        ),
        (
            "  - id: r\n    when: {category: noise}\n    then: {module: enforcement, lead: traffic, ack_within: soon}\n",
            26,
            "not a duration",
        ),
        (
            "  - id: r\n    when: {category: noise, colour: red}\n    then: {module: enforcement, lead: traffic}\n",
            25,
            "unknown key 'rules.0.when.colour'",
        ),
        (
            "  - id: r\n    when: {category: noise}\n    then: {module: enforcement, lead: traffic}\n  - id: r\n    when: {category: noise}\n    then: {module: enforcement, lead: traffic}\n",
            27,
            "id 'r' is used twice",
        ),
        (
            "  - id: r\n    when: {category: noise}\n    when: {category: noise}\n    then: {module: enforcement, lead: traffic}\n",
            26,
            "key 'when' appears twice",
        ),
        ("  - id: r\n    when: {category: noise\n", 26, "not valid YAML"),
    ],
)
def test_mistakes_are_reported_with_file_and_line(rules: str, line: int, fragment: str) -> None:
    with pytest.raises(RuleTableError) as raised:
        load_table_text(table(rules), source="demo.yaml")
    problems = raised.value.problems
    assert any(p.line == line and fragment in p.message and p.file == "demo.yaml" for p in problems), problems


def test_a_missing_section_and_a_point_without_radius() -> None:
    text = BASE.replace("radius_m: 100", "note: x").replace("catalogue:", "katalog:")
    with pytest.raises(RuleTableError) as raised:
        load_table_text(text)
    messages = [p.message for p in raised.value.problems]
    assert any("catalogue: required key is missing" in m for m in messages)
    assert any("unknown key 'katalog'" in m for m in messages)


def test_unreadable_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(RuleTableError, match="cannot read"):
        load_table(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- just\n- a list\n")
    with pytest.raises(RuleTableError, match="must be a YAML mapping"):
        load_table(tmp_path / "list.yaml")


def test_the_bundled_table_loads_and_covers_the_five_way_case() -> None:
    book = compile_table(load_table(BUNDLED_TABLE))
    assert book.township_id == "ershili"
    decision = book.route(RoutingInput(category="traffic.congestion", zone="five-way"))
    assert decision.lead == "traffic-police"
    assert set(decision.support) == {"police-station", "market-supervision", "law-enforcement", "market-town-office"}
    labour = book.route(RoutingInput(category="labour.dispute", zone="town-centre"))
    assert (labour.module, labour.resolve_within) == ("service", timedelta(days=7))
    assert {"court", "judicial-office"} <= set(labour.support)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("5m", 300), ("2h", 7200), ("7d", 604800), ("1h30m", 5400)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "m5", "5 minutes", "0s", "-5m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("local", "rule"),
    [
        ("2026-06-12T09:00:00+08:00", "market-day-order"),  # the 12th is a market day, in the morning
        ("2026-06-12T15:00:00+08:00", "market-order"),  # the same day in the afternoon
        ("2026-06-13T09:00:00+08:00", "market-order"),  # not a market day
        ("2026-06-12T01:30:00+00:00", "market-day-order"),  # the same instant given in UTC
    ],
)
def test_market_days_and_hours_in_the_townships_time_zone(local: str, rule: str) -> None:
    from datetime import datetime

    book = compile_table(load_table(BUNDLED_TABLE))
    item = RoutingInput(category="market.unlicensed_vendor", zone="market", at=datetime.fromisoformat(local))
    assert book.route(item).rule_id == rule


def test_routing_the_same_report_again_decides_the_same_whatever_was_routed_between() -> None:
    # Decisions are kept for reuse by the rule that won: the conditions are still weighed for each report.
    from datetime import datetime

    book = compile_table(load_table(BUNDLED_TABLE))
    fresh = compile_table(load_table(BUNDLED_TABLE))
    morning = datetime.fromisoformat("2026-06-12T09:00:00+08:00")  # a market day's morning
    items = [
        RoutingInput(category="market.unlicensed_vendor", zone="market", at=morning),
        RoutingInput(category="market.unlicensed_vendor", zone="market", at=morning + timedelta(hours=6)),
        RoutingInput(category="market.unlicensed_vendor", zone="market", at=morning + timedelta(days=1)),
        RoutingInput(category="traffic.congestion", zone="five-way", at=morning),
        RoutingInput(category="traffic.congestion", zone="town-centre", at=morning),
        RoutingInput(category="traffic.congestion", at=morning),
        RoutingInput(category="no.such.category", zone="market", at=morning),
        RoutingInput(description="五岔口堵车了", zone="five-way", at=morning),
    ]
    first = [book.route(item) for item in items]
    assert [d.rule_id for d in first[:3]] == ["market-day-order", "market-order", "market-order"]
    for item, decision in zip([*items, *reversed(items)], [*first, *reversed(first)], strict=True):
        again = book.route(item)
        assert again == decision == fresh.route(item)
        assert again.zones == decision.zones and again.category == decision.category
    assert first[-1].classification is not None  # a classified report's decision carries its own hits
