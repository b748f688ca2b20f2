"""Which open incident a new report repeats: the policy behind joining instead of dispatching again.

Pure: the hub hands it the candidates it indexes (open incidents of the report's routed category)
and the time; nothing here reads a clock or a store.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime, timedelta

from dispatcher.core.incidents import Incident, Report
from dispatcher.core.lifecycle import JOINABLE_STATUSES
from dispatcher.core.roster import distance_m


def find_duplicate(
    report: Report,
    category: str | None,
    at: datetime,
    candidates: Iterable[Incident],
    *,
    radius_m: float,
    window: timedelta,
    small_zones: Collection[str] = (),
) -> Incident | None:
    """The incident ``report`` repeats, or ``None``.

    A duplicate has the same routed ``category``, is still joinable (not resolved or finished), is of the
    same kind (a drill joins only a drill), was last reported within ``window`` of ``at``, and is in the same
    place: both positioned and within ``radius_m`` of each other, or, where either has no position, both named
    by the same zone of ``small_zones`` (a zone the table calls small: 五岔口 is one place, a whole town is
    not). The nearest wins (a shared small zone counts as 0 m), then the lowest id. ``radius_m <= 0`` turns
    joining off; a report with neither a position nor a small zone never joins.
    """
    if category is None or radius_m <= 0:
        return None
    placed = report.lat is not None and report.lon is not None
    small_zone = report.zone if report.zone is not None and report.zone in small_zones else None
    if not placed and small_zone is None:
        return None
    best: tuple[float, int, Incident] | None = None
    for incident in candidates:
        first = incident.report
        if (
            incident.status not in JOINABLE_STATUSES
            or incident.category != category
            or first.exercise != report.exercise
            or at - incident.last_reported_at > window
        ):
            continue
        if placed and first.lat is not None and first.lon is not None:
            assert report.lat is not None and report.lon is not None
            distance = distance_m(report.lat, report.lon, first.lat, first.lon)
        elif small_zone is not None and first.zone == small_zone:
            distance = 0.0
        else:
            continue
        if distance <= radius_m and (best is None or (distance, incident.id) < best[:2]):
            best = (distance, incident.id, incident)
    return best[2] if best else None
