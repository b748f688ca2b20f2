"""The catalogue crosswalk: each category with its GB/T 47678.5 code (formerly GB/T 30428.2) and message-board class.

The code itself is the catalogue's ``gbt_code`` (the rule table is the one source of it: Open311 and the API read
it there). Why each category has that code, or none, is a CSV beside the table, ``<table>-crosswalk.csv``
(columns ``category, gbt_code, gbt_name, reason``), one row per category. :func:`crosswalk_rows` joins the two and
refuses a crosswalk that disagrees with the table (a category missing or unknown, another code), so the reasons
cannot drift from the codes in force. ``dispatcher rules catalogue --format csv|xlsx`` writes the rows.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from rules.table import RuleTable

COLUMNS = ("category", "name", "name_en", "board_class", "gbt_code", "gbt_name", "gbt_reason")


class CrosswalkError(ValueError):
    """The crosswalk file disagrees with the rule table; the message names each disagreement."""


@dataclass(frozen=True, slots=True)
class CrosswalkRow:
    category: str
    name: str
    name_en: str
    board_class: str
    gbt_code: str | None
    gbt_name: str | None
    gbt_reason: str


def crosswalk_path(table_path: Path) -> Path:
    """``ershili.yaml`` → ``ershili-crosswalk.csv`` beside it."""
    return table_path.with_name(f"{table_path.stem}-crosswalk.csv")


def crosswalk_rows(table: RuleTable, text: str) -> list[CrosswalkRow]:
    """The catalogue in its order, each category with its code and the crosswalk's reason.

    Raises :class:`CrosswalkError` when a category has no row, a row names no category, a row's code is not the
    catalogue's, or a code has no name.
    """
    rows = list(csv.DictReader(io.StringIO(text)))
    problems: list[str] = []
    if rows and set(rows[0]) != {"category", "gbt_code", "gbt_name", "reason"}:
        raise CrosswalkError(f"crosswalk columns must be category, gbt_code, gbt_name, reason; got {sorted(rows[0])}")
    by_category: dict[str, dict[str, str]] = {}
    for line, row in enumerate(rows, start=2):
        if row["category"] in by_category:
            problems.append(f"line {line}: {row['category']} is listed twice")
        by_category[row["category"]] = row
    known = {c.id for c in table.catalogue}
    problems += [f"{c}: in the crosswalk but not in the catalogue" for c in by_category if c not in known]
    result: list[CrosswalkRow] = []
    for category in table.catalogue:
        found = by_category.get(category.id)
        if found is None:
            problems.append(f"{category.id}: no crosswalk row (give its code or why none fits)")
            continue
        code = found["gbt_code"].strip() or None
        if code != category.gbt_code:
            problems.append(
                f"{category.id}: crosswalk says {code or 'none'}, the catalogue {category.gbt_code or 'none'}"
            )
        if code is not None and not found["gbt_name"].strip():
            problems.append(f"{category.id}: code {code} without its name")
        if not found["reason"].strip():
            problems.append(f"{category.id}: no reason given")
        result.append(
            CrosswalkRow(
                category=category.id,
                name=category.name,
                name_en=category.name_en,
                board_class=category.board_class,
                gbt_code=code,
                gbt_name=found["gbt_name"].strip() or None,
                gbt_reason=found["reason"].strip(),
            )
        )
    if problems:
        raise CrosswalkError("; ".join(problems))
    return result


def _cells(row: CrosswalkRow) -> list[str]:
    return [
        row.category,
        row.name,
        row.name_en,
        row.board_class,
        row.gbt_code or "",
        row.gbt_name or "",
        row.gbt_reason,
    ]


def to_csv(rows: list[CrosswalkRow]) -> str:
    """UTF-8 CSV text with a header (codes as text: ``06001`` keeps its leading zero)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_cells(r) for r in rows)
    return out.getvalue()


def to_xlsx(rows: list[CrosswalkRow]) -> bytes:
    """An Excel workbook: one sheet ``catalogue``, the header bold and frozen, codes stored as text."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "catalogue"
    sheet.append(list(COLUMNS))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append(_cells(row))
    for cell in sheet["E"][1:]:
        cell.number_format = "@"
    sheet.freeze_panes = "A2"
    for column, width in zip("ABCDEFG", (32, 24, 40, 14, 10, 16, 80), strict=True):
        sheet.column_dimensions[column].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
