"""The MQTT gateway ends a session's tasks even when a cancel is swallowed (Python 3.11's ``wait_for``)."""

from __future__ import annotations

import asyncio

import pytest

from gateways.mqtt import gateway
from gateways.mqtt.gateway import end_tasks


async def _swallowing(times: int, swallowed: list[int]) -> None:
    """Goes on after its first ``times`` cancels, as a task inside ``wait_for`` can on 3.11."""
    while True:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if len(swallowed) == times:
                raise
            swallowed.append(1)


async def test_a_task_that_swallows_cancels_is_cancelled_again_until_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway, "END_ROUND_S", 0.05)
    swallowed: list[int] = []
    task = asyncio.create_task(_swallowing(2, swallowed), name="outbox")
    await asyncio.sleep(0)  # let it reach its wait
    left = await end_tasks([task], rounds=5)
    assert left == set()
    assert task.cancelled()
    assert len(swallowed) == 2  # one cancel, as before, would have left it running


async def test_a_task_that_never_ends_is_given_up_after_the_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway, "END_ROUND_S", 0.02)
    swallowed: list[int] = []
    stubborn = asyncio.create_task(_swallowing(1_000, swallowed), name="stubborn")
    failed = asyncio.create_task(asyncio.sleep(0), name="done")
    await asyncio.sleep(0)
    left = await end_tasks([stubborn, failed], rounds=3)
    assert left == {stubborn}
    assert len(swallowed) == 3
    swallowed.extend([1] * (1_000 - len(swallowed)))  # let the test's loop close: the next cancel is taken
    stubborn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stubborn


async def test_a_task_that_failed_has_its_exception_read() -> None:
    async def boom() -> None:
        raise RuntimeError("session lost")

    task = asyncio.create_task(boom())
    await asyncio.sleep(0)
    assert await end_tasks([task]) == set()
    assert isinstance(task.exception(), RuntimeError)
