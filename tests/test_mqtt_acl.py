"""The shipped broker config (deploy/mosquitto) on a real Mosquitto, with accounts made by its add-account.

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
from urllib.parse import quote

import aiomqtt
import pytest

from tests.mqtt_broker import IN_CI, SHIPPED_ACL, SHIPPED_CONFIG, Broker, Collector, client

PREFIX = "township/acl-test/"
OTHER = "township/other-town/"
#: username -> (kind, township, id) for add-account; the dispatcher's account is in the shipped ACL.
ACCOUNTS = {
    "officer-a@acl-test": ("device", "acl-test", "officer-a"),
    "officer-b@acl-test": ("device", "acl-test", "officer-b"),
    "officer-a@other-town": ("device", "other-town", "officer-a"),
    "traffic-police@acl-test": ("console", "acl-test", "traffic-police"),
}
SECRETS = {"dispatcher": "d-secret", **{user: f"{user}-secret" for user in ACCOUNTS}}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Broker]:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        if IN_CI:
            pytest.fail("mosquitto_passwd is not installed; CI=true requires it")
        pytest.skip("mosquitto_passwd is not installed")
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(SHIPPED_ACL, config / "acl")
    passwd = config / "passwd"
    passwd.touch(mode=0o600)
    subprocess.run([tool, "-b", str(passwd), "dispatcher", SECRETS["dispatcher"]], check=True, timeout=30)
    for user, (kind, township, account_id) in ACCOUNTS.items():
        subprocess.run(
            ["sh", str(SHIPPED_CONFIG / "add-account"), kind, township, account_id, SECRETS[user]],
            env={"MOSQUITTO_CONFIG_DIR": str(config), "PATH": str(Path(tool).parent) + ":/usr/bin:/bin"},
            check=True,
            capture_output=True,
            timeout=30,
        )
    broker = Broker.shipped(tmp_path, config).start()
    try:
        yield broker
    finally:
        broker.stop()


def url(broker: Broker, user: str) -> str:
    return f"mqtt://{quote(user, safe='')}:{SECRETS[user]}@127.0.0.1:{broker.port}"


async def test_a_device_cannot_publish_into_another_township(secured: Broker) -> None:
    seen = Collector()
    async with client(url(secured, "dispatcher")) as dispatcher:
        await dispatcher.subscribe("township/#", qos=1)
        reader = asyncio.create_task(seen.run(dispatcher))
        for topic in (OTHER + "reports", OTHER + "officers/officer-a/status", OTHER + "officers/officer-a/acks"):
            # Mosquitto 2.0 refuses the publish and drops an MQTT 5 client that tried it.
            with contextlib.suppress(aiomqtt.MqttError):
                async with client(url(secured, "officer-a@acl-test")) as phone:
                    await phone.publish(topic, b'{"from": "a of acl-test"}', qos=1)
        async with client(url(secured, "officer-a@acl-test")) as phone:
            await phone.publish(PREFIX + "reports", b'{"from": "a"}', qos=1)
        async with client(url(secured, "officer-a@other-town")) as phone:
            await phone.publish(OTHER + "reports", b'{"from": "a of other-town"}', qos=1)
            await seen.wait_for(lambda: len(seen.on(OTHER + "reports")) >= 1)
        reader.cancel()
    assert seen.messages == [(PREFIX + "reports", {"from": "a"}), (OTHER + "reports", {"from": "a of other-town"})]


async def test_a_device_reads_no_other_townships_tasks(secured: Broker) -> None:
    seen = Collector()
    async with client(url(secured, "officer-a@acl-test")) as phone:
        await phone.subscribe("township/+/officers/officer-a/tasks", qos=1)
        reader = asyncio.create_task(seen.run(phone))
        async with client(url(secured, "dispatcher")) as dispatcher:
            await dispatcher.publish(OTHER + "officers/officer-a/tasks", b'{"for": "a of other-town"}', qos=1)
            await dispatcher.publish(PREFIX + "officers/officer-a/tasks", b'{"for": "a"}', qos=1)
            await seen.wait_for(lambda: len(seen.messages) >= 1)
        reader.cancel()
    assert [body for _, body in seen.messages] == [{"for": "a"}]


async def test_a_device_cannot_publish_as_another_officer(secured: Broker) -> None:
    seen = Collector()
    async with client(url(secured, "dispatcher")) as dispatcher:
        await dispatcher.subscribe(PREFIX + "officers/+/status", qos=1)
        await dispatcher.subscribe(PREFIX + "reports", qos=1)
        reader = asyncio.create_task(seen.run(dispatcher))
        # Mosquitto 2.0 refuses the publish and drops an MQTT 5 client that tried it.
        with contextlib.suppress(aiomqtt.MqttError):
            async with client(url(secured, "officer-a@acl-test")) as phone:
                await phone.publish(PREFIX + "officers/officer-b/status", b'{"claimed": "b"}', qos=1)
        async with client(url(secured, "officer-a@acl-test")) as phone:
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
    async with client(url(secured, "officer-b@acl-test")) as phone:
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
        async with client(f"mqtt://officer-a%40acl-test:wrong@127.0.0.1:{secured.port}"):
            pass
