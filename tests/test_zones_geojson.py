"""Place in the table: point in polygon (concave rings, holes, several polygons) and zones from GeoJSON files,
so that "the yard whose area holds the point" is a rule."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from rules import RoutingInput, RuleTableError, compile_table, load_source_text
from rules.checker import check
from rules.geo import Area, Polygon

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# A "U" (concave): the notch between its arms, x 1..2, y 1..3, is outside. Positions are (lon, lat).
U = ((0.0, 0.0), (3.0, 0.0), (3.0, 3.0), (2.0, 3.0), (2.0, 1.0), (1.0, 1.0), (1.0, 3.0), (0.0, 3.0), (0.0, 0.0))
# A square with a square hole.
RING = ((0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0), (0.0, 0.0))
HOLE = ((1.0, 1.0), (3.0, 1.0), (3.0, 3.0), (1.0, 3.0), (1.0, 1.0))


@pytest.mark.parametrize(
    ("lon", "lat", "inside"),
    [
        (0.5, 2.5, True),  # left arm
        (2.5, 2.5, True),  # right arm
        (1.5, 2.5, False),  # the notch: inside the hull, outside the polygon
        (1.5, 0.5, True),  # the base
        (1.5, 3.5, False),  # above the notch
        (-0.5, 1.0, False),
        (3.5, 1.0, False),
    ],
)
def test_a_concave_polygon(lon: float, lat: float, inside: bool) -> None:
    assert Polygon(U).contains(lat, lon) is inside


@pytest.mark.parametrize(
    ("lon", "lat", "inside"),
    [(0.5, 0.5, True), (2.0, 2.0, False), (3.5, 2.0, True), (2.0, 3.5, True), (5.0, 2.0, False)],
)
def test_a_polygon_with_a_hole(lon: float, lat: float, inside: bool) -> None:
    assert Polygon(RING, (HOLE,)).contains(lat, lon) is inside
    assert Polygon(RING).contains(lat, lon) is (inside or (1 < lon < 3 and 1 < lat < 3))


def test_an_area_of_several_polygons_holds_what_any_of_them_holds() -> None:
    area = Area((Polygon(U), Polygon(tuple((x + 10, y) for x, y in RING), (tuple((x + 10, y) for x, y in HOLE),))))
    assert area.contains(2.5, 0.5) and area.contains(0.5, 10.5)
    assert not area.contains(2.5, 1.5) and not area.contains(2.0, 12.0) and not area.contains(2.0, 6.0)


def _feature(zone_id: str, geometry: dict[str, object], **properties: str) -> dict[str, object]:
    return {"type": "Feature", "properties": {"id": zone_id, **properties}, "geometry": geometry}


TABLE = (FIXTURES / "quick-township.yaml").read_text(encoding="utf-8")
YARDS = """
  - id: noise-north
    when: {category: order.noise, zone: north-yard}
    then: {module: enforcement, lead: county-desk}
"""


def _table_with(tmp_path: Path, collection: Mapping[str, object]) -> str:
    (tmp_path / "yards.geojson").write_text(json.dumps(collection, ensure_ascii=False, indent=1), encoding="utf-8")
    return TABLE.replace('version: "quick-1"', 'version: "quick-1"\ninclude: [yards.geojson]') + YARDS


def test_zones_from_a_geojson_file_route_by_the_area_that_holds_the_point(tmp_path: Path) -> None:
    collection = {
        "type": "FeatureCollection",
        "features": [
            _feature("north-yard", {"type": "Polygon", "coordinates": [list(U)]}, name="北片", name_en="North yard"),
            _feature(
                "ring-yard",
                {"type": "MultiPolygon", "coordinates": [[list(RING), list(HOLE)], [[[5, 5], [6, 5], [6, 6], [5, 5]]]]},
            ),
        ],
    }
    source = load_source_text(_table_with(tmp_path, collection), source="t.yaml", base_dir=tmp_path)
    book = compile_table(source.table)
    zone = {z.id: z for z in source.table.zones}
    assert (zone["north-yard"].name, zone["north-yard"].name_en, zone["ring-yard"].name) == (
        "北片",
        "North yard",
        "ring-yard",
    )
    assert book.zones_at(2.5, 0.5) == ("north-yard", "ring-yard")  # the arm, and the square around the hole
    assert book.zones_at(2.5, 1.5) == ()  # the notch of the U and the hole of the square
    assert book.zones_at(5.2, 5.5) == ("ring-yard",)

    in_arm = book.route(RoutingInput(category="order.noise", description="x", lat=2.5, lon=0.5))
    in_notch = book.route(RoutingInput(category="order.noise", description="x", lat=2.5, lon=1.5))
    assert (in_arm.rule_id, in_arm.lead) == ("noise-north", "county-desk")
    assert (in_notch.rule_id, in_notch.lead) == ("noise", "patrol")
    assert [f for f in check(book, source) if f.kind != "organisation"] == []  # the quick town has no sub-modules


def test_a_bad_zone_file_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    open_ring = [[0, 0], [1, 0], [1, 1], [0, 1]]
    collection = {
        "type": "FeatureCollection",
        "features": [
            _feature("north-yard", {"type": "Polygon", "coordinates": [list(U)]}),
            {"type": "Feature", "properties": {"name": "no id"}, "geometry": None},
        ],
    }
    with pytest.raises(RuleTableError) as caught:
        load_source_text(_table_with(tmp_path, collection), source="t.yaml", base_dir=tmp_path)
    text = (tmp_path / "yards.geojson").read_text(encoding="utf-8")
    line = next(n for n, t in enumerate(text.splitlines(), 1) if '"no id"' in t) - 1  # the properties line
    assert f"{tmp_path / 'yards.geojson'}:{line}: a feature needs properties.id" in str(caught.value)

    collection["features"] = [_feature("north-yard", {"type": "Polygon", "coordinates": [open_ring]})]
    with pytest.raises(RuleTableError) as caught:
        load_source_text(_table_with(tmp_path, collection), source="t.yaml", base_dir=tmp_path)
    assert f"{tmp_path / 'yards.geojson'}:" in str(caught.value) and "must end where it starts" in str(caught.value)

    (tmp_path / "yards.geojson").write_text('{"type": "Feature"}', encoding="utf-8")
    table = TABLE.replace('version: "quick-1"', 'version: "quick-1"\ninclude: [yards.geojson]')
    with pytest.raises(RuleTableError, match="FeatureCollection"):
        load_source_text(table, source="t.yaml", base_dir=tmp_path)
