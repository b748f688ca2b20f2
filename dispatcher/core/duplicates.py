"""Which open incident a new report repeats: the policy behind joining instead of dispatching again.

Pure: the hub hands it the candidates it indexes (open incidents of the report's routed category)
and the time; nothing here reads a clock or a store.
"""

from __future__ import annotations

from collections.abc import Iterable
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
) -> Incident | None:
    """The incident ``report`` repeats, or ``None``.

    A duplicate has the same routed ``category``, is still joinable (not resolved or finished), is of the
    same kind (a drill joins only a drill), was last reported within ``window`` of ``at``, and lies within
    ``radius_m`` of the report; the nearest wins, then the lowest id. A report without a position, or
    ``radius_m <= 0``, never joins.
    """
    if category is None or report.lat is None or report.lon is None or radius_m <= 0:
        return None
    best: tuple[float, int, Incident] | None = None
    for incident in candidates:
        first = incident.report
        if (
            incident.status not in JOINABLE_STATUSES
            or incident.category != category
            or first.exercise != report.exercise
            or first.lat is None
            or first.lon is None
            or at - incident.last_reported_at > window
        ):
            continue
        distance = distance_m(report.lat, report.lon, first.lat, first.lon)
        if distance <= radius_m and (best is None or (distance, incident.id) < best[:2]):
            best = (distance, incident.id, incident)
    return best[2] if best else None
