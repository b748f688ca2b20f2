"""What the standard doors ask of the hub, on SQLite and PostgreSQL: public notes, the Open311 filters of the
incident list, finding a report by its id, and public notices (CAP) kept on the township's log."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from dispatcher.core import events as ev
from dispatcher.core.incidents import Report
from dispatcher.store import IncidentFilter
from tests.conftest import START, HubRig


def _report(report_id: str, **changes: object) -> Report:
    base = Report(report_id=report_id, category="traffic.congestion", description="堵", zone="five-way")
    return replace(base, **changes)  # type: ignore[arg-type]


def _notice(at_offset_s: int, msg_type: str = "Alert", referenced: tuple[int, ...] = ()) -> ev.AlertIssued:
    return ev.AlertIssued(
        at=START + timedelta(seconds=at_offset_s),
        identifier=f"ershili-{at_offset_s}",
        sender="command-room@ershili.dispatcher",
        status="Actual",
        msg_type=msg_type,
        referenced=referenced,
        incident_id=None,
        headline=f"notice {at_offset_s}",
        actor="op",
        document=f"<alert>{at_offset_s}</alert>",
    )


async def test_public_notes_and_the_open311_filters(rig: HubRig) -> None:
    hub = rig.hub
    citizen = (await hub.report(_report("c-1", reporter_kind="citizen"), START)).incident
    hotline = (await hub.report(_report("h-1", reporter_kind="hotline", category="traffic.accident"), START)).incident
    officer = (await hub.report(_report("o-1", reporter_kind="officer"), START + timedelta(hours=1))).incident
    await hub.note(citizen.id, "内部", START, "op")
    await hub.note(citizen.id, "已派交警", START, "op", public=True)
    await hub.note(citizen.id, "内部二", START, "op")
    await hub.note(officer.id, "公开但非市民", START, "op", public=True)

    assert await hub.public_notes([citizen.id, hotline.id]) == {citizen.id: "已派交警"}
    assert await hub.public_notes([]) == {}

    async def ids(**given: object) -> list[int]:
        found, _ = await hub.list_incidents(IncidentFilter(**given), limit=100, offset=0)  # type: ignore[arg-type]
        return sorted(i.id for i in found)

    assert await ids(reporter_kinds=("citizen", "hotline")) == [citizen.id, hotline.id]
    assert await ids(categories=("traffic.accident",)) == [hotline.id]
    assert await ids(ids=(citizen.id, officer.id)) == [citizen.id, officer.id]
    assert await ids(reported_from=START + timedelta(minutes=30)) == [officer.id]
    assert await ids(reported_before=START + timedelta(minutes=30)) == [citizen.id, hotline.id]
    assert await hub.find_report("h-1") == hotline.id and await hub.find_report("nobody") is None


async def test_notices_are_facts_on_the_log_kept_across_a_restart(rig: HubRig) -> None:
    hub = rig.hub
    first = await hub.issue_alert(_notice(0))
    await hub.report(_report("between"), START)
    update = await hub.issue_alert(_notice(60, "Update", (first,)))
    cancel = await hub.issue_alert(_notice(120, "Cancel", (update,)))
    assert first < update < cancel
    assert [i for i, _ in hub.alerts(limit=10)] == [cancel, update, first]
    assert [i for i, _ in hub.alerts(limit=2)] == [cancel, update]
    assert hub.cancelled_alerts() == {update}
    assert hub.alert(update) == _notice(60, "Update", (first,))
    assert hub.alert(first + 1) is None  # the report's events are no notices

    stored = await hub.store.events_of_type("AlertIssued", limit=10, newest_first=True)
    assert [e.seq for e in stored] == [cancel, update, first] and all(e.incident_id is None for e in stored)

    restarted = await rig.restart()
    assert restarted.alerts(limit=10) == [
        (cancel, _notice(120, "Cancel", (update,))),
        (update, _notice(60, "Update", (first,))),
        (first, _notice(0)),
    ]
    assert restarted.cancelled_alerts() == {update}
