"""Township leases: the plan as a pure function (tables of replicas, leases and times), and the fence of every
write on PostgreSQL (a replica whose lease was taken over writes nothing)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatcher.alarm import ManualAlarm
from dispatcher.clock import VirtualClock
from dispatcher.core.incidents import Report
from dispatcher.core.leases import Lease, Replica, adoptions, layout, live_replicas, moves, plan, settled, share
from dispatcher.feed import EventFeed
from dispatcher.hub import Hub
from dispatcher.leases import Fence, LeaseLost, SqlLeases, check_fence, lease_t, raise_fence
from dispatcher.sql_store import SqlIncidentStore, build_engine
from dispatcher.store import StoreUnavailable
from rules import RuleBook
from tests.conftest import START, drop_postgres_database, fresh_postgres_database

NOW = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
TTL = timedelta(seconds=6)
TOWNS = [f"t{n:02d}" for n in range(1, 8)]  # seven townships


def held(township: str, holder: str | None, epoch: int = 1, left_s: float = 3.0) -> Lease:
    return Lease(township, holder, epoch, NOW + timedelta(seconds=left_s) if holder else None)


def counts(planned: dict[str, str | None]) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for replica in planned.values():
        out[replica] = out.get(replica, 0) + 1
    return out


# -- the plan -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("townships", "live", "aim"), [(30, 1, 30), (30, 2, 15), (30, 3, 10), (7, 3, 3), (7, 0, 0)])
def test_each_replica_aims_at_its_share(townships: int, live: int, aim: int) -> None:
    assert share(townships, live) == aim


def test_free_townships_spread_evenly_in_sorted_order() -> None:
    planned = plan(TOWNS, ["a", "b", "c"], {}, NOW)
    assert counts(planned) == {"a": 3, "b": 2, "c": 2}
    assert [planned[t] for t in TOWNS] == ["a", "b", "c", "a", "b", "c", "a"]


def test_nothing_moves_while_nothing_changes() -> None:
    leases = {t: held(t, r) for t, r in zip(TOWNS, ["c", "c", "a", "b", "a", "b", "c"], strict=True)}
    planned = plan(TOWNS, ["a", "b", "c"], leases, NOW)
    assert planned == {t: lease.holder for t, lease in leases.items()}
    assert settled(planned, leases, NOW)
    assert moves("a", planned, leases, NOW).renew == ("t03", "t05")
    assert moves("a", planned, leases, NOW).acquire == moves("a", planned, leases, NOW).release == ()


@pytest.mark.parametrize(
    ("townships", "live", "aims"),
    [(7, "abc", [3, 2, 2]), (4, "abc", [2, 1, 1]), (30, "abc", [10, 10, 10]), (2, "abc", [1, 1, 0])],
)
def test_free_townships_are_shared_as_evenly_as_can_be(townships: int, live: str, aims: list[int]) -> None:
    names = [f"t{n:02d}" for n in range(townships)]
    planned = plan(names, list(reversed(live)), {}, NOW)
    assert sorted((counts(planned).get(r, 0) for r in live), reverse=True) == aims
    assert set(planned) == set(names)


def test_a_joining_replica_gets_the_holders_last_townships_over_their_share() -> None:
    leases = {t: held(t, "a" if n < 4 else "b") for n, t in enumerate(TOWNS)}  # a: 4, b: 3
    planned = plan(TOWNS, ["a", "b", "c"], leases, NOW)  # shares 3, 2, 2
    assert planned["t04"] == "c"  # a's fourth, past its share of three
    assert planned["t07"] == "c"  # b's third, past its share of two
    assert counts(planned) == {"a": 3, "b": 2, "c": 2}
    assert moves("a", planned, leases, NOW).release == ("t04",)
    assert moves("b", planned, leases, NOW).release == ("t07",)
    # c waits for a to give t04 back: it is held live.
    assert moves("c", planned, leases, NOW).acquire == ()
    assert not settled(planned, leases, NOW)
    given_back = {**leases, "t04": held("t04", None)}
    assert moves("c", planned, given_back, NOW).acquire == ("t04",)


def test_a_dead_replicas_townships_wait_for_expiry_then_spread_over_the_living() -> None:
    holders = [["a", "b", "c"][n % 3] for n in range(len(TOWNS))]
    leases = {t: held(t, r, left_s=2.0 if r == "b" else 5.0) for t, r in zip(TOWNS, holders, strict=True)}
    alive = ["a", "c"]  # b stopped beating; its leases run 2 s more
    planned = plan(TOWNS, alive, leases, NOW)
    assert [t for t in TOWNS if planned[t] == "b"] == ["t02", "t05"]  # still b's: not yet expired
    later = NOW + timedelta(seconds=2)  # expired
    planned = plan(TOWNS, alive, leases, later)
    assert "b" not in planned.values()
    assert counts(planned) == {"a": 4, "c": 3}
    assert moves("c", planned, leases, later).acquire == ("t02",)  # c held fewest
    assert moves("a", planned, leases, later).acquire == ("t05",)  # then a tie: the smaller id


def test_a_lease_at_its_expiry_instant_is_expired() -> None:
    lease = held("t01", "a", left_s=0.0)
    assert not lease.live(NOW)
    assert moves("b", {"t01": "b"}, {"t01": lease}, NOW).acquire == ("t01",)


def test_my_own_expired_lease_is_taken_again_not_renewed() -> None:
    lease = held("t01", "a", left_s=-1.0)
    assert moves("a", {"t01": "a"}, {"t01": lease}, NOW) == moves("a", {"t01": "a"}, {}, NOW)
    assert moves("a", {"t01": "a"}, {"t01": lease}, NOW).acquire == ("t01",)


def test_no_live_replica_plans_nobody() -> None:
    assert set(plan(TOWNS, [], {}, NOW).values()) == {None}
    assert not settled(plan(TOWNS, [], {}, NOW), {}, NOW)


def test_liveness_and_layout_use_the_given_time_only() -> None:
    replicas = [
        Replica("a", "http://a", NOW - timedelta(seconds=1)),
        Replica("b", "http://b", NOW - timedelta(seconds=7)),
    ]
    assert live_replicas(replicas, NOW, TTL) == ["a"]
    leases = {"t01": held("t01", "a"), "t02": held("t02", "b"), "t03": held("t03", None)}
    where = layout(replicas, leases, NOW, TTL)
    assert [where.owner_url(t) for t in ("t01", "t02", "t03", "t99")] == ["http://a", None, None, None]


def _beat(replica: str, ago_s: float) -> Replica:
    return Replica(replica, f"http://{replica}", NOW - timedelta(seconds=ago_s))


@pytest.mark.parametrize(
    ("beats", "adopted"),
    [
        ({"a": 1, "b": 1, "c": 1}, {"a": (), "b": (), "c": ()}),  # nobody dead: nothing adopted
        ({"a": 1, "b": 7, "c": 1}, {"a": ("b",), "b": (), "c": ()}),  # b dead: the first live one takes it
        ({"a": 9, "b": 7, "c": 1, "d": 8}, {"a": (), "b": (), "c": ("a", "b", "d"), "d": ()}),  # one left: all
        ({"a": 1, "b": 7, "c": 1, "d": 8}, {"a": ("b",), "b": (), "c": ("d",), "d": ()}),  # dealt in turn
        ({"a": 6, "b": 5.9}, {"a": (), "b": ("a",)}),  # a heartbeat exactly ttl old is dead
    ],
)
def test_each_dead_replica_s_broker_sessions_are_adopted_by_exactly_one_live_replica(
    beats: dict[str, float], adopted: dict[str, tuple[str, ...]]
) -> None:
    replicas = [_beat(r, ago) for r, ago in beats.items()]
    assert {r: adoptions(r, replicas, NOW, TTL) for r in beats} == adopted
    assert {r: adoptions(r, list(reversed(replicas)), NOW, TTL) for r in beats} == adopted  # whatever the order


def test_every_replica_computes_the_same_plan_whatever_the_order_it_reads() -> None:
    leases = {t: held(t, "b") for t in TOWNS[:5]}
    first = plan(TOWNS, ["a", "b"], leases, NOW)
    second = plan(list(reversed(TOWNS)), ["a", "b"], dict(reversed(list(leases.items()))), NOW)
    assert first == second


# -- the fence, on PostgreSQL --------------------------------------------------------------------


@pytest.fixture
async def county() -> AsyncIterator[str]:
    url = await fresh_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


def _report(report_id: str) -> Report:
    return Report(report_id=report_id, category="traffic.congestion", description="堵", zone="five-way")


def _hub(url: str, rules: RuleBook, fence: Fence) -> Hub:
    return Hub(
        store=SqlIncidentStore(url, pool_size=2, fence=fence),
        rules=rules,
        clock=VirtualClock(START),
        alarm=ManualAlarm(),
        feed=EventFeed(queue_size=1000),
        duplicate_radius_m=0.0,
    )


async def _count(url: str, table: str) -> int:
    engine = build_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one())
    finally:
        await engine.dispose()


async def _expire(engine: AsyncEngine, township: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(lease_t).where(lease_t.c.township == township).values(expires_at=sa.func.now() - TTL)
        )


@pytest.mark.postgres
async def test_a_replica_whose_lease_was_taken_over_writes_nothing(county: str, bundled_rules: RuleBook) -> None:
    engine = build_engine(county, pool_size=2)
    leases = SqlLeases(engine, TTL)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        store = SqlIncidentStore(county, pool_size=1)
        await store.open()  # the tables
        await store.close()
        await leases.round("a", "http://a", ["ershili"])
        epoch_a = await leases.acquire("ershili", "a")
        assert epoch_a == 1
        assert await leases.acquire("ershili", "b") is None  # held live by a
        old = _hub(county, bundled_rules, Fence("ershili", epoch_a))
        await old.start()
        stack.push_async_callback(old.stop)
        await old.report(_report("r-1"), START)

        await _expire(engine, "ershili")  # a was paused past its lease
        epoch_b = await leases.acquire("ershili", "b")
        assert epoch_b == 2
        new = _hub(county, bundled_rules, Fence("ershili", epoch_b))
        await new.start()  # raises the fence, then loads
        stack.push_async_callback(new.stop)
        before = await _count(county, "incident"), await _count(county, "event")
        with pytest.raises(StoreUnavailable, match="taken over"):
            await old.report(_report("r-2"), START)
        assert (await _count(county, "incident"), await _count(county, "event")) == before
        assert not await leases.renew("ershili", "a", epoch_a)  # a learns it lost the lease
        made = await new.report(_report("r-2"), START)
        assert made.created and made.incident.id == 2


@pytest.mark.postgres
async def test_a_new_holder_waits_for_the_old_holders_write_in_flight_then_fences_it_out(county: str) -> None:
    store = SqlIncidentStore(county, pool_size=1)
    await store.open()  # the tables
    await store.close()
    engine = build_engine(county, pool_size=3)
    try:
        async with engine.begin() as conn:
            await raise_fence(conn, Fence("ershili", 1))
        async with engine.connect() as old:
            transaction = await old.begin()
            await check_fence(old, Fence("ershili", 1))  # a write of epoch 1 in flight
            raising = asyncio.create_task(_raise(engine, Fence("ershili", 2)))
            await _until_waiting_on_a_lock(engine)
            assert not raising.done()
            await transaction.commit()  # the old write commits: it was made under its lease
            await asyncio.wait_for(raising, 10)
            async with old.begin():
                with pytest.raises(LeaseLost):
                    await check_fence(old, Fence("ershili", 1))
        async with engine.begin() as conn:
            with pytest.raises(LeaseLost, match="newer"):
                await raise_fence(conn, Fence("ershili", 1))  # the fence never goes down
    finally:
        await engine.dispose()


async def _raise(engine: AsyncEngine, fence: Fence) -> None:
    async with engine.begin() as conn:
        await raise_fence(conn, fence)


async def _until_waiting_on_a_lock(engine: AsyncEngine) -> None:
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            if (await conn.execute(query)).scalar_one():
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the fence was never seen waiting for the write in flight")


def test_the_county_compose_profile_runs_three_distinct_replicas_behind_the_balancer(repo_root: Path) -> None:
    """Docker cannot run here: the profile is checked as written (each replica its own id and URL, each balanced)."""
    compose = yaml.safe_load((repo_root / "docker-compose.yml").read_text(encoding="utf-8"))
    county = {name: s for name, s in compose["services"].items() if "county" in s.get("profiles", [])}
    replicas = {
        name: s["environment"] for name, s in county.items() if "DISPATCHER_REPLICA_ID" in s.get("environment", {})
    }
    assert sorted(replicas) == ["replica-a", "replica-b", "replica-c"]
    assert {env["DISPATCHER_REPLICA_ID"] for env in replicas.values()} == set(replicas)
    assert {env["DISPATCHER_ADVERTISE_URL"] for env in replicas.values()} == {f"http://{r}:8000" for r in replicas}
    assert len({env["DISPATCHER_DATABASE_URL"] for env in replicas.values()}) == 1
    assert all(env["DISPATCHER_DATABASE_URL"].startswith("postgresql+asyncpg://") for env in replicas.values())
    balancer = (repo_root / "deploy" / "nginx" / "county.conf").read_text(encoding="utf-8")
    assert all(f"server {r}:8000" in balancer for r in replicas)
    databases = (repo_root / "deploy" / "postgres" / "county.sql").read_text(encoding="utf-8")
    for env in replicas.values():
        for entry in env["DISPATCHER_TOWNSHIPS"].split(";"):
            assert f"CREATE DATABASE {entry.rsplit('/', 1)[1]} " in databases
