"""Events survive encoding to JSON and back unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from dispatcher.core import events
from dispatcher.core.events import (
    EVENT_TYPES,
    AssignmentWaiting,
    DeadlineKind,
    DeadlineMissed,
    DispatchedUnit,
    EscalationRaised,
    Event,
    UnitMoved,
    UnitsDispatched,
    decode,
    encode,
    to_json,
    waiting_teams,
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
    # (slots=True makes a second class object per event, so compare by name)
    assert set(EVENT_TYPES) == {cls.__name__ for cls in Event.__subclasses__()}


def test_events_stored_before_a_field_was_added_still_decode() -> None:
    # An EscalationRaised written before the chain's steps were numbered, and a unit without officer.
    old = decode(
        "EscalationRaised",
        {
            "incident_id": 1,
            "at": AT.isoformat(),
            "team": "t",
            "kind": "ack",
            "level": "module_lead",
            "to_name": "n",
            "to_title": "x",
        },
    )
    assert isinstance(old, EscalationRaised) and old.step == 1 and old.actor is None
    unit = decode(
        "UnitsDispatched",
        {
            "incident_id": 1,
            "at": AT.isoformat(),
            "incident_status": "dispatched",
            "units": [{"team": "t", "role": "lead", "ack_due": None, "arrive_due": None, "resolve_due": None}],
        },
    )
    assert isinstance(unit, UnitsDispatched) and unit.units[0].officer is None


def test_a_waiting_event_logged_per_team_decodes_as_one_naming_its_team() -> None:
    # The shape stored before a report's waiting teams shared one event: one ``team`` each.
    old = {"incident_id": 7, "at": AT.isoformat(), "team": "court", "alerted_name": "王", "alerted_title": "副镇长"}
    assert decode("AssignmentWaiting", old) == AssignmentWaiting(
        incident_id=7, at=AT, teams=("court",), alerted_name="王", alerted_title="副镇长"
    )
    new = AssignmentWaiting(incident_id=7, at=AT, teams=("court", "police"), alerted_name="王", alerted_title="副镇长")
    assert roundtrip(new) == new
    assert waiting_teams(orjson.dumps(old)) == ("court",)
    assert waiting_teams(to_json(new)) == ("court", "police")


def test_to_json_writes_what_encode_gives() -> None:
    event = DeadlineMissed(
        incident_id=2, at=AT, team="t", kind=DeadlineKind.ARRIVE, due_at=AT, late_by=timedelta(seconds=61.5)
    )
    assert orjson.loads(to_json(event)) == encode(event)
    assert decode("DeadlineMissed", orjson.loads(to_json(event))) == event


def test_every_event_is_in_the_architecture_table() -> None:
    """docs/architecture.md lists every fact the log can hold: a new event without a row fails here."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    kinds = [
        name
        for name, cls in vars(events).items()
        if isinstance(cls, type)
        and issubclass(cls, (events.Event, events.TownshipEvent))
        and cls not in (events.Event, events.TownshipEvent)
    ]
    assert len(kinds) > 20
    assert [k for k in kinds if f"`{k}`" not in doc] == []
