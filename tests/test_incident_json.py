"""The answer's incident (``gateways.schemas.incident_json``): each assignment's own deadlines, shared or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from dispatcher.core.incidents import Incident, Report, move_unit, open_incident
from dispatcher.core.lifecycle import UnitAction
from gateways.schemas import IncidentPublic, incident_json
from rules import RoutingInput, RuleBook

AT = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)


def _five_way(rules: RuleBook) -> Incident:
    report = Report(report_id="r", category="traffic.congestion", description="jam", zone="five-way")
    incident, _ = open_incident(1, report, rules.route(RoutingInput(category=report.category, zone=report.zone)), AT)
    return incident


def _written(incident: Incident) -> dict[str, list[dict[str, object]]]:
    answer = orjson.loads(orjson.dumps(incident_json(incident)))
    IncidentPublic.model_validate(answer)
    return {a["team"]: a["deadlines"] for a in answer["assignments"]}


def _expected(incident: Incident) -> dict[str, list[dict[str, object]]]:
    def time(value: datetime | None) -> object:
        return None if value is None else orjson.loads(orjson.dumps(value))

    return {
        a.team: [
            {"kind": d.kind.value, "due_at": time(d.due_at), "state": d.state.value, "settled_at": time(d.settled_at)}
            for d in a.deadlines
        ]
        for a in incident.assignments
    }


def test_a_new_incidents_assignments_share_their_deadlines_and_each_is_written(bundled_rules: RuleBook) -> None:
    incident = _five_way(bundled_rules)
    assert len(incident.assignments) == 5
    assert len({id(a.deadlines) for a in incident.assignments}) == 1  # the case the shared list is for
    assert _written(incident) == _expected(incident)


def test_an_assignment_that_moved_is_written_with_its_own_deadlines(bundled_rules: RuleBook) -> None:
    incident = _five_way(bundled_rules)
    incident, _ = move_unit(incident, "traffic-police", UnitAction.ACKNOWLEDGE, AT + timedelta(minutes=1), None)
    written = _written(incident)
    assert written == _expected(incident)
    assert written["traffic-police"][0]["state"] == "met" and written["police-station"][0]["state"] == "pending"


def test_a_windows_text_is_formatted_once_and_as_before() -> None:
    """The closing loop's ``verify_within`` text comes from a cache by window: each window's own text."""
    from gateways.schemas import _window_text
    from rules.workdays import Window, WorkSpan, format_window

    windows: list[Window] = [
        timedelta(days=1),
        timedelta(hours=24),
        timedelta(hours=36),
        timedelta(minutes=90),
        timedelta(0),
        WorkSpan(3, "wd"),
        WorkSpan(3, "wh"),
        WorkSpan(1, "wd"),
    ]
    for window in windows + windows:
        assert _window_text(window) == format_window(window)
    assert [_window_text(w) for w in windows[:3]] == ["1d", "1d", "1d12h"]
    assert _window_text(WorkSpan(3, "wd")) != _window_text(WorkSpan(3, "wh"))


def test_the_encoded_answer_is_the_same_bytes_its_shared_parts_encoded_once(bundled_rules: RuleBook) -> None:
    """``encoded=True`` (the single door's answer): the escalation chain and the shared deadlines as fragments."""
    incident = _five_way(bundled_rules)
    moved, _ = move_unit(incident, "traffic-police", UnitAction.ACKNOWLEDGE, AT + timedelta(minutes=1), None)
    for case in (incident, moved):
        assert orjson.dumps(incident_json(case, encoded=True)) == orjson.dumps(incident_json(case))
    encoded = incident_json(incident, encoded=True)
    assert isinstance(encoded["escalation"], orjson.Fragment)
    assert encoded["escalation"] is incident_json(_five_way(bundled_rules), encoded=True)["escalation"]  # per chain
    shared = {id(a["deadlines"]) for a in encoded["assignments"]}
    assert len(shared) == 1 and isinstance(encoded["assignments"][0]["deadlines"], orjson.Fragment)
    assert isinstance(incident_json(incident)["escalation"], list)  # the plain data stays data
