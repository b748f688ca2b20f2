"""The quicker constructor of the core's frozen records (dispatcher/core/records.py): the same class, built faster."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import FrozenInstanceError, dataclass, field
from datetime import UTC, datetime

import orjson
import pytest

from dispatcher.core import events as ev
from dispatcher.core.incidents import Deadline, Incident
from dispatcher.core.records import quick_init, replace


@dataclass(frozen=True, slots=True, kw_only=True)
class _SlottedPlain:
    name: str
    size: int = 3
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class _DictPlain:
    name: str
    size: int = 3
    tags: tuple[str, ...] = ()


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class _SlottedQuick:
    name: str
    size: int = 3
    tags: tuple[str, ...] = ()


@quick_init
@dataclass(frozen=True, kw_only=True)
class _DictQuick:
    name: str
    size: int = 3
    tags: tuple[str, ...] = ()


@pytest.mark.parametrize(("plain", "quick"), [(_SlottedPlain, _SlottedQuick), (_DictPlain, _DictQuick)])
def test_a_quick_record_behaves_as_the_dataclass_it_was(plain: type, quick: type) -> None:
    for kwargs in ({"name": "a"}, {"name": "b", "size": 5}, {"name": "c", "tags": ("x", "y"), "size": 0}):
        before, after = plain(**kwargs), quick(**kwargs)
        assert dataclasses.astuple(after) == dataclasses.astuple(before)
        assert repr(after).replace(quick.__name__, plain.__name__) == repr(before)
        assert orjson.dumps(after) == orjson.dumps(before)
        assert after == quick(**kwargs) and hash(after) == hash(quick(**kwargs))
        assert after != quick(**{**kwargs, "size": 99})
        assert pickle.loads(pickle.dumps(after)) == after
        assert dataclasses.replace(after, size=7) == quick(**{**kwargs, "size": 7})
        assert replace(after, size=7, tags=("z",)) == dataclasses.replace(after, size=7, tags=("z",))
        assert replace(after) == after and type(replace(after)) is quick
        with pytest.raises(TypeError):
            replace(after, colour="red")
        with pytest.raises(FrozenInstanceError):
            after.size = 1
    with pytest.raises(TypeError):
        quick()  # a required field missing
    with pytest.raises(TypeError):
        quick(name="a", colour="red")  # a field it does not have
    with pytest.raises(TypeError):
        quick("a")  # keyword-only, as before


def test_the_records_of_the_core_are_quick_and_unchanged() -> None:
    at = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)
    deadline = Deadline(kind=ev.DeadlineKind.ACK, due_at=at)
    assert deadline.state.value == "pending" and deadline.settled_at is None  # the defaults still apply
    event = ev.OfficerAssigned(
        incident_id=1, at=at, team="t", officer="o", previous=None, reason="r", actor=None, ack_due=at
    )
    assert ev.decode("OfficerAssigned", orjson.loads(ev.to_json(event))) == event
    for cls in (Deadline, Incident, ev.IncidentReported, ev.UnitsDispatched, ev.DispatchedUnit, ev.RosterLoaded):
        assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
        assert cls.__init__.__globals__.get("_set") is object.__setattr__  # the quick one, not the dataclass's


def test_classes_it_cannot_copy_faithfully_are_refused_at_once() -> None:
    @dataclass(frozen=True, kw_only=True)
    class WithFactory:
        items: list[int] = field(default_factory=list)

    @dataclass(frozen=True, kw_only=True)
    class WithPostInit:
        size: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True)
    class Positional:
        size: int

    @dataclass(kw_only=True)
    class Mutable:
        size: int

    @dataclass(frozen=True, slots=True, kw_only=True)
    class SlottedBase:
        size: int

    @dataclass(frozen=True, kw_only=True)
    class Mixed(SlottedBase):
        name: str

    for cls in (WithFactory, WithPostInit, Positional, Mutable, Mixed, int):
        with pytest.raises(TypeError):
            quick_init(cls)
    # Records it was not given to are replaced by dataclasses.replace itself.
    assert replace(WithFactory(items=[1]), items=[2]) == WithFactory(items=[2])
