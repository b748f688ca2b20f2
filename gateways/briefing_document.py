"""The briefing document (简报) as one self-contained HTML page and as an XLSX workbook.

Both are rendered from :class:`dispatcher.briefing.Document` alone: every number comes from the store, no
cell is typed by hand. The HTML carries its charts as inline SVG drawn by pygal (the library of the
simulation reports), with no script and no CDN, so it opens on a closed network and can be mailed as one
file; ``/reports`` shows the same HTML. The workbook has one sheet per table, numbers as numbers (rates as
fractions with a percent format), so it can be summed and sorted in a spreadsheet.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Sequence
from typing import Any

import pygal
from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from pygal.style import CleanStyle

from dispatcher.briefing import Document, Figure, Hotspot, Stage, Unit, UnitFigures, composite

_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL)

#: (heading, value of a unit's figures); a rate is a fraction (None when nothing was due).
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
    ("响应中位 (秒)", lambda u: _stage(u, Stage.ACK, "median_s")),
    ("到场中位 (秒)", lambda u: _stage(u, Stage.ARRIVE, "median_s")),
    ("办结中位 (秒)", lambda u: _stage(u, Stage.RESOLVE, "median_s")),
    ("办结 p90 (秒)", lambda u: _stage(u, Stage.RESOLVE, "p90_s")),
]
_RATES = {"结案率", "按期结案率", "延期率", "返工率"}
_UNIT_NAMES = {Unit.MODULE: "模块", Unit.TEAM: "组团", Unit.OFFICER: "岗位 (人员)", Unit.ZONE: "区域"}
_NONE = "(无)"


def _stage(u: UnitFigures, stage: Stage, field: str) -> float | None:
    times = u.stages.get(stage)
    return None if times is None else getattr(times, field)


Table = tuple[str, list[str], list[list[Any]]]


def tables(doc: Document) -> list[Table]:
    """Every table of the document as (title, headings, rows of plain values): the one source of both
    renderings. A rate is a fraction, an empty figure is None."""
    return [table for table, _ in _tables(doc)]


#: The count figures a reader can follow to their incidents (heading → figure), and the score (→ its due ones).
_FOLLOW = {
    "受理": Figure.RECEIVED,
    "立案": Figure.ACCEPTED,
    "应结案": Figure.DUE,
    "结案": Figure.CLOSED,
    "逾期未结": Figure.OVERDUE_OPEN,
    "综合指标值": Figure.DUE,
}


def _tables(doc: Document) -> list[tuple[Table, Unit | None]]:
    """The tables, each with the kind of unit its rows are (None: rows that are not units)."""
    heads = [h for h, _ in _FIGURES]
    out: list[tuple[str, list[str], list[list[Any]]]] = []
    kinds: list[Unit | None] = [Unit.TOWNSHIP, Unit.TEAM]
    township = [doc.township_figures] if doc.township_figures else []
    out.append(("全镇", ["单位", *heads], [[doc.township, *(f(u) for _, f in _FIGURES)] for u in township]))
    out.append(
        (
            "组团排名",
            ["名次", "组团", "综合指标值", "应结案", "按期结案率", "结案率"],
            [
                [r.rank, r.figures.unit, r.score, r.figures.due, r.figures.on_time_rate, r.figures.close_rate]
                for r in doc.ranking
            ],
        )
    )
    for unit in (Unit.MODULE, Unit.TEAM, Unit.ZONE):
        rows = [[u.unit or _NONE, *(f(u) for _, f in _FIGURES)] for u in doc.by[unit].units]
        out.append((f"按{_UNIT_NAMES[unit]}", [_UNIT_NAMES[unit], *heads], rows))
        kinds.append(unit)
    out.append(
        (
            "月度趋势",
            ["月份", *heads],
            [[month, *(f(u) if u else None for _, f in _FIGURES)] for month, u in doc.trend],
        )
    )
    kinds.append(None)
    for kind, title in (("category", "高发统计 (类别)"), ("zone", "高发统计 (区域)")):
        out.append((title, ["类别" if kind == "category" else "区域", "受理"], _hot(doc.hotspots[kind])))
        kinds.append(None)
    officers = [[u.unit or _NONE, *(f(u) for _, f in _FIGURES)] for u in doc.by[Unit.OFFICER].units]
    out.append(("岗位赋分依据 (人员)", ["岗位 (人员)", *heads], officers))
    kinds.append(Unit.OFFICER)
    returns = [[r.rule_id or _NONE, r.returns] for r in doc.by[Unit.TEAM].returns]
    out.append(("回退 (按规则)", ["规则", "回退"], returns))
    kinds.append(None)
    return list(zip(out, kinds, strict=True))


def _hot(spots: list[Hotspot]) -> list[list[Any]]:
    return [[h.key or _NONE, h.received] for h in spots]


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


def _chart_options(title: str) -> dict[str, Any]:
    return dict(
        title=title,
        style=CleanStyle,
        js=[],
        disable_xml_declaration=True,
        width=900,
        height=340,
        legend_at_bottom=True,
    )


def charts(doc: Document) -> list[str]:
    """The document's charts as inline SVG: the monthly trend, the teams' composite scores and the
    most frequent categories."""
    trend = pygal.Line(**_chart_options("月度趋势: 受理、结案 (件)"))
    trend.x_labels = [m for m, _ in doc.trend]
    trend.add("受理", [u.received if u else None for _, u in doc.trend])
    trend.add("结案", [u.closed if u else None for _, u in doc.trend])
    trend.add("逾期未结", [u.overdue_open if u else None for _, u in doc.trend])
    scores = pygal.HorizontalBar(**_chart_options("组团综合指标值"))
    for r in doc.ranking:
        if r.score is not None:
            scores.add(r.figures.unit or _NONE, [r.score])
    hot = pygal.Bar(**_chart_options("高发统计: 类别 (前 10)"))
    top = doc.hotspots["category"][:10]
    hot.x_labels = [h.key or _NONE for h in top]
    hot.add("受理", [h.received for h in top])
    return [_svg(trend), _svg(scores), _svg(hot)]


def render_html(doc: Document, *, fragment: bool = False) -> str:
    """The document as HTML: a whole page, or with ``fragment`` only the body's content for /reports, where
    each count of a unit (and each team's score) is a link carrying ``data-by``, ``data-unit`` (absent for
    the row without a unit) and ``data-figure``, which the page follows to the incidents behind it."""
    esc = html.escape
    parts = [
        f"<h1>{esc(doc.township)} 简报 {esc(doc.period.name)}</h1>",
        f"<p class='period'>统计期间: {esc(doc.period.start.isoformat())} 至 {esc(doc.period.end.isoformat())} "
        "(不含). 演练不计; 合并的重复事件只计一次; 定义见 docs/reports.md.</p>",
    ]
    svgs = charts(doc)
    for i, ((title, heads, rows), kind) in enumerate(_tables(doc)):
        slug = f"t{i}"
        parts.append(f"<h2 id='{slug}'>{esc(title)}</h2>")
        if title == "组团排名":
            parts.append(f"<figure>{svgs[1]}</figure>")
        if title == "月度趋势":
            parts.append(f"<figure>{svgs[0]}</figure>")
        if title == "高发统计 (类别)":
            parts.append(f"<figure>{svgs[2]}</figure>")
        parts.append(_html_table(heads, rows, data_table=title, follow=kind if fragment else None))
    body = "\n".join(parts)
    if fragment:
        return body
    return (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        f"<title>{esc(doc.township)} 简报 {esc(doc.period.name)}</title><style>{STYLE}</style></head>"
        f"<body class='briefing'>{body}</body></html>"
    )


#: The document's own style (also served with /reports).
STYLE = (
    ".briefing{font-family:system-ui,'Noto Sans CJK SC',sans-serif;margin:2rem;max-width:1100px}"
    ".briefing table{border-collapse:collapse;margin:.5rem 0 1.5rem}"
    ".briefing td,.briefing th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}"
    ".briefing th:first-child,.briefing td:first-child{text-align:left}"
    ".briefing figure{margin:0}.briefing svg{max-width:100%;height:auto}"
)


def _html_table(heads: Sequence[str], rows: list[list[Any]], *, data_table: str, follow: Unit | None) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in heads)
    unit_at = 1 if data_table == "组团排名" else 0
    body = []
    for row in rows:
        cells = []
        for h, v in zip(heads, row, strict=True):
            text = _cell(h, v)
            figure = _FOLLOW.get(h)
            if follow is not None and figure is not None and v is not None:
                name = row[unit_at]
                who = "" if name == _NONE or follow is Unit.TOWNSHIP else f" data-unit='{esc(str(name))}'"
                text = f"<a href='#' data-by='{follow.value}'{who} data-figure='{figure.value}'>{text}</a>"
            cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    rows_html = "".join(body)
    return f"<table data-table='{esc(data_table)}'><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>"


def render_xlsx(doc: Document) -> bytes:
    """The document as an XLSX workbook: one sheet per table, headings in bold, numbers as numbers
    (rates as fractions shown as percentages, empty figures as empty cells)."""
    book = Workbook()
    first = True
    for title, heads, rows in tables(doc):
        sheet = book.active if first else book.create_sheet()
        assert sheet is not None
        first = False
        sheet.title = _sheet_title(title)
        sheet.append(heads)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in rows:
            sheet.append(row)
        for column, heading in enumerate(heads, start=1):
            letter = get_column_letter(column)
            sheet.column_dimensions[letter].width = max(10, 2 * len(heading) + 2)
            if heading in _RATES:
                for (cell,) in sheet.iter_rows(min_row=2, min_col=column, max_col=column):
                    cell.number_format = "0.0%"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _sheet_title(title: str) -> str:
    """Sheet names: at most 31 characters, none of ``[]:*?/\\``."""
    return re.sub(r"[\[\]:*?/\\]", " ", title)[:31]
