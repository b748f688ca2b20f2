"""Scenario replays on the virtual clock: the bundled scenarios keep their promises, replays are
deterministic, and a broken promise is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulations.html import html_report
from simulations.report import summarise, verdicts
from simulations.runner import Simulation, run_scenario
from simulations.scenario import load_scenario

SCENARIOS = sorted((Path(__file__).resolve().parent.parent / "simulations" / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
async def test_bundled_scenario_meets_its_expectations(path: Path) -> None:
    scenario = load_scenario(path)
    results = await run_scenario(path, scenario)
    for name, result in results.items():
        found = verdicts(result, variant=name)
        assert all(v.passed for v in found), (name, [v for v in found if not v.passed])
        assert result.ended == scenario.horizon()
    assert any(verdicts(r, variant=n) for n, r in results.items())


async def test_the_reform_shows_in_the_labour_comparison(tmp_path: Path) -> None:
    path = next(p for p in SCENARIOS if p.stem == "labour_one_stop")
    scenario = load_scenario(path)
    results = await run_scenario(path, scenario)
    modular, siloed = (summarise(results[n])["by_module"]["service"] for n in ("modular", "siloed"))
    # The mechanism, not a fitted number: the tribunal and the judicial office join at once...
    assert {a.team for i in results["modular"].incidents for a in i.assignments} == {
        "labour-office",
        "court",
        "judicial-office",
    }
    assert {a.team for i in results["siloed"].incidents for a in i.assignments} == {"labour-office"}
    # ...and under the scenario's stated assumptions a week becomes months.
    assert modular["lead_resolve"]["median_s"] < 7 * 86400 < siloed["lead_resolve"]["median_s"]
    assert modular["on_time_rate"] > siloed["on_time_rate"]
    page = html_report(scenario, results)
    assert page.count("<svg") == 3 and "siloed" in page and "<script" not in page


async def test_the_same_scenario_and_seed_give_the_same_event_log() -> None:
    path = next(p for p in SCENARIOS if p.stem == "five_way_market_day")
    scenario = load_scenario(path)
    first = await Simulation.from_file(path, scenario).run()
    second = await Simulation.from_file(path, scenario).run()
    other_seed = await Simulation.from_file(path, scenario.model_copy(update={"seed": 1})).run()

    def log(result: object) -> list[tuple[int, str, str, str]]:
        return [(e.seq, e.type, e.at.isoformat(), e.payload) for e in result.events]  # type: ignore[attr-defined]

    assert log(first) == log(second)
    assert log(first) != log(other_seed)
    assert summarise(first) == summarise(second)


async def test_a_broken_promise_fails_its_expectation(tmp_path: Path) -> None:
    scenario = tmp_path / "late.yaml"
    scenario.write_text(
        """\
name: nobody answers the phone
start: 2026-06-13T09:00:00+08:00
until: 1h
behaviour:
  teams:
    labour-office: {never_acknowledges: true}
timeline:
  - at: 0s
    report: {category: labour.wage_arrears, zone: town-centre, description: 欠薪}
expectations:
  - {name: the lead acknowledges in time, category: labour.*, lead_acknowledged_within: 30m}
  - {name: someone escalates to the party secretary, escalations_at_least: 1, escalated_to: party_secretary}
""",
        encoding="utf-8",
    )
    result = await Simulation.from_file(scenario, load_scenario(scenario)).run()
    found = {v.name: v for v in verdicts(result)}
    assert not found["the lead acknowledges in time"].passed
    assert "failed: [1]" in found["the lead acknowledges in time"].detail
    # The chain climbs on: the module lead at once, the party secretary 30 min later.
    assert found["someone escalates to the party secretary"].passed
    report = summarise(result)
    assert report["by_team"]["labour-office"]["never_acknowledged"] == 1
    assert report["by_module"]["service"]["escalations"] >= 1


def test_a_scenario_with_mistakes_names_file_and_line(tmp_path: Path) -> None:
    from rules import RuleTableError

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstart: 2026-06-13T09:00:00+08:00\ntimeline:\n  - at: soon\n    report: {description: d}\n")
    with pytest.raises(RuleTableError) as raised:
        load_scenario(bad)
    assert [(p.line, "timeline.0.at" in p.message) for p in raised.value.problems] == [(4, True)]


async def test_a_scenario_with_the_roster_reports_per_officer(repo_root: Path) -> None:
    path = repo_root / "simulations" / "scenarios" / "officer_never_acknowledges.yaml"
    result = await Simulation.from_file(path, load_scenario(path)).run()
    report = summarise(result)
    officers = report["by_officer"]
    # The traffic police never acknowledge: tp-01 is sent first, then tp-02; the chain climbs to the top.
    assert officers["tp-01"]["tasks"] == 1 and officers["tp-01"]["resent_for_silence"] == 1
    assert officers["tp-02"]["tasks"] == 1 and officers["tp-02"]["ack"]["count"] == 0
    assert all(v.passed for v in verdicts(result))


async def test_the_html_report_in_chinese_names_modules_from_the_table_and_says_long_durations_in_days() -> None:
    path = next(p for p in SCENARIOS if p.stem == "labour_one_stop")
    scenario = load_scenario(path)
    results = await run_scenario(path, scenario)
    page = html_report(scenario, results, "zh-CN")
    assert "<html lang='zh-CN'>" in page and "<script" not in page
    # Module and team names from the rule table, not their ids.
    assert "<td>大服务</td>" in page and "<td>劳动保障站</td>" in page
    assert "<td>service</td>" not in page and "<td>labour-office</td>" not in page
    # The siloed run takes months: said in days, in Chinese.
    siloed = summarise(results["siloed"])["by_module"]["service"]["lead_resolve"]["median_s"]
    assert siloed > 2 * 86400
    assert f"{siloed / 86400:.1f} 天" in page
    assert "Expectations" not in page and "incidents" not in page and " min" not in page
    english = html_report(scenario, results)
    assert "<td>Service</td>" in english and f"{siloed / 86400:.1f} d" in english
    with pytest.raises(ValueError, match="zh-CN"):
        html_report(scenario, results, "fr")


def test_durations_are_said_in_the_unit_they_read_best_in() -> None:
    from simulations.html import WORDS, span

    en = WORDS["en"]
    table = [(None, "–"), (30.0, "30.0 s"), (90.0, "90.0 s"), (600.0, "10.0 min"), (3 * 3600.0, "3.0 h")]
    table += [(36 * 3600.0, "36.0 h"), (90 * 86400.0, "90.0 d")]
    assert [span(seconds, en) for seconds, _ in table] == [text for _, text in table]
    assert span(3 * 86400.0, WORDS["zh-CN"]) == "3.0 天"


async def test_a_run_reports_the_briefing_figures_with_the_code_of_dispatcher_report() -> None:
    path = next(p for p in SCENARIOS if p.stem == "labour_one_stop")
    scenario = load_scenario(path)
    results = await run_scenario(path, scenario)
    for name, result in results.items():
        figures = summarise(result)["briefing"]["module"]["service"]
        service = [
            i for i in result.incidents if i.module == "service" and not i.report.exercise and i.merged_into is None
        ]
        assert figures["received"] == len(service) > 0, name
        closed = sum(1 for i in service if i.status.value == "closed")
        assert figures["closed"] == closed, name
    modular, siloed = (summarise(results[n])["briefing"]["module"]["service"] for n in ("modular", "siloed"))
    assert modular["on_time_rate"] > siloed["on_time_rate"]  # the comparison reads the same on the briefing
    page = html_report(scenario, results)
    briefing = page.split("data-table='briefing'")[1]
    assert briefing.count("<td>Service</td>") == 2  # one row per run, the module named by the table


async def test_failed_verifications_and_extensions_show_in_the_closing_scenario() -> None:
    path = next(p for p in SCENARIOS if p.stem == "closing_the_loop")
    results = await run_scenario(path, load_scenario(path))
    figures = {name: summarise(result) for name, result in results.items()}
    assert figures["checked"]["reworks"] == 0 and figures["checked"]["extensions"] == 0
    assert figures["rework"]["reworks"] > 0 and figures["rework"]["verifications"] > 20
    assert figures["extensions"]["extensions"] > 0 and figures["extensions"]["reworks"] == 0
    # Every dispute was verified and closed in the end: the loop closes, later when it failed or was extended.
    for result in results.values():
        assert all(i.status.value == "closed" for i in result.incidents)

    def open_days(name: str) -> float:
        incidents = results[name].incidents
        return sum((i.updated_at - i.reported_at).total_seconds() for i in incidents) / len(incidents) / 86400

    assert open_days("checked") < open_days("rework")
    assert open_days("checked") < open_days("extensions")
