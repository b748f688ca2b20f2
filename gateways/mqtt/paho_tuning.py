"""Costs of paho-mqtt's pure-Python packet handling, taken off the gateway's event loop.

A profile of MQTT intake at saturation (benchmarks/README.md, "Branch i14-mqtt: what paho cost, taken off") put
a third of the server's CPU in paho, 39 % of the event loop's time in ``Client.loop_read`` alone; these four
things in it do no useful work for the gateway:

- **Name tables rebuilt per packet.** Decoding each received PUBLISH (MQTT 5) and each PUBACK builds a fresh
  ``Properties`` (two dicts of 27 and 25 entries, every attribute set through a checking ``__setattr__``) and a
  ``ReasonCode`` (a copy of a 60-entry table, then a search of it for "Success"), even for a packet that carries
  no properties. :func:`lighten_paho` has paho's decoder build them from tables made once. The objects are
  the same classes' instances, with the same values; only their construction is cheaper.
- **A system call per header byte.** paho reads a packet's first byte, then each byte of its remaining length,
  then its body, each with its own ``recv``: three calls for a 4-byte PUBACK. :func:`buffer_reads` gives one
  paho client a read buffer, filled by one ``recv`` of up to 64 KiB, and has ``loop_read`` go on until the
  buffer is empty, since the socket no longer signals bytes that already left it.
- **A system call per packet written.** paho sends each queued packet with its own ``send``: a batch of 200
  notices is 200 calls. :func:`coalesce_writes` joins the queued packets whose sending paho does nothing
  after (all but QoS 0 PUBLISHes and DISCONNECT) into one before paho writes them, so paho's own handling of
  a partial write, a full socket and a lost connection applies to the joined bytes unchanged.
- **A condition variable per message.** paho gives every message it sends or receives an ``MQTTMessageInfo``
  holding a ``threading.Condition`` (a lock and a list), for ``wait_for_publish``, which the gateway never
  calls: 5 % of the event loop at seven notices per report. :func:`lighten_paho` has paho make them on
  first use instead (:class:`LazyMessageInfo`).

- **A packet's worth of bookkeeping per PUBACK.** Past the buffer, paho still reads each PUBACK through its
  generic packet reader (state dict, three ``_sock_recv`` calls, decoder, log line); ``buffer_reads`` also takes
  a run of plain PUBACKs already in the buffer in one go (:func:`_take_pubacks`), each then handled by paho's own
  ``_do_on_publish`` as before.
- **A generic publish per notice.** :func:`publish_many` queues a batch of QoS 1 messages as paho's ``publish``
  records them, with their packets built in one pass and queued as one entry.

All of these are tied to paho-mqtt's internals: they apply only to the version they were written and tested for
(:data:`TESTED_PAHO`, pinned in requirements.lock); with any other paho the functions leave it as it is and say
so once in the log. ``tests/test_mqtt_paho_tuning.py`` fails on another version, so that an upgrade of the
lock re-checks them. The client library stays aiomqtt over paho.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

import paho.mqtt
import paho.mqtt._packet as paho_packet
import paho.mqtt.client as paho_client
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

#: The paho-mqtt these changes were written against; any other is left untouched.
TESTED_PAHO = "2.2.0"

READ_CHUNK = 64 * 1024
_PUBLISH, _PUBACK, _DISCONNECT = 0x30, 0x40, 0xE0

# paho's tables are the same for every packet type; read here once, never written (by paho either).
_TABLES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
# The packet types whose code 0 is called "Success" (paho's default name): those made without a search.
_SUCCESS_TYPES = frozenset(ReasonCode.names[0]["Success"]) - {PacketTypes.DISCONNECT}


class ReceivedProperties(Properties):
    """The properties of a received packet, as paho's decoder makes them: an empty set of the packet's type,
    sharing the class's name tables instead of building them, then filled by ``unpack``."""

    def __init__(self, packetType: int) -> None:
        # paho's __setattr__ lets exactly these four through unchecked; set them as it would.
        object.__setattr__(self, "packetType", packetType)
        object.__setattr__(self, "types", _TABLES.types)
        object.__setattr__(self, "names", _TABLES.names)
        object.__setattr__(self, "properties", _TABLES.properties)

    def unpack(self, buffer: bytes | bytearray) -> tuple[Properties, int]:
        # Fresh from the decoder, there is nothing to clear first; a zero length (one byte) is the common case.
        if buffer[:1] == b"\x00":
            return self, 1
        return super().unpack(buffer)  # type: ignore[no-any-return, no-untyped-call]


class ReceivedReasonCode(ReasonCode):
    """A reason code as paho's decoder makes them ("Success" first, then ``unpack`` when the packet has one),
    reading the class's table instead of copying it for each packet."""

    def __init__(self, packetType: int, aName: str = "Success", identifier: int = -1) -> None:
        if identifier == -1 and aName == "Success" and packetType in _SUCCESS_TYPES:
            self.packetType = packetType
            self.value = 0
        else:
            super().__init__(packetType, aName, identifier)


# Makes each LazyMessageInfo's condition, and marks one published: a waiter that makes the condition after the
# mark sees it; one that made it before is notified. Held for a few instructions, uncontended on one thread.
_CONDITIONS = threading.Lock()


class LazyMessageInfo(paho_client.MQTTMessageInfo):
    """paho's ``MQTTMessageInfo`` whose condition variable is made when someone first waits on it or asks."""

    __slots__ = ()

    def __init__(self, mid: int) -> None:
        self.mid = mid
        self._published = False
        self.rc = paho_client.MQTT_ERR_SUCCESS
        self._iterpos = 0

    def _made_condition(self) -> threading.Condition:
        with _CONDITIONS:
            try:
                return self._condition
            except AttributeError:  # the slot is empty until now
                self._condition = threading.Condition()
                return self._condition

    def _set_as_published(self) -> None:
        with _CONDITIONS:
            self._published = True
            try:
                condition = self._condition
            except AttributeError:
                return  # nobody waits: a later waiter makes the condition, then finds it published
        with condition:
            condition.notify()

    def wait_for_publish(self, timeout: float | None = None) -> None:
        self._made_condition()
        super().wait_for_publish(timeout)

    def is_published(self) -> bool:
        self._made_condition()
        return super().is_published()


_warned: list[str] = []


def fits(version: str | None = None) -> bool:
    """Whether the tuning applies to paho ``version`` (the installed one by default); warns once if not."""
    version = version or paho.mqtt.__version__
    if version == TESTED_PAHO:
        return True
    if version not in _warned:
        _warned.append(version)
        log.warning("paho-mqtt %s is not the %s the gateway's tuning was made for: left as it is", version, TESTED_PAHO)
    return False


def lighten_paho() -> None:
    """Have paho (every client of this process) build the properties and reason codes it decodes from tables
    made once, and each message's condition variable on first use. Idempotent; the values are what paho's own
    classes give (subclasses of them)."""
    if not fits():
        return
    setattr(paho_client, "MQTTMessageInfo", LazyMessageInfo)  # noqa: B010 - MQTTMessage and publish() read it
    # The decoder's module names the two classes it builds (not re-exported: hence setattr).
    setattr(paho_packet, "Properties", ReceivedProperties)  # noqa: B010
    setattr(paho_packet, "ReasonCode", ReceivedReasonCode)  # noqa: B010


def buffer_reads(client: paho_client.Client) -> None:
    """Give ``client`` (before it connects) a read buffer: one ``recv`` per readable socket, not one per
    header byte. Runs on the thread that reads the client (aiomqtt: its event loop)."""
    if not fits():
        return
    buffered = bytearray()
    sock_of: list[Any] = [None]  # the socket the buffer's bytes came from: a new connection starts empty
    read_packets = client.loop_read
    read_packet = client._packet_read

    def sock_recv(bufsize: int) -> bytes:
        sock = client._sock
        if sock is None:
            raise ConnectionError("self._sock is None")  # as paho's own _sock_recv
        if sock is not sock_of[0]:
            buffered.clear()
            sock_of[0] = sock
        if not buffered:
            chunk = sock.recv(max(bufsize, READ_CHUNK))  # BlockingIOError (nothing to read) goes to paho as is
            if len(chunk) <= bufsize:
                return chunk  # b"" (the peer closed) included
            buffered.extend(chunk)
        taken = bytes(buffered[:bufsize])
        del buffered[:bufsize]
        return taken

    def loop_read(max_packets: int = 1) -> Any:
        # paho stops after as many packets as it has messages in flight, and epoll will not wake us again for
        # bytes already in the buffer: go on while any are left (each round takes at least one of them).
        rc = read_packets(max_packets)
        while buffered and rc == paho_client.MQTT_ERR_SUCCESS and client._sock is sock_of[0]:
            rc = read_packets(max_packets)
        return rc

    def packet_read() -> Any:
        # paho reads one packet per call (up to as many as it has messages in flight per loop_read): a run of
        # plain PUBACKs already in the buffer is taken in one call instead.
        if buffered and buffered[0] == _PUBACK and client._in_packet["command"] == 0 and client._sock is sock_of[0]:
            taken, rc = _take_pubacks(client, buffered)
            if taken:
                return rc
        return read_packet()

    client._sock_recv = sock_recv  # type: ignore[method-assign]
    client.loop_read = loop_read  # type: ignore[method-assign]
    client._packet_read = packet_read  # type: ignore[method-assign]


def _take_pubacks(client: paho_client.Client, buffered: bytearray) -> tuple[int, Any]:
    """Handle the plain PUBACKs at the start of ``buffered`` (paho between packets) as paho's ``_packet_read`` and
    ``_handle_pubackcomp`` would, and take them off it: how many there were, and paho's return code.

    A plain PUBACK is four bytes, ``40 02`` and the packet id, in MQTT 3.1.1 and 5 alike (an MQTT 5 PUBACK with a
    reason code or properties is longer, and left to paho, as is anything else). paho would read each with three
    calls of ``_sock_recv``, decode it, log it and reset its packet state: seven times a report on the outbox.
    """
    end = len(buffered) - 3
    at = 0
    rc = paho_client.MQTT_ERR_SUCCESS
    out = client._out_messages
    debug = client.on_log is not None or (client._logger is not None and client._logger.isEnabledFor(logging.DEBUG))
    # What paho's decoder makes of every plain PUBACK, made once for the run: the callbacks only read them.
    success, no_properties = ReceivedReasonCode(PacketTypes.PUBACK), ReceivedProperties(PacketTypes.PUBACK)
    with client._out_message_mutex:
        while at < end and buffered[at] == _PUBACK and buffered[at + 1] == 2:
            mid = (buffered[at + 2] << 8) | buffered[at + 3]
            at += 4
            if debug:
                client._easy_log(paho_client.MQTT_LOG_DEBUG, "Received %s (Mid: %d)", "PUBACK", mid)
            if mid in out:  # only the first PUBACK of a message tells (paho's rule)
                rc = client._do_on_publish(mid, success, no_properties)
                if rc != paho_client.MQTT_ERR_SUCCESS:  # paho's loop_read would return it now
                    break
    if at:
        del buffered[:at]
        with client._msgtime_mutex:
            client._last_bytes_received = paho_client.time_func()
    return at // 4, rc


def coalesce_writes(client: paho_client.Client) -> None:
    """Have ``client`` send its queued packets in one ``send`` where it can (see the module's docstring). Runs
    on the thread that writes the client (aiomqtt: its event loop)."""
    if not fits():
        return
    write_packets = client.loop_write

    def loop_write() -> Any:
        if len(client._out_packet) > 1:
            _join_plain_packets(client._out_packet)
        return write_packets()

    client.loop_write = loop_write  # type: ignore[method-assign]


def _join_plain_packets(queue: deque[Any]) -> None:
    """Join each run of packets paho does nothing after sending (QoS 1 PUBLISH, PUBACK, PINGREQ, SUBSCRIBE...)
    into one packet entry, in order; a QoS 0 PUBLISH (its ``on_publish`` and ``info``) and a DISCONNECT (the
    socket is closed right after it) stay entries of their own."""
    joined: list[Any] = []
    run: list[Any] = []

    def end_run() -> None:
        if len(run) > 1:  # the first may be partly sent already
            joined.append(_entry(b"".join(p["packet"][p["pos"] :] if p["pos"] else p["packet"] for p in run)))
        else:
            joined.extend(run)
        run.clear()

    for packet in queue:
        kind = packet["command"] & 0xF0
        if kind == _DISCONNECT or (kind == _PUBLISH and packet["qos"] == 0):
            end_run()
            joined.append(packet)
        else:
            run.append(packet)
    end_run()
    queue.clear()
    queue.extend(joined)


def _entry(data: bytes | bytearray) -> dict[str, Any]:
    """A packet entry as paho's queue holds them, for bytes that need nothing after they are sent: its
    ``command`` only has to be neither a PUBLISH at QoS 0 nor a DISCONNECT."""
    return {"command": _PUBACK, "mid": 0, "qos": 1, "pos": 0, "to_process": len(data), "packet": data, "info": None}


def publish_many(client: paho_client.Client, messages: Iterable[tuple[str, bytes]]) -> list[int] | None:
    """Queue ``messages`` (topic, payload) as QoS 1 PUBLISHes, as ``client.publish(topic, payload, qos=1)`` one
    after the other would, and return their mids; None when this cannot be done here (another paho, MQTT 5, no
    socket, or a paho limit on messages in flight or queued): the caller then calls ``publish`` itself.

    The fifth cost: paho's ``publish`` checks and encodes the topic, builds the packet through its generic
    helpers, logs it and queues it as its own entry, for every message. Here each message is still recorded in
    paho's ``_out_messages`` as ``publish`` records it (its PUBACK is handled by paho as usual, and a lost
    connection is the caller's to handle, as before), but the packets are built in one pass and queued as one
    entry, which paho writes as it writes any. A topic paho would refuse raises ``ValueError`` as paho does (the
    messages before it stay queued). Runs on the thread that writes the client.
    """
    if not fits() or client._protocol == paho_client.MQTTv5 or client._sock is None:
        return None
    if client._max_inflight_messages or client._max_queued_messages:
        return None
    out = client._out_messages
    packets = bytearray()
    mids: list[int] = []
    now = paho_client.time_func()
    waiting = paho_client.mqtt_ms_wait_for_puback
    message_class = paho_client.MQTTMessage
    # Both of paho's locks for the batch, taken once (paho never holds one while taking the other).
    with client._out_message_mutex, client._mid_generate_mutex:
        for topic, payload in messages:
            topic_bytes = topic.encode()
            if b"+" in topic_bytes or b"#" in topic_bytes or len(topic_bytes) > 65535:
                raise ValueError(f"not a topic to publish on: {topic!r}")  # paho's own check, as it raises
            mid = client._last_mid = client._last_mid % 65535 + 1
            if mid in out:  # 65,535 in flight: paho refuses the same way
                raise ValueError("no free message id: 65,535 messages await their PUBACK")
            message = message_class(mid, topic_bytes)
            message.timestamp = now
            message.payload = payload
            message.qos = 1
            message.state = waiting
            out[mid] = message
            client._inflight_messages += 1
            # Fixed header (QoS 1, no DUP, no RETAIN), remaining length, topic, packet id, payload.
            packets.append(0x32)
            remaining = 2 + len(topic_bytes) + 2 + len(payload)
            while remaining > 0x7F:
                packets.append((remaining & 0x7F) | 0x80)
                remaining >>= 7
            packets.append(remaining)
            packets += len(topic_bytes).to_bytes(2, "big")
            packets += topic_bytes
            packets += mid.to_bytes(2, "big")
            packets += payload
            mids.append(mid)
    if packets:
        # As one packet whose sending needs nothing after it (the command of a PUBACK; see _entry).
        client._packet_queue(_PUBACK, packets, 0, 1, None)
    return mids
