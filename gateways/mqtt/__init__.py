"""Field devices over MQTT: the pure topic tree and codec, and the aiomqtt gateway around the hub.

See docs/mqtt.md for the topics and payloads.
"""

from gateways.mqtt.codec import AssignmentAck, DeadLetter, OfficerState, OfficerStatus, Refusal, ReportCommand, decode
from gateways.mqtt.gateway import BrokerAddress, GatewayConfig, MqttGateway, OnOfficerStatus
from gateways.mqtt.officers import LastKnownStatus
from gateways.mqtt.topics import Topics, default_prefix

__all__ = [
    "AssignmentAck",
    "BrokerAddress",
    "DeadLetter",
    "GatewayConfig",
    "LastKnownStatus",
    "MqttGateway",
    "OfficerState",
    "OfficerStatus",
    "OnOfficerStatus",
    "Refusal",
    "ReportCommand",
    "Topics",
    "decode",
    "default_prefix",
]
