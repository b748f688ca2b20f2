"""The heap freezer takes full collections over while it runs, and gives the collector back as it was; so does
the server with the GIL's switch interval."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from dispatcher.heap import HeapFreezer
from dispatcher.settings import Settings
from server.app import create_app


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


def _collections_of(rounds: Callable[[], None]) -> list[int]:
    """The generations collected while ``rounds`` runs, with Python's own collections off."""
    collected: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collected.append(info["generation"])

    enabled = gc.isenabled()
    gc.disable()
    gc.callbacks.append(note)
    try:
        rounds()
    finally:
        gc.callbacks.remove(note)
        gc.unfreeze()
        if enabled:
            gc.enable()
    return collected


def test_a_round_of_a_clean_heap_collects_only_the_youngest_generation_before_it_freezes() -> None:
    # Walking the middle generation each second was the freezer's whole cost, and found nothing in a clean run.
    gc.collect()
    freezer = HeapFreezer(every_s=1.0, thaw_every_s=3600.0)

    def rounds() -> None:
        freezer.tick()
        assert gc.get_freeze_count() > 0

    assert _collections_of(rounds) == [0]


def test_cyclic_garbage_found_young_has_the_middle_generation_walked_before_the_freeze() -> None:
    gc.collect()
    freezer = HeapFreezer(every_s=1.0, thaw_every_s=3600.0)

    def rounds() -> None:
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        freezer.tick()  # the young collection finds the cycle: the middle generation is walked too
        freezer.tick()  # nothing found since: young only

    assert _collections_of(rounds) == [0, 1, 0]


def test_a_round_thaws_and_collects_in_full_once_the_thaw_is_due() -> None:
    gc.collect()
    freezer = HeapFreezer(every_s=1.0, thaw_every_s=2.0)

    def rounds() -> None:
        freezer.tick()
        freezer.tick()
        freezer.tick()

    assert _collections_of(rounds) == [0, 2, 0]


async def test_the_server_holds_its_switch_interval_while_it_runs_and_gives_the_old_one_back(tmp_path: Path) -> None:
    """The GIL's switch interval is the server's setting while the app runs (the SQLite writer's thread takes the
    GIL back that soon after each statement; docs/architecture.md), and Python's own again once it stops."""
    before = sys.getswitchinterval()
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", gc_freeze=False, switch_interval_ms=2)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert sys.getswitchinterval() == pytest.approx(0.002)
    assert sys.getswitchinterval() == before
    with pytest.raises(ValidationError):
        Settings(database_url=settings.database_url, switch_interval_ms=0)
