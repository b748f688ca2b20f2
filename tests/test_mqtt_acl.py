"""The shipped ACL (deploy/mosquitto/acl) on a real Mosquitto with password auth.

Each absence is proved by order, not by waiting: a forbidden message is sent before an allowed
one on the same connection, so once the allowed one arrives the forbidden one would have too.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from tests.mqtt_broker import IN_CI, SHIPPED_ACL, Broker, Collector, client

PREFIX = "township/acl-test/"
ACCOUNTS = {"dispatcher": "d-secret", "officer-a": "a-secret", "officer-b": "b-secret"}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Broker]:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        if IN_CI:
            pytest.fail("mosquitto_passwd is not installed; CI=true requires it")
        pytest.skip("mosquitto_passwd is not installed")
    passwd = tmp_path / "passwd"
    passwd.touch(mode=0o600)
    for user, secret in ACCOUNTS.items():
        subprocess.run([tool, "-b", str(passwd), user, secret], check=True, capture_output=True, timeout=30)
    broker = Broker(tmp_path, passwd=passwd, acl=SHIPPED_ACL).start()
    try:
        yield broker
    finally:
        broker.stop()


def url(broker: Broker, user: str) -> str:
    return f"mqtt://{user}:{ACCOUNTS[user]}@127.0.0.1:{broker.port}"


async def test_a_device_cannot_publish_as_another_officer(secured: Broker) -> None:
    seen = Collector()
    async with client(url(secured, "dispatcher")) as dispatcher:
        await dispatcher.subscribe(PREFIX + "officers/+/status", qos=1)
        await dispatcher.subscribe(PREFIX + "reports", qos=1)
        reader = asyncio.create_task(seen.run(dispatcher))
        # Mosquitto 2.0 refuses the publish and drops an MQTT 5 client that tried it.
        with contextlib.suppress(aiomqtt.MqttError):
            async with client(url(secured, "officer-a")) as phone:
                await phone.publish(PREFIX + "officers/officer-b/status", b'{"claimed": "b"}', qos=1)
        async with client(url(secured, "officer-a")) as phone:
            await phone.publish(PREFIX + "officers/officer-a/status", b'{"claimed": "a"}', qos=1)
            await phone.publish(PREFIX + "reports", b'{"from": "a"}', qos=1)
            await seen.wait_for(lambda: len(seen.on(PREFIX + "reports")) == 1)
        reader.cancel()
    assert seen.messages == [
        (PREFIX + "officers/officer-a/status", {"claimed": "a"}),
        (PREFIX + "reports", {"from": "a"}),
    ]


async def test_a_device_reads_only_its_own_tasks(secured: Broker) -> None:
    seen = Collector()
    async with client(url(secured, "officer-b")) as phone:
        await phone.subscribe(PREFIX + "officers/officer-a/tasks", qos=1)
        await phone.subscribe(PREFIX + "officers/+/tasks", qos=1)
        await phone.subscribe(PREFIX + "teams/+/dispatch", qos=1)
        reader = asyncio.create_task(seen.run(phone))
        async with client(url(secured, "dispatcher")) as dispatcher:
            await dispatcher.publish(PREFIX + "officers/officer-a/tasks", b'{"for": "a"}', qos=1)
            await dispatcher.publish(PREFIX + "teams/traffic-police/dispatch", b'{"for": "team"}', qos=1)
            await dispatcher.publish(PREFIX + "officers/officer-b/tasks", b'{"for": "b"}', qos=1)
            await seen.wait_for(lambda: len(seen.messages) >= 1)
        reader.cancel()
    assert [body for _, body in seen.messages] == [{"for": "b"}]


async def test_no_anonymous_and_no_wrong_password(secured: Broker) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with client(f"mqtt://127.0.0.1:{secured.port}"):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with client(f"mqtt://officer-a:wrong@127.0.0.1:{secured.port}"):
            pass
