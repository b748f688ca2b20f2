"""The four-part assessment's three computed parts (post points, team points, module scores) on the hand-made
June of tests/test_briefing.py plus a missed acknowledgement and a return, on both backends; the scoring
table's checker refusing broken tables with file:line; the route and the command."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from dispatcher.accounts import Role
from dispatcher.assessment import Assessment, assess
from dispatcher.briefing import Period
from dispatcher.settings import Settings
from dispatcher.sql_store import SqlIncidentStore, build_engine
from dispatcher.tables import EventRow
from rules import RuleTableError
from rules.scoring import BUNDLED_SCORING, check_scoring, load_scoring, load_scoring_text
from server.app import create_app
from server.cli import app
from tests.conftest import HubRig, api_client, sign_in_as
from tests.test_briefing import JUNE, History, june_history

AFTER_JUNE = datetime(2026, 7, 1, tzinfo=UTC)  # June 30 16:00 UTC ends June in Beijing time

BUNDLED = BUNDLED_SCORING.read_text(encoding="utf-8")
D = timedelta(days=1)


async def june_with_misses(engine: AsyncEngine) -> None:
    h = History(engine)
    await june_history(h)
    # traffic missed its acknowledgement of incident 1 (priority 2); the drill's miss (4) never counts
    for incident in (1, 4):
        await h.event(incident, "DeadlineMissed", JUNE + 2 * D, team="traffic", kind="ack")
    # incident 8's labour return (in june_history) is the team's, at team_points.returned (0 in the bundled table)


def scores(result: Assessment) -> dict[str, dict[str, float]]:
    return {
        "posts": {s.unit: s.score for s in result.posts},
        "teams": {s.unit: s.score for s in result.teams},
        "modules": {s.unit: s.score for s in result.modules},
    }


async def test_each_score_comes_from_its_incidents(engine: AsyncEngine) -> None:
    await june_with_misses(engine)
    result = await assess(engine, period=Period.parse("2026-06"), table=load_scoring().table)
    # Due in June (all priority 2): 1 closed on time by tp-01 (+2), 2 closed late by tp-02 (−2), 3 market's,
    # still open on 1 July (−4, no officer). The drill (4) and the merged 5 count nowhere.
    assert scores(result) == {
        "posts": {"tp-01": 102.0, "tp-02": 98.0},
        "teams": {"traffic": -1.5, "market": -4.0, "labour": 0.0},  # traffic: +2 −2 −1.5 (missed ack)
        "modules": {"enforcement": 100 + (-1.5 - 4.0) / 2, "service": 100.0},
    }
    tp01 = next(s for s in result.posts if s.unit == "tp-01")
    assert [(x.rule, x.count, x.points, x.incidents) for x in tp01.lines] == [
        ("post_points.on_time_close.p2", 1, 2.0, (1,))
    ]
    traffic = next(s for s in result.teams if s.unit == "traffic")
    assert [(x.rule, x.incidents) for x in traffic.lines] == [
        ("post_points.late_close.p2", (2,)),
        ("post_points.on_time_close.p2", (1,)),
        ("team_points.missed_acknowledgement.p2", (1,)),
    ]
    labour = next(s for s in result.teams if s.unit == "labour")
    assert [(x.rule, x.count, x.incidents) for x in labour.lines] == [("team_points.returned", 1, (8,))]
    enforcement = next(s for s in result.modules if s.unit == "enforcement")
    assert [(x.rule, x.incidents) for x in enforcement.lines] == [
        ("module_score.mean.market", (3,)),
        ("module_score.mean.traffic", (1, 2)),
    ]
    assert "special_bonus" in result.not_counted


async def test_a_period_that_ends_before_the_late_close_sees_it_open(engine: AsyncEngine) -> None:
    await june_with_misses(engine)
    # 2 was due 6 June 00:00 UTC and closed on 7 June 01:00: up to 7 June 00:00 it is open past its deadline.
    result = await assess(engine, period=Period.parse("2026-05"), table=load_scoring().table)
    assert {s.unit: s.score for s in result.posts} == {}  # nothing of June was due in May
    first = Period(name="first-week", start=JUNE, end=JUNE + 6 * D, months=())
    early = await assess(engine, period=first, table=load_scoring().table)
    tp02 = next(s for s in early.posts if s.unit == "tp-02")
    assert [(x.rule, x.incidents) for x in tp02.lines] == [("post_points.open_past_deadline.p2", (2,))]


@pytest.mark.parametrize(
    ("change", "line", "says"),
    [
        (("module_score:", "modul_score:"), 30, "unknown key 'modul_score'"),
        (("late_close: {p1: -3", "late_close: {p1: 3"), 24, "post_points.late_close.p1 is 3: this loses points"),
        (("on_time_close: {p1: 3, p2: 2,", "on_time_close: {p1: 3,"), 23, "on_time_close.p2: required key"),
        (("  returned: 0\n", "  returned: lots\n"), 28, "team_points.returned"),
        (("base: 100\n  on_time", "base: 1000\n  on_time"), 22, "post_points.base"),
    ],
)
def test_the_checker_refuses_broken_tables_with_file_and_line(change: tuple[str, str], line: int, says: str) -> None:
    old, new = change
    assert old in BUNDLED
    with pytest.raises(RuleTableError) as raised:
        load_scoring_text(BUNDLED.replace(old, new, 1), source="scoring.yaml")
    problems = [(p.file, p.line, p.message) for p in raised.value.problems]
    assert len(problems) == 1 and problems[0][:2] == ("scoring.yaml", line) and says in problems[0][2], problems


def test_a_table_for_another_township_or_not_yaml_is_refused(bundled_rules: object) -> None:
    other = load_scoring_text(BUNDLED.replace("township: ershili", "township: elsewhere"), source="s.yaml")
    [problem] = check_scoring(other, bundled_rules)  # type: ignore[arg-type]
    assert (problem.file, problem.line) == ("s.yaml", 6) and "'ershili'" in problem.message
    with pytest.raises(RuleTableError) as raised:
        load_scoring_text("version: [\n", source="s.yaml")
    assert raised.value.problems[0].file == "s.yaml" and "not valid YAML" in raised.value.problems[0].message


def test_the_command_prints_scores_and_refuses_a_broken_table(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dispatcher.db'}"

    async def fill() -> None:
        store = SqlIncidentStore(url, durable=False)
        await store.open()
        await store.close()
        engine = build_engine(url, durable=False)
        try:
            await june_with_misses(engine)
        finally:
            await engine.dispose()

    asyncio.run(fill())
    result = CliRunner().invoke(app, ["assess", "--period", "2026-06", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "  tp-01: 102 (base 100)" in result.output
    assert "    post_points.on_time_close.p2: 1 × 2 = 2  [#1]" in result.output
    broken = tmp_path / "scoring.yaml"
    broken.write_text(BUNDLED.replace("late_close: {p1: -3", "late_close: {p1: 3"), encoding="utf-8")
    refused = CliRunner().invoke(
        app, ["assess", "--period", "2026-06", "--scoring", str(broken), "--database-url", url]
    )
    assert refused.exit_code == 1
    assert f"{broken}:24: post_points.late_close.p1 is 3" in refused.output


async def test_a_leader_reads_the_assessment_and_a_field_officer_is_refused(rig: HubRig) -> None:
    rig.clock.advance_to(AFTER_JUNE)  # June read once it ended (a running period is read up to now)
    engine = build_engine(rig.url, durable=False)
    try:
        await june_with_misses(engine)
    finally:
        await engine.dispose()
    service = create_app(Settings(database_url=rig.url), hub=rig.hub)
    async with api_client(service, await sign_in_as(service, Role.PARTY_SECRETARY)) as leader:
        answer = await leader.get("/api/v1/assessment", params={"period": "2026-06"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["table_version"] == load_scoring().table.version
        tp02 = next(s for s in body["posts"] if s["unit"] == "tp-02")
        assert tp02["score"] == 98.0 and tp02["lines"][0]["incidents"] == [2]
        assert (await leader.get("/api/v1/assessment", params={"period": "June"})).status_code == 422
    officer = await sign_in_as(service, Role.FIELD_OFFICER, officer_id="tp-01")
    async with api_client(service, officer) as field:
        assert (await field.get("/api/v1/assessment", params={"period": "2026-06"})).status_code == 403


async def test_a_special_bonus_counts_once_a_second_person_approves_it(rig: HubRig) -> None:
    engine = build_engine(rig.url, durable=False)
    try:
        await june_with_misses(engine)
    finally:
        await engine.dispose()
    rig.clock.advance_to(AFTER_JUNE)  # June read once it ended (a running period is read up to now)
    hub = await rig.restart()  # the history was written beside the hub: it takes the log's seq up again
    service = create_app(Settings(database_url=rig.url), hub=hub)
    entry = {"period": "2026-06", "unit_kind": "post", "unit": "tp-02", "points": 3, "reason": "抗洪抢险突出"}
    clerk = await sign_in_as(service, Role.SUPERVISION, name="duban-li")
    async with api_client(service, clerk) as li:
        made = await li.post("/api/v1/assessment/bonuses", json=entry)
        assert made.status_code == 201, made.text
        bonus = made.json()
        assert (bonus["entered_by"], bonus["approved_by"]) == ("duban-li", None)
        # waiting: listed, not counted
        before = (await li.get("/api/v1/assessment", params={"period": "2026-06"})).json()
        assert next(s for s in before["posts"] if s["unit"] == "tp-02")["score"] == 98.0
        assert [b["bonus"] for b in before["bonuses"]] == [bonus["bonus"]]
        # the same person may not approve it: refused, nothing written
        own = await li.post(f"/api/v1/assessment/bonuses/{bonus['bonus']}/approve")
        assert own.status_code == 409 and "second person" in own.json()["detail"]
        assert (await li.post("/api/v1/assessment/bonuses/999999/approve")).status_code == 404
        for bad in ({**entry, "reason": ""}, {**entry, "points": 500}, {**entry, "unit_kind": "village"}):
            assert (await li.post("/api/v1/assessment/bonuses", json=bad)).status_code == 422
    async with api_client(service, await sign_in_as(service, Role.SUPERVISION, name="duban-wang")) as wang:
        approved = await wang.post(f"/api/v1/assessment/bonuses/{bonus['bonus']}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["approved_by"] == "duban-wang"
        again = await wang.post(f"/api/v1/assessment/bonuses/{bonus['bonus']}/approve")
        assert again.status_code == 409 and "already approved" in again.json()["detail"]
        after = (await wang.get("/api/v1/assessment", params={"period": "2026-06"})).json()
        tp02 = next(s for s in after["posts"] if s["unit"] == "tp-02")
        assert tp02["score"] == 101.0
        assert tp02["lines"][-1] == {
            "rule": f"special_bonus.{bonus['bonus']}",
            "count": 1,
            "points_each": 3.0,
            "points": 3.0,
            "incidents": [],
        }
        other = (await wang.get("/api/v1/assessment", params={"period": "2026-07"})).json()
        assert other["bonuses"] == []  # it counts in its own period only
    # a leader may read but not enter; the audit trail holds the entry, the refusal and the approval
    async with api_client(service, await sign_in_as(service, Role.PARTY_SECRETARY)) as leader:
        assert (await leader.post("/api/v1/assessment/bonuses", json=entry)).status_code == 403
        audit = (await leader.get("/api/v1/audit")).status_code
        assert audit == 403  # the trail is for supervision and administrators
    async with api_client(service, clerk) as li:
        trail = [json.loads(line) for line in (await li.get("/api/v1/audit")).text.splitlines()]
        seen = [(e["actor"], e["target"], e["outcome"]) for e in trail if "bonuses" in e["action"]]
        approve = f"/api/v1/assessment/bonuses/{bonus['bonus']}/approve"
        assert ("duban-li", "/api/v1/assessment/bonuses", 201) in seen
        assert ("duban-li", approve, 409) in seen
        assert ("duban-wang", approve, 200) in seen


async def test_two_approvers_at_once_log_one_approval(rig: HubRig) -> None:
    """Both approvers pass the check against the committed log (each read it before the other's approval
    was written); the writer, in its turn, logs the first and refuses the second."""
    from dispatcher.assessment import BonusRefused
    from dispatcher.briefing import Period

    hub = rig.hub
    bonus_id = await hub.enter_bonus(
        period=Period.parse("2026-06"), unit_kind="post", unit="tp-02", points=3, reason="抗洪抢险", at=rig.clock.now(),
        actor="duban-li",
    )  # fmt: skip
    before = await hub.bonuses()

    async def as_read_before() -> dict[int, Any]:
        return before

    hub.bonuses = as_read_before  # type: ignore[method-assign]
    first, second = await asyncio.gather(
        hub.approve_bonus(bonus_id, at=rig.clock.now(), actor="duban-wang"),
        hub.approve_bonus(bonus_id, at=rig.clock.now(), actor="duban-zhao"),
        return_exceptions=True,
    )
    assert not isinstance(first, BaseException) and first.approved_by == "duban-wang"
    assert isinstance(second, BonusRefused) and "already approved by duban-wang" in str(second)
    logged = await hub.store.events_of_type("BonusApproved", limit=10)
    assert [orjson.loads(e.payload)["approved_by"] for e in logged] == ["duban-wang"]
    # the next one, in a later batch, is refused as well
    with pytest.raises(BonusRefused, match="already approved by duban-wang"):
        await hub.approve_bonus(bonus_id, at=rig.clock.now(), actor="duban-zhao")


async def test_the_supervision_office_puts_a_scoring_table_in_force_for_the_periods_ending_after(
    rig: HubRig,
) -> None:
    engine = build_engine(rig.url, durable=False)
    try:
        await june_with_misses(engine)
    finally:
        await engine.dispose()
    hub = await rig.restart()  # the history was written beside the hub: it takes the log's seq up again
    service = create_app(Settings(database_url=rig.url), hub=hub)
    stricter = BUNDLED.replace("version: ershili-scoring-2026-11", "version: ershili-scoring-2026-06-strict")
    stricter = stricter.replace("late_close: {p1: -3, p2: -2,", "late_close: {p1: -3, p2: -10,")
    yaml = {"content-type": "application/yaml"}

    def tp02(body: dict[str, Any]) -> float:
        return float(next(s for s in body["posts"] if s["unit"] == "tp-02")["score"])

    async with api_client(service, await sign_in_as(service, Role.SUPERVISION, name="duban-li")) as clerk:
        assert tp02((await clerk.get("/api/v1/assessment", params={"period": "2026-06"})).json()) == 98.0
        broken = await clerk.put(
            "/api/v1/assessment/scoring", content=stricter.replace("p2: -10,", "p2: 10,"), headers=yaml
        )
        assert broken.status_code == 422
        assert broken.json()["problems"][0]["line"] == 24  # file:line, as for the rule table
        assert (await clerk.get("/api/v1/assessment/scoring")).json() == []  # nothing stored
        put = await clerk.put("/api/v1/assessment/scoring", content=stricter, headers=yaml)
        assert put.status_code == 200, put.text
        assert (put.json()["version"], put.json()["put_by"]) == ("ershili-scoring-2026-06-strict", "duban-li")
        # put in force on 12 June: it scores June (late close of incident 2 at p2: 100 − 10) ...
        june = (await clerk.get("/api/v1/assessment", params={"period": "2026-06"})).json()
        assert (june["table_version"], tp02(june)) == ("ershili-scoring-2026-06-strict", 90.0)
        # ... not May, which ended before it: the bundled table
        may = (await clerk.get("/api/v1/assessment", params={"period": "2026-05"})).json()
        assert may["table_version"] == "ershili-scoring-2026-11"
        listed = (await clerk.get("/api/v1/assessment/scoring")).json()
        assert [v["version"] for v in listed] == ["ershili-scoring-2026-06-strict"]
    officer = await sign_in_as(service, Role.FIELD_OFFICER, officer_id="tp-01")
    async with api_client(service, officer) as field:
        assert (await field.put("/api/v1/assessment/scoring", content=stricter, headers=yaml)).status_code == 403


async def test_the_scoring_event_names_its_text_and_the_command_scores_by_the_table_in_force(rig: HubRig) -> None:
    """The ScoringPutInForce event carries the table's version and digest, not its YAML (which is stored apart,
    under the digest); an event logged before, with the YAML in it, still reads; ``dispatcher assess`` scores
    by the table in force for the period, as the route does, and ``--scoring`` overrides it."""
    engine = build_engine(rig.url, durable=False)
    h = History(engine)
    earlier = BUNDLED.replace("version: ershili-scoring-2026-11", "version: ershili-scoring-2026-06-early")
    try:
        await june_with_misses(engine)
        # a table put in force on 5 June the way it was logged before its text was stored apart
        old = {
            "at": (JUNE + 4 * D).isoformat(),
            "version": "ershili-scoring-2026-06-early",
            "body": earlier,
            "actor": None,
        }
        async with engine.begin() as conn:
            row = dict(seq=h.seq + 100, incident_id=None, type="ScoringPutInForce", at=JUNE + 4 * D)
            await conn.execute(EventRow.__table__.insert(), [{**row, "payload": orjson.dumps(old).decode()}])  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
    hub = await rig.restart()
    stricter = BUNDLED.replace("version: ershili-scoring-2026-11", "version: ershili-scoring-2026-06-strict")
    stricter = stricter.replace("late_close: {p1: -3, p2: -2,", "late_close: {p1: -3, p2: -10,")
    seq = await hub.put_scoring_in_force(
        version="ershili-scoring-2026-06-strict", body=stricter, at=rig.clock.now(), actor="duban-li"
    )

    logged = await hub.store.events_of_type("ScoringPutInForce", limit=10)
    assert [e.seq for e in logged] == [h.seq + 100, seq]
    payload = orjson.loads(logged[1].payload)
    assert payload["version"] == "ershili-scoring-2026-06-strict"
    assert payload["digest"] == hashlib.sha256(stricter.encode()).hexdigest()
    assert payload["size"] == len(stricter.encode())
    assert payload.get("body") is None and "late_close" not in logged[1].payload
    assert len(logged[1].payload) < 400 < len(stricter)  # a line on the board's feed, not the table
    tables = await hub.scoring_tables()
    assert [(s, t.version, t.body) for s, t in tables] == [
        (h.seq + 100, "ershili-scoring-2026-06-early", earlier),
        (seq, "ershili-scoring-2026-06-strict", stricter),
    ]
    # the same text put in force again is stored once, and named by the same digest
    again = await hub.put_scoring_in_force(
        version="ershili-scoring-2026-06-strict", body=stricter, at=rig.clock.now(), actor="duban-wang"
    )
    assert (await hub.scoring_tables())[-1][1].digest == payload["digest"] and again > seq

    def assess_command(*extra: str) -> str:
        result = CliRunner().invoke(app, ["assess", "--period", "2026-06", "--database-url", rig.url, *extra])
        assert result.exit_code == 0, result.output
        return result.output

    # the command runs its own event loop: in a thread, beside the test's
    by_stored = await asyncio.to_thread(assess_command)
    assert "by scoring table ershili-scoring-2026-06-strict" in by_stored
    assert "  tp-02: 90 (base 100)" in by_stored  # the late close of incident 2 at p2: 100 − 10
    by_file = await asyncio.to_thread(assess_command, "--scoring", str(BUNDLED_SCORING))
    assert "by scoring table ershili-scoring-2026-11" in by_file
    assert "  tp-02: 98 (base 100)" in by_file
