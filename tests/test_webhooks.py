"""Webhook subscriptions: the pure rules, the signature, and delivery from the event log on both backends.

The receiver here is an ``httpx.MockTransport`` handler in the test (the end-to-end test in
``tests/e2e/test_webhooks_e2e.py`` uses a real receiving process). Tests wait for the subscription's
cursor to pass the last event (:meth:`Deliverer.delivered`), never on time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from dispatcher.core.incidents import Report
from dispatcher.webhooks import Attempt, Backoff, SqlWebhooks, Subscription, disable_reason, webhook_id
from gateways.webhooks import Deliverer, DeliverySettings, body_of, gbt_codes, signed_headers
from rules import RuleBook
from tests.conftest import HubRig
from tests.test_hub import five_way as _five_way


def five_way(report_id: str) -> Report:
    """The five-way jam, each at its own spot: reports placed only by the small zone would join one incident."""
    n = sum(map(ord, report_id)) % 50
    return dataclasses.replace(_five_way(report_id), zone=None, lat=28.80 + n * 0.01, lon=118.80 + n * 0.01)


FAST = DeliverySettings(
    timeout_s=5.0,
    backoff=Backoff(first=timedelta(milliseconds=1), most=timedelta(milliseconds=4)),
    disable_after=timedelta(days=1),
)


# -- the pure rules ----------------------------------------------------------------------------------


def test_backoff_doubles_from_the_first_wait_up_to_the_longest() -> None:
    backoff = Backoff(first=timedelta(seconds=1), most=timedelta(seconds=10))
    assert [backoff.after(n).total_seconds() for n in range(7)] == [0, 1, 2, 4, 8, 10, 10]
    assert backoff.after(10_000) == timedelta(seconds=10)  # no overflow after a long outage


def test_a_subscription_is_disabled_only_after_failing_for_the_whole_limit() -> None:
    since = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    limit = timedelta(hours=24)
    assert disable_reason(None, since + timedelta(days=3), limit) is None  # not failing
    assert disable_reason(since, since + timedelta(hours=23, minutes=59), limit) is None
    reason = disable_reason(since, since + limit, limit)
    assert reason is not None and "24 h" in reason


def test_the_webhook_id_is_the_same_for_every_try_of_one_event() -> None:
    assert webhook_id("ershili", 41) == webhook_id("ershili", 41) == "evt_ershili_41"
    assert webhook_id("ershili", 41) != webhook_id("ershili", 42) != webhook_id("longyou", 41)


def test_the_signature_verifies_and_fails_when_one_byte_of_the_body_changes() -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = orjson.dumps({"type": "IncidentReported", "data": {"seq": 7, "text": "五岔口拥堵"}})
    at = datetime.now(UTC)
    headers = signed_headers(secret, "evt_ershili_7", at, body)
    assert Webhook(secret).verify(body, headers)["data"]["seq"] == 7
    for index in (0, len(body) // 2, len(body) - 1):
        tampered = bytearray(body)
        tampered[index] ^= 0x01
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(bytes(tampered), headers)
    with pytest.raises(WebhookVerificationError):  # the same body under another id
        Webhook(secret).verify(body, {**headers, "webhook-id": "evt_ershili_8"})


# -- delivery from the log ---------------------------------------------------------------------------


class Receiver:
    """What a receiving system saw: each request verified with the subscription's secret, deduplicated by id."""

    def __init__(self) -> None:
        self.secret = ""
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.answers: list[int] = []  # status codes to give first, then 204

    def handle(self, request: httpx.Request) -> httpx.Response:
        status = self.answers.pop(0) if self.answers else 204
        if status < 300:
            body = Webhook(self.secret).verify(request.content, dict(request.headers))
            self.requests.append((request.headers["webhook-id"], body))
        return httpx.Response(status)

    @property
    def ids(self) -> list[str]:
        return [message_id for message_id, _ in self.requests]


@pytest.fixture
async def webhooks(crew: HubRig) -> AsyncIterator[tuple[HubRig, SqlWebhooks, Receiver, Deliverer]]:
    store = SqlWebhooks(crew.url)
    receiver = Receiver()
    client = httpx.AsyncClient(transport=httpx.MockTransport(receiver.handle))
    deliverer = Deliverer(store, {"ershili": crew.hub}, FAST, client=client)
    async with deliverer.running():
        yield crew, store, receiver, deliverer
    await client.aclose()


async def _subscribe(
    rig: HubRig, store: SqlWebhooks, receiver: Receiver, deliverer: Deliverer, **options: Any
) -> Subscription:
    settings: dict[str, Any] = {
        "event_types": ["IncidentReported"],
        "description": None,
        "include_drills": False,
        "reveal_reporters": False,
    }
    settings.update(options)
    subscription = await store.create(
        township="ershili",
        url="http://receiver.test/hook",
        delivered_seq=rig.hub.last_seq,
        created_by="admin",
        at=rig.clock.now(),
        **settings,
    )
    receiver.secret = subscription.secret
    deliverer.refresh()
    return subscription


async def test_reports_reach_the_receiver_signed_in_order_and_the_cursor_follows(
    webhooks: tuple[HubRig, SqlWebhooks, Receiver, Deliverer],
) -> None:
    rig, store, receiver, deliverer = webhooks
    before = await rig.hub.report(five_way("before"), rig.clock.now())  # before the subscription: not sent
    subscription = await _subscribe(rig, store, receiver, deliverer)
    outcomes = [await rig.hub.report(five_way(f"r-{n}"), rig.clock.now()) for n in range(3)]
    await asyncio.wait_for(deliverer.delivered(subscription.id, rig.hub.last_seq), timeout=30)

    reported = [e for e in await rig.hub.events_since(0, limit=1000) if e.type == "IncidentReported"]
    assert before.incident.id not in [body["data"]["incident_id"] for _, body in receiver.requests]
    assert receiver.ids == [webhook_id("ershili", e.seq) for e in reported[1:]]
    assert [body["data"]["incident_id"] for _, body in receiver.requests] == [o.incident.id for o in outcomes]
    assert all(body["type"] == "IncidentReported" for _, body in receiver.requests)
    stored = store.get(subscription.id)
    assert stored is not None and stored.failing_since is None
    attempts = await store.attempts(subscription.id, limit=10)
    assert [a.ok for a in attempts] == [True, True, True]


async def test_a_failing_receiver_gets_the_same_event_again_until_it_takes_it_and_nothing_after_it_first(
    webhooks: tuple[HubRig, SqlWebhooks, Receiver, Deliverer],
) -> None:
    rig, store, receiver, deliverer = webhooks
    receiver.answers = [503, 500, 404]  # three failures, then 204
    subscription = await _subscribe(rig, store, receiver, deliverer)
    first = await rig.hub.report(five_way("a"), rig.clock.now())
    second = await rig.hub.report(five_way("b"), rig.clock.now())
    await asyncio.wait_for(deliverer.delivered(subscription.id, rig.hub.last_seq), timeout=30)

    assert [body["data"]["incident_id"] for _, body in receiver.requests] == [first.incident.id, second.incident.id]
    attempts = list(reversed(await store.attempts(subscription.id, limit=10)))
    assert [(a.attempt, a.ok, a.status_code) for a in attempts] == [
        (1, False, 503),
        (2, False, 500),
        (3, False, 404),
        (4, True, 204),
        (1, True, 204),
    ]
    assert len({a.webhook_id for a in attempts[:4]}) == 1  # every try of the first event under one id
    stored = store.get(subscription.id)
    assert stored is not None and stored.failing_since is None  # healthy again


async def test_drills_and_other_types_are_skipped_and_reporters_masked_unless_revealed(
    webhooks: tuple[HubRig, SqlWebhooks, Receiver, Deliverer],
) -> None:
    rig, store, receiver, deliverer = webhooks
    subscription = await _subscribe(rig, store, receiver, deliverer, event_types=["*"])
    drill = dataclasses.replace(five_way("drill"), exercise=True, reporter="13800001111")
    real = dataclasses.replace(five_way("real"), reporter="13800002222")
    await rig.hub.report(drill, rig.clock.now())
    outcome = await rig.hub.report(real, rig.clock.now())
    real_events = [e for e in await rig.hub.events_since(0, limit=1000) if e.incident_id == outcome.incident.id]
    await asyncio.wait_for(deliverer.delivered(subscription.id, rig.hub.last_seq), timeout=30)

    assert {body["data"]["incident_id"] for _, body in receiver.requests} == {outcome.incident.id}
    assert receiver.ids == [webhook_id("ershili", e.seq) for e in real_events]
    reported = next(body for _, body in receiver.requests if body["type"] == "IncidentReported")
    assert reported["data"]["event"]["reporter"] == "***"
    assert b"13800002222" not in b"".join(orjson.dumps(body) for _, body in receiver.requests)


@pytest.mark.parametrize("kept", [1, 5, 30])
async def test_the_attempt_log_keeps_the_newest_attempts_of_each_subscription(crew: HubRig, kept: int) -> None:
    store = SqlWebhooks(crew.url, attempts_kept=kept)
    await store.open()
    try:
        made = [
            await store.create(
                township="ershili",
                url=f"http://receiver.test/{name}",
                event_types=["*"],
                description=None,
                include_drills=False,
                reveal_reporters=False,
                delivered_seq=0,
                created_by="admin",
                at=crew.clock.now(),
            )
            for name in ("busy", "quiet")
        ]
        busy, quiet = (s.id for s in made)

        async def attempt(subscription_id: int, seq: int) -> None:
            tried = Attempt(
                subscription_id=subscription_id,
                seq=seq,
                webhook_id=webhook_id("ershili", seq),
                attempt=1,
                at=crew.clock.now(),
                ok=False,
                status_code=503,
                error="HTTP 503",
                duration_ms=1.0,
            )
            await store.record(tried, delivered_seq=None, failing_since=crew.clock.now())

        for seq in range(1, 3 * kept + 8):
            await attempt(busy, seq)
        await attempt(quiet, 1)
        log = [a.seq for a in await store.attempts(busy, limit=10 * kept + 10)]
        bound = kept + max(1, kept // 10) - 1  # pruned every tenth of the bound
        assert kept <= len(log) <= bound and log == list(range(3 * kept + 7, 3 * kept + 7 - len(log), -1))
        assert [a.seq for a in await store.attempts(quiet, limit=10)] == [1]  # another's log is its own
    finally:
        await store.close()


async def test_a_receiver_failing_for_the_whole_limit_is_disabled_with_a_township_event(crew: HubRig) -> None:
    store = SqlWebhooks(crew.url)
    refused = asyncio.Event()

    def refuse(request: httpx.Request) -> httpx.Response:
        crew.clock.advance(timedelta(hours=7))  # the receiver stays down for hours between tries
        refused.set()
        return httpx.Response(502)

    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    settings = dataclasses.replace(FAST, disable_after=timedelta(hours=20))
    deliverer = Deliverer(store, {"ershili": crew.hub}, settings, client=client)
    async with deliverer.running():
        subscription = await store.create(
            township="ershili",
            url="http://receiver.test/hook",
            event_types=["IncidentReported"],
            description="county",
            include_drills=False,
            reveal_reporters=False,
            delivered_seq=crew.hub.last_seq,
            created_by="admin",
            at=crew.clock.now(),
        )
        subscription_feed = crew.hub.feed.subscribe()
        deliverer.refresh()
        await crew.hub.report(five_way("x"), crew.clock.now())
        while True:  # the township's log says so: wait for that event itself
            record = await asyncio.wait_for(subscription_feed.get(), timeout=30)
            if '"type":"WebhookDisabled"' in getattr(record, "message", ""):
                break
        subscription_feed.close()
    await client.aclose()

    stored = store.get(subscription.id)
    assert stored is not None and not stored.enabled and stored.disabled_reason is not None
    attempts = await store.attempts(subscription.id, limit=100)
    assert [a.ok for a in attempts] == [False] * 4  # +7 h each: failing since the first, disabled at +21 h
    disabled = [e for e in await crew.hub.events_since(0, limit=1000) if e.type == "WebhookDisabled"]
    assert len(disabled) == 1 and orjson.loads(disabled[0].payload)["subscription_id"] == subscription.id


def test_an_event_naming_a_category_carries_its_national_catalogue_code(bundled_rules: RuleBook) -> None:
    from dispatcher.store import StoredEvent

    subscription = Subscription(
        id=1,
        township="ershili",
        url="http://x.test/",
        event_types=frozenset({"*"}),
        secret="whsec_AAAA",
        description=None,
        include_drills=False,
        reveal_reporters=False,
        enabled=True,
        delivered_seq=0,
        failing_since=None,
        disabled_reason=None,
        created_by=None,
        created_at=datetime(2026, 12, 4, tzinfo=UTC),
    )
    codes = gbt_codes(bundled_rules)

    def data(type_name: str, payload: dict[str, Any]) -> dict[str, Any]:
        event = StoredEvent(
            seq=1, incident_id=3, type=type_name, at=subscription.created_at, payload=orjson.dumps(payload).decode()
        )
        found: dict[str, Any] = orjson.loads(body_of(subscription, "ershili", event, codes))["data"]
        return found

    assert data("IncidentReported", {"category": "planning.illegal_construction"})["gbt_code"] == "06001"
    assert data("IncidentReported", {"category": "market.stall_encroachment"})["gbt_code"] == "09006"
    assert data("IncidentReported", {"category": "traffic.congestion"})["gbt_code"] is None  # none fits
    assert data("IncidentReported", {"category": None})["gbt_code"] is None  # in triage
    assert "gbt_code" not in data("UnitMoved", {"team": "patrol"})


def test_the_body_carries_type_timestamp_and_the_event_with_its_township_and_seq() -> None:
    from dispatcher.store import StoredEvent

    event = StoredEvent(
        seq=9,
        incident_id=3,
        type="IncidentReported",
        at=datetime(2026, 12, 4, 8, 0, tzinfo=UTC),
        payload='{"report":{"reporter":"13800001111","category":"traffic.congestion"}}',
    )
    subscription = Subscription(
        id=1,
        township="ershili",
        url="http://x.test/",
        event_types=frozenset({"*"}),
        secret="whsec_AAAA",
        description=None,
        include_drills=False,
        reveal_reporters=True,
        enabled=True,
        delivered_seq=0,
        failing_since=None,
        disabled_reason=None,
        created_by=None,
        created_at=event.at,
    )
    body = orjson.loads(body_of(subscription, "ershili", event))
    assert body == {
        "type": "IncidentReported",
        "timestamp": "2026-12-04T08:00:00+00:00",
        "data": {
            "township": "ershili",
            "seq": 9,
            "incident_id": 3,
            "event": {"report": {"reporter": "13800001111", "category": "traffic.congestion"}},
        },
    }
    hidden = orjson.loads(body_of(dataclasses.replace(subscription, reveal_reporters=False), "ershili", event))
    assert hidden["data"]["event"]["report"]["reporter"] == "***"


# -- the API -----------------------------------------------------------------------------------------


async def test_administrators_manage_subscriptions_and_bad_ones_are_refused_with_the_reason(crew: HubRig) -> None:
    from dispatcher.accounts import Role
    from dispatcher.settings import Settings
    from server.app import create_app
    from tests.conftest import api_client, sign_in_as

    app = create_app(Settings(database_url=crew.url), hub=crew.hub)
    try:
        admin = await sign_in_as(app, Role.ADMIN, township="ershili")
        async with api_client(app, admin) as http:
            for bad, field in (
                ({"url": "ftp://county.example/hook", "event_types": ["*"]}, "url"),
                ({"url": "http://county.example/hook", "event_types": []}, "event_types"),
                ({"url": "http://county.example/hook", "event_types": ["incident reported"]}, "event_types"),
                ({"url": "http://county.example/hook", "event_types": ["*"], "secret": "mine"}, "secret"),
            ):
                answer = await http.post("/api/v1/webhooks", json=bad)
                assert answer.status_code == 422, answer.text
                assert field in answer.text
            made = await http.post(
                "/api/v1/webhooks", json={"url": "http://county.example/hook", "event_types": ["IncidentReported"]}
            )
            assert made.status_code == 201, made.text
            created = made.json()
            assert created["secret"].startswith("whsec_") and created["delivered_seq"] == crew.hub.last_seq
            listed = (await http.get("/api/v1/webhooks")).json()
            assert [s["id"] for s in listed["data"]] == [created["id"]]
            assert "secret" not in listed["data"][0]
            off = await http.patch(f"/api/v1/webhooks/{created['id']}", json={"enabled": False})
            assert off.json()["enabled"] is False and off.json()["disabled_reason"] == "disabled by an administrator"
            on = await http.patch(f"/api/v1/webhooks/{created['id']}", json={"enabled": True})
            assert on.json()["enabled"] is True and on.json()["disabled_reason"] is None
            assert (await http.patch(f"/api/v1/webhooks/{created['id']}", json={"url": None})).status_code == 422
            assert (await http.get("/api/v1/webhooks/999")).status_code == 404
            assert (await http.delete(f"/api/v1/webhooks/{created['id']}")).status_code == 204
            assert (await http.get(f"/api/v1/webhooks/{created['id']}")).status_code == 404
        operator = await sign_in_as(app, Role.OPERATOR, township="ershili")
        async with api_client(app, operator) as http:
            assert (await http.get("/api/v1/webhooks")).status_code == 403
    finally:
        await app.state.context.webhooks.store.close()
        await app.state.context.directory.close()
