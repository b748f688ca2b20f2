"""The board feed: bounded per-board queues, dropping a lagging board, resuming from a sequence number."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from dispatcher.accounts import Account, Principal, Role, TokenInfo, TokenKind
from dispatcher.core.incidents import Report
from dispatcher.core.lifecycle import IncidentAction
from dispatcher.feed import OVERFLOW, EventFeed, FeedRecord
from dispatcher.settings import BUNDLED_TABLE, Settings
from dispatcher.shifts import ShiftWatch
from gateways.board import LAGGING_CLOSE_CODE, REVOKED_CLOSE_CODE, SnapshotPages, board_feed
from gateways.tenancy import Township, Townships
from gateways.ws_frames import EXTENSION, text_frames
from server.app import create_app
from tests.conftest import START, HubRig, api_client


def records(first: int, last: int) -> list[FeedRecord]:
    return [FeedRecord(seq, seq, f'{{"seq":{seq}}}') for seq in range(first, last + 1)]


def test_a_lagging_subscriber_is_dropped_and_the_others_are_not() -> None:
    feed = EventFeed(queue_size=3, ring_size=100)
    slow, fast = feed.subscribe(), feed.subscribe()
    for record in records(1, 5):
        feed.publish([record])
        assert fast.get_nowait() == record

    assert slow.dropped and slow.get_nowait() is OVERFLOW and slow.get_nowait() is None
    assert feed.subscriber_count == 1
    feed.publish(records(6, 6))
    assert fast.get_nowait() == records(6, 6)[0]


def test_recent_since_reaches_back_as_far_as_the_ring() -> None:
    feed = EventFeed(queue_size=10, ring_size=4)
    feed.publish(records(1, 10))
    assert [r.seq for r in feed.recent_since(7) or []] == [8, 9, 10]
    assert feed.recent_since(6) is not None and [r.seq for r in feed.recent_since(6) or []] == [7, 8, 9, 10]
    assert feed.recent_since(5) is None  # event 6 has left the ring: read the database instead
    assert feed.recent_since(10) == []


class NoRevocations:
    """A directory whose tokens are never revoked."""

    def watch_revocation(self, token_id: int, on_revoked: Callable[[str], None]) -> Callable[[], None]:
        return lambda: None


class FakeBoard:
    """A websocket whose reader stops reading after ``read_limit`` frames (a frozen wall screen)."""

    def __init__(self, hub: Any, read_limit: int, *, app: Any = None, principal: Principal | None = None) -> None:
        township = Township(hub.rules.township_id, hub, ShiftWatch(hub), BUNDLED_TABLE)
        self.app = app or SimpleNamespace(
            state=SimpleNamespace(
                context=SimpleNamespace(hub=hub, townships=Townships([township]), directory=NoRevocations())
            )
        )
        # What the guard leaves on a connection it let through: by default an operator of the township.
        operator = Account("board-screen", Role.OPERATOR, township.id)
        token = TokenInfo(1, operator.name, TokenKind.DEVICE, None, START, None)
        self.state = SimpleNamespace(township=township.id, principal=principal or Principal(operator, token))
        self.headers: dict[str, str] = {}
        self.sent: list[dict[str, Any]] = []
        self.first_frame = asyncio.Event()
        self._frame = asyncio.Event()
        self.read_limit = read_limit
        self.closed: tuple[int, str] | None = None
        self._stuck = asyncio.Event()
        self.gone = asyncio.Event()

    async def accept(self, subprotocol: str | None = None) -> None:
        return None

    async def send_text(self, text: str) -> None:
        if len(self.sent) >= self.read_limit:
            await self._stuck.wait()  # never set: the send blocks like a full TCP buffer
        self.sent.append(json.loads(text))
        self.first_frame.set()
        self._frame.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def until_seq(self, seq: int) -> None:
        """Wait until the last frame taken carries ``seq`` (bound it with ``asyncio.wait_for``)."""
        while not (self.sent and self.sent[-1].get("seq") == seq):
            self._frame.clear()
            await self._frame.wait()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "websocket.disconnect"}


async def test_a_frozen_board_is_closed_with_4008_and_resumes_without_a_gap(rig: HubRig) -> None:
    rig.feed._queue_size = 5  # a small budget so that the test overflows it quickly
    frozen = FakeBoard(rig.hub, read_limit=3)
    connection = asyncio.create_task(board_feed(frozen, since=None))  # type: ignore[arg-type]
    await asyncio.wait_for(frozen.first_frame.wait(), timeout=5)  # the snapshot is out: it follows the feed

    for n in range(10):
        await rig.hub.report(
            Report(report_id=f"r{n}", category="noise.x", description="d", zone="market"), rig.clock.now()
        )
    await asyncio.wait_for(connection, timeout=5)

    assert frozen.sent[0]["kind"] == "snapshot"
    last_seen = frozen.sent[-1]["seq"]
    assert frozen.closed == (LAGGING_CLOSE_CODE, f"resume with since={last_seen}")
    assert rig.hub.feed.subscriber_count == 0

    resumed = FakeBoard(rig.hub, read_limit=1000)
    connection = asyncio.create_task(board_feed(resumed, since=last_seen))  # type: ignore[arg-type]
    await asyncio.wait_for(resumed.until_seq(rig.hub.last_seq), timeout=5)
    resumed.gone.set()
    await asyncio.wait_for(connection, timeout=5)
    assert [f["seq"] for f in resumed.sent] == list(range(last_seen + 1, rig.hub.last_seq + 1))


@pytest.mark.parametrize(
    ("how", "reason"),
    [("sign-out", "signed out"), ("revoke", "token revoked"), ("disable", "account disabled")],
)
async def test_an_open_feed_is_closed_when_its_token_stops_working(rig: HubRig, how: str, reason: str) -> None:
    app = create_app(Settings(database_url=rig.url), hub=rig.hub)
    directory = app.state.context.directory
    try:
        await directory.open()
        await directory.create_account("op-board", Role.OPERATOR, "ershili", START, password="correct horse battery")
        token, principal = await directory.sign_in("op-board", "correct horse battery", START)
        screen = FakeBoard(rig.hub, read_limit=1000, app=app, principal=principal)
        connection = asyncio.create_task(board_feed(screen, since=None))  # type: ignore[arg-type]
        await asyncio.wait_for(screen.first_frame.wait(), timeout=5)  # subscribed: the snapshot is out
        assert screen.sent[0]["kind"] == "snapshot" and not connection.done()

        async with api_client(app, {"Authorization": f"Bearer {token}"} if how == "sign-out" else None) as http:
            if how == "sign-out":
                answer = await http.post("/api/v1/auth/logout")
            elif how == "revoke":
                answer = await http.delete(f"/api/v1/tokens/{principal.token.id}")
            else:
                answer = await http.patch("/api/v1/accounts/op-board", json={"disabled": True})
            assert answer.status_code in (200, 204), answer.text
            await asyncio.wait_for(connection, timeout=5)
        assert screen.closed == (REVOKED_CLOSE_CODE, reason)
        assert rig.hub.feed.subscriber_count == 0
    finally:
        await directory.close()


async def test_a_feed_whose_token_was_revoked_before_it_subscribed_closes_at_once(rig: HubRig) -> None:
    app = create_app(Settings(database_url=rig.url), hub=rig.hub)
    directory = app.state.context.directory
    try:
        await directory.open()
        await directory.create_account("op-late", Role.OPERATOR, "ershili", START)
        device_token, info = await directory.issue_token("op-late", TokenKind.DEVICE, START)
        principal = directory.authenticate(device_token, START)
        await directory.revoke(info.id, START)  # between the guard's check and the subscription
        screen = FakeBoard(rig.hub, read_limit=1000, app=app, principal=principal)
        await asyncio.wait_for(board_feed(screen, since=None), timeout=5)  # type: ignore[arg-type]
        assert screen.closed == (REVOKED_CLOSE_CODE, "token revoked")
    finally:
        await directory.close()


class PagedBoard(FakeBoard):
    """A board reading every frame, with snapshot pages of ``page`` incidents; ``during`` runs after its
    first snapshot frame (while the rest of the snapshot is still to come)."""

    def __init__(self, hub: Any, page: int, during: Any) -> None:
        super().__init__(hub, read_limit=10_000)
        self.app.state.context.settings = SimpleNamespace(board_snapshot_page=page)
        self._during = during
        self.arrived = asyncio.Event()

    async def send_text(self, text: str) -> None:
        frame = json.loads(text)
        self.sent.append(frame)
        self.arrived.set()
        if frame["kind"] == "snapshot":
            await self._during()

    async def until_seq(self, seq: int) -> None:
        while not (self.sent and self.sent[-1].get("seq") == seq and self.sent[-1]["kind"] == "event"):
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), timeout=5)


async def test_the_snapshot_comes_in_pages_as_of_its_seq_and_the_feed_goes_on_without_gap_or_duplicate(
    rig: HubRig,
) -> None:
    hub = rig.hub
    for n in range(7):
        await hub.report(Report(report_id=f"r{n}", category="noise.x", description="d", zone="market"), START)
    to_change = 6  # on the snapshot's last page: it changes while the first page is being read
    before = hub.get
    snapshot_seq = hub.last_seq

    changed = asyncio.Event()

    async def meanwhile() -> None:
        await hub.note(to_change, "still noisy", START, "operator")
        await hub.report(Report(report_id="late", category="noise.x", description="d", zone="market"), START)
        await hub.finish(2, IncidentAction.CANCEL, START, "operator", "a prank")
        changed.set()

    board = PagedBoard(hub, page=3, during=meanwhile)
    connection = asyncio.create_task(board_feed(board, since=None))  # type: ignore[arg-type]
    await asyncio.wait_for(changed.wait(), timeout=5)
    await board.until_seq(hub.last_seq)
    board.gone.set()
    await asyncio.wait_for(connection, timeout=5)

    pages = [f for f in board.sent if f["kind"] in ("snapshot", "snapshot_page")]
    assert [f["kind"] for f in pages] == ["snapshot", "snapshot_page", "snapshot_page"]
    assert [f["more"] for f in pages] == [True, True, False] and pages[0]["total"] == 7
    assert {f["seq"] for f in pages} == {snapshot_seq}
    incidents = [i for f in pages for i in f["incidents"]]
    # The state as of the snapshot's seq: the cancelled incident still open, the changed one as it was.
    assert [i["id"] for i in incidents] == [1, 2, 3, 4, 5, 6, 7]
    assert incidents[to_change - 1]["version"] == (await before(to_change)).version - 1
    events = board.sent[len(pages) :]
    assert [f["seq"] for f in events] == list(range(snapshot_seq + 1, hub.last_seq + 1))
    assert {f["kind"] for f in events} == {"event"}
    assert rig.hub.feed.subscriber_count == 0


async def test_boards_share_the_encoding_of_pages_that_hold_the_same_incidents(rig: HubRig) -> None:
    for n in range(3):
        await rig.hub.report(Report(report_id=f"r{n}", category="noise.x", description="d", zone="market"), START)
    pages = SnapshotPages(size=2)
    _, incidents = rig.hub.open_incidents()
    first = await pages.encoded(incidents[:2])
    assert await pages.encoded(list(incidents[:2])) is first  # another board, the same incident objects
    assert [i["id"] for i in json.loads(first)] == [1, 2]

    changed = await rig.hub.note(2, "again", START, "operator")
    _, now = rig.hub.open_incidents()
    again = await pages.encoded(now[:2])
    assert again is not first and json.loads(again)[1]["version"] == changed.version
    await pages.encoded(now[2:])
    assert len(pages) == 2  # bounded: the page used longest ago went


async def test_a_page_being_encoded_is_awaited_not_encoded_twice_and_a_board_gone_mid_page_hands_it_on(
    rig: HubRig,
) -> None:
    for n in range(60):  # more than one slice of encoding, so that encoding awaits in between
        await rig.hub.report(Report(report_id=f"r{n}", category="noise.x", description="d", zone="market"), START)
    _, incidents = rig.hub.open_incidents()
    pages = SnapshotPages()
    first, second = asyncio.create_task(pages.encoded(incidents)), asyncio.create_task(pages.encoded(incidents))
    assert (await first) is (await second)

    other = SnapshotPages()
    gone, waiting = asyncio.create_task(other.encoded(incidents)), asyncio.create_task(other.encoded(incidents))
    await asyncio.sleep(0)  # both started: one encodes, the other waits for it
    gone.cancel()
    assert [i["id"] for i in json.loads(await waiting)] == list(range(1, 61))


async def test_a_board_gone_mid_snapshot_ends_its_feed_and_never_subscribes(rig: HubRig) -> None:
    for n in range(5):
        await rig.hub.report(Report(report_id=f"r{n}", category="noise.x", description="d", zone="market"), START)
    board: PagedBoard

    async def leave() -> None:
        board.gone.set()
        await asyncio.Event().wait()  # the socket never takes another frame: only the disconnect ends this

    board = PagedBoard(rig.hub, page=2, during=leave)
    await asyncio.wait_for(board_feed(board, since=None), timeout=5)  # type: ignore[arg-type]
    assert [f["kind"] for f in board.sent] == ["snapshot"] and rig.hub.feed.subscriber_count == 0


class FramedBoard(FakeBoard):
    """A board on a socket that takes the frames every board shares (gateways/ws_frames.py): ``write_now`` writes
    at once while ``taking`` is set and refuses otherwise (a paused transport); ``send`` waits for ``taking``."""

    def __init__(self, hub: Any) -> None:
        super().__init__(hub, read_limit=10_000)
        self.taking = asyncio.Event()
        self.taking.set()
        self.direct_writes = 0
        self.scope = {"type": "websocket", "extensions": {EXTENSION: {"send": self._send, "write_now": self._write}}}

    def _write(self, frames: bytes) -> bool:
        if not self.taking.is_set():
            return False
        self.direct_writes += 1
        self._take(frames)
        return True

    async def _send(self, payloads: list[bytes]) -> bool:
        await self.taking.wait()
        self._take(text_frames(payloads))
        return True

    def _take(self, frames: bytes) -> None:
        reader = StreamReader()
        reader.feed_data(frames)
        while reader.buffer:
            parser = Frame.parse(reader.read_exact, mask=False)
            with pytest.raises(StopIteration) as done:
                while True:
                    next(parser)
            frame = done.value.value
            assert frame.opcode is Opcode.TEXT and frame.fin and not frame.rsv1
            self.sent.append(json.loads(frame.data))
        self._frame.set()

    def events(self) -> list[int]:
        return [f["seq"] for f in self.sent if f["kind"] == "event"]


async def _report(rig: HubRig, n: int) -> None:
    await rig.hub.report(Report(report_id=f"r{n}", category="noise.x", description="d", zone="market"), START)


async def test_the_feed_writes_to_a_board_that_takes_frames_at_once_and_queues_while_its_socket_is_paused(
    rig: HubRig,
) -> None:
    board = FramedBoard(rig.hub)
    connection = asyncio.create_task(board_feed(board, since=None))  # type: ignore[arg-type]
    await asyncio.wait_for(board.first_frame.wait(), timeout=5)
    snapshot_seq = board.sent[0]["seq"]
    await _report(rig, 0)
    await asyncio.wait_for(board.until_seq(rig.hub.last_seq), timeout=5)  # its sender now waits, gone direct

    writes = board.direct_writes
    await _report(rig, 1)
    # Written by the report's own commit, before the report returned: no task of the board's ran in between.
    assert board.direct_writes == writes + 1 and board.events()[-1] == rig.hub.last_seq

    board.taking.clear()  # the socket stops taking data: the next commits wait in the board's queue
    paused_at = rig.hub.last_seq
    for n in range(2, 5):
        await _report(rig, n)
    assert board.events()[-1] == paused_at and board.direct_writes == writes + 1
    board.taking.set()
    await asyncio.wait_for(board.until_seq(rig.hub.last_seq), timeout=5)

    writes = board.direct_writes
    await _report(rig, 5)
    assert board.direct_writes == writes + 1  # direct again once its queue was empty
    board.gone.set()
    await asyncio.wait_for(connection, timeout=5)
    assert board.events() == list(range(snapshot_seq + 1, rig.hub.last_seq + 1))  # no gap, no double, in order
    assert rig.hub.feed.subscriber_count == 0


async def test_a_board_whose_socket_stays_paused_is_closed_with_4008_after_its_last_direct_frame(
    rig: HubRig,
) -> None:
    rig.feed._queue_size = 5  # a small budget so that the test overflows it quickly
    board = FramedBoard(rig.hub)
    connection = asyncio.create_task(board_feed(board, since=None))  # type: ignore[arg-type]
    await asyncio.wait_for(board.first_frame.wait(), timeout=5)
    await _report(rig, 0)
    await asyncio.wait_for(board.until_seq(rig.hub.last_seq), timeout=5)
    await _report(rig, 1)
    last_written = rig.hub.last_seq
    assert board.events()[-1] == last_written and board.direct_writes > 0

    board.taking.clear()  # a frozen wall screen: its socket never takes another byte
    for n in range(2, 12):
        await _report(rig, n)
    await asyncio.wait_for(connection, timeout=5)
    assert board.closed == (LAGGING_CLOSE_CODE, f"resume with since={last_written}")
    assert board.events()[-1] == last_written and rig.hub.feed.subscriber_count == 0

    resumed = FramedBoard(rig.hub)
    connection = asyncio.create_task(board_feed(resumed, since=last_written))  # type: ignore[arg-type]
    await asyncio.wait_for(resumed.until_seq(rig.hub.last_seq), timeout=5)
    await _report(rig, 12)
    await asyncio.wait_for(resumed.until_seq(rig.hub.last_seq), timeout=5)
    resumed.gone.set()
    await asyncio.wait_for(connection, timeout=5)
    assert resumed.events() == list(range(last_written + 1, rig.hub.last_seq + 1))


async def test_a_quiet_direct_board_gets_a_heartbeat_after_its_last_frame_and_then_direct_frames_again(
    rig: HubRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateways.board.HEARTBEAT_S", 0.3)
    board = FramedBoard(rig.hub)
    connection = asyncio.create_task(board_feed(board, since=None))  # type: ignore[arg-type]
    await asyncio.wait_for(board.first_frame.wait(), timeout=5)
    snapshot_seq = board.sent[0]["seq"]
    await _report(rig, 0)
    await asyncio.wait_for(board.until_seq(rig.hub.last_seq), timeout=5)
    await _report(rig, 1)  # written directly, inside the report's commit
    written_at = time.monotonic()
    frames = len(board.sent)

    while len(board.sent) == frames:  # the next frame is the heartbeat: nothing else is published
        board._frame.clear()
        await asyncio.wait_for(board._frame.wait(), timeout=5)
    assert board.sent[frames:] == [{"kind": "heartbeat", "seq": rig.hub.last_seq}]
    assert time.monotonic() - written_at >= 0.25  # counted from the last frame written directly, not earlier

    writes = board.direct_writes
    await _report(rig, 2)
    assert board.direct_writes == writes + 1  # direct again after the heartbeat
    board.gone.set()
    await asyncio.wait_for(connection, timeout=5)
    assert board.events() == list(range(snapshot_seq + 1, rig.hub.last_seq + 1))


def test_a_feed_record_is_the_frozen_record_it_was() -> None:
    """Its own ``__init__`` (quicker than the generated one) keeps the dataclass's behaviour."""
    import dataclasses
    import pickle

    record = FeedRecord(3, None, '{"kind":"event","seq":3,"type":"NoteAdded","data":{"text":"é"}}')
    assert (record.seq, record.incident_id, record._encoded) == (3, None, None)
    assert repr(record) == f"FeedRecord(seq=3, incident_id=None, message={record.message!r})"
    assert record.encoded() == record.message.encode() and record.encoded() is record.encoded()
    assert record == FeedRecord(3, None, record.message) == pickle.loads(pickle.dumps(record))  # the cache aside
    assert record != FeedRecord(4, None, record.message)
    assert (record.type_name(), record.payload()) == ("NoteAdded", '{"text":"é"}')
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.seq = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        FeedRecord(3, None)  # type: ignore[call-arg]
