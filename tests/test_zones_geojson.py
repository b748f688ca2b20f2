"""Place in the table: point in polygon (concave rings, holes, several polygons) and zones from GeoJSON files,
so that "the yard whose area holds the point" is a rule."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from rules import RoutingInput, RuleTableError, compile_table, load_source_text
from rules.checker import check
from rules.geo import Area, Circle, Polygon, Shape, overlaps

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


def _square(x: float, y: float, side: float = 1.0) -> Polygon:
    return Polygon(((x, y), (x + side, y), (x + side, y + side), (x, y + side), (x, y)))


def _shifted(polygon: Polygon, dx: float) -> Polygon:
    return Polygon(
        tuple((x + dx, y) for x, y in polygon.ring), tuple(tuple((x + dx, y) for x, y in h) for h in polygon.holes)
    )


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        (_square(0, 0), _square(1, 0), False),  # grid cells sharing an edge
        (_square(0, 0), _square(1, 1), False),  # sharing a corner
        (_square(0, 0), _square(0.5, 1, 2), False),  # an edge shared in part
        (_square(0, 0), _square(2, 0), False),  # apart, boxes apart
        (_square(0, 0), _square(0, 0), True),  # the same cell twice: no edge crosses, yet all is shared
        (_square(0, 0, 3), _square(1, 1), True),  # one inside the other
        (_square(0, 0, 3), _square(0, 0), True),  # inside, sharing two edges
        (_square(0, 0), _square(0.5, 0.5), True),  # crossing edges
        (_square(0, 0), Polygon(((1, 0), (2, 0.5), (1, 1), (0.5, 0.5), (1, 0))), True),  # a notch cut across an edge
        (Polygon(U), _square(1, 1.5, 1), False),  # in the notch of the U, touching both arms and the base
        (Polygon(U), _square(1.5, 1.5, 1), True),  # in the notch and reaching into the right arm
        (Polygon(RING, (HOLE,)), _square(1, 1, 2), False),  # exactly the hole
        (Polygon(RING, (HOLE,)), _square(1.5, 1.5), False),  # inside the hole
        (Polygon(RING, (HOLE,)), _square(2.5, 2.5, 1), True),  # across the hole's edge
        (Area((_square(0, 0), _square(5, 5))), Area((_square(1, 0), _square(5.5, 5.5))), True),
        (Area((_square(0, 0), _square(5, 5))), Area((_square(1, 0), _square(6, 5))), False),  # every cell touches
        (Circle(0.0, 0.0, 1000), Circle(0.0, 0.017, 1000), True),  # 1,890 m apart, radii 2 × 1,000 m
        (Circle(0.0, 0.0, 1000), Circle(0.0, 0.018, 1000), False),  # 2,001 m apart
        (Circle(0.5, 0.5, 1000), _square(0, 0), True),  # a circle inside a cell
        (Circle(0.5, 1.5, 1000), _square(0, 0), False),  # 55 km off
        (Circle(0.5, 1.005, 1000), _square(0, 0), True),  # its centre 556 m beyond the edge, its radius 1,000 m
        (Circle(0.5, 1.01, 1000), _square(0, 0), False),  # 1,112 m beyond
    ],
)
def test_shapes_overlap_only_with_an_area_in_common(a: Shape, b: Shape, overlap: bool) -> None:
    assert overlaps(a, b) is overlap
    assert overlaps(b, a) is overlap
    if isinstance(a, Polygon) and isinstance(b, Polygon):  # orientation and position do not matter
        flipped_a = Polygon(a.ring[::-1], tuple(h[::-1] for h in a.holes))
        assert overlaps(flipped_a, b) is overlap
        assert overlaps(_shifted(a, 100.0), _shifted(b, 100.0)) is overlap


def test_grid_cells_that_only_touch_are_no_overlap_for_the_checker(tmp_path: Path) -> None:
    def cells(*corners: tuple[int, int]) -> dict[str, object]:
        return {"type": "MultiPolygon", "coordinates": [[list(_square(x, y).ring)] for x, y in corners]}

    collection = {
        "type": "FeatureCollection",
        "features": [
            _feature("north-yard", cells((0, 1), (1, 1), (2, 2))),
            _feature("south-yard", cells((0, 0), (1, 0), (2, 1))),  # touches north-yard along four edges
            _feature("east-yard", cells((2, 2), (3, 2))),  # shares a whole cell with north-yard
        ],
    }
    rules = """
  - id: noise-south
    when: {category: order.noise, zone: south-yard}
    then: {module: enforcement, lead: patrol}
  - id: noise-east
    when: {category: order.noise, zone: east-yard}
    then: {module: enforcement, lead: patrol}
"""
    source = load_source_text(_table_with(tmp_path, collection) + rules, source="t.yaml", base_dir=tmp_path)
    found = [f for f in check(compile_table(source.table), source) if f.kind == "overlap"]
    assert [f.rules for f in found] == [("noise-north", "noise-east")]
    example = found[0].example or {}
    assert (example["zone"], example["also_in_zones"]) == ("east-yard", ["north-yard"])


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
