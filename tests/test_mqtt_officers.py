"""The stand-in for the roster: the newest status per officer, read-only from outside."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateways.mqtt import LastKnownStatus, OfficerState, OfficerStatus
from tests.conftest import START


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
