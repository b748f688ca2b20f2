"""Which alarms are open: the state every board shares, folded from the event log.

An alarm is raised by a ``DeadlineMissed`` (a promise was not kept) or by an ``EscalationRaised``
(a matter reached a leader). The escalation that follows a miss in the same step (same team and
kind) joins the miss's alarm instead of raising a second one, so an operator acknowledges one alarm
per broken promise. An alarm is identified by the ``seq`` of the event that raised it; it stays
open until an ``AlarmAcknowledged`` names that seq, until an ``AlarmsResolved`` says its team kept the
promise after all (it resolves by itself: the team acknowledged late, arrived, resolved), or until its
incident is closed, cancelled or merged. An operator's manual escalation (kind ``manual``) never resolves
by itself: it needs a person.

The board's JavaScript folds the live events with the same rules (``gateways/static/board.js``);
this index gives a connecting board the alarms open at its snapshot. Pure data, no I/O; the hub
feeds it after each commit, on its event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from dispatcher.store import StoredEvent

RAISING = frozenset({"DeadlineMissed", "EscalationRaised"})
_FINISHING = frozenset({"IncidentClosed", "IncidentCancelled", "IncidentMerged"})
_WATCHED = RAISING | _FINISHING | {"AlarmAcknowledged", "AlarmsResolved"}
#: The event types that open or close the alarms of an incident that is still open.
ALARM_EVENTS = RAISING | {"AlarmAcknowledged", "AlarmsResolved"}
_ESCALATION_FIELDS = ("level", "to_name", "to_title")


class OpenAlarms:
    """The open alarms of open incidents, and the ones already acknowledged (for idempotent acks)."""

    def __init__(self) -> None:
        self._open: dict[int, dict[int, dict[str, Any]]] = {}
        self._acked: dict[int, set[int]] = {}

    def __len__(self) -> int:
        return sum(len(alarms) for alarms in self._open.values())

    def apply(self, events: Iterable[StoredEvent]) -> None:
        """Fold committed events, in ``seq`` order, into the index (others are skipped cheaply)."""
        for event in events:
            if event.type in _WATCHED and event.incident_id is not None:
                self.fold(event.seq, event.type, event.incident_id, orjson.loads(event.payload))

    def fold(self, seq: int, type_name: str, incident_id: int, data: dict[str, Any]) -> None:
        if type_name in _FINISHING:
            self._open.pop(incident_id, None)
            self._acked.pop(incident_id, None)
        elif type_name == "AlarmAcknowledged":
            alarm_seq = int(data["alarm_seq"])
            alarms = self._open.get(incident_id)
            if alarms is not None and alarms.pop(alarm_seq, None) is not None and not alarms:
                del self._open[incident_id]
            self._acked.setdefault(incident_id, set()).add(alarm_seq)
        elif type_name == "AlarmsResolved":
            alarms = self._open.get(incident_id)
            if alarms is None:
                return
            kinds = set(data.get("kinds") or ())
            for seq_open in [
                s for s, a in alarms.items() if a.get("team") == data.get("team") and a.get("kind") in kinds
            ]:
                del alarms[seq_open]
            if not alarms:
                del self._open[incident_id]
        elif type_name in RAISING:
            alarms = self._open.setdefault(incident_id, {})
            if type_name == "EscalationRaised":
                for alarm in alarms.values():
                    if (
                        alarm["type"] == "DeadlineMissed"
                        and alarm.get("level") is None
                        and alarm["team"] == data.get("team")
                        and alarm["kind"] == data.get("kind")
                    ):
                        alarm.update({k: data.get(k) for k in _ESCALATION_FIELDS})
                        return
            alarm = {"seq": seq, "type": type_name, **data}
            for key in _ESCALATION_FIELDS:
                alarm.setdefault(key, None)
            alarms[seq] = alarm

    def is_open(self, incident_id: int, alarm_seq: int) -> bool:
        return alarm_seq in self._open.get(incident_id, {})

    def was_acknowledged(self, incident_id: int, alarm_seq: int) -> bool:
        return alarm_seq in self._acked.get(incident_id, ())

    def snapshot(self) -> list[dict[str, Any]]:
        """Every open alarm as plain data (the board snapshot's ``alarms``), oldest first."""
        return sorted((dict(a) for alarms in self._open.values() for a in alarms.values()), key=lambda a: int(a["seq"]))
