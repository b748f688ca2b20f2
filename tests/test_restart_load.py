"""A restart restores exactly the state the running hub had: open incidents, officers, deadlines, alarms.

Through the real hub and store on SQLite and PostgreSQL, with the bundled roster, on the virtual clock.
The open incidents are read in pages at start (here pages of two, so that every kind of row crosses a
page boundary) and equal values are shared among the incidents built.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dispatcher import sql_store
from dispatcher.core.incidents import Report
from dispatcher.core.lifecycle import IncidentAction, UnitAction
from dispatcher.core.roster import UnitState
from dispatcher.hub import Hub
from tests.conftest import START, HubRig
from tests.test_dispatch import FIVE_WAY, jam


def state_of(hub: Hub) -> dict[str, Any]:
    """Everything a restart must rebuild, as comparable data."""
    seq, incidents = hub.open_incidents()
    return {
        "seq": seq,
        "incidents": incidents,
        # An officer with nothing stored and no task is the same as one never seen.
        "units": {officer: unit for officer, unit in sorted(hub.units.items()) if unit != UnitState()},
        # The running hub leaves kept deadlines in its heap until they come up; only pending ones count.
        "deadlines": hub.deadlines.pending(),
        "alarms": hub.alarms.snapshot(),
        "indexes": hub.open_index.indexes(),
    }


async def busy_township(crew: HubRig) -> None:
    """Open incidents of every shape: five teams, duplicates joined, missed deadlines and raised
    escalations, an acknowledged alarm, moves, notes, triage, a county handover, closed ones."""
    hub = crew.hub
    for n in range(4):
        await hub.report(jam(f"jam-{n}", lat=FIVE_WAY[0] + 0.01 * n), START)
    await hub.report(jam("jam-0-again", lat=FIVE_WAY[0] + 0.0005), START + timedelta(minutes=1))  # joins jam-0
    market = Report(report_id="m", category="market.unlicensed_vendor", description="摊位占道", zone="market")
    wages = Report(report_id="w", category="labour.wage_arrears", description="欠薪", zone="town-centre")
    triage = Report(report_id="t", category=None, description="不知道归谁管", zone="market")
    county = Report(report_id="c", category="environment.pollution", description="smoke", zone="market")
    for report in (market, wages, triage, county):
        await hub.report(report, START + timedelta(minutes=1))
    first = (await hub.report(jam("to-close", lat=FIVE_WAY[0] + 0.05), START)).incident
    await hub.finish(first.id, IncidentAction.CANCEL, START + timedelta(minutes=2), "operator", "test")
    await hub.move_unit(1, "traffic-police", UnitAction.ACKNOWLEDGE, START + timedelta(minutes=2))
    await hub.move_unit(1, "police-station", UnitAction.ACKNOWLEDGE, START + timedelta(minutes=2))
    await hub.move_unit(1, "police-station", UnitAction.DEPART, START + timedelta(minutes=2))
    await hub.note(3, "路口仍堵", START + timedelta(minutes=2), "operator")
    for _ in range(3):  # missed, re-sent, missed again, escalated
        await crew.advance(timedelta(minutes=4))
    [alarm, *_] = hub.alarms.snapshot()
    await hub.acknowledge_alarm(alarm["incident_id"], alarm["seq"], crew.clock.now(), "operator")


async def test_a_restart_restores_the_same_open_incidents_units_deadlines_and_alarms(
    crew: HubRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    await busy_township(crew)
    before = state_of(crew.hub)
    assert len(before["incidents"]) >= 8 and before["alarms"] and before["deadlines"]
    assert any(i.reports for i in before["incidents"]) and any(i.delivery for i in before["incidents"])

    monkeypatch.setattr(sql_store, "_OPEN_PAGE", 2)
    after = state_of(await crew.restart())

    for key in before:
        assert after[key] == before[key], key
    assert [i.id for i in after["incidents"]] == sorted(i.id for i in after["incidents"])


async def test_incidents_loaded_at_start_share_equal_values(crew: HubRig) -> None:
    hub = crew.hub
    for n in range(3):
        await hub.report(jam(f"jam-{n}", lat=FIVE_WAY[0] + 0.01 * n), START)
    _, incidents = (await crew.restart()).open_incidents()

    five_way, second, third = incidents  # the two away from the junction: one team, by another rule
    assert five_way == (await hub.store.get(five_way.id))  # the same incident as a plain read builds
    assert len(five_way.assignments) == 5 and len(second.assignments) == 1
    # Sent at once, every team's deadlines are equal: one tuple. The chain and windows are the rule's.
    assert len({id(a.deadlines) for a in five_way.assignments}) == 1
    assert second.assignments[0].deadlines is third.assignments[0].deadlines
    assert second.escalation is third.escalation and second.promises is third.promises
    assert second.assignments[0].team is five_way.assignments[0].team is third.assignments[0].team
    assert second.assignments[0].dispatched_at is third.assignments[0].dispatched_at
