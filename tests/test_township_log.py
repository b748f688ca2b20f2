"""The township's log: handovers, their acknowledgement and rosters go through the writer with an event.

Each is a fact with no incident (``incident_id`` None), on the same log with the same ``seq`` as the
incidents' events, published to the boards and stored in the same transaction as the record it
describes; a replay or a second replica reads them from ``events_since``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import orjson
import pytest
import sqlalchemy as sa

from dispatcher.core import events as ev
from dispatcher.core.incidents import Report
from dispatcher.feed import FeedRecord
from dispatcher.hub import HandoverNotFound
from dispatcher.roster_file import BUNDLED_ROSTER, install_roster, read_roster
from dispatcher.shifts import ShiftWatch
from dispatcher.sql_store import SqlIncidentStore, roster_t
from dispatcher.store import StoredEvent
from tests.conftest import HubRig

TOWNSHIP_TYPES = set(ev.TOWNSHIP_EVENT_TYPES)


def _township(events: list[StoredEvent]) -> list[StoredEvent]:
    return [e for e in events if e.type in TOWNSHIP_TYPES]


async def test_a_handover_its_acknowledgement_and_a_roster_are_on_the_log_and_the_feed(crew: HubRig) -> None:
    hub = crew.hub
    board = hub.feed.subscribe()
    jam = Report(report_id="t-1", category="traffic.congestion", description="拥堵", lat=28.848, lon=118.912)
    incident = (await hub.report(jam, crew.clock.now())).incident
    shift = next(s for s in hub.roster.shifts if s.id == "tp-night")
    evening = crew.clock.advance(timedelta(hours=4))

    record = await ShiftWatch(hub).shift_began(shift, evening)
    assert record.id is not None
    later = crew.clock.advance(timedelta(minutes=2))
    taken = await hub.acknowledge_handover(record.id, "tp-05", later)
    source = read_roster(BUNDLED_ROSTER)
    edited = source.model_copy(update={"version": "ershili-roster+edit.1"})
    await install_roster(hub, edited, "admin")

    logged = await hub.events_since(0, limit=100)
    facts = _township(logged)
    assert [e.type for e in facts] == ["HandoverRecorded", "HandoverAcknowledged", "RosterLoaded"]
    assert all(e.incident_id is None for e in facts)
    seqs = [e.seq for e in logged]
    assert seqs == list(range(1, len(logged) + 1))  # one log, no gaps: the facts take their place in it
    assert [e.at for e in facts] == [evening, later, later]

    recorded = ev.decode_township(facts[0].type, orjson.loads(facts[0].payload))
    assert recorded == ev.HandoverRecorded(
        at=evening,
        handover_id=record.id,
        team="traffic-police",
        shift_id="tp-night",
        incoming_lead="tp-05",
        open_incidents=(incident.id,),
        running_deadlines=3,
        about_to_breach=3,
    )
    acknowledged = ev.decode_township(facts[1].type, orjson.loads(facts[1].payload))
    assert acknowledged == ev.HandoverAcknowledged(
        at=later, handover_id=record.id, team="traffic-police", actor="tp-05"
    )
    loaded = orjson.loads(facts[2].payload)
    assert (loaded["version"], loaded["previous"], loaded["actor"]) == (
        "ershili-roster+edit.1",
        source.version,
        "admin",
    )
    assert hub.roster.version == "ershili-roster+edit.1"
    assert (taken.acknowledged_by, taken.acknowledged_at) == ("tp-05", later)

    # A board sees the same facts, in the same order, with the same seqs.
    seen: list[FeedRecord] = []
    while (item := board.get_nowait()) is not None:
        assert isinstance(item, FeedRecord)
        seen.append(item)
    assert [r.seq for r in seen] == seqs
    assert [orjson.loads(r.message)["type"] for r in seen if r.incident_id is None] == [e.type for e in facts]

    # The roster row carries the injected clock's time, not the wall clock's.
    store = hub.store
    assert isinstance(store, SqlIncidentStore)
    async with store._engine.connect() as conn:
        row = (await conn.execute(sa.select(roster_t).order_by(roster_t.c.id.desc()).limit(1))).one()
    assert (row.version, row.loaded_at, row.loaded_by) == (
        "ershili-roster+edit.1",
        evening + timedelta(minutes=2),
        "admin",
    )


async def test_a_handover_is_taken_over_once_and_a_second_acknowledgement_records_nothing(crew: HubRig) -> None:
    hub = crew.hub
    shift = next(s for s in hub.roster.shifts if s.id == "ms-day")
    record = await ShiftWatch(hub).shift_began(shift, crew.clock.now())
    assert record.id is not None
    at = crew.clock.now()

    # Three clicks at once, then one more later: one acknowledgement, by whichever click the writer took first
    # (each reads the stored handover before it queues, so their order is not the order of the calls).
    answers = await asyncio.gather(*(hub.acknowledge_handover(record.id, f"ms-0{n}", at) for n in (1, 2, 3)))
    later = await hub.acknowledge_handover(record.id, "someone-else", at + timedelta(minutes=5))
    taken = {(a.acknowledged_by, a.acknowledged_at) for a in (*answers, later)}
    assert len(taken) == 1
    ((first, _),) = taken
    assert first in {"ms-01", "ms-02", "ms-03"} and taken == {(first, at)}
    assert [e.type for e in _township(await hub.events_since(0, limit=100))] == [
        "HandoverRecorded",
        "HandoverAcknowledged",
    ]

    # After a restart the stored acknowledgement answers; still nothing more is recorded.
    hub = await crew.restart()
    again = await hub.acknowledge_handover(record.id, "ms-02", at + timedelta(hours=1))
    assert (again.acknowledged_by, again.acknowledged_at) == (first, at)
    assert len(_township(await hub.events_since(0, limit=100))) == 2
    listed = await hub.store.handovers(team="market-supervision", limit=5)
    assert [(h.id, h.acknowledged_by) for h in listed] == [(record.id, first)]


async def test_an_unknown_handover_is_not_found_and_records_nothing(crew: HubRig) -> None:
    for handover_id in (0, 1, 999):
        with pytest.raises(HandoverNotFound):
            await crew.hub.acknowledge_handover(handover_id, "tp-05", crew.clock.now())
    assert await crew.hub.events_since(0, limit=10) == []


async def test_handover_ids_continue_after_a_restart(crew: HubRig) -> None:
    shift = next(s for s in crew.hub.roster.shifts if s.id == "tp-night")
    first = await ShiftWatch(crew.hub).shift_began(shift, crew.clock.now())
    hub = await crew.restart()
    second = await ShiftWatch(hub).shift_began(shift, crew.clock.advance(timedelta(days=1)))
    assert (first.id, second.id) == (1, 2)
    listed = await hub.store.handovers(team="traffic-police", limit=5)
    assert [h.id for h in listed] == [2, 1]
