"""Shift changes: the cron triggers' times, the handover summary, and waiting work handed to who came on."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import orjson

from dispatcher.core.handover import summarise
from dispatcher.core.incidents import Incident, Report, finish_incident, open_incident
from dispatcher.core.lifecycle import IncidentAction, UnitAction
from dispatcher.core.roster import Shift
from dispatcher.shifts import ShiftWatch, trigger_for
from rules import RoutingInput, RuleBook
from tests.conftest import START, HubRig

SHANGHAI_MIDNIGHT = datetime(2026, 6, 11, 16, 0, tzinfo=UTC)  # 00:00 on Friday 12 June in Asia/Shanghai


def test_cron_triggers_fire_at_the_shift_start_in_local_time_on_its_days() -> None:
    night = Shift(id="n", team="t", start=time(20), end=time(8), officers=("a",))
    market = Shift(
        id="m", team="t", start=time(5, 30), end=time(13), officers=("a",), days_of_month=frozenset({12, 15})
    )
    weekdays = Shift(id="w", team="t", start=time(8, 30), end=time(17), officers=("a",), weekdays=frozenset({0}))
    after = SHANGHAI_MIDNIGHT
    assert trigger_for(night, "Asia/Shanghai").get_next_fire_time(None, after) == datetime(
        2026, 6, 12, 12, 0, tzinfo=UTC
    )  # 20:00 local
    fired = trigger_for(market, "Asia/Shanghai").get_next_fire_time(None, after + timedelta(hours=6))
    assert fired is not None and fired.astimezone(UTC) == datetime(2026, 6, 14, 21, 30, tzinfo=UTC)  # 15th, 05:30
    monday = trigger_for(weekdays, "Asia/Shanghai").get_next_fire_time(None, after)
    assert monday is not None and monday.astimezone(UTC) == datetime(2026, 6, 15, 0, 30, tzinfo=UTC)


async def test_shift_change_records_the_handover_and_hands_out_waiting_work(crew: HubRig) -> None:
    hub = crew.hub
    evening = crew.clock.advance(timedelta(hours=2))  # 18:00 local: market supervision's day shift has ended
    jam = Report(report_id="r1", category="traffic.congestion", description="拥堵", lat=28.848, lon=118.912)
    incident = (await hub.report(jam, evening)).incident
    assert incident.assignment("market-supervision").waiting
    await hub.move_unit(incident.id, "traffic-police", UnitAction.ACKNOWLEDGE, evening)
    watch = ShiftWatch(hub)
    shift = next(s for s in hub.roster.shifts if s.id == "ms-day")
    morning = crew.clock.advance_to(datetime(2026, 6, 12, 23, 30, tzinfo=UTC))  # 07:30 local: the shift begins

    record = await watch.shift_began(shift, morning)

    summary = orjson.loads(record.summary)
    assert record.id is not None and record.incoming_lead == "ms-01" and record.team == "market-supervision"
    assert [o["incident_id"] for o in summary["open"]] == [incident.id]
    assert summary["open"][0]["officer"] is None  # it waited through the night
    overdue = [(b["kind"], b["overdue"]) for b in summary["about_to_breach"]]
    assert overdue == [("ack", True), ("arrive", True), ("resolve", True)]  # 3 min, 10 min, 2 h: all passed
    assert summary["running_deadlines"] == 3
    market = (await hub.get(incident.id)).assignment("market-supervision")
    assert market.officer == "ms-02" and not market.waiting  # posted at the five-way joint duty station
    stored = await hub.store.handovers(team="market-supervision", limit=5)
    assert [h.id for h in stored] == [record.id]
    assert record.id is not None
    await hub.acknowledge_handover(record.id, "ms-01", morning)
    again = await hub.acknowledge_handover(record.id, "someone-else", morning + timedelta(minutes=1))
    assert (again.acknowledged_by, again.acknowledged_at) == ("ms-01", morning)


def test_the_summary_leaves_out_other_teams_and_finished_work(bundled_rules: RuleBook) -> None:
    def opened(n: int, category: str) -> Incident:
        report = Report(report_id=f"s-{n}", category=category, description="d", zone="town-centre")
        decision = bundled_rules.route(
            RoutingInput(
                category=category,
                description="d",
                reporter_kind=None,
                zone="town-centre",
                lat=None,
                lon=None,
                severity=None,
                at=START,
            )
        )
        return open_incident(n, report, decision, START)[0]

    wages = opened(1, "labour.wage_arrears")  # the one-stop labour case: the court supports
    finished, _ = finish_incident(opened(2, "labour.wage_arrears"), IncidentAction.CANCEL, START, None, "dup")
    noise = opened(3, "traffic.congestion")  # no court assignment at all
    summary = summarise("court", [wages, finished, noise], START + timedelta(minutes=5))
    assert wages.has_team("court") and not noise.has_team("court")
    assert [o["incident_id"] for o in summary["open"]] == [1]  # not the cancelled one, not another team's
    assert summary["running_deadlines"] == len(wages.assignment("court").deadlines)
    assert summarise("court", [finished, noise], START)["open"] == []
