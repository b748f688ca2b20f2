"""Placing a point in the township's zones: circles (a point and a radius) and polygons."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

_EARTH_RADIUS_M = 6_371_000.0


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(math.sqrt(h))


@dataclass(frozen=True, slots=True)
class Circle:
    lat: float
    lon: float
    radius_m: float

    def contains(self, lat: float, lon: float) -> bool:
        return distance_m(self.lat, self.lon, lat, lon) <= self.radius_m

    def reach_m(self) -> float:
        """How far from its centre the shape reaches."""
        return self.radius_m


Ring = tuple[tuple[float, float], ...]


def _in_ring(ring: Ring, lat: float, lon: float) -> bool:
    # Ray casting: count the edges a ray to the east crosses (a concave ring is no different).
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > lat) != (yj > lat):
            x_cross = (xj - xi) * (lat - yi) / (yj - yi) + xi
            if lon < x_cross:
                inside = not inside
        j = i
    return inside


@dataclass(frozen=True, slots=True)
class Polygon:
    """A polygon; ``ring`` holds (lon, lat) pairs in GeoJSON order, ``holes`` the rings cut out of it.

    A point is inside when the outer ring holds it and no hole does (ray casting, so concave rings are fine;
    a point exactly on an edge may fall either side).
    """

    ring: Ring
    holes: tuple[Ring, ...] = ()

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the outer ring."""
        lons = [p[0] for p in self.ring]
        lats = [p[1] for p in self.ring]
        return min(lons), min(lats), max(lons), max(lats)

    def reach_m(self) -> float:
        """How far from its centre (the mean vertex) the shape reaches: its farthest vertex."""
        points = self.ring[:-1] if len(self.ring) > 1 and self.ring[0] == self.ring[-1] else self.ring
        lon = sum(p[0] for p in points) / len(points)
        lat = sum(p[1] for p in points) / len(points)
        return max(distance_m(lat, lon, p[1], p[0]) for p in points)

    def contains(self, lat: float, lon: float) -> bool:
        return _in_ring(self.ring, lat, lon) and not any(_in_ring(hole, lat, lon) for hole in self.holes)


@dataclass(frozen=True)
class Area:
    """Several polygons (a GeoJSON MultiPolygon, or the grid cells of one service area): a point is in the
    area when one of them holds it. Each polygon's bounding box is checked first."""

    polygons: tuple[Polygon, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_boxes", tuple(p.box for p in self.polygons))

    def reach_m(self) -> float:
        """How far from the centre of all its vertices the area reaches: its farthest vertex."""
        points = [p for polygon in self.polygons for p in polygon.ring]
        lon = sum(p[0] for p in points) / len(points)
        lat = sum(p[1] for p in points) / len(points)
        return max(distance_m(lat, lon, p[1], p[0]) for p in points)

    def contains(self, lat: float, lon: float) -> bool:
        boxes: tuple[tuple[float, float, float, float], ...] = self._boxes  # type: ignore[attr-defined]
        return any(
            w <= lon <= e and s <= lat <= n and polygon.contains(lat, lon)
            for (w, s, e, n), polygon in zip(boxes, self.polygons, strict=True)
        )


Shape = Circle | Polygon | Area


# Overlap of two shapes: what ``rules check`` needs to know whether a point can be in both.  Shapes that
# only touch (grid cells sharing an edge or a corner) do not overlap; the intersection must have an area.
# Worked in the plane of (lon, lat) degrees: a shape small enough to be a township zone is flat enough.

_CIRCLE_SIDES = 64
_METRES_PER_DEGREE = 111_195.0
_EPS = 1e-12

Point = tuple[float, float]


def overlaps(a: Shape, b: Shape) -> bool:
    """True when the two shapes share an area greater than zero; touching along an edge or at a corner is
    not overlapping. Two circles are compared exactly; a circle against a polygon is taken as its inscribed
    64-gon (a miss by under 0.12% of the radius)."""
    if isinstance(a, Circle) and isinstance(b, Circle):
        return distance_m(a.lat, a.lon, b.lat, b.lon) < a.radius_m + b.radius_m
    boxed_a = [(p.box, p) for p in _polygons_of(a)]
    boxed_b = [(p.box, p) for p in _polygons_of(b)]
    if not _boxes_meet(_hull(boxed_a), _hull(boxed_b)):
        return False
    return any(
        _boxes_meet(box_a, box_b) and _polygons_overlap(pa, pb) for box_a, pa in boxed_a for box_b, pb in boxed_b
    )


Box = tuple[float, float, float, float]


def _hull(boxed: list[tuple[Box, Polygon]]) -> Box:
    return (
        min(b[0] for b, _ in boxed),
        min(b[1] for b, _ in boxed),
        max(b[2] for b, _ in boxed),
        max(b[3] for b, _ in boxed),
    )


def _polygons_of(shape: Shape) -> tuple[Polygon, ...]:
    if isinstance(shape, Area):
        return shape.polygons
    if isinstance(shape, Polygon):
        return (shape,)
    dlat = shape.radius_m / _METRES_PER_DEGREE
    dlon = dlat / max(math.cos(math.radians(shape.lat)), 1e-6)
    ring = tuple(
        (
            shape.lon + dlon * math.cos(2 * math.pi * k / _CIRCLE_SIDES),
            shape.lat + dlat * math.sin(2 * math.pi * k / _CIRCLE_SIDES),
        )
        for k in range(_CIRCLE_SIDES + 1)
    )
    return (Polygon(ring=ring),)


def _boxes_meet(a: Box, b: Box) -> bool:
    # Strictly: boxes that only touch hold no common area.
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _signed_area(ring: Ring) -> float:
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1], strict=True)) / 2


def _oriented(polygon: Polygon) -> list[Ring]:
    """The rings with the interior on the left of every edge: the outer ring anticlockwise, holes clockwise."""
    rings = []
    for index, ring in enumerate((polygon.ring, *polygon.holes)):
        closed = ring if ring[0] == ring[-1] else (*ring, ring[0])
        anticlockwise = _signed_area(closed[:-1]) > 0
        rings.append(closed if anticlockwise == (index == 0) else closed[::-1])
    return rings


def _cross(o: Point, p: Point, q: Point) -> float:
    return (p[0] - o[0]) * (q[1] - o[1]) - (p[1] - o[1]) * (q[0] - o[0])


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    return (
        abs(_cross(a, b, p)) <= _EPS
        and min(a[0], b[0]) - _EPS <= p[0] <= max(a[0], b[0]) + _EPS
        and min(a[1], b[1]) - _EPS <= p[1] <= max(a[1], b[1]) + _EPS
    )


def _cuts(a: Point, b: Point, edges: list[tuple[Point, Point]]) -> list[float]:
    """Where along a→b (0..1) the other polygon's edges meet it, touching included, plus both ends."""
    cuts = [0.0, 1.0]
    dx, dy = b[0] - a[0], b[1] - a[1]
    for c, d in edges:
        ex, ey = d[0] - c[0], d[1] - c[1]
        denominator = dx * ey - dy * ex
        if abs(denominator) > _EPS:
            t = ((c[0] - a[0]) * ey - (c[1] - a[1]) * ex) / denominator
            u = ((c[0] - a[0]) * dy - (c[1] - a[1]) * dx) / denominator
            if -_EPS <= t <= 1 + _EPS and -_EPS <= u <= 1 + _EPS:
                cuts.append(min(max(t, 0.0), 1.0))
        else:
            length = dx * dx + dy * dy
            for p in (c, d):
                if length > 0 and _on_segment(p, a, b):
                    cuts.append(((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length)
    return sorted(cuts)


def _locate(p: Point, rings: list[Ring], edges: list[tuple[Point, Point]]) -> tuple[str, Point | None]:
    """("inside" | "outside" | "edge", direction of the edge p lies on)."""
    for c, d in edges:
        if _on_segment(p, c, d):
            return "edge", (d[0] - c[0], d[1] - c[1])
    inside = _in_ring(rings[0], p[1], p[0]) and not any(_in_ring(h, p[1], p[0]) for h in rings[1:])
    return ("inside" if inside else "outside"), None


def _edges(rings: list[Ring]) -> list[tuple[Point, Point]]:
    return [(r[i], r[i + 1]) for r in rings for i in range(len(r) - 1) if r[i] != r[i + 1]]


def _boundary_enters(rings_a: list[Ring], rings_b: list[Ring]) -> bool:
    """Cut a's boundary where b's meets it; a piece strictly inside b, or a piece b shares with the interiors
    on the same side, means an area in common."""
    edges_b = _edges(rings_b)
    for a, b in _edges(rings_a):
        cuts = _cuts(a, b, edges_b)
        dx, dy = b[0] - a[0], b[1] - a[1]
        for t0, t1 in itertools.pairwise(cuts):
            if t1 - t0 <= _EPS:
                continue
            t = (t0 + t1) / 2
            mid = (a[0] + dx * t, a[1] + dy * t)
            where, direction = _locate(mid, rings_b, edges_b)
            if where == "inside":
                return True
            # On a shared edge both interiors lie left of their edges: same direction, same side.
            if where == "edge" and direction is not None and direction[0] * dx + direction[1] * dy > 0:
                return True
    return False


def _polygons_overlap(a: Polygon, b: Polygon) -> bool:
    rings_a, rings_b = _oriented(a), _oriented(b)
    return _boundary_enters(rings_a, rings_b) or _boundary_enters(rings_b, rings_a)
