"""The last status each officer's phone reported: a stand-in until the roster takes the status.

The gateway only knows the callback ``on_officer_status``; the composition root passes
:meth:`LastKnownStatus.record` today and the roster's own method later.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

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
