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


#: The report's words in each language (``--lang``); names of modules and teams come from the rule table.
WORDS: dict[str, dict[str, str]] = {
    "en": {
        "run_line": "seed {seed}, from {start}, for {until}",
        "expectations": "Expectations",
        "pass": "PASS",
        "fail": "FAIL",
        "chart_ack": "Lead team acknowledges (median)",
        "chart_resolve": "Lead team resolves (median)",
        "chart_on_time": "On time: closed in time ÷ (closed + open past the deadline)",
        "table_head": "{name}: rule table {version}",
        "counts": "{incidents} incidents, {events} events",
        "module": "module",
        "briefing": "Briefing (简报) figures by module, computed as dispatcher report computes them",
        "run": "run",
        "team": "team",
        "incidents": "incidents",
        "assignments": "assignments",
        "dispatch": "dispatch p50",
        "ack": "ack p50 / p90",
        "ack50": "ack p50",
        "arrive": "arrive p50",
        "resolve": "resolve p50 / p90",
        "resolve50": "resolve p50",
        "on_time": "on time",
        "breaches": "breaches",
        "escalations": "escalations",
        "never": "never acknowledged",
        "s": "{n} s",
        "min": "{n} min",
        "h": "{n} h",
        "d": "{n} d",
        "unit_s": "seconds",
        "unit_min": "minutes",
        "unit_h": "hours",
        "unit_d": "days",
    },
    "zh-CN": {
        "run_line": "随机种子 {seed}，自 {start} 起，历时 {until}",
        "expectations": "预期检验",
        "pass": "通过",
        "fail": "未通过",
        "chart_ack": "牵头力量接单用时（中位数）",
        "chart_resolve": "牵头力量办结用时（中位数）",
        "chart_on_time": "按时率：按时办结 ÷（已办结 + 超时未结）",
        "table_head": "{name}：规则表 {version}",
        "counts": "共 {incidents} 起事件，{events} 条记录",
        "module": "模块",
        "briefing": "简报指标（按模块，与 dispatcher report 同一算法）",
        "run": "方案",
        "team": "处置力量",
        "incidents": "事件数",
        "assignments": "派单数",
        "dispatch": "派单用时中位数",
        "ack": "接单 中位数 / 90 分位",
        "ack50": "接单中位数",
        "arrive": "到场中位数",
        "resolve": "办结 中位数 / 90 分位",
        "resolve50": "办结中位数",
        "on_time": "按时率",
        "breaches": "超时",
        "escalations": "升级",
        "never": "始终未接单",
        "s": "{n} 秒",
        "min": "{n} 分钟",
        "h": "{n} 小时",
        "d": "{n} 天",
        "unit_s": "秒",
        "unit_min": "分钟",
        "unit_h": "小时",
        "unit_d": "天",
    },
}
LANGS = tuple(WORDS)

#: Seconds per unit, and from how long on a duration is said in it (days from two days on).
_UNITS = (("d", 86400.0, 2 * 86400.0), ("h", 3600.0, 2 * 3600.0), ("min", 60.0, 120.0), ("s", 1.0, 0.0))


def unit_for(seconds: float) -> tuple[str, float]:
    """The unit a duration reads best in: days past two days, hours past two hours, then minutes, seconds."""
    for unit, size, from_s in _UNITS:
        if abs(seconds) >= from_s:
            return unit, size
    return "s", 1.0


def span(seconds: float | None, words: dict[str, str]) -> str:
    """A duration with its unit (``3.5 min``, ``12.0 d``; ``–`` when there is none)."""
    if seconds is None:
        return "–"
    unit, size = unit_for(seconds)
    return words[unit].format(n=f"{seconds / size:.1f}")


def _names(result: RunResult, kind: str, lang: str) -> dict[str, str]:
    """Module or team ids to their names in the table, in the report's language."""
    table = result.table
    if table is None:
        return {}
    items = table.modules if kind == "modules" else table.teams
    return {x.id: (x.name_en if lang == "en" else x.name) for x in items}


def _label(names: dict[str, str], key: str) -> str:
    return names.get(key, key)


def _chart_in(title: str, words: dict[str, str], series: dict[str, dict[str, float | None]]) -> str:
    """A chart of durations (seconds) in the unit its largest value reads best in."""
    largest = max((abs(v) for values in series.values() for v in values.values() if v is not None), default=0.0)
    unit, size = unit_for(largest)
    scaled = {
        run: {m: (None if v is None else round(v / size, 1)) for m, v in values.items()}
        for run, values in series.items()
    }
    return _chart(title, words[f"unit_{unit}"], scaled)


def html_report(scenario: Scenario, results: dict[str, RunResult], lang: str = "en") -> str:
    """The report in ``lang`` (``en`` or ``zh-CN``): words from :data:`WORDS`, modules and teams named by the
    rule table, durations in the unit they read best in (days when long). Raises ``ValueError`` for another
    language."""
    if lang not in WORDS:
        raise ValueError(f"no report language {lang!r}: use one of {', '.join(LANGS)}")
    w = WORDS[lang]
    summaries = {name: summarise(result) for name, result in results.items()}
    found = {name: verdicts(result, variant=name) for name, result in results.items()}
    modules: dict[str, str] = {}
    teams: dict[str, str] = {}
    for result in results.values():
        modules.update(_names(result, "modules", lang))
        teams.update(_names(result, "teams", lang))

    def by_module(key: str) -> dict[str, dict[str, float | None]]:
        return {
            n: {_label(modules, m): r[key]["median_s"] for m, r in s["by_module"].items()} for n, s in summaries.items()
        }

    on_time = {
        n: {
            _label(modules, m): (None if r["on_time_rate"] is None else round(100 * r["on_time_rate"], 1))
            for m, r in s["by_module"].items()
        }
        for n, s in summaries.items()
    }
    esc = html.escape
    length = span((scenario.horizon() - scenario.start).total_seconds(), w)
    parts = [
        f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'>",
        f"<title>{esc(scenario.name)}</title>",
        "<style>body{font-family:system-ui,'Noto Sans CJK SC',sans-serif;margin:2rem;max-width:1000px}"
        "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;"
        "text-align:right}th:first-child,td:first-child{text-align:left}.pass{color:#16794c}.fail{color:#b42318}"
        "</style></head><body>",
        f"<h1>{esc(scenario.name)}</h1>",
        f"<p>{esc(scenario.description or '')}</p>",
        f"<p>{esc(w['run_line'].format(seed=scenario.seed, start=scenario.start.isoformat(), until=length))}</p>",
    ]
    for variant in scenario.variants:
        parts.append(f"<p><b>{esc(variant.name)}</b>: {esc(variant.description or '')}</p>")
    parts.append(f"<h2>{esc(w['expectations'])}</h2><ul>")
    for name, verdict_list in found.items():
        for v in verdict_list:
            mark = "pass" if v.passed else "fail"
            parts.append(f"<li class='{mark}'>[{esc(name)}] {esc(w[mark])}: {esc(v.name)}: {esc(v.detail)}</li>")
    parts.append("</ul>")
    parts.append(_chart_in(w["chart_ack"], w, by_module("lead_ack")))
    parts.append(_chart_in(w["chart_resolve"], w, by_module("lead_resolve")))
    parts.append(_chart(w["chart_on_time"], "%", on_time))
    for name, summary in summaries.items():
        head = [w[k] for k in ("module", "incidents", "dispatch", "ack", "arrive", "resolve", "on_time")]
        head += [w["breaches"], w["escalations"]]
        parts.append(
            f"<h2>{esc(w['table_head'].format(name=name, version=summary['rule_table']))}</h2>"
            f"<p>{esc(w['counts'].format(incidents=summary['incidents'], events=summary['events']))}</p>"
            "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
        )
        for module, row in summary["by_module"].items():
            rate = "" if row["on_time_rate"] is None else f"{row['on_time_rate']:.0%}"
            cells = [
                _label(modules, module),
                str(row["incidents"]),
                span(row["dispatch"]["median_s"], w),
                _p50_p90(row["lead_ack"], w),
                span(row["lead_arrive"]["median_s"], w),
                _p50_p90(row["lead_resolve"], w),
                rate,
                str(row["breaches"]),
                str(row["escalations"]),
            ]
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
        head = [w[k] for k in ("team", "assignments", "ack50", "resolve50", "never")]
        parts.append("</table><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
        for team, row in summary["by_team"].items():
            cells = [
                _label(teams, team),
                str(row["assignments"]),
                span(row["ack"]["median_s"], w),
                span(row["resolve"]["median_s"], w),
                str(row["never_acknowledged"]),
            ]
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    parts.append(_briefing_table(summaries, modules, w))
    parts.append("</body></html>")
    return "\n".join(parts)


def _p50_p90(stats: dict[str, Any], words: dict[str, str]) -> str:
    if stats["median_s"] is None:
        return "–"
    return f"{span(stats['median_s'], words)} / {span(stats['p90_s'], words)}"


def _briefing_table(summaries: dict[str, dict[str, Any]], modules: dict[str, str], words: dict[str, str]) -> str:
    """The briefing's figures by module, one row per run and module: the code and definitions of
    ``dispatcher report`` (docs/reports.md), so a scenario and a real month read alike. Modules are named
    by the rule table; the figures keep the briefing's Chinese names in both languages."""
    esc = html.escape
    rows = []
    for name, summary in summaries.items():
        for module, f in summary.get("briefing", {}).get("module", {}).items():
            rate = "" if f["on_time_rate"] is None else f"{f['on_time_rate']:.1%}"
            close = "" if f["close_rate"] is None else f"{f['close_rate']:.1%}"
            score = "–" if f["composite"] is None else f"{f['composite']:.1f}"
            rows.append(
                f"<tr><td>{esc(name)}</td><td>{esc(_label(modules, module))}</td><td>{f['received']}</td>"
                f"<td>{f['accepted']}</td>"
                f"<td>{f['due']}</td><td>{f['closed']}</td><td>{close}</td><td>{rate}</td>"
                f"<td>{f['overdue_open']}</td><td>{score}</td></tr>"
            )
    if not rows:
        return ""
    return (
        f"<h2>{esc(words['briefing'])}</h2>"
        f"<table data-table='briefing'><tr><th>{esc(words['run'])}</th><th>{esc(words['module'])}</th>"
        "<th>受理</th><th>立案</th><th>应结案</th>"
        "<th>结案</th><th>结案率</th><th>按期结案率</th><th>逾期未结</th><th>综合指标值</th></tr>"
        + "".join(rows)
        + "</table>"
    )
