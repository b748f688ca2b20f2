"""``BatchPublisher``: QoS 1 publishes in batches straight through paho, awaiting the PUBACKs together.

aiomqtt's ``publish`` costs a coroutine, an event, a ``wait_for`` task and a scan of every
pending call per message; at seven notices per report that was most of the gateway's CPU
(benchmarks/README.md). Here a batch is handed to paho in one go (built as one packet queue entry by
:func:`gateways.mqtt.paho_tuning.publish_many`) and one event wakes the caller when the broker acknowledged the
last of it. Runs on the event loop that owns the client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import aiomqtt
from paho.mqtt.client import MQTT_ERR_SUCCESS

from gateways.mqtt.codec import Notice
from gateways.mqtt.paho_tuning import publish_many

log = logging.getLogger(__name__)


class BatchPublisher:
    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._paho = client._client
        self._waiting: set[int] = set()
        self._done = asyncio.Event()
        self.refused = 0  # PUBACKs with an error reason (MQTT 5), e.g. not authorised
        chained: Any = self._paho.on_publish

        def on_publish(paho: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
            if chained is not None:
                chained(paho, userdata, mid, reason_code, properties)
            if mid in self._waiting:
                self._waiting.discard(mid)
                if getattr(reason_code, "is_failure", False):
                    self.refused += 1
                    log.error("the broker refused a notice (%s)", reason_code)
                if not self._waiting:
                    self._done.set()

        self._paho.on_publish = on_publish

    async def publish(self, notices: Iterable[Notice], timeout_s: float = 30.0) -> int:
        """Publish every notice at QoS 1 and return once the broker acknowledged them all.

        Raises ``aiomqtt.MqttError`` when the connection is lost or the acknowledgements do not
        come within ``timeout_s``: the caller then publishes the batch again on a new connection.
        """
        count = 0
        self._done.clear()
        batch = notices if isinstance(notices, list) else list(notices)
        # Never acknowledged yet: paho only queues here, and reads the PUBACKs once the loop runs again.
        mids = publish_many(self._paho, [(notice.topic, notice.payload) for notice in batch])
        if mids is not None:
            self._waiting.update(mids)
            count = len(mids)
        else:  # paho as it is (another version, or no socket: its publish says so)
            for notice in batch:
                info = self._paho.publish(notice.topic, notice.payload, qos=1)
                if info.rc != MQTT_ERR_SUCCESS:
                    raise aiomqtt.MqttCodeError(info.rc, "could not publish")
                self._waiting.add(info.mid)
                count += 1
        if not self._waiting:
            return count
        done: asyncio.Future[Any] = asyncio.ensure_future(self._done.wait())
        waiters: set[asyncio.Future[Any]] = {done, self._client._disconnected}
        try:
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
        if self._waiting:
            self._waiting.clear()
            raise aiomqtt.MqttError("the broker did not acknowledge the notices (connection lost or timed out)")
        return count
