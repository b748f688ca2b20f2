"""Two writer batches in flight: a batch of reports applied while the batch before it is being committed.

The writer applies the next batch of new reports on top of the one committing (``Batch.prior``). These
tests make the batches small (``batch_max=2``) and queue every report before the writer runs, so that the
overlap happens on every batch (checked by the hub's counter), and compare the outcome with the same
reports taken in one batch: the same incidents, joins, retries and chosen officers, whatever the split.
When the batch in flight fails, the one applied beside it is applied again on what was really committed.
Run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from dispatcher.core.incidents import Report
from dispatcher.core.roster import Roster
from dispatcher.hub import ReportOutcome
from dispatcher.store import Changes, CommitRefused, IncidentFilter, StoreUnavailable
from rules import RuleBook
from tests.conftest import HubRig, drop_postgres_database, fresh_postgres_database
from tests.test_writer_faults import FailingCommits

HOME = (28.9012, 118.8734)
AWAY = (28.9200, 118.9000)  # about 3 km from HOME: never a duplicate of it


def report(report_id: str, place: tuple[float, float], category: str = "traffic.congestion") -> Report:
    return Report(
        report_id=report_id,
        category=category,
        description=f"{category} seen by a field officer",
        lat=place[0],
        lon=place[1],
    )


#: A morning's reports in arrival order: repeats of a place (joins), retries of a report id (known),
#: several teams' matters (officers chosen by load). With two reports a batch, every pair is applied
#: while the pair before it commits, so each kind of reading crosses a batch boundary somewhere.
MORNING = [
    report("jam-1", HOME),
    report("stall-1", AWAY, "market.unlicensed_vendor"),
    report("jam-2", HOME),  # joins jam-1's incident (in the batch committing)
    report("jam-1", HOME),  # a retry of jam-1 (taken in the batch before): known
    report("stall-2", AWAY, "market.unlicensed_vendor"),  # joins stall-1's
    report("noise-1", HOME, "environment.noise"),
    report("jam-3", AWAY),  # another place: a new incident, an officer chosen by the load so far
    report("noise-1", HOME, "environment.noise"),  # a retry within the batch that follows its own
    report("jam-5", (28.95, 118.95)),  # a new traffic matter: an officer is chosen...
    report("stall-3", HOME, "market.unlicensed_vendor"),
    report("jam-6", (28.97, 118.97)),  # ...and here another, with the first one's officer busy (batch before)
    report("jam-4", AWAY),  # joins jam-3's
]


def summary(outcomes: Sequence[ReportOutcome | BaseException]) -> list[Any]:
    """What each report came to: its incident, how, and who was sent (by team)."""
    out: list[Any] = []
    for outcome in outcomes:
        assert isinstance(outcome, ReportOutcome), outcome
        incident = outcome.incident
        officers = sorted((a.team, a.officer) for a in incident.assignments)
        out.append((incident.id, outcome.created, outcome.joined, officers))
    return out


async def started(rig: HubRig) -> HubRig:
    await rig.hub.start()
    return rig


@pytest.fixture
async def pairs(database_url: str, bundled_rules: RuleBook, bundled_roster: Roster) -> AsyncIterator[HubRig]:
    """The ``crew`` hub (roster, duplicate joining on) with batches of two commands."""
    rig = await started(HubRig(database_url, bundled_rules, bundled_roster, duplicate_radius_m=200.0, batch_max=2))
    try:
        yield rig
    finally:
        await rig.hub.stop()


@pytest.fixture
async def whole(
    database_url: str, tmp_path: Path, bundled_rules: RuleBook, bundled_roster: Roster
) -> AsyncIterator[HubRig]:
    """The ``crew`` hub on a second database of the same backend: every report of a call in one batch."""
    if database_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'whole.db'}"
    else:
        url = await fresh_postgres_database()
    rig = await started(HubRig(url, bundled_rules, bundled_roster, duplicate_radius_m=200.0))
    try:
        yield rig
    finally:
        await rig.hub.stop()
        if not url.startswith("sqlite"):
            await drop_postgres_database(url)


async def test_reports_applied_beside_a_commit_come_out_as_in_one_batch(pairs: HubRig, whole: HubRig) -> None:
    split = await pairs.hub.report_many(MORNING, pairs.clock.now())
    one = await whole.hub.report_many(MORNING, whole.clock.now())

    assert pairs.hub.stats.batches_applied["overlapped"] == len(MORNING) // 2 - 1  # every pair but the first
    assert whole.hub.stats.batches_applied["overlapped"] == 0
    assert summary(split) == summary(one)
    kinds = [(o.created, o.joined) for o in split if isinstance(o, ReportOutcome)]
    assert kinds.count((False, True)) == 3 and kinds.count((False, False)) == 2  # the joins and the retries
    # Officers were chosen by the load the earlier batches left, not twice the same idle one.
    assert [e.seq for e in await pairs.hub.events_since(0, limit=1000)] == list(range(1, pairs.hub.last_seq + 1))
    assert pairs.hub.last_seq == whole.hub.last_seq
    # What the overlapped writer committed is what a restart reads back.
    hub = await pairs.restart()
    for outcome in split:
        assert isinstance(outcome, ReportOutcome)
        assert (await hub.get(outcome.incident.id)).version >= outcome.incident.version


def _refusing(report_id: str, problem: Callable[[], Exception]) -> Callable[[Changes], Exception | None]:
    def refuse(changes: Changes) -> Exception | None:
        return problem() if any(i.report.report_id == report_id for i in changes.created) else None

    return refuse


async def test_a_batch_applied_beside_one_that_is_refused_is_applied_again_on_what_was_committed(
    pairs: HubRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = FailingCommits(pairs.hub, _refusing("poison", lambda: CommitRefused("the database refused a value")))
    monkeypatch.setattr(pairs.hub.store, "commit", commits)
    # "poison" opens an incident at HOME in the first batch; "jam-2", in the second, was applied beside it
    # and joined that incident, which is never committed: applied again, it opens one of its own.
    reports = [report("poison", HOME), report("jam-1", AWAY), report("jam-2", HOME), report("jam-3", AWAY)]

    outcomes = await pairs.hub.report_many(reports, pairs.clock.now())

    assert isinstance(outcomes[0], CommitRefused)
    jam_1, jam_2, jam_3 = outcomes[1:]
    assert isinstance(jam_1, ReportOutcome) and isinstance(jam_2, ReportOutcome) and isinstance(jam_3, ReportOutcome)
    assert pairs.hub.stats.batches_applied["again"] == 1
    assert jam_2.created and not jam_2.joined
    assert jam_3.joined and jam_3.incident.id == jam_1.incident.id
    assert len({jam_1.incident.id, jam_2.incident.id}) == 2
    hub = await pairs.restart()
    _, count = await hub.list_incidents(IncidentFilter(), limit=10, offset=0)
    assert count == 2
    assert (await hub.get(jam_2.incident.id)).report.report_id == "jam-2"
    assert [e.seq for e in await hub.events_since(0, limit=1000)] == list(range(1, hub.last_seq + 1))


async def test_an_outage_under_the_batch_in_flight_fails_its_callers_and_not_the_next(
    pairs: HubRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = FailingCommits(
        pairs.hub, _refusing("lost-1", lambda: StoreUnavailable("the database could not be reached"))
    )
    monkeypatch.setattr(pairs.hub.store, "commit", commits)
    reports = [report("lost-1", HOME), report("lost-2", AWAY), report("kept-1", HOME), report("kept-2", AWAY)]

    outcomes = await pairs.hub.report_many(reports, pairs.clock.now())

    assert [type(o).__name__ for o in outcomes] == [
        "StoreUnavailable",
        "StoreUnavailable",
        "ReportOutcome",
        "ReportOutcome",
    ]
    assert commits.failed == 1
    kept = [o for o in outcomes if isinstance(o, ReportOutcome)]
    assert all(o.created for o in kept)  # neither joined an incident of the batch that was lost
    monkeypatch.setattr(pairs.hub.store, "commit", commits.real)
    retried = await pairs.hub.report_many(reports[:2], pairs.clock.now())
    assert [isinstance(o, ReportOutcome) and o.joined for o in retried] == [True, True]


async def test_retries_older_than_memory_are_found_in_the_store_with_batches_in_flight(
    database_url: str, bundled_rules: RuleBook
) -> None:
    """Memory keeps one report id: each retry's batch fails on the store's key and is redone with a lookup."""
    rig = await started(HubRig(database_url, bundled_rules, duplicate_radius_m=0.0, batch_max=2, recent_reports=1))
    try:
        first = [report(f"r-{n}", (28.9 + n / 100, 118.9)) for n in range(4)]
        made = await rig.hub.report_many(first, rig.clock.now())
        again = await rig.hub.report_many([*first, report("r-4", HOME), report("r-5", AWAY)], rig.clock.now())

        assert all(isinstance(o, ReportOutcome) for o in again)
        assert [o.created for o in again if isinstance(o, ReportOutcome)] == [False] * 4 + [True] * 2
        assert [o.incident.id for o in again[:4] if isinstance(o, ReportOutcome)] == [
            o.incident.id for o in made if isinstance(o, ReportOutcome)
        ]
        assert rig.hub.stats.batches_applied["overlapped"] >= 1
        _, count = await rig.hub.list_incidents(IncidentFilter(), limit=1, offset=0)
        assert count == 6
        assert [e.seq for e in await rig.hub.events_since(0, limit=1000)] == list(range(1, rig.hub.last_seq + 1))
    finally:
        await rig.hub.stop()


async def test_a_long_batch_applied_beside_a_commit_gives_the_loop_turns_and_the_same_outcome(
    database_url: str, tmp_path: Path, bundled_rules: RuleBook, bundled_roster: Roster, whole: HubRig
) -> None:
    """Batches of 150 (applied 64 commands at a time between turns of the loop) against one of 450."""
    rig = await started(HubRig(database_url, bundled_rules, bundled_roster, duplicate_radius_m=200.0, batch_max=150))
    try:
        categories = ["traffic.congestion", "market.unlicensed_vendor", "environment.noise"]
        # Every seventh report repeats a place of the ten before it (a join), every eleventh an earlier id.
        reports: list[Report] = []
        for n in range(450):
            if n % 11 == 10:
                reports.append(reports[n - 7])
                continue
            spot = n - n % 7 if n % 7 == 6 else n
            reports.append(report(f"m-{n}", (28.8 + spot * 0.001, 118.8 + spot * 0.0013), categories[spot % 3]))
        split = await rig.hub.report_many(reports, rig.clock.now())
        one = await whole.hub.report_many(reports, whole.clock.now())

        assert rig.hub.stats.batches_applied["overlapped"] == 2
        assert summary(split) == summary(one)
        kinds = {(o.created, o.joined) for o in split if isinstance(o, ReportOutcome)}
        assert kinds == {(True, False), (False, True), (False, False)}  # new, joined, known
        assert [e.seq for e in await rig.hub.events_since(0, limit=10_000)] == list(range(1, rig.hub.last_seq + 1))
    finally:
        await rig.hub.stop()
