"""The record reader for any export: several time formats, null markers, patterns in every key, latitude and
longitude columns, weighted text columns, rejected rows with their lines, and the dry run."""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from rules import RuleTableError, compile_table, load_table
from server.cli import app
from simulations.realdata import (
    Mapping,
    MappingFile,
    dry_run,
    load_mapping,
    parse_lat_lon,
    parse_local_time,
    read_records,
    run_from_csv,
    weighted_category,
)

ROOT = Path(__file__).resolve().parent.parent
SF = ROOT / "simulations" / "examples" / "sf311"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SLICE = FIXTURES / "sf311_slice.csv"
EXPORT2 = FIXTURES / "sf311_export2.csv"
LA = ZoneInfo("America/Los_Angeles")


def _mapping(**spec: object) -> Mapping:
    base: dict[str, object] = {"mapping": 1, "name": "t", "categories": [{"sf_category": "x", "ours": "a.b"}]}
    return Mapping(MappingFile.model_validate(base | spec))


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_time_formats_are_tried_in_order_and_offsets_are_kept() -> None:
    formats = ["%m/%d/%Y %I:%M:%S %p", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]
    assert parse_local_time("12/04/2012 03:21:00 PM", formats, LA) == datetime(2012, 12, 4, 23, 21, tzinfo=UTC)
    assert parse_local_time("2012-12-04 15:21:00", formats, LA) == datetime(2012, 12, 4, 23, 21, tzinfo=UTC)
    assert parse_local_time("2012-12-04T15:21:00+08:00", formats, LA) == datetime(2012, 12, 4, 7, 21, tzinfo=UTC)
    with pytest.raises(ValueError, match="none of the time formats"):
        parse_local_time("4 Dec 2012", formats, LA)


def test_latitude_and_longitude_columns() -> None:
    assert parse_lat_lon("34.07", "-118.26") == (34.07, -118.26)
    assert parse_lat_lon(" ", "") is None
    for lat, lon in [("34.07", ""), ("north", "-118"), ("nan", "1"), ("91", "0")]:
        with pytest.raises(ValueError):
            parse_lat_lon(lat, lon)


def test_patterns_work_in_every_key() -> None:
    mapping = _mapping(
        columns={"fields": {"complaint": "Complaint Type", "descriptor": "Descriptor"}},
        categories=[
            {"when": {"complaint": ["re:^noise( - |$)"], "descriptor": ["loud music*"]}, "ours": "noise.music"},
            {"when": {"complaint": ["Noise*"]}, "ours": "noise.other"},
            {"sf_category": "re:graffiti", "ours": "graffiti.any"},
        ],
        agencies={"NYPD": "police", "DSNY*": "sanitation", "re:^dep\\b": "environment", "DEP Water": "water"},
        reporter_kinds={"re:phone|voice": "hotline", "Online*": "citizen"},
    )
    assert mapping.category_of({"complaint": "Noise - Residential", "descriptor": "Loud Music/Party"}) == "noise.music"
    assert mapping.category_of({"complaint": "Noise - Residential", "descriptor": "Banging"}) == "noise.other"
    assert mapping.category_of({"complaint": "Noisemaker", "descriptor": "Loud Music"}) == "noise.other"
    assert mapping.category_of({"category": "Graffiti Public Property"}) == "graffiti.any"
    assert mapping.category_of({"complaint": "Heat"}) is None
    assert [mapping.owner_for(a) for a in ["nypd", "DSNY Queens", "DEP  Air", "DEP Water", "DOT"]] == [
        "police",
        "sanitation",
        "environment",
        "water",  # an exact key wins over a pattern
        None,
    ]
    assert [mapping.reporter_kind(s) for s in ["Phone", "Online Portal", "Mobile"]] == ["hotline", "citizen", None]


def test_a_bad_regular_expression_is_refused_with_file_and_line(tmp_path: Path) -> None:
    text = (SF / "mapping.yaml").read_text(encoding="utf-8").replace("  DPW Ops Queue: dpw-ops", "  re:(DPW: dpw-ops")
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RuleTableError) as caught:
        load_mapping(path)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if t.startswith("  re:(DPW"))
    assert f"{path}:{line}:" in str(caught.value) and "not a regular expression" in str(caught.value)


def test_null_markers_lat_lon_zone_and_rejections_with_lines(tmp_path: Path) -> None:
    mapping = _mapping(
        time_formats=["%Y-%m-%d %H:%M:%S"],
        null_markers=["NA", "-9999"],
        columns={
            "case_id": "id",
            "opened": "created",
            "closed": "closed",
            "category": "type",
            "request_type": None,
            "details": None,
            "agency": "owner",
            "point": None,
            "latitude": "lat",
            "longitude": "lon",
            "zone": "district",
            "source": None,
        },
        zones={"re:^north": "north-yard"},
        categories=[{"sf_category": "Bulky Items", "ours": "cleaning.bulky_items"}],
    )
    header = ["id", "created", "closed", "type", "owner", "lat", "lon", "district", "extra"]
    path = _csv(
        tmp_path / "la.csv",
        header,
        [
            ["1", "2017-12-31 23:59:58", "NA", "Bulky Items", "BOS", "34.07", "-118.26", "North Valley", "x"],
            ["2", "NA", "NA", "Bulky Items", "BOS", "34.07", "-118.26", "NA", "x"],
            ["3", "2017-12-31 10:00:00", "2017-12-30 10:00:00", "Bulky Items", "BOS", "NA", "NA", "NA", "x"],
            ["4", "2017-12-31 10:00:00", "NA", "Bulky Items", "BOS", "34.07", "-9999", "NA", "x"],
            ["5", "2017-12-31 10:00:00", "NA", "Bulky Items", "BOS", "NA", "NA", "South", "x"],
            ["6", "2017-12-31 10:00:00", "NA", "Bulky Items", "BOS", "-9999", "-9999", "NA", "x"],
        ],
    )
    records, rejected = read_records(path, mapping)
    assert [(r.row, r.line, r.kind) for r in rejected] == [
        (2, 3, "bad opened time"),
        (3, 4, "closed before opened"),
        (4, 5, "unparseable point"),
    ]
    first, unlisted, last = records
    assert (first.report.lat, first.report.lon, first.report.zone) == (34.07, -118.26, "north-yard")
    assert (unlisted.row, unlisted.report.zone) == (5, None)  # a zone value the mapping does not list
    assert first.at == datetime(2018, 1, 1, 7, 59, 58, tzinfo=UTC)
    assert (last.row, last.report.lat, last.report.zone) == (6, None, None)  # -9999 both: no location


def test_weighted_text_columns_outweigh_a_setting_word() -> None:
    book = compile_table(load_table(SF / "table.yaml"))
    assert book.classifier is not None
    place, matter = "Location: Muni bus stop", "Complaint: Encampment tent on sidewalk"
    # equal scores (4 each): the tie goes to the table's order, as for the plain description
    tie = weighted_category(book.classifier, [(place, 1), (matter, 1)])
    assert tie == book.classifier.classify(f"{place}: {matter}").category
    assert weighted_category(book.classifier, [(place, 1), (matter, 2)]) == "cleaning.encampment"
    assert weighted_category(book.classifier, [(place, 3), (matter, 1)]) == "transit.muni"
    assert weighted_category(book.classifier, [(place, 0), (matter, 1)]) == "cleaning.encampment"
    assert weighted_category(book.classifier, [(place, 0), (matter, 0)]) is None


async def test_a_second_export_replays_with_the_same_mapping() -> None:
    """60 other rows of the SF sample, written as another export writes them (times 2012-12-04 15:21:00,
    NA for missing, extra columns, no row-number column): the mapping with both formats reads them all."""
    mapping = load_mapping(SF / "mapping.yaml")
    records, rejected = read_records(EXPORT2, mapping)
    # two rows of the source close before they open (source rows 1011 and 1051): rejected there too
    assert (len(records), [(r.line, r.kind) for r in rejected]) == (
        58,
        [(12, "closed before opened")] * 1 + [(52, "closed before opened")],
    )
    assert sum(1 for r in records if r.report.category is None) == 0
    by_id = {r.case_id: r for r in records}
    assert by_id["4650709"].at == datetime(2015, 4, 9, 20, 30, tzinfo=UTC)  # 13:30 PDT
    assert all(r.report.lat is not None for r in records)

    only_first = Mapping(mapping.spec.model_copy(update={"time_formats": None, "null_markers": []}))
    records, rejected = read_records(EXPORT2, only_first)
    assert (records, {r.kind for r in rejected}) == ([], {"bad opened time"})

    _, report = await run_from_csv(EXPORT2, SF / "mapping.yaml")
    assert (report["rows_read"], report["replayed"], report["rejected"]) == (60, 58, 2)
    assert report["rejected_reasons"] == {"closed before opened": 2}
    assert report["agreement"]["compared"] == 58
    assert report["agreement"]["overall"] >= 0.8  # measured 0.883 on these 60 rows


async def test_no_usable_record_says_why_with_lines(tmp_path: Path) -> None:
    mapping = SF / "mapping.yaml"
    text = re.sub(r"(\d{4})-(\d\d)-(\d\d) ", r"\3.\2.\1 ", EXPORT2.read_text(encoding="utf-8"))
    path = tmp_path / "slashes.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        await run_from_csv(path, mapping, limit=20)
    message = str(caught.value)
    assert "bad opened time" in message and "line 2 (row 1)" in message


def test_dry_run_checks_a_mapping_against_a_file(tmp_path: Path) -> None:
    found = dry_run(SLICE, SF / "mapping.yaml")
    assert (found["rows_read"], found["usable"], found["rejected"]) == (57, 55, 2)
    assert found["rejected_reasons"] == {"closed before opened": 2}
    assert all(e["line"] > e["row"] for e in found["rejected_examples"])
    assert found["agency_without_owner"] == 0 and found["without_category"] == 0

    out = tmp_path / "dry.json"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--from-csv",
            str(EXPORT2),
            "--mapping",
            str(SF / "mapping.yaml"),
            "--dry-run",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "60 rows read, 58 usable, 2 rejected" in result.output and "nothing replayed" in result.output
    assert "line 12 (row 11): closed before opened" in result.output
    assert '"usable": 58' in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("time_format", "text"),
    [
        ("%m/%d/%Y %I:%M:%S %p", "04/30/2014 02:51:52 PM"),
        ("%m/%d/%Y %I:%M:%S %p", "04/30/2014 12:01:00 am"),  # midnight, lower case
        ("%m/%d/%Y %I:%M:%S %p", "4/3/2014 12:00:00 PM"),  # noon, one-digit day and month
        ("%Y-%m-%d %H:%M:%S", "2012-12-04 15:21:00"),
        ("%Y-%m-%d %H:%M", "2012-12-04  15:21"),  # a space in the format reads any run of them
        ("%Y-%m-%dT%H:%M:%S.%f", "2012-12-04T15:21:00.250"),  # a directive of its own: strptime reads it
        ("%m/%d/%Y %I:%M:%S %p", "13/30/2014 02:51:52 PM"),  # no month 13
        ("%m/%d/%Y %I:%M:%S %p", "04/30/2014 13:51:52 PM"),  # no hour 13 on a 12-hour clock
        ("%m/%d/%Y %I:%M:%S %p", "02/30/2014 01:00:00 PM"),  # no 30 February
        ("%Y-%m-%d %H:%M:%S", "2012-12-04 24:00:00"),
        ("%Y-%m-%d %H:%M:%S", "2012-12-04 15:21:00 extra"),
        ("%Y-%m-%d %H:%M:%S", "NA"),
    ],
)
def test_the_time_reader_reads_what_strptime_reads_and_refuses_what_it_refuses(time_format: str, text: str) -> None:
    try:
        expected: datetime | None = datetime.strptime(text, time_format).replace(tzinfo=UTC)
    except ValueError:
        expected = None
    try:
        found: datetime | None = parse_local_time(text, time_format, ZoneInfo("UTC"))
    except ValueError:
        found = None
    assert found == expected
