"""``rules check`` and ``explain``: inline tables, and a property test against brute force."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import RoutingInput, compile_table, load_source_text
from rules.checker import check
from rules.explain import explain, explanation_json
from tests.test_rules import BASE


def checked(rules: str, extra: str = "") -> list[Any]:
    source = load_source_text(BASE + extra + "rules:\n" + rules, source="t.yaml")
    return check(compile_table(source.table), source)


COVER_ALL = """\
  - id: everything
    precedence: -1
    when: {category: "*"}
    then: {module: enforcement, lead: squad}
"""


def kinds(findings: list[Any]) -> list[str]:
    return sorted(f.kind for f in findings if f.kind != "organisation")


def test_a_table_that_covers_everything_once_is_clean_but_for_the_organisation() -> None:
    findings = checked(COVER_ALL)
    assert kinds(findings) == []
    assert [f.kind for f in findings] == ["organisation"]  # BASE chose no sub-module


def test_a_gap_names_the_category_and_gives_a_concrete_example() -> None:
    findings = checked(
        """\
  - id: traffic
    when: {category: traffic.*}
    then: {module: enforcement, lead: traffic}
  - id: vendors-at-night
    when: {category: market.vendor, time: {hours: "18:00-23:00"}}
    then: {module: enforcement, lead: squad}
"""
    )
    gaps = {f.example["category"]: f for f in findings if f.kind == "gap"}
    assert set(gaps) == {"market.vendor", "noise"}
    vendor = gaps["market.vendor"]
    assert "2 situation(s)" in vendor.message  # 00:00-18:00 and 23:00-24:00
    assert vendor.file == "t.yaml" and vendor.line == 21  # the catalogue entry
    book = compile_table(load_source_text(BASE + "rules: []\n").table)
    example_at = datetime.fromisoformat(vendor.example["occurred_at"])
    assert book.situation(example_at).minute < 18 * 60


def test_overlap_of_equal_precedence_and_specificity_with_different_owners() -> None:
    findings = checked(
        COVER_ALL
        + """\
  - id: junction-by-traffic
    when: {category: traffic.congestion, zone: junction}
    then: {module: enforcement, lead: traffic}
  - id: junction-by-police
    when: {category: traffic.congestion, zone: junction}
    then: {module: enforcement, lead: police}
  - id: same-owner-twice
    when: {category: noise, zone: junction}
    then: {module: enforcement, lead: squad}
"""
    )
    overlaps = [f for f in findings if f.kind == "overlap"]
    assert [f.rules for f in overlaps] == [("junction-by-traffic", "junction-by-police")]
    assert overlaps[0].example["zone"] == "junction"
    assert overlaps[0].line == 28


def test_precedence_settles_what_would_be_an_overlap() -> None:
    findings = checked(
        COVER_ALL
        + """\
  - id: junction-by-traffic
    precedence: 5
    when: {category: traffic.congestion, zone: junction}
    then: {module: enforcement, lead: traffic}
  - id: junction-by-police
    when: {category: traffic.congestion, zone: junction}
    then: {module: enforcement, lead: police}
"""
    )
    assert kinds(findings) == ["unreachable"]
    unreachable = next(f for f in findings if f.kind == "unreachable")
    assert unreachable.rules == ("junction-by-police",)
    assert "junction-by-traffic" in unreachable.message


def test_escalation_chains_must_climb_to_the_party_secretary() -> None:
    findings = checked(
        COVER_ALL
        + """\
  - id: stops-half-way
    when: {category: noise}
    then:
      module: enforcement
      lead: squad
      escalation: [{after: 0s, to: module_lead}]
  - id: goes-round
    when: {category: market.vendor}
    then:
      module: enforcement
      lead: squad
      escalation: [{after: 0s, to: party_secretary}, {after: 1h, to: module_lead}]
"""
    )
    chains = {f.rules: f.message for f in findings if f.kind == "chain"}
    assert "not at the party secretary" in chains[("stops-half-way",)]
    assert "goes back down" in chains[("goes-round",)]


def test_checker_finds_file_and_line_in_an_included_file(tmp_path: Any) -> None:
    (tmp_path / "main.yaml").write_text(BASE.replace("catalogue:", "include: [more.yaml]\ncatalogue:") + "rules: []\n")
    (tmp_path / "more.yaml").write_text(
        "rules:\n  - id: traffic\n    when: {category: traffic.*}\n    then: {module: enforcement, lead: nobody}\n"
    )
    from rules import RuleTableError, load_source

    try:
        load_source(tmp_path / "main.yaml")
    except RuleTableError as exc:
        assert [(p.file.endswith("more.yaml"), p.line) for p in exc.problems] == [(True, 4)]
    else:
        raise AssertionError("the unknown team in the included file was not found")


#: A rush-hour rule at the junction and a plain traffic rule under it (see the two tests below).
JUNCTION_RULES = """\
rules:
  - id: junction-at-rush-hour
    when: {category: traffic.*, zone: junction, time: {hours: "07:00-09:00", weekdays: [mon, tue, wed, thu, fri]}}
    then: {module: enforcement, lead: traffic, support: [police]}
  - id: traffic
    when: {category: traffic.*}
    then: {module: enforcement, lead: traffic}
"""


def test_explain_shows_the_winner_its_conditions_and_the_nearest_misses() -> None:
    source = load_source_text(BASE + JUNCTION_RULES)
    book = compile_table(source.table)
    monday_noon = datetime(2026, 1, 5, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai
    answer = explanation_json(
        explain(book, RoutingInput(category="traffic.congestion", zone="junction", at=monday_noon))
    )

    assert answer["decision"]["rule"] == "traffic"
    assert answer["winner"]["conditions"] == [
        {"name": "category", "held": True, "detail": "'traffic.congestion' against ['traffic.*']"}
    ]
    miss = answer["nearest_misses"][0]
    assert miss["rule"] == "junction-at-rush-hour" and miss["failed"] == ["hours"]


def test_routing_works_each_instant_out_on_its_own_and_reuses_one_for_the_same_instant() -> None:
    """The book keeps the situation of the last instant it routed at (a batch routes at one): an equal instant
    gets it again, another instant its own, in whatever order they come."""
    source = load_source_text(BASE + JUNCTION_RULES)
    book = compile_table(source.table)
    monday_rush = datetime(2026, 1, 5, 0, 30, tzinfo=UTC)  # 08:30 in Asia/Shanghai
    monday_noon = datetime(2026, 1, 5, 4, 0, tzinfo=UTC)
    same_rush = monday_rush.astimezone(book.tz)  # the same instant, written in another zone

    def rule_at(at: datetime | None) -> str | None:
        return book.route(RoutingInput(category="traffic.congestion", zone="junction", at=at)).rule_id

    assert [rule_at(a) for a in (monday_rush, monday_noon, monday_rush, same_rush, None, monday_noon)] == [
        "junction-at-rush-hour",
        "traffic",
        "junction-at-rush-hour",
        "junction-at-rush-hour",
        "traffic",
        "traffic",
    ]
    again = RoutingInput(category="traffic.congestion", zone="junction", at=monday_noon)
    assert book.route(again) is book.route(again)  # placed by its zone alone: routed once for the instant
    rush = book._instant(monday_rush).situation
    assert book._instant(same_rush).situation is rush and book._instant(monday_noon).situation is not rush


# -- property: the checker agrees with brute force on random small tables ------------------------

CATEGORIES = ["traffic.congestion", "traffic.accident", "noise"]
PATTERNS = ["traffic.congestion", "traffic.*", "noise", "*"]
ZONES = [None, "junction", "town"]  # junction lies inside town: they overlap
LEADS = ["traffic", "police"]

rule_strategy = st.fixed_dictionaries(
    {
        "category": st.sampled_from(PATTERNS),
        "zone": st.sampled_from(ZONES),
        "severity": st.sampled_from([None, 3]),
        "precedence": st.sampled_from([0, 1]),
        "lead": st.sampled_from(LEADS),
    }
)


def _points(pattern: str, category: str) -> int:
    if pattern == category:
        return 2
    if pattern.endswith(".*") and category.startswith(pattern[:-1]):
        return 1
    return 0 if pattern == "*" else -1


def _yaml_rules(rules: list[dict[str, Any]]) -> str:
    out = []
    for n, r in enumerate(rules):
        when: dict[str, Any] = {"category": r["category"]}
        if r["zone"]:
            when["zone"] = r["zone"]
        if r["severity"]:
            when["severity_at_least"] = r["severity"]
        out.append(
            {
                "id": f"r{n}",
                "precedence": r["precedence"],
                "when": when,
                "then": {"module": "enforcement", "lead": r["lead"]},
            }
        )
    return yaml.safe_dump(out, allow_unicode=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(rule_strategy, min_size=1, max_size=6))
def test_checker_agrees_with_brute_force(rules: list[dict[str, Any]]) -> None:
    text = BASE.replace("  - {id: market.vendor, name: 摊贩, name_en: Vendor, board_class: 商贸旅游}\n", "")
    text += "rules:\n" + "\n".join("  " + line for line in _yaml_rules(rules).splitlines()) + "\n"
    source = load_source_text(text)
    book = compile_table(source.table)
    findings = check(book, source)

    expected_gaps: set[str] = set()
    expected_overlaps: set[tuple[str, ...]] = set()
    winners: set[int] = set()
    for category in CATEGORIES:
        atoms = [(), ("junction",), ("town",), ("junction", "town")]
        for zones, severity in itertools.product(atoms, [None, 1, 2, 3, 4, 5]):
            holding = []
            for n, r in enumerate(rules):
                points = _points(r["category"], category)
                if points < 0 or (r["zone"] and r["zone"] not in zones):
                    continue
                if r["severity"] and (severity is None or severity < r["severity"]):
                    continue
                specificity = points + bool(r["zone"]) + bool(r["severity"])
                holding.append(((-r["precedence"], -specificity, n), r))
            if not holding:
                expected_gaps.add(category)
                continue
            holding.sort(key=lambda h: h[0])
            top = holding[0][0]
            winners.add(top[2])
            tied = [h for h in holding if h[0][:2] == top[:2]]
            if len({h[1]["lead"] for h in tied}) > 1:
                expected_overlaps.add(tuple(f"r{h[0][2]}" for h in tied))
            both = len(zones) == 2
            item = RoutingInput(
                category=category,
                zone=zones[0] if zones else None,
                severity=severity,
                lat=30.0 if both else None,
                lon=120.0 if both else None,
            )
            decision = book.route(item)
            assert decision.rule_id == f"r{top[2]}"

    assert {f.example["category"] for f in findings if f.kind == "gap" and f.example} == expected_gaps
    assert {f.rules for f in findings if f.kind == "overlap"} == expected_overlaps
    assert {f.rules[0] for f in findings if f.kind == "unreachable"} == {
        f"r{n}" for n in range(len(rules)) if n not in winners
    }
