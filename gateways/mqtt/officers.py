"""What officers' phones report, handed to the roster.

The gateway only knows the callback ``on_officer_status``; the composition root passes
:meth:`RosterStatus.record`, which keeps the newest report per officer (a late, older one is
dropped) and gives it to the hub (:meth:`dispatcher.hub.Hub.report_unit`): status and position
then count in the choice of units, as if reported over HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType

from dispatcher.core.roster import UnitStatus
from dispatcher.hub import Hub
from gateways.mqtt.codec import OfficerStatus

log = logging.getLogger(__name__)


class LastKnownStatus:
    """Keeps the newest status per officer (by its ``at``) in memory. Runs on the event loop."""

    def __init__(self) -> None:
        self._latest: dict[str, OfficerStatus] = {}
        self.latest: Mapping[str, OfficerStatus] = MappingProxyType(self._latest)

    async def record(self, status: OfficerStatus) -> None:
        known = self._latest.get(status.officer_id)
        if known is not None and known.at > status.at:
            return  # a late, older position must not overwrite a newer one
        self._latest[status.officer_id] = status
        log.debug("officer %s is %s at %.5f,%.5f", status.officer_id, status.status.value, status.lat, status.lon)


class RosterStatus:
    """Forwards each newer phone report to the hub; reports of officers not on the roster are counted and dropped."""

    def __init__(self, hub: Hub, latest: LastKnownStatus, hub_of: Callable[[], Hub] | None = None) -> None:
        """``hub_of``: the township's hub now (replica mode: a new one at each take of the lease)."""
        self._hub_of: Callable[[], Hub] = hub_of or (lambda: hub)
        self._latest = latest
        self.unknown = 0

    @property
    def _hub(self) -> Hub:
        return self._hub_of()

    async def record(self, status: OfficerStatus) -> None:
        known = self._latest.latest.get(status.officer_id)
        await self._latest.record(status)
        if known is not None and known.at > status.at:
            return
        if status.officer_id not in self._hub.roster.officers:
            self.unknown += 1
            log.warning("status from %s, who is not on roster %s", status.officer_id, self._hub.roster.version)
            return
        await self._hub.report_unit(
            status.officer_id,
            self._hub.clock.now(),
            status=UnitStatus(status.status.value),
            lat=status.lat,
            lon=status.lon,
        )
