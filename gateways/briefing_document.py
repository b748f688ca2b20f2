"""The briefing document (简报) as one self-contained HTML page and as an XLSX workbook.

Both are rendered from :class:`dispatcher.briefing.Document` alone: every number comes from the store, no
cell is typed by hand. The HTML carries its charts as inline SVG drawn by pygal (the library of the
simulation reports), with no script and no CDN, so it opens on a closed network and can be mailed as one
file; ``/reports`` shows the same HTML. The workbook has one sheet per table, numbers as numbers (rates as
fractions with a percent format, stage times in the unit their heading names), so it can be summed and
sorted in a spreadsheet.

The figures name their units by id (``traffic-police``); a reader knows them by name (交警中队). The names
come from the rule table and the roster, given at the edge as :class:`Names`: the HTML shows the name (in
Chinese, or in English with ``lang="en"``) and keeps the id where it is a key (the links' ``data-unit``);
the workbook has both, the name first and the id in a last column.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pygal
from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from pygal.style import CleanStyle

from dispatcher.briefing import CHINA, Document, Figure, Hotspot, Stage, Unit, UnitFigures, composite
from rules.table import RuleTable

_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL)

Lang = Literal["zh-CN", "en"]
LANGS: tuple[Lang, ...] = ("zh-CN", "en")

_MINUTE, _HOUR = 60.0, 3600.0


def _stage(u: UnitFigures, stage: Stage, field: str, per: float) -> float | None:
    times = u.stages.get(stage)
    value = None if times is None else getattr(times, field)
    return None if value is None else value / per


#: (heading, value of a unit's figures); a rate is a fraction (None when nothing was due). Stage times are
#: in the unit the heading names: a team acknowledges and arrives in minutes and resolves in hours or days,
#: and 61,104.8 seconds is a number no leader reads as "17 hours".
_FIGURES: list[tuple[str, Callable[[UnitFigures], int | float | None]]] = [
    ("受理", lambda u: u.received),
    ("立案", lambda u: u.accepted),
    ("应结案", lambda u: u.due),
    ("结案", lambda u: u.closed),
    ("结案率", lambda u: u.close_rate),
    ("按期结案率", lambda u: u.on_time_rate),
    ("逾期未结", lambda u: u.overdue_open),
    ("延期率", lambda u: u.extension_rate),
    ("返工率", lambda u: u.rework_rate),
    ("综合指标值", composite),
    ("响应中位 (分钟)", lambda u: _stage(u, Stage.ACK, "median_s", _MINUTE)),
    ("到场中位 (分钟)", lambda u: _stage(u, Stage.ARRIVE, "median_s", _MINUTE)),
    ("办结中位 (小时)", lambda u: _stage(u, Stage.RESOLVE, "median_s", _HOUR)),
    ("办结 p90 (小时)", lambda u: _stage(u, Stage.RESOLVE, "p90_s", _HOUR)),
]
_RATES = {"结案率", "按期结案率", "延期率", "返工率"}
_TIMES = {"响应中位 (分钟)", "到场中位 (分钟)", "办结中位 (小时)", "办结 p90 (小时)"}
_UNIT_NAMES = {Unit.MODULE: "模块", Unit.TEAM: "组团", Unit.OFFICER: "岗位 (人员)", Unit.ZONE: "区域"}
_NONE = "(无)"
_ID = "编号"

#: The document's words in English, for ``lang="en"`` (the XLSX keeps the Chinese headings).
_EN = {
    "受理": "Received",
    "立案": "Accepted",
    "应结案": "Due",
    "结案": "Closed",
    "结案率": "Close rate",
    "按期结案率": "On-time rate",
    "逾期未结": "Open past deadline",
    "延期率": "Extension rate",
    "返工率": "Rework rate",
    "综合指标值": "Composite score",
    "响应中位 (分钟)": "Acknowledge median (min)",
    "到场中位 (分钟)": "Arrive median (min)",
    "办结中位 (小时)": "Resolve median (h)",
    "办结 p90 (小时)": "Resolve p90 (h)",
    "模块": "Module",
    "组团": "Team",
    "岗位 (人员)": "Post (officer)",
    "区域": "Zone",
    "单位": "Unit",
    "名次": "Rank",
    "月份": "Month",
    "类别": "Category",
    "规则": "Rule",
    "回退": "Returns",
    "全镇": "Whole township",
    "组团排名": "Teams ranked",
    "按模块": "By module",
    "按组团": "By team",
    "按区域": "By zone",
    "月度趋势": "Month by month",
    "高发统计 (类别)": "Most frequent (category)",
    "高发统计 (区域)": "Most frequent (zone)",
    "岗位赋分依据 (人员)": "Basis of post points (officers)",
    "回退 (按规则)": "Returns (by rule)",
    "简报": "Briefing",
    _NONE: "(none)",
    "月度趋势: 受理、结案 (件)": "Month by month: received, closed (incidents)",
    "组团综合指标值": "Teams' composite scores",
    "高发统计: 类别 (前 10)": "Most frequent categories (top 10)",
    "本期无数据": "Nothing in this period",
}


def _say(text: str, lang: Lang) -> str:
    return _EN.get(text, text) if lang == "en" else text


@dataclass(frozen=True, slots=True, kw_only=True)
class Names:
    """What a reader calls each unit, in one language: for each kind (``module``, ``team``, ``zone``,
    ``officer``, ``category``) a map of id → label. An id without a label (a team since taken out of the
    rule table, an officer no longer on the roster) is shown as itself: a figure is never hidden for want
    of a name."""

    lang: Lang = "zh-CN"
    township: str | None = None  # None: the document's own (the name the store was asked with)
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def of(self, kind: str, key: str | None) -> str:
        if key is None:
            return _say(_NONE, self.lang)
        return self.labels.get(kind, {}).get(key, key)


class NamedOfficer(Protocol):
    """An officer as the roster has them (the core's :class:`~dispatcher.core.roster.Officer`, or a roster
    file's entry)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def post(self) -> str: ...


def names_of(table: RuleTable, officers: Iterable[NamedOfficer] = (), *, lang: Lang = "zh-CN") -> Names:
    """The names of ``table`` (modules, teams, zones, categories: ``name``, or ``name_en`` in English) and of
    the roster's ``officers`` (post and name, as the heading 岗位 (人员) says; a roster has no English names)."""

    def label(item: Any) -> str:
        return str(item.name_en if lang == "en" else item.name)

    posts = {o.id: f"{o.post} ({o.name})" for o in officers}
    return Names(
        lang=lang,
        township=label(table.township),
        labels={
            "module": {m.id: label(m) for m in table.modules},
            "team": {t.id: label(t) for t in table.teams},
            "zone": {z.id: label(z) for z in table.zones},
            "category": {c.id: label(c) for c in table.catalogue},
            "officer": posts,
        },
    )


Table = tuple[str, list[str], list[list[Any]]]


@dataclass(frozen=True, slots=True)
class _Section:
    """One table: its rows as shown, and each row's id where the rows are units (the key of its links)."""

    title: str
    heads: list[str]
    rows: list[list[Any]]
    follow: Unit | None = None  # the kind of unit of the rows, whose counts lead to their incidents
    keys: list[str | None] | None = None  # each row's id; None: the rows are not named by an id
    name_at: int = 0  # the column holding the row's name


def tables(doc: Document, names: Names | None = None) -> list[Table]:
    """Every table of the document as (title, headings, rows of plain values), units by their names: the one
    source of both renderings. A rate is a fraction, a stage time is in the unit its heading names, an empty
    figure is None."""
    return [(s.title, s.heads, s.rows) for s in _sections(doc, names or Names())]


#: The count figures a reader can follow to their incidents (heading → figure), and the score (→ its due ones).
_FOLLOW = {
    "受理": Figure.RECEIVED,
    "立案": Figure.ACCEPTED,
    "应结案": Figure.DUE,
    "结案": Figure.CLOSED,
    "逾期未结": Figure.OVERDUE_OPEN,
    "综合指标值": Figure.DUE,
}

_KIND = {Unit.MODULE: "module", Unit.TEAM: "team", Unit.ZONE: "zone", Unit.OFFICER: "officer"}


def _sections(doc: Document, names: Names) -> list[_Section]:
    heads = [h for h, _ in _FIGURES]

    def figures(u: UnitFigures) -> list[Any]:
        return [f(u) for _, f in _FIGURES]

    def by(unit: Unit, title: str) -> _Section:
        units = doc.by[unit].units
        rows = [[names.of(_KIND[unit], u.unit), *figures(u)] for u in units]
        return _Section(title, [_UNIT_NAMES[unit], *heads], rows, unit, [u.unit for u in units])

    township = [doc.township_figures] if doc.township_figures else []
    whole = names.township or doc.township
    teams = [r.figures.unit for r in doc.ranking]
    out = [
        _Section("全镇", ["单位", *heads], [[whole, *figures(u)] for u in township], Unit.TOWNSHIP),
        _Section(
            "组团排名",
            ["名次", "组团", "综合指标值", "应结案", "按期结案率", "结案率"],
            [
                [
                    r.rank,
                    names.of("team", r.figures.unit),
                    r.score,
                    r.figures.due,
                    r.figures.on_time_rate,
                    r.figures.close_rate,
                ]
                for r in doc.ranking
            ],
            Unit.TEAM,
            teams,
            name_at=1,
        ),
        by(Unit.MODULE, "按模块"),
        by(Unit.TEAM, "按组团"),
        by(Unit.ZONE, "按区域"),
        _Section(
            "月度趋势",
            ["月份", *heads],
            [[month, *(figures(u) if u else [None] * len(heads))] for month, u in doc.trend],
        ),
    ]
    for kind, title in (("category", "高发统计 (类别)"), ("zone", "高发统计 (区域)")):
        spots = doc.hotspots[kind]
        out.append(
            _Section(
                title,
                ["类别" if kind == "category" else "区域", "受理"],
                _hot(spots, kind, names),
                None,
                [h.key for h in spots],
            )
        )
    out.append(by(Unit.OFFICER, "岗位赋分依据 (人员)"))
    returns = [[r.rule_id or _say(_NONE, names.lang), r.returns] for r in doc.by[Unit.TEAM].returns]
    out.append(_Section("回退 (按规则)", ["规则", "回退"], returns))
    return out


def _hot(spots: list[Hotspot], kind: str, names: Names) -> list[list[Any]]:
    return [[names.of(kind, h.key), h.received] for h in spots]


def _cell(heading: str, value: Any) -> str:
    if value is None:
        return "–"
    if heading in _RATES and isinstance(value, float):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _svg(chart: Any) -> str:
    svg: str = chart.render(is_unicode=True)
    return _SCRIPT.sub("", svg)  # pygal's optional tooltip config: the page is static


#: CleanStyle with larger type: the chart is drawn 900 wide and shown narrower (a phone: a third of that),
#: where pygal's 10–14 px labels become unreadable.
_STYLE = CleanStyle(
    font_family="system-ui, 'Noto Sans CJK SC', sans-serif",
    title_font_size=20,
    label_font_size=15,
    major_label_font_size=15,
    legend_font_size=17,
    value_font_size=15,
)


def _cjk_margin(labels: list[str]) -> int:
    """Room to add on the left for axis labels in Chinese: pygal sizes labels as Latin text, about half as
    wide as a Chinese character, and cuts the longest names (综合行政执法中队) otherwise."""
    wide = max((sum(1 for ch in label if ord(ch) > 0x2E80) for label in labels), default=0)
    return 20 + 8 * wide


def _chart_options(title: str, lang: Lang, **more: Any) -> dict[str, Any]:
    return (
        dict(
            title=_say(title, lang),
            style=_STYLE,
            js=[],
            disable_xml_declaration=True,
            width=900,
            height=340,
            legend_at_bottom=True,
            no_data_text=_say("本期无数据", lang),
        )
        | more
    )


def charts(doc: Document, names: Names | None = None) -> list[str]:
    """The document's charts as inline SVG: the monthly trend, the teams' composite scores and the
    most frequent categories."""
    names = names or Names()
    lang = names.lang
    trend = pygal.Line(**_chart_options("月度趋势: 受理、结案 (件)", lang))
    trend.x_labels = [m for m, _ in doc.trend]
    trend.add(_say("受理", lang), [u.received if u else None for _, u in doc.trend])
    trend.add(_say("结案", lang), [u.closed if u else None for _, u in doc.trend])
    trend.add(_say("逾期未结", lang), [u.overdue_open if u else None for _, u in doc.trend])
    # The teams on the axis, one bar each, rather than one legend entry per team: a legend of 16 colours
    # is read by matching colours, and at a phone's width its labels are too small to read.
    scored = [r for r in doc.ranking if r.score is not None]
    teams = [names.of("team", r.figures.unit) for r in reversed(scored)]  # the best at the top
    scores = pygal.HorizontalBar(
        **_chart_options(
            "组团综合指标值",
            lang,
            show_legend=False,
            height=max(200, 80 + 28 * len(scored)),
            range=(0, 100),
            margin_left=_cjk_margin(teams),
        )
    )
    scores.x_labels = teams
    scores.add(_say("综合指标值", lang), [r.score for r in reversed(scored)])
    hot = pygal.Bar(**_chart_options("高发统计: 类别 (前 10)", lang, show_legend=False, x_label_rotation=30))
    top = doc.hotspots["category"][:10]
    hot.x_labels = [names.of("category", h.key) for h in top]
    hot.add(_say("受理", lang), [h.received for h in top])
    return [_svg(trend), _svg(scores), _svg(hot)]


def render_html(doc: Document, *, fragment: bool = False, names: Names | None = None) -> str:
    """The document as HTML: a whole page, or with ``fragment`` only the body's content for /reports, where
    each count of a unit (and each team's score) is a link carrying ``data-by``, ``data-unit`` (the unit's
    id; absent for the row without a unit) and ``data-figure``, which the page follows to the incidents
    behind it; a count of zero is not (it leads to no incident). Units are shown by their ``names``
    (default: by id), in ``names.lang``."""
    names = names or Names()
    lang = names.lang
    esc = html.escape
    township = names.township or doc.township
    heading = f"{township} {_say('简报', lang)} {doc.period.name}"
    start, end = doc.period.start.date().isoformat(), doc.period.end.date().isoformat()
    if doc.period.running:  # read before its end: up to the minute it was read
        end = doc.period.end.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")
    if lang == "en":
        until = "so far, the period runs on" if doc.period.running else "not included"
        period = (
            f"Period: {start} to {end} ({until}), Beijing time. Drills are not counted; a merged duplicate "
            "counts once; the figures are defined in docs/reports.md. Stage times: acknowledge and arrive in "
            "minutes, resolve in hours (medians of the team leading the incident)."
        )
    else:
        until = "截至目前, 期间未结束" if doc.period.running else "不含"
        period = (
            f"统计期间: {start} 至 {end} ({until}, 北京时间). 演练不计; 合并的重复事件只计一次; "
            "定义见 docs/reports.md. 时长为牵头组团的中位数: 响应、到场以分钟计, 办结以小时计."
        )
    parts = [f"<h1>{esc(heading)}</h1>", f"<p class='period'>{esc(period)}</p>"]
    whole = doc.township_figures
    if whole is None or not (whole.received or whole.due or whole.closed):
        empty = (
            f"No incident was received, due or closed in {doc.period.name}."
            if lang == "en"
            else f"{doc.period.name} 无受理、应结案或结案的事件."
        )
        parts.append(f"<p class='empty'>{esc(empty)}</p>")
    svgs = charts(doc, names)
    for i, section in enumerate(_sections(doc, names)):
        parts.append(f"<h2 id='t{i}'>{esc(_say(section.title, lang))}</h2>")
        if section.title == "组团排名" and any(r.score is not None for r in doc.ranking):
            parts.append(f"<figure>{svgs[1]}</figure>")
        if section.title == "月度趋势" and len(doc.trend) > 1:  # one month is one point, and the table says it
            parts.append(f"<figure>{svgs[0]}</figure>")
        if section.title == "高发统计 (类别)" and doc.hotspots["category"]:
            parts.append(f"<figure>{svgs[2]}</figure>")
        parts.append(_html_table(section, lang=lang, links=fragment))
    body = "\n".join(parts)
    if fragment:
        return body
    return (
        f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(heading)}</title><style>{STYLE}</style></head>"
        f"<body class='briefing'>{body}</body></html>"
    )


#: The document's own style (also served with /reports). A wide table scrolls in its own box rather than
#: widening the page; a unit's name stays on one line.
STYLE = (
    ".briefing{font-family:system-ui,'Noto Sans CJK SC',sans-serif;margin:2rem;max-width:1600px}"
    ".briefing .table{overflow-x:auto;margin:.5rem 0 1.5rem}"
    ".briefing table{border-collapse:collapse}"
    ".briefing td,.briefing th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}"
    ".briefing td{font-variant-numeric:tabular-nums}"
    # a heading breaks at its space (到场中位 / (分钟)), never inside a word (应结 / 案)
    ".briefing th{background:#f3f5f7;font-weight:600;word-break:keep-all}"
    ".briefing th:first-child,.briefing td:first-child,.briefing .name{text-align:left;white-space:nowrap}"
    ".briefing td.empty{text-align:center;color:#667}"
    ".briefing p.empty{display:inline-block;padding:.5rem .75rem;background:#fff8e1;border:1px solid #f0d890}"
    ".briefing figure{margin:0;overflow-x:auto;max-width:960px}.briefing svg{max-width:100%;height:auto}"
    # a phone: the chart keeps a readable size and scrolls sideways, like the tables
    "@media (max-width:600px){.briefing{margin:1rem .5rem}.briefing td,.briefing th{padding:.15rem .3rem}"
    ".briefing svg{max-width:none;width:600px}}"
)


def _html_table(section: _Section, *, lang: Lang, links: bool) -> str:
    esc = html.escape
    heads = section.heads
    named = section.keys is not None
    head = "".join(
        f"<th class='name'>{esc(_say(h, lang))}</th>"
        if named and at == section.name_at
        else f"<th>{esc(_say(h, lang))}</th>"
        for at, h in enumerate(heads)
    )
    follow = section.follow if links else None
    body = []
    for n, row in enumerate(section.rows):
        key = section.keys[n] if section.keys is not None else None
        cells = []
        for at, (h, v) in enumerate(zip(heads, row, strict=True)):
            text = _cell(h, v)
            figure = _FOLLOW.get(h)
            if follow is not None and figure is not None and v is not None and (v != 0 or h == "综合指标值"):
                who = "" if key is None or follow is Unit.TOWNSHIP else f" data-unit='{esc(key)}'"
                text = f"<a href='#' data-by='{follow.value}'{who} data-figure='{figure.value}'>{text}</a>"
            if at == section.name_at and section.keys is not None and key is not None:
                cells.append(f"<td class='name' title='{esc(key)}'>{text}</td>")  # the id, for who needs it
            else:
                cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        body.append(f"<tr><td class='empty' colspan='{len(heads)}'>{esc(_say(_NONE, lang))}</td></tr>")
    rows_html = "".join(body)
    return (
        f"<div class='table'><table data-table='{esc(section.title)}'><thead><tr>{head}</tr></thead>"
        f"<tbody>{rows_html}</tbody></table></div>"
    )


def render_xlsx(doc: Document, names: Names | None = None) -> bytes:
    """The document as an XLSX workbook: one sheet per table, headings in bold, numbers as numbers
    (rates as fractions shown as percentages, stage times in minutes or hours as their headings say, empty
    figures as empty cells). A table of units names each by ``names`` and has its id in a last column
    (编号), so a sheet can be matched with the API's answers."""
    book = Workbook()
    first = True
    for section in _sections(doc, names or Names()):
        sheet = book.active if first else book.create_sheet()
        assert sheet is not None
        first = False
        sheet.title = _sheet_title(section.title)
        ids = section.keys is not None
        heads = [*section.heads, _ID] if ids else section.heads
        sheet.append(heads)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for n, row in enumerate(section.rows):
            sheet.append([*row, section.keys[n]] if section.keys is not None else row)
        for column, heading in enumerate(heads, start=1):
            letter = get_column_letter(column)
            wide = max([len(heading), *(len(str(r[column - 1])) for r in section.rows if column <= len(r))], default=0)
            sheet.column_dimensions[letter].width = min(40, max(10, 2 * wide + 2))
            number_format = "0.0%" if heading in _RATES else "0.0" if heading in _TIMES else None
            if number_format is not None:
                for (cell,) in sheet.iter_rows(min_row=2, min_col=column, max_col=column):
                    cell.number_format = number_format
        sheet.freeze_panes = "B2"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _sheet_title(title: str) -> str:
    """Sheet names: at most 31 characters, none of ``[]:*?/\\``."""
    return re.sub(r"[\[\]:*?/\\]", " ", title)[:31]


__all__ = ["LANGS", "STYLE", "Lang", "Names", "charts", "names_of", "render_html", "render_xlsx", "tables"]
