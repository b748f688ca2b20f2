"""The CAP reader and the status rule of drills, without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.core.events import AlertIssued
from gateways.cap import decide_status, read_cap
from tests.cap_schema import cap_schema, oasis_examples


def test_the_oasis_examples_parse_back_in() -> None:
    schema = cap_schema()
    read = {}
    for path in oasis_examples():
        schema.validate(str(path))
        read[path.name] = read_cap(path.read_bytes())
    thunderstorm = read["v1dot2_appendix_adot2.xml"]
    assert thunderstorm["identifier"] == "KSTO1055887203" and thunderstorm["status"] == "Actual"
    [info] = thunderstorm["info"]
    assert info["category"] == ["Met"] and info["severity"] == "Severe" and info["language"] == "en-US"
    assert info["area"][0]["polygon"] and info["area"][0]["geocode"]
    assert thunderstorm["sent"].utcoffset() is not None
    updates = [r for r in read.values() if r["msg_type"] == "Update"]
    assert updates and all(len(ref) == 3 for u in updates for ref in u["references"])


@pytest.mark.parametrize(
    "document",
    [
        b"<not-cap/>",
        b"not xml at all",
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>',
    ],
)
def test_what_is_not_cap_is_refused(document: bytes) -> None:
    with pytest.raises(ValueError):
        read_cap(document)


def _issued(status: str) -> AlertIssued:
    return AlertIssued(
        at=datetime(2026, 6, 12, tzinfo=UTC),
        identifier="x",
        sender="s",
        status=status,
        msg_type="Alert",
        referenced=(),
        incident_id=None,
        headline="h",
        actor=None,
        document="<alert/>",
    )


@pytest.mark.parametrize(
    ("exercise", "incident_drill", "referenced", "expected"),
    [
        (None, False, [], "Actual"),
        (True, False, [], "Exercise"),
        (None, True, [], "Exercise"),
        (None, False, ["Exercise"], "Exercise"),
        (None, False, ["Actual"], "Actual"),
        (False, True, [], "a drill's notice is status Exercise"),
        (False, False, ["Exercise"], "a drill's notice is status Exercise"),
        (True, False, ["Actual"], "cannot be updated or cancelled by an exercise"),
        (None, False, ["Actual", "Exercise"], "mix"),
    ],
)
def test_a_drill_never_leaves_as_actual(
    exercise: bool | None, incident_drill: bool, referenced: list[str], expected: str
) -> None:
    earlier = [_issued(s) for s in referenced]
    if expected in ("Actual", "Exercise"):
        assert decide_status(exercise, incident_drill, earlier) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            decide_status(exercise, incident_drill, earlier)
