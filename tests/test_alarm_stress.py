"""Many deadlines a few milliseconds apart, through the real APScheduler alarm on the wall clock.

The alarm once awaited each whole ring inside APScheduler's job: a deadline that fell due while a ring
was still committing was skipped as "a second instance of a running job" and never fired. This test
puts 5 × 40 acknowledgement deadlines 3 ms apart, while reports are still being committed, and checks
that each one is missed exactly once: none lost, none doubled.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson

from dispatcher.alarm import ApschedulerAlarm
from dispatcher.clock import SystemClock
from dispatcher.core import events as ev
from dispatcher.core.incidents import Report
from dispatcher.feed import FeedRecord
from rules import RuleBook
from tests.conftest import HubRig

INCIDENTS = 40
SPACING = timedelta(milliseconds=3)
LEAD = timedelta(milliseconds=400)  # the first deadline falls due this long after the reports start


def _report(n: int) -> Report:
    return Report(
        report_id=f"stress-{n}",
        category="traffic.congestion",
        description="market-day congestion at the five-way intersection",
        zone="five-way",
    )


async def test_deadlines_a_few_ms_apart_each_fire_exactly_once(database_url: str, bundled_rules: RuleBook) -> None:
    rig = HubRig(database_url, bundled_rules, duplicate_radius_m=0.0)
    rig.clock = SystemClock()  # type: ignore[assignment]
    rig.alarm = ApschedulerAlarm()  # type: ignore[assignment]
    rig.hub = rig._build()
    await rig.hub.start()
    watching = rig.feed.subscribe()
    try:
        # How long the table gives to acknowledge this matter: from a probe whose deadlines lie minutes ahead.
        probe = (await rig.hub.report(_report(-1), datetime.now(UTC))).incident
        ack = next(d for a in probe.assignments for d in a.deadlines if d.kind is ev.DeadlineKind.ACK)
        window = ack.due_at - probe.reported_at
        teams = len(probe.assignments)

        # Back-date each report so that its acknowledgement deadlines fall due LEAD + n·SPACING from now.
        first_due = datetime.now(UTC) + LEAD
        outcomes = await asyncio.gather(
            *(rig.hub.report(_report(n), first_due + n * SPACING - window) for n in range(INCIDENTS))
        )
        stressed = {o.incident.id for o in outcomes}
        assert len(stressed) == INCIDENTS

        expected = INCIDENTS * teams
        missed: list[tuple[int, str]] = []

        async def collect() -> None:
            while len(missed) < expected:
                record = await watching.get()
                assert isinstance(record, FeedRecord), "the test's feed queue overflowed"
                frame = orjson.loads(record.message)
                if frame["type"] == "DeadlineMissed" and record.incident_id in stressed:
                    assert record.incident_id is not None
                    missed.append((record.incident_id, frame["data"]["team"]))

        await asyncio.wait_for(collect(), timeout=30)

        assert len(missed) == len(set(missed)) == expected  # each (incident, team) once
        for incident_id in stressed:  # and the stored log agrees: one miss per team, no more
            timeline = await rig.hub.timeline(incident_id)
            kinds = [e.type for e in timeline if e.type == "DeadlineMissed"]
            assert len(kinds) == teams
    finally:
        watching.close()
        await rig.hub.stop()
