"""The heap freezer takes full collections over while it runs, and gives the collector back as it was."""

from __future__ import annotations

import gc

from dispatcher.heap import HeapFreezer


async def test_full_collections_are_the_freezers_while_it_runs() -> None:
    before = gc.get_threshold()
    freezer = HeapFreezer(every_s=3600.0)
    freezer.start()
    try:
        young, middle, oldest = gc.get_threshold()
        assert (young, middle) == before[:2]  # the young generations are collected as before
        assert oldest >= 1_000_000  # Python's own full collections: out of reach
        assert gc.get_freeze_count() > 0
    finally:
        await freezer.stop()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_the_youngest_generation_takes_the_threshold_it_is_given_and_gets_its_own_back() -> None:
    before = gc.get_threshold()
    freezer = HeapFreezer(every_s=3600.0, young=before[0] + 12_345)
    freezer.start()
    try:
        young, middle, oldest = gc.get_threshold()
        assert young == before[0] + 12_345
        assert middle == before[1]
        assert oldest >= 1_000_000
    finally:
        await freezer.stop()
    assert gc.get_threshold() == before
