"""The simulated phones stop when the run ends, whenever it ends, and a phone that will not stop is named.

On Python 3.11 ``asyncio.wait_for`` (in every aiomqtt call) swallows a cancel that lands as the call completes:
a fleet stopped by cancelling its phones once hung that way (an e2e test waited 120 s for it).
"""

from __future__ import annotations

import asyncio

import pytest

from rules import RuleBook
from simulations.devices import DeviceConfig, DeviceFleet, PhonesDidNotStop, stop_tasks
from tests.mqtt_broker import Broker, unique


@pytest.mark.parametrize("duration_s", [0.01, 0.05, 0.3, 0.6])
async def test_every_phone_ends_on_its_own_whenever_the_run_ends(
    broker: Broker, bundled_rules: RuleBook, duration_s: float
) -> None:
    # 54 phones publishing every 10 ms: the run ends while some connect, subscribe, wait for the others or publish.
    config = DeviceConfig(
        mqtt_url=broker.url,
        prefix=unique("township/stop") + "/",
        duration_s=duration_s,
        position_every_s=0.01,
        reports=54,
        report_within_s=0.01,
        seed=11,
    )
    fleet = DeviceFleet(config, bundled_rules)
    bound_s = duration_s + fleet.stop_grace_s / 2  # well past a healthy stop (ms), short of the fallback's cancels
    try:
        async with asyncio.timeout(bound_s):
            summary = await fleet.run()
    except TimeoutError:
        pytest.fail(f"the fleet had not stopped {bound_s:.0f} s into a run of {duration_s} s")
    assert summary.cancelled == 0, summary.line()
    assert summary.officers == 54


async def _swallows_cancels(times: int, released: asyncio.Event) -> None:
    """Goes on after the first ``times`` cancels, as a phone whose aiomqtt call completed as the cancel landed."""
    for _ in range(times):
        try:
            await released.wait()
            return
        except asyncio.CancelledError:
            pass
    await released.wait()


async def test_a_phone_that_swallowed_the_cancel_is_cancelled_again() -> None:
    released = asyncio.Event()
    stubborn = asyncio.create_task(_swallows_cancels(2, released), name="tp-01")
    polite = asyncio.create_task(released.wait(), name="ps-01")
    assert await stop_tasks([stubborn, polite], grace_s=0.01, rounds=5, round_s=1.0) == 2
    assert stubborn.cancelled() and polite.cancelled()


async def test_a_phone_that_does_not_stop_is_named_after_a_bounded_wait() -> None:
    released = asyncio.Event()
    stuck = asyncio.create_task(_swallows_cancels(1_000, released), name="tp-07")
    done = asyncio.create_task(asyncio.sleep(0), name="ps-01")
    with pytest.raises(PhonesDidNotStop, match=r"^1 phones still running 0.04 s after the run ended: tp-07$"):
        await stop_tasks([stuck, done], grace_s=0.01, rounds=3, round_s=0.01)
    released.set()
    await stuck
