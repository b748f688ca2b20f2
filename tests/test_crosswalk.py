"""The catalogue crosswalk: GB/T 47678.5 codes with their reasons, checked against the table and the standard's list,
and exported by ``dispatcher rules catalogue`` as CSV and Excel."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from dispatcher.settings import BUNDLED_TABLE
from rules import RuleBook
from rules.crosswalk import CrosswalkError, crosswalk_path, crosswalk_rows
from server.cli import app
from tests.conftest import IN_CI, shared_data

runner = CliRunner()
#: The third-party transcription of GB/T 47678.5 (shared data, read here, never copied into the repository).
TRANSCRIPTION = shared_data("cn_categories", "gbt47678.5-2026_parts_and_matters_as_transcribed.csv")


def _bundled_text() -> str:
    return crosswalk_path(BUNDLED_TABLE).read_text(encoding="utf-8")


def test_the_bundled_crosswalk_gives_every_category_a_code_or_a_reason(bundled_rules: RuleBook) -> None:
    rows = crosswalk_rows(bundled_rules.table, _bundled_text())
    assert [r.category for r in rows] == [c.id for c in bundled_rules.table.catalogue]
    coded = {r.category: r.gbt_code for r in rows if r.gbt_code}
    assert coded["traffic.illegal_parking"] == "09009" and coded["environment.water"] == "06026"
    assert "traffic.congestion" not in coded
    assert all(len(r.gbt_reason) > 20 for r in rows)


def test_each_code_and_name_is_the_standards(bundled_rules: RuleBook) -> None:
    if not TRANSCRIPTION.exists():
        if IN_CI:
            pytest.fail(f"{TRANSCRIPTION} is missing; CI=true requires it")
        pytest.skip(f"{TRANSCRIPTION} is missing")
    with TRANSCRIPTION.open(encoding="utf-8", newline="") as handle:
        matters = {(r["code"], r["name"]) for r in csv.DictReader(handle) if r["matter_kind"] == "管理事项"}
    rows = [r for r in crosswalk_rows(bundled_rules.table, _bundled_text()) if r.gbt_code]
    assert len(rows) >= 7
    for row in rows:
        assert (row.gbt_code, row.gbt_name) in matters, row


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda t: t.replace("traffic.roads,06013,道路破损", "traffic.roads,06012,道路不洁"), "crosswalk says 06012"),
        (lambda t: "\n".join(line for line in t.split("\n") if not line.startswith("labour.dispute,")), "no crosswalk"),
        (lambda t: t + 'no.such,,,"a reason"\n', "not in the catalogue"),
        (lambda t: t.replace("traffic.roads,06013,道路破损", "traffic.roads,06013,"), "without its name"),
    ],
)
def test_a_crosswalk_that_disagrees_with_the_table_is_refused(
    bundled_rules: RuleBook, change: object, problem: str
) -> None:
    assert callable(change)
    with pytest.raises(CrosswalkError, match=problem):
        crosswalk_rows(bundled_rules.table, change(_bundled_text()))


def test_rules_catalogue_exports_csv_and_xlsx(tmp_path: Path, bundled_rules: RuleBook) -> None:
    result = runner.invoke(app, ["rules", "catalogue", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == len(bundled_rules.table.catalogue)
    parking = next(r for r in rows if r["category"] == "traffic.illegal_parking")
    assert (
        parking["gbt_code"] == "09009"
        and parking["board_class"] == "交通运输"
        and parking["gbt_name"] == "机动车乱停放"
    )

    target = tmp_path / "catalogue.xlsx"
    result = runner.invoke(app, ["rules", "catalogue", str(BUNDLED_TABLE), "--format", "xlsx", "-o", str(target)])
    assert result.exit_code == 0, result.output
    sheet = load_workbook(target).active
    assert sheet is not None and sheet.title == "catalogue"
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][:5] == ("category", "name", "name_en", "board_class", "gbt_code")
    assert ("planning.illegal_construction", "06001") in {(v[0], v[4]) for v in values[1:]}  # the zero kept: text
    assert len(values) == 1 + len(bundled_rules.table.catalogue)

    assert runner.invoke(app, ["rules", "catalogue", "--format", "pdf"]).exit_code == 2
    assert runner.invoke(app, ["rules", "catalogue", "--format", "xlsx"]).exit_code == 2
    broken = tmp_path / "broken.csv"
    broken.write_text(_bundled_text().replace("environment.water,06026", "environment.water,"), encoding="utf-8")
    refused = runner.invoke(app, ["rules", "catalogue", "--crosswalk", str(broken)])
    assert refused.exit_code == 1 and "environment.water" in refused.output
