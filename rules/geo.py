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


@dataclass(frozen=True, slots=True)
class Polygon:
    """A simple polygon; ``ring`` holds (lon, lat) pairs in GeoJSON order."""

    ring: tuple[tuple[float, float], ...]

    def reach_m(self) -> float:
        """How far from its centre (the mean vertex) the shape reaches: its farthest vertex."""
        points = self.ring[:-1] if len(self.ring) > 1 and self.ring[0] == self.ring[-1] else self.ring
        lon = sum(p[0] for p in points) / len(points)
        lat = sum(p[1] for p in points) / len(points)
        return max(distance_m(lat, lon, p[1], p[0]) for p in points)

    def contains(self, lat: float, lon: float) -> bool:
        # Ray casting: count the edges a ray to the east crosses.
        inside = False
        ring = self.ring
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


Shape = Circle | Polygon
