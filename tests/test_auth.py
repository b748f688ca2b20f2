"""Signing in, tokens, accounts, lockout, masking, the audit trail, limits and townships, in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.accounts import (
    AuditEntry,
    Failures,
    Lockout,
    Role,
    SignInRefused,
    SqlDirectory,
    after_failure,
    locked_until,
)
from dispatcher.settings import Settings
from gateways.limits import TokenBuckets
from gateways.privacy import MASK, mask
from rules import compile_table, load_table
from server.app import create_app
from tests.conftest import START, HubRig, api_client, sign_in_as

REPORT = {"report_id": "a-1", "category": "traffic.congestion", "zone": "five-way", "description": "堵"}
LABOUR = {
    "report_id": "a-2",
    "category": "labour.wage_arrears",
    "zone": "market",
    "description": "欠薪",
    "reporter": "王五 13800000000",
}
PASSWORD = "correct horse battery"


@pytest.fixture
async def app(crew: HubRig) -> AsyncIterator[Any]:
    application = create_app(Settings(database_url=crew.url, rate_burst=50, rate_per_s=1), hub=crew.hub)
    yield application
    await application.state.context.directory.close()


def _client(app: Any, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers or {})


async def test_without_a_valid_token_nothing_is_served(app: Any) -> None:
    async with _client(app) as http:
        assert (await http.get("/api/v1/incidents")).status_code == 401
        assert (await http.get("/api/v1/incidents", headers={"Authorization": "Bearer dsp_nope"})).status_code == 401
        assert (await http.post("/api/v1/incidents", json=REPORT)).status_code == 401
        assert (await http.get("/api/v1/rules")).status_code == 401
        assert (await http.get("/healthz")).status_code == 200  # public, holds no data
    assert app.state.context.hub.last_seq == 0


async def test_sign_in_me_and_sign_out(app: Any) -> None:
    directory = app.state.context.directory
    await directory.open()
    await directory.create_account("op-1", Role.OPERATOR, "ershili", START, password=PASSWORD)
    async with _client(app) as http:
        answer = await http.post("/api/v1/auth/token", data={"username": "op-1", "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        assert answer.json()["token_type"] == "bearer"
        headers = {"Authorization": f"Bearer {token}"}
        me = (await http.get("/api/v1/auth/me", headers=headers)).json()
        assert (me["account"]["name"], me["account"]["role"], me["townships"]) == ("op-1", "operator", ["ershili"])
        assert PASSWORD not in orjson.dumps(me).decode() and "argon2" not in orjson.dumps(me).decode()
        assert (await http.post("/api/v1/auth/logout", headers=headers)).status_code == 204
        assert (await http.get("/api/v1/auth/me", headers=headers)).status_code == 401
    # Only the hash of a token is stored.
    async with directory._engine.connect() as conn:
        stored = (await conn.exec_driver_sql("SELECT token_hash FROM api_token")).scalars().all()
    assert token not in stored and all(len(h) == 64 for h in stored)


async def test_five_failures_lock_the_name_for_fifteen_minutes(app: Any, crew: HubRig) -> None:
    directory = app.state.context.directory
    await directory.open()
    await directory.create_account("op-2", Role.OPERATOR, "ershili", START, password=PASSWORD)
    async with _client(app) as http:
        for _ in range(5):
            wrong = await http.post("/api/v1/auth/token", data={"username": "op-2", "password": "wrong password"})
            assert wrong.status_code == 401
        locked = await http.post("/api/v1/auth/token", data={"username": "op-2", "password": PASSWORD})
        assert locked.status_code == 401 and "locked" in locked.json()["detail"]
        assert int(locked.headers["Retry-After"]) == 15 * 60
        crew.clock.advance(timedelta(minutes=15))
        again = await http.post("/api/v1/auth/token", data={"username": "op-2", "password": PASSWORD})
        assert again.status_code == 200


async def test_a_burst_of_parallel_guesses_counts_every_one_and_locks(crew: HubRig) -> None:
    # 25 failures lock: the first burst of 20 cannot reach the lock, so none of it is refused unverified
    # and every guess must be counted; the next burst of 5 reaches it.
    settings = Settings(database_url=crew.url, lockout_failures=25, sign_in_per_min=0)
    app = create_app(settings, hub=crew.hub)
    directory = app.state.context.directory
    try:
        await directory.open()
        await directory.create_account("op-7", Role.OPERATOR, "ershili", START, password=PASSWORD)
        async with _client(app) as http:

            async def guess(n: int) -> httpx.Response:
                return await http.post("/api/v1/auth/token", data={"username": "op-7", "password": f"wrong {n}"})

            async def failures() -> int:
                async with directory._engine.connect() as conn:
                    query = "SELECT failures FROM sign_in_failure WHERE name = 'op-7'"
                    return int((await conn.exec_driver_sql(query)).scalar_one())

            first = await asyncio.gather(*(guess(n) for n in range(20)))
            assert [a.status_code for a in first] == [401] * 20
            assert await failures() == 20
            second = await asyncio.gather(*(guess(n) for n in range(20, 25)))
            assert [a.status_code for a in second] == [401] * 5
            assert await failures() == 25
            right = await http.post("/api/v1/auth/token", data={"username": "op-7", "password": PASSWORD})
            assert right.status_code == 401 and "locked" in right.json()["detail"]
    finally:
        await directory.close()


def test_the_lockout_arithmetic() -> None:
    policy = Lockout(failures=3, window=timedelta(minutes=15), lock_for=timedelta(minutes=15))
    state: Failures | None = None
    for minute in (0, 5):
        state = after_failure(state, START + timedelta(minutes=minute), policy)
    assert locked_until(state, START + timedelta(minutes=5)) is None
    # The window starts again after 15 minutes: the third failure at minute 16 is only the second of its window.
    state = after_failure(state, START + timedelta(minutes=16), policy)
    assert state.count == 1 and locked_until(state, START + timedelta(minutes=16)) is None
    for minute in (17, 18):
        state = after_failure(state, START + timedelta(minutes=minute), policy)
    assert locked_until(state, START + timedelta(minutes=18)) == START + timedelta(minutes=33)
    assert locked_until(state, START + timedelta(minutes=33)) is None


async def test_the_stored_count_follows_the_lockout_arithmetic(database_url: str) -> None:
    policy = Lockout(failures=3, window=timedelta(minutes=15), lock_for=timedelta(minutes=15))
    directory = SqlDirectory(database_url, lockout=policy)
    await directory.open()
    try:
        expected: Failures | None = None
        # Within a window, across its end, up to a lock, and after the lock ran out.
        for minute in (0, 5, 16, 17, 18, 19, 40, 41):
            at = START + timedelta(minutes=minute)
            expected = after_failure(expected, at, policy)
            assert await directory._count_failure("someone", at) == expected, minute
    finally:
        await directory.close()


async def test_an_account_made_or_locked_on_the_machine_counts_at_the_running_dispatchers_next_sign_in(
    database_url: str,
) -> None:
    running = SqlDirectory(database_url)  # the dispatcher's, opened at its start
    machine = SqlDirectory(database_url)  # `dispatcher accounts ...` on the same database meanwhile
    await running.open()
    await machine.open()
    try:
        password = "correct horse battery"
        await machine.create_account(
            "late-officer", Role.FIELD_OFFICER, "ershili", START, officer_id="tp-02", password=password
        )
        token, principal = await running.sign_in("late-officer", password, START)
        assert principal.account.officer_id == "tp-02" and running.authenticate(token, START) is not None

        await machine.update_account("late-officer", START, disabled=True)
        with pytest.raises(SignInRefused):
            await running.sign_in("late-officer", password, START)
        await machine.update_account("late-officer", START, disabled=False)
        _, again = await running.sign_in("late-officer", password, START)
        assert not again.account.disabled

        # Locked out by guesses; a new password set on the machine lets the officer in at once.
        for _ in range(running.lockout.failures):
            with pytest.raises(SignInRefused):
                await running.sign_in("late-officer", "a wrong guess", START)
        with pytest.raises(SignInRefused) as locked:
            await running.sign_in("late-officer", password, START)
        assert locked.value.locked_until is not None
        await machine.update_account("late-officer", START, password="a new correct horse")
        await running.sign_in("late-officer", "a new correct horse", START)
    finally:
        await machine.close()
        await running.close()


async def test_the_first_start_creates_admin_once_with_a_generated_password(app: Any) -> None:
    directory = app.state.context.directory
    generated = await directory.ensure_admin(None, START)
    assert generated is not None and len(generated) >= 16
    assert await directory.ensure_admin(None, START) is None
    admin = directory.account("admin")
    assert admin is not None and admin.role is Role.ADMIN and admin.county
    token, _ = await directory.sign_in("admin", generated, START)
    assert directory.authenticate(token, START) is not None


async def test_device_tokens_are_issued_listed_and_revoked(app: Any) -> None:
    async with api_client(app) as admin:
        made = await admin.post(
            "/api/v1/accounts",
            json={"name": "tp-02-phone", "role": "field_officer", "township": "ershili", "officer_id": "tp-02"},
        )
        assert made.status_code == 201, made.text
        assert (
            await admin.post("/api/v1/accounts", json={"name": "x", "role": "field_officer", "township": "ershili"})
        ).status_code == 422
        issued = await admin.post("/api/v1/accounts/tp-02-phone/tokens", json={"label": "phone 1"})
        assert issued.status_code == 201
        device = {"Authorization": f"Bearer {issued.json()['token']}"}
        async with _client(app, device) as phone:
            assert (await phone.post("/api/v1/units/tp-02/status", json={"status": "available"})).status_code == 200
            listed = (await admin.get("/api/v1/accounts/tp-02-phone/tokens")).json()["data"]
            assert [t["label"] for t in listed] == ["phone 1"] and "token" not in listed[0]
            assert (await admin.delete(f"/api/v1/tokens/{issued.json()['id']}")).status_code == 204
            assert (await phone.post("/api/v1/units/tp-02/status", json={"status": "available"})).status_code == 401


async def test_a_township_administrator_manages_only_its_own_accounts(app: Any) -> None:
    headers = await sign_in_as(app, Role.ADMIN, township="ershili")
    async with _client(app, headers) as http:
        county = {"name": "county-2", "role": "supervision", "township": "*"}
        assert (await http.post("/api/v1/accounts", json=county)).status_code == 403
        own = {"name": "sv-1", "role": "supervision", "township": "ershili"}
        assert (await http.post("/api/v1/accounts", json=own)).status_code == 201
        assert (await http.patch("/api/v1/accounts/admin", json={"disabled": True})).status_code in (403, 404)


async def test_disabling_an_account_revokes_its_tokens(app: Any) -> None:
    operator = await sign_in_as(app, Role.OPERATOR, name="op-9", township="ershili")
    async with api_client(app) as admin, _client(app, operator) as http:
        assert (await http.get("/api/v1/auth/me")).status_code == 200
        assert (await admin.patch("/api/v1/accounts/op-9", json={"disabled": True})).status_code == 200
        assert (await http.get("/api/v1/auth/me")).status_code == 401


async def test_reporters_are_masked_for_roles_that_do_not_need_them(app: Any) -> None:
    async with api_client(app) as admin:
        labour = (await admin.post("/api/v1/incidents", json=LABOUR)).json()
        traffic = (await admin.post("/api/v1/incidents", json={**REPORT, "reporter": "李四 139"})).json()
        assert labour["reporter"] == "王五 13800000000"
    supervision = await sign_in_as(app, Role.SUPERVISION, township="ershili")
    officer = await sign_in_as(
        app, Role.FIELD_OFFICER, township="ershili", officer_id=traffic["assignments"][0]["officer"]
    )
    lead = await sign_in_as(app, Role.MODULE_LEAD, township="ershili", module=labour["module"])
    async with _client(app, supervision) as http:
        listed = (await http.get("/api/v1/incidents")).json()["data"]
        assert {i["reporter"] for i in listed} == {MASK}
        events = (await http.get("/api/v1/events")).text
        assert "13800000000" not in events and "李四" not in events
    async with _client(app, officer) as http:
        assert (await http.get(f"/api/v1/incidents/{traffic['id']}")).json()["reporter"] == "李四 139"
    async with _client(app, lead) as http:
        assert (await http.get(f"/api/v1/incidents/{labour['id']}")).json()["reporter"] == "王五 13800000000"


async def test_a_report_answers_a_reporter_only_what_it_may_read(app: Any) -> None:
    placed = {"category": "traffic.congestion", "zone": "five-way", "location": {"lat": 28.848, "lon": 118.912}}
    first = {**placed, "report_id": "k-1", "description": "堵", "reporter": "李四 13900000000"}
    async with api_client(app) as admin:
        made = (await admin.post("/api/v1/incidents", json=first)).json()
    holder = made["assignments"][0]["officer"]
    others = {a["officer"] for a in made["assignments"]}
    stranger = next(o for o in app.state.context.hub.roster.officers if o not in others)
    receipt_keys = {"id", "report_id", "status", "outcome"}
    async with _client(app, await sign_in_as(app, Role.FIELD_OFFICER, township="ershili", officer_id=stranger)) as http:
        # Re-posting a report_id it heard of: the incident is not handed over.
        known = await http.post("/api/v1/incidents", json=first)
        assert (known.status_code, known.headers["X-Report-Outcome"]) == (200, "known")
        assert set(known.json()) == receipt_keys and known.json()["id"] == made["id"]
        # Reporting next to it: it joins, and the answer holds nobody else's report.
        near = await http.post("/api/v1/incidents", json={**placed, "report_id": "k-2", "description": "还堵"})
        assert (near.status_code, near.headers["X-Report-Outcome"]) == (200, "joined")
        assert near.json() == {"id": made["id"], "report_id": "k-2", "status": made["status"], "outcome": "joined"}
        assert "13900000000" not in near.text
    lead = await sign_in_as(app, Role.MODULE_LEAD, township="ershili", module="labour")
    async with _client(app, lead) as http:
        assert set((await http.post("/api/v1/incidents", json=first)).json()) == receipt_keys
    # Who may read the incident gets it whole, masked as its role is.
    async with _client(app, await sign_in_as(app, Role.FIELD_OFFICER, township="ershili", officer_id=holder)) as http:
        joined = await http.post("/api/v1/incidents", json={**placed, "report_id": "k-3", "description": "更堵"})
        assert joined.headers["X-Report-Outcome"] == "joined"
        assert joined.json()["reporter"] == first["reporter"] and joined.json()["report_count"] == 3
    async with _client(app, await sign_in_as(app, Role.MODULE_LEAD, township="ershili", module=made["module"])) as http:
        assert (await http.post("/api/v1/incidents", json=first)).json()["assignments"] == made["assignments"]


@given(
    st.recursive(
        st.none() | st.text(max_size=5) | st.integers(min_value=-(2**53), max_value=2**53),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["reporter", "category", "module", "x"]), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_supervision_never_sees_a_reporter(value: Any) -> None:
    from dispatcher.accounts import Account

    account = Account("sv", Role.SUPERVISION, "ershili")
    masked = mask(orjson.loads(orjson.dumps(value)), account)

    def reporters(item: Any) -> list[Any]:
        if isinstance(item, list):
            return [r for i in item for r in reporters(i)]
        if isinstance(item, dict):
            own = [item["reporter"]] if item.get("reporter") is not None else []
            return own + [r for v in item.values() for r in reporters(v)]
        return []

    assert all(r == MASK for r in reporters(masked))


async def test_every_change_is_audited_with_who_and_where(app: Any) -> None:
    directory = app.state.context.directory
    await directory.open()
    await directory.create_account("op-3", Role.OPERATOR, "ershili", START, password=PASSWORD)
    async with _client(app) as http:
        await http.post("/api/v1/auth/token", data={"username": "op-3", "password": "not it at all"})
        await http.post("/api/v1/auth/token", data={"username": "=HYPERLINK(1)", "password": "x"})
        signed = await http.post("/api/v1/auth/token", data={"username": "op-3", "password": PASSWORD})
        operator = {"Authorization": f"Bearer {signed.json()['access_token']}"}
        made = (await http.post("/api/v1/incidents", json=REPORT, headers=operator)).json()
        await http.post(f"/api/v1/incidents/{made['id']}/cancel", json={"reason": "test"}, headers=operator)
    supervision = await sign_in_as(app, Role.SUPERVISION)  # the county's: sees entries of unknown names too
    async with _client(app, supervision) as http:
        lines = (await http.get("/api/v1/audit")).text.splitlines()
        rows = [orjson.loads(line) for line in lines]
        csv = (await http.get("/api/v1/audit", params={"format": "csv"})).text
        later = (await http.get("/api/v1/audit", params={"since": (START + timedelta(days=1)).isoformat()})).text
    seen = [(r["actor"], r["action"], r["outcome"]) for r in rows]
    assert ("op-3", "POST /api/v1/auth/token", 401) in seen
    assert ("op-3", "POST /api/v1/auth/token", 200) in seen
    assert ("op-3", "POST /api/v1/incidents", 201) in seen
    assert ("op-3", "POST /api/v1/incidents/{incident_id}/cancel", 200) in seen
    assert all(r["source"] for r in rows)
    assert csv.startswith("id,at,actor,township,action,target,outcome,source,detail")
    assert "'=HYPERLINK(1)" in csv and ",=HYPERLINK" not in csv
    assert later == ""


async def test_one_bad_audit_entry_loses_no_other(database_url: str) -> None:
    directory = SqlDirectory(database_url)
    await directory.open()

    def entry(n: int, target: str, outcome: int = 200) -> AuditEntry:
        return AuditEntry(at=START, action="POST /api/v1/incidents", outcome=outcome, actor=f"op-{n}", target=target)

    entries = [
        entry(0, "/api/v1/incidents"),  # committed alone: the others arrive while it is being written
        entry(1, "/api/v1/incidents"),
        entry(2, "/api/v1/incidents/\x00/cancel"),  # PostgreSQL's text holds no NUL
        entry(3, "/api/v1/incidents", outcome=2**70),  # no backend stores this: only this one is lost
        entry(4, "/api/v1/accounts/\ud800"),  # a lone surrogate is not UTF-8
        entry(5, "/api/v1/incidents"),
    ]
    try:
        results = await asyncio.gather(*(directory.record(e) for e in entries), return_exceptions=True)
        assert [n for n, r in enumerate(results) if isinstance(r, Exception)] == [3]
        stored = await directory.audit(since=None, until=None, township=None, limit=100)
    finally:
        await directory.close()
    assert sorted((e.actor, e.target) for e in stored) == [
        ("op-0", "/api/v1/incidents"),
        ("op-1", "/api/v1/incidents"),
        ("op-2", "/api/v1/incidents/\\x00/cancel"),
        ("op-4", "/api/v1/accounts/\\ud800"),
        ("op-5", "/api/v1/incidents"),
    ]


async def test_a_nul_in_a_path_is_audited_with_the_requests_around_it(app: Any) -> None:
    async with api_client(app) as http:
        paths = ["/api/v1/incidents/%00/cancel", *(f"/api/v1/incidents/{n}/cancel" for n in range(1, 8))]
        answers = await asyncio.gather(*(http.post(path, json={"reason": "test"}) for path in paths))
        assert all(a.status_code < 500 for a in answers)
        rows = [orjson.loads(line) for line in (await http.get("/api/v1/audit")).text.splitlines()]
    targets = {r["target"] for r in rows if r["action"].endswith("/cancel")}
    assert targets == {"/api/v1/incidents/\\x00/cancel", *(f"/api/v1/incidents/{n}/cancel" for n in range(1, 8))}


async def test_a_body_over_the_limit_is_refused_unread(app: Any) -> None:
    async with api_client(app) as http:
        huge = {**REPORT, "description": "x" * 70_000}
        assert (await http.post("/api/v1/incidents", json=huge)).status_code == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b" " * 1024

        streamed = await http.post("/api/v1/incidents", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
    assert app.state.context.hub.last_seq == 0


async def test_a_token_past_its_pace_gets_429_with_retry_after(app: Any, crew: HubRig) -> None:
    """The pace follows the injected clock: on the virtual one, time passes only when the test says so."""
    async with api_client(app) as http:
        burst = [(await http.get("/api/v1/rules/catalogue")).status_code for _ in range(50)]
        limited = await http.get("/api/v1/rules/catalogue")
        crew.clock.advance(timedelta(seconds=30))  # 1 per second: 30 more
        refilled = [(await http.get("/api/v1/rules/catalogue")).status_code for _ in range(31)]
    assert burst == [200] * 50
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert refilled == [200] * 30 + [429]


@pytest.mark.parametrize(("rate", "burst"), [(0, 200), (20, 0)])
async def test_a_zero_rate_or_burst_means_no_limit(crew: HubRig, rate: float, burst: float) -> None:
    application = create_app(Settings(database_url=crew.url, rate_burst=burst, rate_per_s=rate), hub=crew.hub)
    async with api_client(application) as http:
        statuses = {(await http.get("/api/v1/rules/catalogue")).status_code for _ in range(250)}
    assert statuses == {200}


@given(st.lists(st.floats(min_value=0, max_value=10), min_size=1, max_size=50))
def test_a_bucket_never_grants_more_than_burst_plus_rate_times_time(gaps: list[float]) -> None:
    buckets = TokenBuckets(rate_per_s=2.0, burst=5.0)
    now, granted = 0.0, 0
    for gap in gaps:
        now += gap
        wait = buckets.take("k", now)
        granted += wait == 0.0
        assert wait >= 0.0
    assert granted <= 5 + 2.0 * now + 1e-9


@given(st.lists(st.tuples(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), st.text(min_size=1)), max_size=4))
def test_township_entries_round_trip(entries: list[tuple[str, str]]) -> None:
    clean = [(t, p.replace(";", "").replace(":", "").replace("=", "").strip() or "t.yaml") for t, p in entries]
    text = ";".join(f"{t}={p}:sqlite+aiosqlite:///{t}.db" for t, p in clean)
    parsed = Settings(townships=text).township_entries()
    assert [(t, str(p), u) for t, p, u in parsed] == [
        (t, str(Path(p)), f"sqlite+aiosqlite:///{t}.db") for t, p in clean
    ]


async def test_nothing_leaks_between_two_townships(crew: HubRig, tmp_path: Path, repo_root: Path) -> None:
    quick_rules = compile_table(load_table(repo_root / "tests" / "fixtures" / "quick-township.yaml"))
    quick = HubRig(f"sqlite+aiosqlite:///{tmp_path / 'quick.db'}", quick_rules)
    await quick.hub.start()
    app = create_app(Settings(database_url=crew.url), hubs=[crew.hub, quick.hub])
    try:
        ershili_op = await sign_in_as(app, Role.OPERATOR, township="ershili")
        quick_op = await sign_in_as(app, Role.OPERATOR, township="quick")
        county = await sign_in_as(app, Role.ADMIN)
        async with _client(app, ershili_op) as ershili, _client(app, quick_op) as other, _client(app, county) as admin:
            made = await ershili.post("/api/v1/incidents", json=REPORT)
            assert made.status_code == 201
            assert (await other.get("/api/v1/incidents")).json()["count"] == 0
            assert (await other.get(f"/api/v1/incidents/{made.json()['id']}")).status_code == 404
            assert (await other.get("/api/v1/events")).json()["data"] == []
            assert (await other.get("/api/v1/rules")).json()["township"]["id"] == "quick"
            assert (await other.get("/api/v1/units")).json()["data"] == []  # quick runs without a roster
            assert len((await ershili.get("/api/v1/units")).json()["data"]) > 10
            assert (await other.get("/api/v1/incidents", params={"township": "ershili"})).status_code == 403
            # The county chooses; without a choice among two it is asked to.
            assert (await admin.get("/api/v1/incidents")).status_code == 400
            assert (await admin.get("/api/v1/incidents", headers={"X-Township": "ershili"})).json()["count"] == 1
            assert (await admin.get("/api/v1/incidents", params={"township": "quick"})).json()["count"] == 0
            assert (await admin.get("/api/v1/incidents", params={"township": "elsewhere"})).status_code == 403
        assert quick.hub.last_seq == 0
    finally:
        await app.state.context.directory.close()
        await quick.hub.stop()


async def test_the_generated_admin_password_is_printed_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", gc_freeze=False)
    first = create_app(settings)
    async with first.router.lifespan_context(first):
        pass
    printed = capsys.readouterr().out
    assert "the administrator account 'admin' was created" in printed
    password = printed.split("shown this once: ", 1)[1].split()[0]
    again = create_app(settings)
    async with again.router.lifespan_context(again):
        assert "password" not in capsys.readouterr().out
        directory = again.state.context.directory
        token, principal = await directory.sign_in("admin", password, START)
        assert principal.role is Role.ADMIN and directory.authenticate(token, START) is not None


_HEADER_NAMES = st.sampled_from([b"authorization", b"x-township", b"x-request-id", b"host", b"content-type"])


@given(st.lists(st.tuples(_HEADER_NAMES, st.binary(max_size=12)), max_size=8))
def test_the_guard_reads_the_headers_starlette_would(headers: list[tuple[bytes, bytes]]) -> None:
    """One pass over the raw headers finds what ``Headers.get`` finds: the first of each name, latin-1."""
    from starlette.datastructures import Headers

    from gateways.auth import _request_headers

    scope = {"type": "http", "headers": headers}
    read = Headers(scope=scope)
    assert _request_headers(scope) == (read.get("authorization"), read.get("x-township"), read.get("x-request-id"))


@pytest.mark.parametrize(
    ("header", "token"),
    [(None, None), ("", None), ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Bearer ", None), ("Basic abc", None)],
)
def test_only_a_bearer_scheme_gives_a_token(header: str | None, token: str | None) -> None:
    from gateways.auth import _bearer

    assert _bearer(header) == token
