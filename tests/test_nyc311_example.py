"""The New York example replays a fixture written in NYC 311's published shape (there is no New York data
here): complaint types by patterns, separate latitude and longitude, two time styles, N/A, and text weights
that keep the location type from deciding the matter."""

from __future__ import annotations

from pathlib import Path

from rules import compile_table, load_source
from rules.checker import check
from simulations.realdata import Mapping, TextColumn, load_mapping, read_records, run_from_csv

ROOT = Path(__file__).resolve().parent.parent
NYC = ROOT / "simulations" / "examples" / "nyc311"
SHAPE = Path(__file__).resolve().parent / "fixtures" / "nyc311_shape.csv"


def test_the_table_passes_the_checker() -> None:
    source = load_source(NYC / "table.yaml")
    assert check(compile_table(source.table), source) == []


def test_the_location_type_does_not_decide_the_matter() -> None:
    mapping = load_mapping(NYC / "mapping.yaml")
    book = compile_table(load_source(NYC / "table.yaml").table)
    records, _ = read_records(SHAPE, mapping, classifier=book.classifier)
    by_key = {r.case_id: r for r in records}
    assert by_key["900016"].category == by_key["900017"].category == "order.panhandling"
    assert "Subway Station" in by_key["900016"].report.description  # shown, not classified
    assert by_key["900020"].report.lat is None and by_key["900020"].report.reporter_kind is None  # N/A, UNKNOWN
    assert by_key["900018"].at.isoformat() == "2026-01-08T12:45:00+00:00"  # the API's ISO style, EST

    columns = mapping.spec.columns.model_copy(
        update={"text": [TextColumn(column="Complaint Type"), TextColumn(column="Location Type", weight=3)]}
    )
    setting_first = Mapping(mapping.spec.model_copy(update={"columns": columns}))
    records, _ = read_records(SHAPE, setting_first, classifier=book.classifier)
    assert {r.case_id: r.category for r in records}["900017"] == "transit.station"  # the bus stop would win


async def test_the_fixture_replays() -> None:
    _, report = await run_from_csv(SHAPE, NYC / "mapping.yaml")
    assert (report["rows_read"], report["replayed"], report["rejected_reasons"]) == (
        24,
        23,
        {"closed before opened": 1},
    )
    assert report["rejected_examples"][0]["line"] == 20
    assert report["agreement"]["compared"] == 23
    # the fixture was written from the same documentation as the mapping: this shows it replays, not accuracy
    assert report["agreement"]["overall"] == 1.0
