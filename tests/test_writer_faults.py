"""The single writer under faults: a bad command, a refused value, a failed commit, a retry after a restart.

Run on SQLite and PostgreSQL. Each test is a way one request could stop the command room's writes,
lose a deadline or store a report twice; each failed on the code before the writer was hardened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent

from dispatcher.alarm import ApschedulerAlarm
from dispatcher.clock import VirtualClock
from dispatcher.core.incidents import Report
from dispatcher.core.lifecycle import IncidentAction, UnitAction
from dispatcher.core.roster import UnitStatus
from dispatcher.hub import Hub, IncidentNotFound
from dispatcher.sql_store import SqlIncidentStore
from dispatcher.store import Changes, CommitRefused, IncidentFilter, StoreLocked, StoreUnavailable
from rules import RuleBook
from tests.conftest import HubRig

FIVE_WAY_TEAMS = ["traffic-police", "police-station", "market-supervision", "law-enforcement", "market-town-office"]
HOME = (28.9012, 118.8734)  # the five-way junction (any fixed point: duplicates are found by distance)


def five_way(report_id: str, **extra: Any) -> Report:
    return Report(
        report_id=report_id,
        category="traffic.congestion",
        description="market-day congestion at the five-way intersection",
        zone="five-way",
        **extra,
    )


class FailingCommits:
    """Wraps a store's commit: ``refuse(changes)`` names the exception to raise instead, or None to commit."""

    def __init__(self, hub: Hub, refuse: Callable[[Changes], Exception | None]) -> None:
        self.real = hub.store.commit
        self.refuse = refuse
        self.failed = 0

    async def __call__(self, changes: Changes) -> None:
        problem = self.refuse(changes)
        if problem is not None:
            self.failed += 1
            raise problem
        await self.real(changes)


def _poisoned(changes: Changes) -> Exception | None:
    touched = [i.report.report_id for i in changes.created]
    if any(r.startswith("poison") for r in touched):
        return CommitRefused("the database refused a value of the batch (DataError)")
    return None


async def test_one_refused_value_fails_only_its_own_command(rig: HubRig, monkeypatch: pytest.MonkeyPatch) -> None:
    commits = FailingCommits(rig.hub, _poisoned)
    monkeypatch.setattr(rig.hub.store, "commit", commits)
    ids = [f"good-{n}" for n in range(20)]
    ids[5:5] = ["poison-1"]
    ids[15:15] = ["poison-2"]

    outcomes = await asyncio.gather(
        *(rig.hub.report(five_way(r), rig.clock.now()) for r in ids), return_exceptions=True
    )

    refused = {r for r, o in zip(ids, outcomes, strict=True) if isinstance(o, BaseException)}
    assert refused == {"poison-1", "poison-2"}
    assert all(isinstance(o, CommitRefused) for o in outcomes if isinstance(o, BaseException))
    assert commits.failed >= 2  # the whole group failed first, then only the halves holding a poison
    _, count = await rig.hub.list_incidents(IncidentFilter(), limit=1, offset=0)
    assert count == 20
    assert [e.seq for e in await rig.hub.events_since(0, limit=100)] == list(range(1, 41))


async def test_a_value_the_database_cannot_hold_is_refused_alone(rig: HubRig) -> None:
    """No stand-in: a severity beyond every backend's integer column, among good reports."""
    reports = [five_way(f"r-{n}") for n in range(10)]
    reports.insert(4, five_way("too-severe", severity=2**63))  # JSON takes it; no INTEGER column does

    outcomes = await asyncio.gather(*(rig.hub.report(r, rig.clock.now()) for r in reports), return_exceptions=True)

    failures = [(r.report_id, o) for r, o in zip(reports, outcomes, strict=True) if isinstance(o, BaseException)]
    assert [r for r, _ in failures] == ["too-severe"]
    ((_, error),) = failures
    assert isinstance(error, CommitRefused)
    # The caller's message names no SQL and no parameters (no other reporter's data).
    assert "INSERT" not in str(error) and "five-way" not in str(error)
    assert rig.hub.running
    _, count = await rig.hub.list_incidents(IncidentFilter(), limit=1, offset=0)
    assert count == 10


@pytest.mark.parametrize("incident_id", [0, -(2**70), 2**31, 2**63, 2**80])
async def test_ids_no_incident_can_have_are_not_found_without_touching_the_batch(rig: HubRig, incident_id: int) -> None:
    outcomes = await asyncio.gather(
        rig.hub.report(five_way("before"), rig.clock.now()),
        rig.hub.move_unit(incident_id, "traffic-police", UnitAction.ACKNOWLEDGE, rig.clock.now()),
        rig.hub.finish(incident_id, IncidentAction.CANCEL, rig.clock.now()),
        rig.hub.report(five_way("after"), rig.clock.now()),
        return_exceptions=True,
    )

    assert [type(o).__name__ for o in outcomes] == [
        "ReportOutcome",
        "IncidentNotFound",
        "IncidentNotFound",
        "ReportOutcome",
    ]
    with pytest.raises(IncidentNotFound):
        await rig.hub.get(incident_id)
    assert await rig.hub.timeline(incident_id) == []


async def test_unreachable_store_fails_the_batch_with_an_error_of_its_own_for_each_caller(
    rig: HubRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = FailingCommits(rig.hub, lambda _: StoreUnavailable("the database could not be reached"))
    monkeypatch.setattr(rig.hub.store, "commit", commits)

    outcomes = await asyncio.gather(
        *(rig.hub.report(five_way(f"r-{n}"), rig.clock.now()) for n in range(5)), return_exceptions=True
    )

    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert len({id(o) for o in outcomes}) == 5  # never one exception object shared among callers
    assert commits.failed == 1  # an outage is not bisected: one try, then the callers retry
    monkeypatch.setattr(rig.hub.store, "commit", commits.real)
    assert (await rig.hub.report(five_way("r-0"), rig.clock.now())).created


async def test_a_failed_commit_loses_no_escalation_step(rig: HubRig, monkeypatch: pytest.MonkeyPatch) -> None:
    incident = (await rig.hub.report(five_way("chain"), rig.clock.now())).incident
    await rig.advance(timedelta(minutes=3, seconds=1))  # acks missed: the module lead hears at once
    await rig.advance(timedelta(minutes=29, seconds=58))  # whatever else fell due until just before the next step
    commits = FailingCommits(rig.hub, lambda _: StoreUnavailable("the database could not be reached"))
    monkeypatch.setattr(rig.hub.store, "commit", commits)

    rig.clock.advance(timedelta(seconds=2))  # the party secretary's step (30 minutes after the first) is due
    with pytest.raises(StoreUnavailable):
        await rig.hub.fire_due(rig.clock.now())
    monkeypatch.setattr(rig.hub.store, "commit", commits.real)
    fired = await rig.hub.fire_due(rig.clock.now())
    again = await rig.hub.fire_due(rig.clock.now())

    raised = [orjson.loads(e.payload) for e in await rig.hub.timeline(incident.id) if e.type == "EscalationRaised"]
    assert commits.failed == 1
    assert (fired, again) == (5, 0)
    assert sorted(s["step"] for s in raised if s["kind"] == "ack") == [1] * 5 + [2] * 5
    assert {s["to_title"] for s in raised if s["kind"] == "ack" and s["step"] == 2} == {"党委书记"}


async def test_the_writer_survives_a_failed_batch_reaching_the_alarm_job(
    database_url: str, bundled_rules: RuleBook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through APScheduler's own job path: it clears the frames of a job's exception's traceback."""
    rig = HubRig(database_url, bundled_rules, duplicate_radius_m=0.0)  # each report its own incident
    rig.clock = VirtualClock(datetime.now(UTC))  # the deadlines are in the real future: the alarm sleeps
    alarm = ApschedulerAlarm()
    rig.alarm = alarm  # type: ignore[assignment]
    rig.hub = rig._build()
    await rig.hub.start()
    try:
        incident = (await rig.hub.report(five_way("alarm"), rig.clock.now())).incident
        commits = FailingCommits(rig.hub, lambda _: CommitRefused("the database refused a value (DataError)"))
        monkeypatch.setattr(rig.hub.store, "commit", commits)
        ran: asyncio.Queue[JobExecutionEvent] = asyncio.Queue()
        alarm._scheduler.add_listener(ran.put_nowait, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)

        rig.clock.advance(timedelta(minutes=4))  # the acknowledgement deadlines have passed
        alarm.set(datetime.now(UTC))  # ring now, through the scheduler's job
        job = await asyncio.wait_for(ran.get(), 10)

        monkeypatch.setattr(rig.hub.store, "commit", commits.real)
        later = await asyncio.wait_for(rig.hub.report(five_way("after-the-alarm"), rig.clock.now()), 10)
        assert later.created
        assert commits.failed == 1 and job.exception is None  # the job itself saw no error
        assert await asyncio.wait_for(rig.hub.fire_due(rig.clock.now()), 10) == 5
        missed = [e for e in await rig.hub.timeline(incident.id) if e.type == "DeadlineMissed"]
        assert len(missed) == 5
    finally:
        await rig.hub.stop()


# -- retries are stored once, across restarts ------------------------------------------------------


async def test_a_retry_after_a_restart_does_not_join_its_own_incident(crew: HubRig) -> None:
    lat, lon = HOME
    first = await crew.hub.report(five_way("placed", lat=lat, lon=lon), crew.clock.now())
    joined = await crew.hub.report(five_way("placed-2", lat=lat, lon=lon + 0.0001), crew.clock.now())
    assert joined.joined and joined.incident.id == first.incident.id
    hub = await crew.restart()  # the in-memory window of recent report ids is empty now

    retries = [
        await hub.report(five_way("placed-2", lat=lat, lon=lon + 0.0001), crew.clock.now()),
        await hub.report(five_way("placed", lat=lat, lon=lon), crew.clock.now()),
    ]

    assert [(r.created, r.joined, r.incident.id) for r in retries] == [(False, False, first.incident.id)] * 2
    assert (await hub.get(first.incident.id)).report_count == 2
    _, count = await hub.list_incidents(IncidentFilter(), limit=1, offset=0)
    assert count == 1


async def test_a_retry_after_its_incident_closed_opens_nothing(crew: HubRig) -> None:
    lat, lon = HOME
    first = await crew.hub.report(five_way("closed-1", lat=lat, lon=lon), crew.clock.now())
    await crew.hub.report(five_way("closed-2", lat=lat, lon=lon), crew.clock.now())
    await crew.hub.finish(first.incident.id, IncidentAction.CANCEL, crew.clock.now(), reason="cleared")
    hub = await crew.restart()

    # One at a time, as phones retry (a batch holding an already stored id looks every id of it up).
    retries = [await hub.report(five_way(r, lat=lat, lon=lon), crew.clock.now()) for r in ("closed-2", "closed-1")]

    assert [(r.created, r.joined, r.incident.id) for r in retries] == [(False, False, first.incident.id)] * 2
    _, count = await hub.list_incidents(IncidentFilter(), limit=1, offset=0)
    assert count == 1


# -- one writer per database ------------------------------------------------------------------------


async def test_a_second_writer_on_the_same_database_is_refused_until_the_first_closes(database_url: str) -> None:
    first = SqlIncidentStore(database_url)
    second = SqlIncidentStore(database_url)
    await first.open()
    try:
        with pytest.raises(StoreLocked, match="one process per database"):
            await second.open()
    finally:
        await first.close()
    await second.open()  # the lock went with the first
    await second.close()


async def test_a_status_report_that_makes_no_event_is_stored_all_the_same(crew: HubRig) -> None:
    """An officer going off duty, or a position, changes no incident: it must still survive a restart."""
    await crew.hub.report_unit("ms-01", crew.clock.now(), status=UnitStatus.OFF_DUTY)
    await crew.hub.report_unit("ms-02", crew.clock.now(), lat=28.849, lon=118.9125)
    assert crew.hub.last_seq == 0  # no event was written
    hub = await crew.restart()

    assert hub.units["ms-01"].status is UnitStatus.OFF_DUTY
    assert (hub.units["ms-02"].lat, hub.units["ms-02"].lon) == (28.849, 118.9125)


async def test_reports_queued_together_answer_in_order_each_with_its_own_outcome(
    rig: HubRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rig.hub.store, "commit", FailingCommits(rig.hub, _poisoned))
    ids = ["a", "poison-1", "b", "a", "c"]  # "a" again: the same batch's first answers it

    outcomes = await rig.hub.report_many([five_way(r) for r in ids], rig.clock.now())

    assert [type(o).__name__ for o in outcomes] == ["ReportOutcome", "CommitRefused", *["ReportOutcome"] * 3]
    stored = [o.incident.report.report_id for o in outcomes if not isinstance(o, BaseException)]
    assert stored == ["a", "b", "a", "c"]
    assert await rig.hub.report_many([], rig.clock.now()) == []


async def test_a_caller_that_stops_waiting_for_its_reports_leaves_the_writer_whole(
    rig: HubRig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    real = rig.hub.store.commit

    async def held(changes: Changes) -> None:
        entered.set()
        await release.wait()
        await real(changes)

    monkeypatch.setattr(rig.hub.store, "commit", held)
    caller = asyncio.create_task(rig.hub.report_many([five_way(f"gone-{n}") for n in range(5)], rig.clock.now()))
    await entered.wait()  # the batch is applied and committing
    caller.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await rig.hub.settle()

    assert "writer batch failed" not in caplog.text
    _, count = await rig.hub.list_incidents(IncidentFilter(), limit=1, offset=0)
    assert count == 5  # committed before the caller left: stored, nobody told (a retry answers known)
    again = await rig.hub.report_many([five_way("gone-0"), five_way("new")], rig.clock.now())
    assert [not isinstance(o, BaseException) and o.created for o in again] == [False, True]
