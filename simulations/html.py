"""A self-contained HTML report of a run (or of runs side by side): charts as inline SVG (pygal), no
scripts, no CDN, so it opens on a closed network and can be mailed as one file."""

from __future__ import annotations

import html
import re
from typing import Any

import pygal
from pygal.style import CleanStyle

from simulations.report import summarise, verdicts
from simulations.runner import RunResult
from simulations.scenario import Scenario

_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL)


def _chart(title: str, unit: str, series: dict[str, dict[str, float | None]]) -> str:
    """A bar chart: one group per module, one bar per run."""
    modules = sorted({m for values in series.values() for m in values})
    chart = pygal.Bar(
        title=title,
        y_title=unit,
        style=CleanStyle,
        js=[],  # no script from the internet: the report must open offline
        disable_xml_declaration=True,
        width=900,
        height=360,
        print_values=False,
        legend_at_bottom=True,
    )
    chart.x_labels = modules
    for run, values in series.items():
        chart.add(run, [values.get(m) for m in modules])
    svg: str = chart.render(is_unicode=True)
    # pygal embeds a small config script for its optional tooltips; the report is static, so drop it.
    return _SCRIPT.sub("", svg)


def _minutes(row: dict[str, Any], key: str) -> float | None:
    value = row[key]["median_s"]
    return None if value is None else round(value / 60, 1)


def html_report(scenario: Scenario, results: dict[str, RunResult]) -> str:
    summaries = {name: summarise(result) for name, result in results.items()}
    found = {name: verdicts(result, variant=name) for name, result in results.items()}
    ack = {n: {m: _minutes(r, "lead_ack") for m, r in s["by_module"].items()} for n, s in summaries.items()}
    resolve = {n: {m: _minutes(r, "lead_resolve") for m, r in s["by_module"].items()} for n, s in summaries.items()}
    on_time = {
        n: {
            m: (None if r["on_time_rate"] is None else round(100 * r["on_time_rate"], 1))
            for m, r in s["by_module"].items()
        }
        for n, s in summaries.items()
    }
    esc = html.escape
    parts = [
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>",
        f"<title>{esc(scenario.name)}</title>",
        "<style>body{font-family:system-ui,'Noto Sans CJK SC',sans-serif;margin:2rem;max-width:1000px}"
        "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;"
        "text-align:right}th:first-child,td:first-child{text-align:left}.pass{color:#16794c}.fail{color:#b42318}"
        "</style></head><body>",
        f"<h1>{esc(scenario.name)}</h1>",
        f"<p>{esc(scenario.description or '')}</p>",
        f"<p>seed {scenario.seed}, from {esc(scenario.start.isoformat())}, for {esc(scenario.until)}</p>",
    ]
    for variant in scenario.variants:
        parts.append(f"<p><b>{esc(variant.name)}</b>: {esc(variant.description or '')}</p>")
    parts.append("<h2>Expectations</h2><ul>")
    for name, verdict_list in found.items():
        for v in verdict_list:
            mark = "pass" if v.passed else "fail"
            parts.append(f"<li class='{mark}'>[{esc(name)}] {mark.upper()}: {esc(v.name)}: {esc(v.detail)}</li>")
    parts.append("</ul>")
    parts.append(_chart("Lead team acknowledges (median)", "minutes", ack))
    parts.append(_chart("Lead team resolves (median)", "minutes", resolve))
    parts.append(_chart("On time: closed in time ÷ (closed + open past the deadline)", "%", on_time))
    for name, summary in summaries.items():
        parts.append(
            f"<h2>{esc(name)}: rule table {esc(summary['rule_table'])}</h2>"
            f"<p>{summary['incidents']} incidents, {summary['events']} events</p>"
            "<table><tr><th>module</th><th>incidents</th><th>dispatch p50 s</th><th>ack p50 / p90 min</th>"
            "<th>arrive p50 min</th><th>resolve p50 / p90 min</th><th>on time</th><th>breaches</th>"
            "<th>escalations</th></tr>"
        )
        for module, row in summary["by_module"].items():
            rate = "" if row["on_time_rate"] is None else f"{row['on_time_rate']:.0%}"
            parts.append(
                f"<tr><td>{esc(module)}</td><td>{row['incidents']}</td><td>{_fmt(row['dispatch']['median_s'], 1)}</td>"
                f"<td>{_fmt_min(row['lead_ack'])}</td><td>{_fmt(_minutes(row, 'lead_arrive'))}</td>"
                f"<td>{_fmt_min(row['lead_resolve'])}</td><td>{rate}</td><td>{row['breaches']}</td>"
                f"<td>{row['escalations']}</td></tr>"
            )
        parts.append(
            "</table><table><tr><th>team</th><th>assignments</th><th>ack p50 min</th>"
            "<th>resolve p50 min</th><th>never acknowledged</th></tr>"
        )
        for team, row in summary["by_team"].items():
            parts.append(
                f"<tr><td>{esc(team)}</td><td>{row['assignments']}</td><td>{_fmt(_minutes(row, 'ack'))}</td>"
                f"<td>{_fmt(_minutes(row, 'resolve'))}</td><td>{row['never_acknowledged']}</td></tr>"
            )
        parts.append("</table>")
    parts.append(_briefing_table(summaries))
    parts.append("</body></html>")
    return "\n".join(parts)


def _fmt(value: float | None, factor: float = 1.0) -> str:
    return "–" if value is None else f"{value * factor:.1f}"


def _fmt_min(stats: dict[str, Any]) -> str:
    p50, p90 = stats["median_s"], stats["p90_s"]
    if p50 is None:
        return "–"
    return f"{p50 / 60:.1f} / {p90 / 60:.1f}"


def _briefing_table(summaries: dict[str, dict[str, Any]]) -> str:
    """The briefing's figures by module, one row per run and module: the code and definitions of
    ``dispatcher report`` (docs/reports.md), so a scenario and a real month read alike."""
    esc = html.escape
    rows = []
    for name, summary in summaries.items():
        for module, f in summary.get("briefing", {}).get("module", {}).items():
            rate = "" if f["on_time_rate"] is None else f"{f['on_time_rate']:.1%}"
            close = "" if f["close_rate"] is None else f"{f['close_rate']:.1%}"
            score = "–" if f["composite"] is None else f"{f['composite']:.1f}"
            rows.append(
                f"<tr><td>{esc(name)}</td><td>{esc(module)}</td><td>{f['received']}</td><td>{f['accepted']}</td>"
                f"<td>{f['due']}</td><td>{f['closed']}</td><td>{close}</td><td>{rate}</td>"
                f"<td>{f['overdue_open']}</td><td>{score}</td></tr>"
            )
    if not rows:
        return ""
    return (
        "<h2>简报 figures by module (the code of <code>dispatcher report</code>)</h2>"
        "<table data-table='briefing'><tr><th>run</th><th>module</th><th>受理</th><th>立案</th><th>应结案</th>"
        "<th>结案</th><th>结案率</th><th>按期结案率</th><th>逾期未结</th><th>综合指标值</th></tr>"
        + "".join(rows)
        + "</table>"
    )
