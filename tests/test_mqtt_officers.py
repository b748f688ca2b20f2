"""Phones' status: the newest per officer, read-only from outside, and handed to the roster."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dispatcher.core.roster import UnitStatus
from gateways.mqtt import LastKnownStatus, OfficerState, OfficerStatus
from gateways.mqtt.officers import RosterStatus
from tests.conftest import START, HubRig


def status(officer: str, state: OfficerState, minutes: int) -> OfficerStatus:
    return OfficerStatus(officer_id=officer, status=state, lat=28.85, lon=118.91, at=START + timedelta(minutes=minutes))


async def test_a_late_older_status_does_not_overwrite_a_newer_one() -> None:
    book = LastKnownStatus()
    await book.record(status("o-1", OfficerState.EN_ROUTE, 5))
    await book.record(status("o-1", OfficerState.AVAILABLE, 1))  # arrived late, sent earlier
    await book.record(status("o-2", OfficerState.OFF_DUTY, 0))
    assert {k: v.status for k, v in book.latest.items()} == {"o-1": OfficerState.EN_ROUTE, "o-2": OfficerState.OFF_DUTY}
    with pytest.raises(TypeError):
        book.latest["o-3"] = status("o-3", OfficerState.AVAILABLE, 0)  # type: ignore[index]


async def test_phone_reports_reach_the_roster_and_older_or_unknown_ones_do_not(crew: HubRig) -> None:
    statuses = RosterStatus(crew.hub, LastKnownStatus())
    await statuses.record(status("tp-03", OfficerState.OFF_DUTY, 5))
    await statuses.record(status("tp-03", OfficerState.AVAILABLE, 1))  # sent before the one above
    await statuses.record(status("nobody", OfficerState.AVAILABLE, 1))
    unit = crew.hub.units["tp-03"]
    assert (unit.status, unit.lat, unit.lon) == (UnitStatus.OFF_DUTY, 28.85, 118.91)
    assert statuses.unknown == 1 and "nobody" not in crew.hub.units
