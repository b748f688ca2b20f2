"""Events survive encoding to JSON and back unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from dispatcher.core.events import (
    EVENT_TYPES,
    DeadlineKind,
    DeadlineMissed,
    DispatchedUnit,
    Event,
    UnitMoved,
    UnitsDispatched,
    decode,
    encode,
    to_json,
)
from dispatcher.core.lifecycle import AssignmentState, IncidentStatus, Role

AT = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)


def roundtrip(event: Event) -> Event:
    return decode(type(event).__name__, orjson.loads(orjson.dumps(encode(event))))


def test_nested_units_and_enums_roundtrip() -> None:
    event = UnitsDispatched(
        incident_id=1,
        at=AT,
        units=(DispatchedUnit(team="court", role=Role.SUPPORT, ack_due=AT, arrive_due=None, resolve_due=AT),),
        incident_status=IncidentStatus.DISPATCHED,
    )
    assert roundtrip(event) == event


def test_durations_and_states_roundtrip() -> None:
    for event in (
        DeadlineMissed(incident_id=2, at=AT, team="t", kind=DeadlineKind.ACK, due_at=AT, late_by=timedelta(seconds=61)),
        UnitMoved(
            incident_id=3,
            at=AT,
            team="t",
            from_state=AssignmentState.DISPATCHED,
            to_state=AssignmentState.ACKNOWLEDGED,
            actor=None,
            incident_status=IncidentStatus.ACKNOWLEDGED,
        ),
    ):
        assert roundtrip(event) == event


def test_every_event_type_is_registered_by_its_class_name() -> None:
    assert all(name == cls.__name__ for name, cls in EVENT_TYPES.items())
    assert len(EVENT_TYPES) == 9  # the eight of the core, and AlarmAcknowledged (the board)


def test_to_json_writes_what_encode_gives() -> None:
    event = DeadlineMissed(
        incident_id=2, at=AT, team="t", kind=DeadlineKind.ARRIVE, due_at=AT, late_by=timedelta(seconds=61.5)
    )
    assert orjson.loads(to_json(event)) == encode(event)
    assert decode("DeadlineMissed", orjson.loads(to_json(event))) == event
