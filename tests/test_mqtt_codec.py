"""The MQTT codec and topic tree: pure, tested without a broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.core.events import AssignmentWaiting, to_json
from dispatcher.core.lifecycle import UnitAction
from dispatcher.feed import FeedRecord, feed_message
from gateways.mqtt.codec import (
    UNEXPECTED,
    AssignmentAck,
    DeadLetter,
    NoticeWriter,
    OfficerState,
    OfficerStatus,
    Refusal,
    ReportCommand,
    dead_letter_payload,
    decode,
)
from gateways.mqtt.topics import Inbound, Route, Topics, default_prefix
from gateways.schemas import IncidentCreate

T = Topics(default_prefix("ershili"))
NOW = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)
ZONES = {"five-way", "market"}


def run(topic: str, payload: Any, max_bytes: int = 64 * 1024) -> Any:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return decode(T, topic, raw, received_at=NOW, max_bytes=max_bytes, has_zone=ZONES.__contains__)


REPORT = {"report_id": "r-1", "category": "traffic.congestion", "zone": "five-way", "description": "jam"}


@pytest.mark.parametrize(
    ("topic", "route"),
    [
        ("township/ershili/reports", Route(Inbound.REPORT)),
        ("township/ershili/officers/o-17/status", Route(Inbound.STATUS, "o-17")),
        ("township/ershili/officers/o-17/acks", Route(Inbound.ACK, "o-17")),
        ("township/ershili/officers/o-17/tasks", None),
        ("township/ershili/officers//acks", None),
        ("township/other/reports", None),
        ("township/ershili/reports/extra", None),
    ],
)
def test_incoming_topics(topic: str, route: Route | None) -> None:
    assert T.route(topic) == route


def test_prefix_gets_its_slash_and_refuses_wildcards() -> None:
    assert Topics("a/b").reports == "a/b/reports"
    with pytest.raises(ValueError):
        Topics("a/+/b/")


def test_a_report_is_the_http_schema_converted_the_same_way() -> None:
    command = run(T.reports, REPORT)
    assert command == ReportCommand(IncidentCreate.model_validate(REPORT).to_report())


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (T.reports, b"\xff\xfe not json", Refusal.NOT_JSON),
        (T.reports, b"", Refusal.NOT_JSON),
        (T.reports, [1, 2], Refusal.SCHEMA),
        (T.reports, {**REPORT, "zone": None}, Refusal.SCHEMA),  # neither location nor zone
        (T.reports, {**REPORT, "colour": "red"}, Refusal.SCHEMA),  # unknown keys refused, as over HTTP
        (T.reports, {**REPORT, "zone": "moon"}, Refusal.UNKNOWN_ZONE),
        (T.reports, {**REPORT, "description": "x" * 70_000}, Refusal.TOO_LARGE),
        (T.officer_status("o-1"), {"status": "asleep", "lat": 28.8, "lon": 118.9}, Refusal.SCHEMA),
        (T.officer_status("o-1"), {"status": "available", "lat": 91, "lon": 118.9}, Refusal.SCHEMA),
        (
            T.officer_status("o-1"),
            {"officer_id": "o-2", "status": "available", "lat": 1, "lon": 1},
            Refusal.OFFICER_MISMATCH,
        ),
        (
            T.officer_acks("o-1"),
            {"officer_id": "o-2", "incident_id": 1, "team": "t", "action": "acknowledge"},
            Refusal.OFFICER_MISMATCH,
        ),
        (T.officer_acks("o-1"), {"incident_id": 0, "team": "t", "action": "acknowledge"}, Refusal.SCHEMA),
        # Values PostgreSQL refuses: once taken, the report was retried for ever instead of dead-lettered.
        (T.reports, {**REPORT, "description": "jam\x00"}, Refusal.SCHEMA),
        (T.officer_acks("o-1"), {"incident_id": 2**31, "team": "t", "action": "acknowledge"}, Refusal.SCHEMA),
        (T.officer_acks("o-1"), {"incident_id": 1, "team": "t", "action": "dance"}, Refusal.SCHEMA),
        ("township/ershili/board/events", REPORT, Refusal.UNKNOWN_TOPIC),
    ],
)
def test_refusals(topic: str, payload: Any, reason: Refusal) -> None:
    result = run(topic, payload)
    assert isinstance(result, DeadLetter)
    assert (result.reason, result.topic) == (reason, topic)


def test_size_limit_is_configurable() -> None:
    assert isinstance(run(T.reports, REPORT, max_bytes=10_000), ReportCommand)
    letter = run(T.reports, REPORT, max_bytes=20)
    assert isinstance(letter, DeadLetter) and letter.reason is Refusal.TOO_LARGE


def test_status_takes_the_device_time_or_the_arrival_time() -> None:
    sent = {"status": "en_route", "lat": 28.848, "lon": 118.912, "at": "2026-06-12T07:59:00+00:00"}
    assert run(T.officer_status("o-1"), sent) == OfficerStatus(
        officer_id="o-1",
        status=OfficerState.EN_ROUTE,
        lat=28.848,
        lon=118.912,
        at=datetime(2026, 6, 12, 7, 59, tzinfo=UTC),
    )
    without = run(T.officer_status("o-1"), {"status": "off_duty", "lat": 0, "lon": 0, "officer_id": "o-1"})
    assert isinstance(without, OfficerStatus) and without.at == NOW


@pytest.mark.parametrize(
    ("word", "action"),
    [
        ("acknowledge", UnitAction.ACKNOWLEDGE),
        ("en_route", UnitAction.DEPART),
        ("on-scene", UnitAction.ARRIVE),
        ("resolve", UnitAction.RESOLVE),
    ],
)
def test_acks_name_the_officer_of_the_topic(word: str, action: UnitAction) -> None:
    result = run(T.officer_acks("o-9"), {"incident_id": 4, "team": "traffic-police", "action": word})
    assert result == AssignmentAck(officer_id="o-9", incident_id=4, team="traffic-police", action=action)


@settings(max_examples=300, deadline=None)
@given(
    payload=st.binary(max_size=300),
    which=st.sampled_from([T.reports, T.officer_status("o"), T.officer_acks("o"), "x/y"]),
)
def test_arbitrary_bytes_never_raise(payload: bytes, which: str) -> None:
    result = run(which, payload)
    assert isinstance(result, DeadLetter | ReportCommand | OfficerStatus | AssignmentAck)
    # ...and no input reaches the last-resort net: every refusal is one the codec checks for.
    assert not (isinstance(result, DeadLetter) and result.detail.startswith(UNEXPECTED))


@settings(max_examples=200, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(
            [*REPORT, "location", "severity", "status", "lat", "lon", "incident_id", "team", "action", "officer_id"]
        ),
        st.none() | st.integers() | st.text(max_size=20) | st.floats(),
    ),
    topic=st.sampled_from([T.reports, T.officer_status("o"), T.officer_acks("o")]),
)
def test_arbitrary_json_objects_never_raise(body: dict[str, Any], topic: str) -> None:
    result = run(topic, json.dumps(body).encode())  # stdlib: big integers and NaN included
    assert isinstance(result, DeadLetter | ReportCommand | OfficerStatus | AssignmentAck)
    assert not (isinstance(result, DeadLetter) and result.detail.startswith(UNEXPECTED))


def test_dead_letter_payload_keeps_reason_topic_and_the_start_of_the_payload() -> None:
    letter = DeadLetter(Refusal.TOO_LARGE, "big", T.reports)
    body = orjson.loads(dead_letter_payload(letter, b"a" * 5000, at=NOW))
    assert body == {
        "reason": "too_large",
        "code": "too-large",
        "detail": "big",
        "topic": T.reports,
        "size": 5000,
        "payload": "a" * 1024,
        "truncated": True,
        "at": "2026-06-12T08:00:00+00:00",
    }


def test_notices_go_to_the_board_each_team_and_a_named_officer() -> None:
    writer = NoticeWriter(T)
    reported = {
        "incident_id": 7,
        "at": "t",
        "report_id": "r-7",
        "category": "traffic.congestion",
        "description": "jam",
        "zones": ["five-way"],
        "lat": None,
        "lon": None,
        "severity": None,
        "priority": 1,
        "module": "enforcement",
    }
    first = writer.notices(11, "IncidentReported", reported)
    assert [n.topic for n in first] == [T.board_events]
    assert orjson.loads(first[0].payload) == {"seq": 11, "type": "IncidentReported", "data": reported}

    units = [{"team": "traffic-police", "role": "lead"}, {"team": "police-station", "role": "support"}]
    dispatched = writer.notices(
        12, "UnitsDispatched", {"incident_id": 7, "at": "t", "units": units, "incident_status": "dispatched"}
    )
    assert [n.topic for n in dispatched] == [
        T.board_events,
        T.team_dispatch("traffic-police"),
        T.team_dispatch("police-station"),
    ]
    lead = orjson.loads(dispatched[1].payload)
    assert (lead["seq"], lead["team"], lead["role"], lead["incident"]["description"]) == (
        12,
        "traffic-police",
        "lead",
        "jam",
    )

    moved = writer.notices(
        13,
        "UnitMoved",
        {"incident_id": 7, "at": "t", "team": "traffic-police", "to_state": "acknowledged", "officer": "o-3"},
    )
    assert [n.topic for n in moved] == [T.board_events, T.team_dispatch("traffic-police"), T.officer_tasks("o-3")]
    assert all(orjson.loads(n.payload)["seq"] == 13 for n in moved)

    assert [n.topic for n in writer.notices(14, "NoteAdded", {"incident_id": 7, "at": "t", "text": "x"})] == [
        T.board_events
    ]


def test_the_officer_the_roster_chose_gets_the_task_and_a_reassignment_reaches_the_team() -> None:
    writer = NoticeWriter(T)
    units = [{"team": "traffic-police", "role": "lead", "officer": "tp-02"}, {"team": "court", "role": "support"}]
    dispatched = writer.notices(
        20, "UnitsDispatched", {"incident_id": 8, "at": "t", "units": units, "incident_status": "dispatched"}
    )
    assert [n.topic for n in dispatched] == [
        T.board_events,
        T.team_dispatch("traffic-police"),
        T.officer_tasks("tp-02"),
        T.team_dispatch("court"),
    ]
    assert dispatched[1].payload == dispatched[2].payload
    resent = writer.notices(
        21,
        "OfficerAssigned",
        {
            "incident_id": 8,
            "at": "t",
            "team": "traffic-police",
            "officer": "tp-01",
            "previous": "tp-02",
            "reason": "redispatch",
            "actor": None,
            "ack_due": "t2",
        },
    )
    assert [n.topic for n in resent] == [T.board_events, T.team_dispatch("traffic-police"), T.officer_tasks("tp-01")]


def test_a_handover_reaches_its_team_and_incoming_lead_and_a_roster_only_the_board() -> None:
    writer = NoticeWriter(T)
    recorded = {
        "at": "t",
        "handover_id": 4,
        "team": "traffic-police",
        "shift_id": "tp-night",
        "incoming_lead": "tp-05",
        "open_incidents": [7],
        "running_deadlines": 3,
        "about_to_breach": 1,
    }
    notices = writer.notices(30, "HandoverRecorded", recorded)
    assert [n.topic for n in notices] == [T.board_events, T.team_dispatch("traffic-police"), T.officer_tasks("tp-05")]
    body = orjson.loads(notices[1].payload)
    assert (body["seq"], body["type"], body["handover_id"], "incident_id" in body) == (30, "HandoverRecorded", 4, False)
    taken = writer.notices(
        31, "HandoverAcknowledged", {"at": "t", "handover_id": 4, "team": "traffic-police", "actor": "x"}
    )
    assert [n.topic for n in taken] == [T.board_events, T.team_dispatch("traffic-police")]
    roster = {"at": "t", "version": "v2", "previous": "v1", "officers": 3, "shifts": 1, "actor": "admin"}
    assert [n.topic for n in writer.notices(32, "RosterLoaded", roster)] == [T.board_events]


def test_closing_the_loop_reaches_the_teams_concerned() -> None:
    writer = NoticeWriter(T)
    asked = {"incident_id": 9, "at": "t", "request_id": 1, "team": "labour-office", "reason": "r", "due_at": "t"}
    assert [n.topic for n in writer.notices(40, "ExtensionRequested", asked)] == [
        T.board_events,
        T.team_dispatch("labour-office"),
    ]
    decided = {"incident_id": 9, "at": "t", "request_id": 1, "kind": "parking", "team": None, "state": "approved"}
    assert [n.topic for n in writer.notices(41, "RequestDecided", decided)] == [T.board_events]
    failed = {"incident_id": 9, "at": "t", "passed": False, "teams": ["labour-office", "court"], "rework": 1}
    notices = writer.notices(42, "IncidentVerified", failed)
    assert [n.topic for n in notices] == [T.board_events, T.team_dispatch("labour-office"), T.team_dispatch("court")]
    assert orjson.loads(notices[1].payload)["rework"] == 1
    parked = {"incident_id": 9, "at": "t", "request_id": 2, "review_at": "t", "teams": ["court", "../x"]}
    assert [n.topic for n in writer.notices(43, "IncidentParked", parked)] == [T.board_events, T.team_dispatch("court")]


def test_board_events_carries_the_stored_payload_as_written_and_the_same_json_as_from_data() -> None:
    at = datetime(2026, 6, 12, tzinfo=UTC)
    waiting = AssignmentWaiting(
        incident_id=7, at=at, teams=("court", "police"), alerted_name="王", alerted_title="副镇长"
    )
    payload = to_json(waiting)
    record = FeedRecord(12, 7, feed_message(12, "AssignmentWaiting", payload))
    assert (record.type_name(), record.payload(), record.encoded()) == (
        "AssignmentWaiting",
        payload,
        record.message.encode(),
    )
    data = orjson.loads(payload)
    spliced = NoticeWriter(T).notices(12, "AssignmentWaiting", data, payload)
    rebuilt = NoticeWriter(T).notices(12, "AssignmentWaiting", data)
    assert spliced[0].payload == b'{"seq":12,"type":"AssignmentWaiting","data":' + payload.encode() + b"}"
    assert [(n.topic, orjson.loads(n.payload)) for n in spliced] == [
        (n.topic, orjson.loads(n.payload)) for n in rebuilt
    ]
    assert [n.topic for n in spliced] == [T.board_events]  # nobody of those teams can go: their consoles hear nothing
