"""The gateway's topic tree under one prefix (default ``township/<township-id>/``). Pure: no I/O.

In (devices → dispatcher): ``reports``, ``officers/<officer-id>/status``, ``officers/<officer-id>/acks``.
Out (dispatcher → devices): ``teams/<team-id>/dispatch``, ``officers/<officer-id>/tasks``,
``board/events``, ``deadletter``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# An officer or team id as it may appear in one topic level: printable ASCII without MQTT's
# wildcards and separator, so it can never widen a subscription or an ACL pattern.
_ID = re.compile(r"^[\x21-\x7e]{1,64}$")
_FORBIDDEN_IN_ID = frozenset("+#/")


def valid_id(value: str) -> bool:
    """Whether ``value`` can be one topic level naming an officer or a team."""
    return bool(_ID.match(value)) and not (_FORBIDDEN_IN_ID & set(value))


class Inbound(StrEnum):
    """What an incoming topic carries."""

    REPORT = "report"
    STATUS = "status"
    ACK = "ack"


@dataclass(frozen=True, slots=True)
class Route:
    """An incoming topic, understood: its kind and, for officer topics, the officer it names."""

    kind: Inbound
    officer_id: str | None = None


def default_prefix(township_id: str) -> str:
    return f"township/{township_id}/"


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic name the gateway uses. ``prefix`` ends with ``/`` (added when missing)."""

    prefix: str

    def __post_init__(self) -> None:
        if not self.prefix.endswith("/"):
            object.__setattr__(self, "prefix", self.prefix + "/")
        if "+" in self.prefix or "#" in self.prefix:
            raise ValueError(f"an MQTT topic prefix cannot hold wildcards: {self.prefix!r}")

    # -- in --------------------------------------------------------------------------------

    @property
    def reports(self) -> str:
        return f"{self.prefix}reports"

    def officer_status(self, officer_id: str) -> str:
        return f"{self.prefix}officers/{officer_id}/status"

    def officer_acks(self, officer_id: str) -> str:
        return f"{self.prefix}officers/{officer_id}/acks"

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The filters the dispatcher subscribes to (QoS 1 each)."""
        return (self.reports, f"{self.prefix}officers/+/status", f"{self.prefix}officers/+/acks")

    def route(self, topic: str) -> Route | None:
        """The kind of an incoming topic, or None when it is not one of the gateway's inputs."""
        if not topic.startswith(self.prefix):
            return None
        rest = topic[len(self.prefix) :]
        if rest == "reports":
            return Route(Inbound.REPORT)
        parts = rest.split("/")
        if len(parts) == 3 and parts[0] == "officers" and valid_id(parts[1]):
            if parts[2] == "status":
                return Route(Inbound.STATUS, parts[1])
            if parts[2] == "acks":
                return Route(Inbound.ACK, parts[1])
        return None

    # -- out -------------------------------------------------------------------------------

    def team_dispatch(self, team: str) -> str:
        return f"{self.prefix}teams/{team}/dispatch"

    def officer_tasks(self, officer_id: str) -> str:
        return f"{self.prefix}officers/{officer_id}/tasks"

    @property
    def board_events(self) -> str:
        return f"{self.prefix}board/events"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}deadletter"
