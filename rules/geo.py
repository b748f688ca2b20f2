"""Placing a point in the township's zones: circles (a point and a radius) and polygons."""

from __future__ import annotations

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
