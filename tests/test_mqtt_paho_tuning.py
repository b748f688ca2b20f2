"""gateways/mqtt/paho_tuning.py against the installed paho-mqtt: decoding gives what paho's own classes give,
and a buffered client reads every packet its buffer holds, whole or in pieces. No broker: packets go through a
socket pair."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import paho.mqtt as paho_mqtt
import paho.mqtt._packet as paho_packet
import paho.mqtt.client as paho_client
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateways.mqtt import paho_tuning
from gateways.mqtt.paho_tuning import (
    TESTED_PAHO,
    LazyMessageInfo,
    ReceivedProperties,
    ReceivedReasonCode,
    buffer_reads,
    coalesce_writes,
    lighten_paho,
)

V5, V311 = MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311
_PAHO_INFO = LazyMessageInfo.__base__  # paho's own, whether or not a gateway lightened paho already


def test_the_tuning_was_made_for_the_installed_paho() -> None:
    # An upgrade of paho-mqtt in the lock fails here: check the tuning against the new internals, then move
    # TESTED_PAHO. Until then the gateway runs on paho as it is (the next test).
    assert paho_mqtt.__version__ == TESTED_PAHO
    assert paho_tuning.fits()


def test_another_paho_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paho_mqtt, "__version__", "9.9.9")
    client = paho_client.Client(CallbackAPIVersion.VERSION2)
    read, write = client.loop_read, client.loop_write
    buffer_reads(client)
    coalesce_writes(client)
    assert (client.loop_read, client.loop_write) == (read, write)
    assert not paho_tuning.fits()


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> None:
    """paho's own decoding for the test (the gateway's tests may have lightened it before), put back after."""
    monkeypatch.setattr(paho_packet, "Properties", Properties)
    monkeypatch.setattr(paho_packet, "ReasonCode", ReasonCode)
    monkeypatch.setattr(paho_client, "MQTTMessageInfo", _PAHO_INFO)


@pytest.fixture
def lightened(plain: None) -> None:
    lighten_paho()


def _publish_body(topic: bytes, payload: bytes, *, mid: int | None, properties: bytes | None) -> bytes:
    """The variable header and payload of a PUBLISH (what paho's decoder is given)."""
    body = struct.pack("!H", len(topic)) + topic
    if mid is not None:
        body += struct.pack("!H", mid)
    if properties is not None:
        body += properties
    return body + payload


def _packet(first_byte: int, body: bytes) -> bytes:
    """A whole packet: the fixed header (remaining length as a variable byte integer), then ``body``."""
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([first_byte]) + bytes(encoded) + body


def _decoded(header: int, body: bytes, protocol: MQTTProtocolVersion) -> tuple[object, ...]:
    result = paho_packet.decode_publish(header, body, protocol)
    props = result.properties.json() if result.properties is not None else None  # type: ignore[no-untyped-call]
    return result.topic, result.payload, result.mid, result.qos, result.dup, props


def _with_properties() -> bytes:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.MessageExpiryInterval = 30
    props.UserProperty = [("device", "phone-017"), ("fw", "2.1")]
    props.ContentType = "application/json"
    packed: bytes = props.pack()  # type: ignore[no-untyped-call]
    return packed


@pytest.mark.parametrize(
    ("header", "protocol", "mid", "properties"),
    [
        (0x32, V5, 7, b"\x00"),  # QoS 1, no properties: the devices' reports
        (0x3A, V5, 65535, None),  # QoS 1, DUP, with properties (filled in below)
        (0x30, V5, None, b"\x00"),  # QoS 0
        (0x32, V311, 9, None),  # 3.1.1: no properties at all
    ],
)
def test_a_publish_decodes_as_paho_decodes_it(
    plain: None, header: int, protocol: MQTTProtocolVersion, mid: int | None, properties: bytes | None
) -> None:
    if protocol is V5 and properties is None:
        properties = _with_properties()
    body = _publish_body(
        b"township/ershili/reports", '{"report_id": "r-1", "x": "集市"}'.encode(), mid=mid, properties=properties
    )
    by_paho = _decoded(header, body, protocol)
    lighten_paho()
    assert isinstance(paho_packet.decode_publish(header, body, protocol).properties, ReceivedProperties | None)
    assert _decoded(header, body, protocol) == by_paho
    if protocol is V5 and header == 0x3A:
        assert by_paho[5] == {
            "MessageExpiryInterval": 30,
            "ContentType": "application/json",
            "UserProperty": [("device", "phone-017"), ("fw", "2.1")],
        }


@pytest.mark.parametrize(
    ("body", "protocol", "value", "failure"),
    [
        (b"\x00\x05", V311, 0, False),
        (b"\x00\x05", V5, 0, False),  # MQTT 5 with the reason code left out: success
        (b"\x00\x05\x87", V5, 0x87, True),  # not authorised
        (b"\x00\x05\x10\x00", V5, 0x10, False),  # no matching subscribers, empty properties
    ],
)
def test_a_puback_decodes_as_paho_decodes_it(
    lightened: None, body: bytes, protocol: MQTTProtocolVersion, value: int, failure: bool
) -> None:
    result = paho_packet.decode_puback(0x40, body, protocol)
    assert isinstance(result.reason, ReceivedReasonCode)
    assert result.mid == 5
    assert result.reason.value == value
    assert result.reason.is_failure is failure
    expected = ReasonCode(PacketTypes.PUBACK, identifier=value)
    assert result.reason == expected
    assert str(result.reason) == str(expected)
    assert result.properties.isEmpty()  # type: ignore[no-untyped-call]


def test_lightened_decoding_refuses_a_malformed_packet_as_paho_does(lightened: None) -> None:
    with pytest.raises(MalformedPacket):
        paho_packet.decode_puback(0x40, b"\x00", V311)
    with pytest.raises(MalformedPacket):  # a property id that does not exist
        paho_packet.decode_publish(0x32, _publish_body(b"t", b"x", mid=1, properties=b"\x02\x7f\x00"), V5)


@pytest.fixture
def pair() -> Iterator[tuple[paho_client.Client, socket.socket, list[bytes]]]:
    """A 3.1.1 paho client reading one end of a socket pair (non-blocking, as under aiomqtt); the test writes
    packets into the other end. The list collects the payloads of the messages delivered."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = paho_client.Client(CallbackAPIVersion.VERSION2, protocol=paho_client.MQTTv311)
    delivered: list[bytes] = []
    client.on_message = lambda _client, _userdata, message: delivered.append(bytes(message.payload))
    buffer_reads(client)
    client._sock = ours
    try:
        yield client, theirs, delivered
    finally:
        client._sock = None
        ours.close()
        theirs.close()


def _qos0(payload: bytes) -> bytes:
    return _packet(0x30, _publish_body(b"t/x", payload, mid=None, properties=None))


def test_one_read_delivers_every_packet_that_arrived_together(
    pair: tuple[paho_client.Client, socket.socket, list[bytes]],
) -> None:
    client, theirs, delivered = pair
    # paho alone takes one packet per loop_read here (nothing in flight) and waits for the socket to say there
    # is more; the buffer took all of them off the socket at once, so loop_read must go on until it is empty.
    theirs.sendall(b"".join(_qos0(f"m{n}".encode()) for n in range(50)))
    assert client.loop_read() == paho_client.MQTT_ERR_SUCCESS
    assert delivered == [f"m{n}".encode() for n in range(50)]


def test_a_packet_split_across_reads_is_delivered_once_whole(
    pair: tuple[paho_client.Client, socket.socket, list[bytes]],
) -> None:
    client, theirs, delivered = pair
    big = _qos0(b"y" * 300)  # two bytes of remaining length
    first, second = _qos0(b"a") + big[:2], big[2:] + _qos0(b"b")
    theirs.sendall(first)
    assert client.loop_read() == paho_client.MQTT_ERR_SUCCESS
    assert delivered == [b"a"]  # the second packet's header is in paho's hands, its body not yet here
    theirs.sendall(second)
    assert client.loop_read() == paho_client.MQTT_ERR_SUCCESS
    assert delivered == [b"a", b"y" * 300, b"b"]


def test_a_closed_peer_is_a_lost_connection(pair: tuple[paho_client.Client, socket.socket, list[bytes]]) -> None:
    client, theirs, delivered = pair
    theirs.sendall(_qos0(b"last"))
    theirs.shutdown(socket.SHUT_WR)
    assert client.loop_read() == paho_client.MQTT_ERR_SUCCESS
    assert delivered == [b"last"]
    # The socket is still readable (the end of the stream), so the loop calls again, and paho hears of it:
    assert client.loop_read() == paho_client.MQTT_ERR_CONN_LOST


class _CountingSocket:
    """A socket that counts its ``send`` calls (a socket object's own methods cannot be wrapped)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends = 0

    def send(self, data: bytes) -> int:
        self.sends += 1
        return self.sock.send(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


@pytest.fixture
def writer() -> Iterator[tuple[paho_client.Client, _CountingSocket, socket.socket, list[int]]]:
    """A 3.1.1 paho client writing into a socket pair, its writes coalesced; the list collects
    the mids paho reports published (QoS 0 only: QoS 1 waits for a PUBACK)."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = paho_client.Client(CallbackAPIVersion.VERSION2, protocol=paho_client.MQTTv311)
    client.on_socket_register_write = lambda *_: None  # as under aiomqtt: paho queues, the loop writes
    published: list[int] = []
    client.on_publish = lambda _client, _userdata, mid, _reason, _props: published.append(mid)
    coalesce_writes(client)
    counting = _CountingSocket(ours)
    client._sock = counting  # type: ignore[assignment]
    try:
        yield client, counting, theirs, published
    finally:
        client._sock = None
        ours.close()
        theirs.close()


def _queued(client: paho_client.Client) -> bytes:
    return b"".join(bytes(p["packet"][p["pos"] :]) for p in client._out_packet)


def test_queued_packets_go_out_in_one_send_each_run_in_order(
    writer: tuple[paho_client.Client, _CountingSocket, socket.socket, list[int]],
) -> None:
    client, counting, theirs, published = writer
    for n in range(5):
        client.publish("t/a", f"x{n}".encode(), qos=1)
    at_most_once = client.publish("t/b", b"zero", qos=0)  # paho tells on_publish once it is written
    for n in range(3):
        client.publish("t/a", f"y{n}".encode(), qos=1)
    expected = _queued(client)
    assert client.loop_write() == paho_client.MQTT_ERR_SUCCESS
    assert counting.sends == 3  # five joined, the QoS 0 one alone, three joined (paho alone: nine)
    assert published == [at_most_once.mid]
    assert not client._out_packet
    assert theirs.recv(len(expected) + 1) == expected


def test_a_full_socket_sends_the_rest_on_the_next_write(
    writer: tuple[paho_client.Client, _CountingSocket, socket.socket, list[int]],
) -> None:
    client, _, theirs, _ = writer
    for n in range(200):  # far more than the socket pair's buffer holds
        client.publish("t/a", bytes([n]) * 20_000, qos=1)
    expected = _queued(client)
    received = bytearray()
    for _ in range(1000):  # bounded: each round sends what the socket takes, then the peer reads it all
        client.loop_write()
        received += _drain(theirs)
        if not client._out_packet:
            break
    assert bytes(received) == expected


def _drain(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_messages_get_lazy_infos_that_tell_and_wake_as_pahos_do(lightened: None) -> None:
    message = paho_client.MQTTMessage(mid=3, topic=b"t")
    assert isinstance(message.info, LazyMessageInfo)
    assert not message.info.is_published()
    message.info._set_as_published()
    assert message.info.is_published()
    message.info.wait_for_publish(timeout=0.01)  # returns at once: already published
    rc, mid = message.info  # paho's tuple form
    assert (rc, mid) == (paho_client.MQTT_ERR_SUCCESS, 3)


def test_a_thread_waiting_for_a_publish_is_woken_when_it_is_acknowledged(lightened: None) -> None:
    info = paho_client.MQTTMessage(mid=4, topic=b"t").info
    waiting, woken = threading.Event(), threading.Event()

    def waiter() -> None:
        waiting.set()
        info.wait_for_publish(timeout=30)
        woken.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    assert waiting.wait(timeout=30)
    info._set_as_published()  # before or after the waiter made the condition: both must wake it
    thread.join(timeout=30)
    assert woken.is_set()
    assert info.is_published()


def _outgoing(client: paho_client.Client) -> list[tuple[int, bytes, bytes, int, object]]:
    return [(m.mid, m.topic.encode(), bytes(m.payload), m.qos, m.state) for m in client._out_messages.values()]


def test_publish_many_queues_what_publish_would_and_paho_takes_the_pubacks(
    writer: tuple[paho_client.Client, _CountingSocket, socket.socket, list[int]],
) -> None:
    client, counting, theirs, published = writer
    client.max_inflight_messages_set(0)  # as the outbox's client: paho's limit off, the publisher holds the window
    messages = [("t/a", b"x" * 200), ("teams/traffic-police/dispatch", "集市".encode()), ("t/b", b"")]
    client._last_mid = 65534  # the ids wrap past 65,535 to 1, as paho's do
    reference = paho_client.Client(CallbackAPIVersion.VERSION2, protocol=paho_client.MQTTv311)
    reference.on_socket_register_write = lambda *_: None
    reference.max_inflight_messages_set(0)
    reference._sock = counting  # type: ignore[assignment]  # publish only queues: nothing is sent here
    reference._last_mid = 65534
    for topic, payload in messages:
        reference.publish(topic, payload, qos=1)
    expected_bytes, expected_state = _queued(reference), _outgoing(reference)
    reference._sock = None

    assert paho_tuning.publish_many(client, messages) == [65535, 1, 2]
    assert _queued(client) == expected_bytes
    assert _outgoing(client) == expected_state
    assert client._inflight_messages == 3
    assert client.loop_write() == paho_client.MQTT_ERR_SUCCESS
    assert counting.sends == 1
    assert theirs.recv(len(expected_bytes) + 1) == expected_bytes
    # The broker's PUBACKs, read by paho as for its own publishes: on_publish for each, and nothing left waiting.
    theirs.sendall(b"".join(_packet(0x40, struct.pack("!H", mid)) for mid in (1, 65535, 2)))
    buffer_reads(client)
    assert client.loop_read() == paho_client.MQTT_ERR_SUCCESS
    assert published == [1, 65535, 2]
    assert not client._out_messages
    assert client._inflight_messages == 0


def test_publish_many_refuses_a_wildcard_topic_as_paho_does(
    writer: tuple[paho_client.Client, _CountingSocket, socket.socket, list[int]],
) -> None:
    client = writer[0]
    client.max_inflight_messages_set(0)
    with pytest.raises(ValueError, match="topic"):
        paho_tuning.publish_many(client, [("t/+", b"x")])
    with pytest.raises(ValueError):
        client.publish("t/+", b"x", qos=1)


def test_publish_many_leaves_to_paho_what_it_does_not_do(
    writer: tuple[paho_client.Client, _CountingSocket, socket.socket, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = writer[0]
    client.max_inflight_messages_set(20)  # paho's own queueing then decides what goes out
    assert paho_tuning.publish_many(client, [("t/a", b"x")]) is None
    client.max_inflight_messages_set(0)
    v5 = paho_client.Client(CallbackAPIVersion.VERSION2, protocol=paho_client.MQTTv5)
    v5._sock = client._sock
    assert paho_tuning.publish_many(v5, [("t/a", b"x")]) is None
    v5._sock = None
    monkeypatch.setattr(paho_mqtt, "__version__", "9.9.9")
    assert paho_tuning.publish_many(client, [("t/a", b"x")]) is None
    assert not client._out_messages and not client._out_packet


def test_a_run_of_pubacks_in_the_buffer_is_taken_at_once_as_paho_takes_each(
    writer: tuple[paho_client.Client, _CountingSocket, socket.socket, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, theirs, published = writer
    client.max_inflight_messages_set(0)
    buffer_reads(client)
    delivered: list[bytes] = []
    client.on_message = lambda _client, _userdata, message: delivered.append(bytes(message.payload))
    mids = [client.publish("t/a", f"x{n}".encode(), qos=1).mid for n in range(6)]
    decoded: list[int] = []
    decode = paho_packet.decode_puback

    def counting(*args: object) -> object:
        decoded.append(1)
        return decode(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(paho_packet, "decode_puback", counting)
    puback = [_packet(0x40, struct.pack("!H", mid)) for mid in mids]
    # The first comes through paho (it fills the buffer); the next three at once; a QoS 0 PUBLISH and a PUBACK
    # for nothing in flight (and one repeated) between; the last split across two reads.
    stranger = _packet(0x40, struct.pack("!H", 999))
    theirs.sendall(b"".join([*puback[:4], _qos0(b"between"), stranger, puback[1], puback[4], puback[5][:3]]))
    assert client.loop_read() == paho_client.MQTT_ERR_SUCCESS
    assert published == mids[:5]
    assert delivered == [b"between"]
    assert len(decoded) == 1  # the first only: the split one waits in paho for its last byte
    theirs.sendall(puback[5][3:])
    assert client.loop_read() == paho_client.MQTT_ERR_SUCCESS
    assert len(decoded) == 2
    assert published == mids
    assert not client._out_messages and client._inflight_messages == 0
