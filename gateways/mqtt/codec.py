"""Bytes in, typed commands out; committed events in, notices out. Pure: no I/O, no clock.

:func:`decode` never raises: anything it cannot turn into a command comes back as a
:class:`DeadLetter` naming the reason. Reports use the HTTP intake schema
(:class:`gateways.schemas.IncidentCreate`) and its conversion to ``Report``, so a report means the
same on both gateways.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from dispatcher.core.incidents import Report
from dispatcher.core.lifecycle import UnitAction
from dispatcher.values import IncidentId, Latitude, Longitude, Text
from gateways.mqtt.topics import Inbound, Topics, valid_id
from gateways.schemas import IncidentCreate


class Refusal(StrEnum):
    """Why a payload went to the dead-letter topic (also the counters' keys)."""

    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    SCHEMA = "schema"
    UNKNOWN_TOPIC = "unknown_topic"
    UNKNOWN_ZONE = "unknown_zone"
    OFFICER_MISMATCH = "officer_mismatch"
    REFUSED = "refused"  # well-formed, but the hub refused it (illegal move, unknown incident or team)
    FORBIDDEN = "forbidden"  # well-formed, but the policy does not let this officer make this move


UNEXPECTED = "unexpected error: "  # the detail of a refusal no check foresaw (the tests assert there is none)


#: The problem code (gateways.problems, as the HTTP API answers) of each reason; a refused move says its own.
PROBLEM_CODES: dict[Refusal, str] = {
    Refusal.TOO_LARGE: "too-large",
    Refusal.NOT_JSON: "invalid",
    Refusal.SCHEMA: "invalid",
    Refusal.UNKNOWN_TOPIC: "not-found",
    Refusal.UNKNOWN_ZONE: "invalid",
    Refusal.OFFICER_MISMATCH: "forbidden",
    Refusal.REFUSED: "refused",
    Refusal.FORBIDDEN: "forbidden",
}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: Refusal
    detail: str
    topic: str
    #: The problem code; empty: the reason's (:data:`PROBLEM_CODES`).
    code: str = ""


class OfficerState(StrEnum):
    AVAILABLE = "available"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    OFF_DUTY = "off_duty"


@dataclass(frozen=True, slots=True)
class ReportCommand:
    report: Report


@dataclass(frozen=True, slots=True, kw_only=True)
class OfficerStatus:
    """An officer's phone says where the officer is and what they are doing.

    ``at`` is the device's own time when it sent one, else the time the dispatcher received it.
    """

    officer_id: str
    status: OfficerState
    lat: float
    lon: float
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AssignmentAck:
    """An officer moves their team's assignment on an incident (``actor`` is the officer)."""

    officer_id: str
    incident_id: int
    team: str
    action: UnitAction


Command = ReportCommand | OfficerStatus | AssignmentAck


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OfficerStatusIn(_In):
    officer_id: Text | None = Field(default=None, description="when given, must be the officer of the topic")
    status: Literal["available", "assigned", "en_route", "on_scene", "off_duty"]
    lat: Latitude
    lon: Longitude
    at: AwareDatetime | None = None


class AssignmentAckIn(_In):
    officer_id: Text | None = Field(default=None, description="when given, must be the officer of the topic")
    incident_id: IncidentId
    team: Text = Field(min_length=1, max_length=64)
    action: UnitAction

    @field_validator("action", mode="before")
    @classmethod
    def _dashes(cls, value: Any) -> Any:
        # Status words use underscores (en_route); the HTTP path uses dashes (en-route). Take both.
        return value.replace("_", "-") if isinstance(value, str) else value


def _schema_detail(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "payload"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _is_not_json(exc: ValidationError) -> bool:
    return any(e["type"] == "json_invalid" for e in exc.errors(include_url=False, include_input=False))


def decode(
    topics: Topics,
    topic: str,
    payload: bytes,
    *,
    received_at: datetime,
    max_bytes: int,
    has_zone: Callable[[str], bool],
) -> Command | DeadLetter:
    """Turn one incoming message into a command, or a :class:`DeadLetter`; never raises.

    ``received_at`` stands in for a status's time when the device gives none; ``has_zone`` is the
    rule table's zone check (an unknown zone is refused, as over HTTP).
    """
    try:
        return _decode(topics, topic, payload, received_at, max_bytes, has_zone)
    except Exception as exc:  # noqa: BLE001 - a device's bytes must never take the gateway down
        return DeadLetter(Refusal.SCHEMA, f"{UNEXPECTED}{type(exc).__name__}: {exc}"[:500], topic)


def _decode(
    topics: Topics,
    topic: str,
    payload: bytes,
    received_at: datetime,
    max_bytes: int,
    has_zone: Callable[[str], bool],
) -> Command | DeadLetter:
    route = topics.route(topic)
    if route is None:
        return DeadLetter(Refusal.UNKNOWN_TOPIC, "not a topic the dispatcher takes input on", topic)
    if len(payload) > max_bytes:
        return DeadLetter(Refusal.TOO_LARGE, f"{len(payload)} bytes, at most {max_bytes}", topic)
    try:
        if route.kind is Inbound.REPORT:
            body = IncidentCreate.model_validate_json(payload)
            if body.zone is not None and not has_zone(body.zone):
                return DeadLetter(Refusal.UNKNOWN_ZONE, f"unknown zone {body.zone!r}", topic)
            return ReportCommand(body.to_report())
        officer_id = route.officer_id
        assert officer_id is not None  # officer topics always name one
        if route.kind is Inbound.STATUS:
            status = OfficerStatusIn.model_validate_json(payload)
            if status.officer_id is not None and status.officer_id != officer_id:
                return _mismatch(status.officer_id, officer_id, topic)
            return OfficerStatus(
                officer_id=officer_id,
                status=OfficerState(status.status),
                lat=status.lat,
                lon=status.lon,
                at=status.at or received_at,
            )
        ack = AssignmentAckIn.model_validate_json(payload)
        if ack.officer_id is not None and ack.officer_id != officer_id:
            return _mismatch(ack.officer_id, officer_id, topic)
        return AssignmentAck(officer_id=officer_id, incident_id=ack.incident_id, team=ack.team, action=ack.action)
    except ValidationError as exc:
        if _is_not_json(exc):
            return DeadLetter(Refusal.NOT_JSON, "the payload is not a JSON document", topic)
        return DeadLetter(Refusal.SCHEMA, _schema_detail(exc), topic)


def _mismatch(claimed: str, topic_officer: str, topic: str) -> DeadLetter:
    return DeadLetter(
        Refusal.OFFICER_MISMATCH, f"payload names officer {claimed!r} on the topic of {topic_officer!r}", topic
    )


def dead_letter_payload(letter: DeadLetter, payload: bytes, *, at: datetime, keep_bytes: int = 1024) -> bytes:
    """The message published on ``deadletter``: reason, original topic, size and the payload's start."""
    return orjson.dumps(
        {
            "reason": letter.reason.value,
            "code": letter.code or PROBLEM_CODES[letter.reason],
            "detail": letter.detail,
            "topic": letter.topic,
            "size": len(payload),
            "payload": payload[:keep_bytes].decode("utf-8", errors="replace"),
            "truncated": len(payload) > keep_bytes,
            "at": at,
        }
    )


# -- notices: committed events → outgoing messages ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Notice:
    topic: str
    payload: bytes


# Events that change a team's part after dispatch: the team's consoles hear of each. (A waiting assignment is
# not sent to the team: nobody of it can go; the command room sees it on board/events and the board.)
_TEAM_CHANGES = frozenset(
    {"UnitMoved", "OfficerAssigned", "AssignmentReturned", "ExtensionRequested", "RequestDecided"}
)
# Closing the loop: facts about several teams at once, sent to each team they name (``teams``): a parking
# stopped their deadlines, a resumption started them again, a failed verification gave their parts back.
_TEAMS_CHANGES = frozenset({"IncidentParked", "IncidentResumed", "IncidentVerified"})
# Facts of the township's log a team cares about (rosters and rule tables go to board/events only).
_HANDOVERS = frozenset({"HandoverRecorded", "HandoverAcknowledged"})

# What a team's device needs to know about the incident it is sent to, from IncidentReported.
_SUMMARY_KEYS = ("report_id", "category", "description", "zones", "lat", "lon", "severity", "priority", "module")


class NoticeWriter:
    """Turns each committed event into the messages devices receive; every payload carries ``seq``.

    Keeps a bounded memory of recent ``IncidentReported`` summaries so a dispatch notice can say
    what the incident is (a notice re-sent after a restart may lack it: fields are then absent).
    Not thread-safe; one writer per outbox.
    """

    def __init__(self, topics: Topics, *, remember: int = 10_000) -> None:
        self.topics = topics
        self._summaries: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._remember = remember

    def notices(self, seq: int, type_name: str, data: Mapping[str, Any], payload: str | None = None) -> list[Notice]:
        """Every message for one event: ``board/events``, then the team and officer notices.

        ``payload``: the event's stored JSON text (``data`` as written); ``board/events`` then carries it as it
        is, spliced in, instead of encoding ``data`` again.
        """
        if payload is None:
            board = orjson.dumps({"seq": seq, "type": type_name, "data": data})
        else:
            board = f'{{"seq":{seq},"type":"{type_name}","data":{payload}}}'.encode()
        out = [Notice(self.topics.board_events, board)]
        incident_id = data.get("incident_id")
        if type_name == "IncidentReported" and isinstance(incident_id, int):
            self._summaries[incident_id] = {k: data.get(k) for k in _SUMMARY_KEYS}
            if len(self._summaries) > self._remember:
                self._summaries.popitem(last=False)
        head = {"seq": seq, "type": type_name, "incident_id": incident_id, "at": data.get("at")}
        if type_name == "UnitsDispatched":
            summary = self._summaries.get(incident_id) if isinstance(incident_id, int) else None
            for unit in data.get("units") or ():
                team = unit.get("team")
                if isinstance(team, str) and valid_id(team):
                    body = {**head, **unit, "incident_status": data.get("incident_status")}
                    if summary is not None:
                        body["incident"] = summary
                    encoded = orjson.dumps(body)
                    out.append(Notice(self.topics.team_dispatch(team), encoded))
                    officer = unit.get("officer")
                    if isinstance(officer, str) and valid_id(officer):  # the unit the roster chose
                        out.append(Notice(self.topics.officer_tasks(officer), encoded))
        elif type_name in _HANDOVERS:
            # The township's log: the team's devices, and the incoming duty lead's, hear of their handover.
            fact = orjson.dumps({"seq": seq, "type": type_name, **data})
            team = data.get("team")
            if isinstance(team, str) and valid_id(team):
                out.append(Notice(self.topics.team_dispatch(team), fact))
            lead = data.get("incoming_lead")
            if isinstance(lead, str) and valid_id(lead):
                out.append(Notice(self.topics.officer_tasks(lead), fact))
            return out
        elif type_name in _TEAM_CHANGES:
            team = data.get("team") or data.get("to_team")
            if isinstance(team, str) and valid_id(team):
                out.append(Notice(self.topics.team_dispatch(team), orjson.dumps({**head, **data})))
        elif type_name in _TEAMS_CHANGES:
            encoded = orjson.dumps({**head, **data})
            for team in data.get("teams") or ():
                if isinstance(team, str) and valid_id(team):
                    out.append(Notice(self.topics.team_dispatch(team), encoded))
        # An event naming an officer (a re-dispatch, a reassignment) also goes to that officer.
        officer = data.get("officer")
        if isinstance(officer, str) and valid_id(officer):
            out.append(Notice(self.topics.officer_tasks(officer), orjson.dumps({**head, **data})))
        return out
