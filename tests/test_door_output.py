"""What the single report door gives out, byte for byte: the answers, the access lines and the audit entries.

The figures below were recorded from main at ba27e75, before the door's per-request path was made cheaper
(branch i14-req: the guard's state, the audit entry, the access log's handler). A change that moves any of
them changes what clients, operators or auditors see: record them anew only when that is the intent.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dispatcher.accounts import Role
from dispatcher.settings import Settings
from server.app import create_app
from server.logs import TextLines, TurnLines
from tests.conftest import HubRig, sign_in_as

INTAKE = "/api/v1/incidents"
NEAR = {"lat": 28.95, "lon": 118.87}
REPORT = {"report_id": "door-1", "category": "traffic.congestion", "zone": "five-way", "description": "cars"}

#: (status, raw headers, body length, SHA-256 of the body) of each answer, in the order the requests are sent.
ANSWERS = [
    (
        201,
        [(b"content-length", b"3556"), (b"content-type", b"application/json"), (b"x-report-outcome", b"created")],
        3556,
        "a0aa98ab7624be03214b621a2d262e1137048a00b9c35b8fa3c263a846f88fcb",
    ),
    (
        200,
        [(b"content-length", b"3556"), (b"content-type", b"application/json"), (b"x-report-outcome", b"known")],
        3556,
        "a0aa98ab7624be03214b621a2d262e1137048a00b9c35b8fa3c263a846f88fcb",
    ),
    (
        200,
        [(b"content-length", b"3747"), (b"content-type", b"application/json"), (b"x-report-outcome", b"joined")],
        3747,
        "73c38f5ae00eeb41140f0fef269903ba30eb42479c1dd6450b3e2f090b7d77f7",
    ),
    (
        201,
        [(b"content-type", b"application/json"), (b"x-report-outcome", b"created"), (b"content-length", b"71")],
        71,
        "7689359627ebd889aed1dea9ed170609bced3ec4b9b4f5078eeddaf1b7217059",
    ),
    (
        401,
        [(b"www-authenticate", b"Bearer"), (b"content-length", b"176"), (b"content-type", b"application/problem+json")],
        176,
        "257e088dddc730fe9e8254c54a551c2d80549f3a640459c86a58359390874274",
    ),
    (
        422,
        [(b"content-length", b"264"), (b"content-type", b"application/problem+json")],
        264,
        "95714b2bd5785708cc881ecd06daa7c2ee9c69ccf50b01cc577f81628d1634c1",
    ),
]

#: The access lines (the serve format; the time of day and the milliseconds left out).
ACCESS = [
    "INFO dispatcher.access: POST /api/v1/incidents 201 Nms door-admin",
    "INFO dispatcher.access: POST /api/v1/incidents 200 Nms door-admin",
    "INFO dispatcher.access: POST /api/v1/incidents 200 Nms door-admin",
    "INFO dispatcher.access: POST /api/v1/incidents 201 Nms door-officer",
    "INFO dispatcher.access: POST /api/v1/incidents 401 Nms -",
    "INFO dispatcher.access: POST /api/v1/incidents 422 Nms door-admin",
]

#: The audit entries: (id, at, actor, township, action, target, outcome, source, detail).
AUDIT = [
    (1, "2026-06-12T08:00:00+00:00", "door-admin", "ershili", f"POST {INTAKE}", INTAKE, 201, "10.1.2.3", None),
    (2, "2026-06-12T08:00:00+00:00", "door-admin", "ershili", f"POST {INTAKE}", INTAKE, 200, "10.1.2.3", None),
    (3, "2026-06-12T08:00:00+00:00", "door-admin", "ershili", f"POST {INTAKE}", INTAKE, 200, "10.1.2.3", None),
    (
        4,
        "2026-06-12T08:00:00+00:00",
        "door-officer",
        "ershili",
        f"POST {INTAKE}",
        f"{INTAKE}?township=ershili",
        201,
        "10.1.2.3",
        None,
    ),
    (5, "2026-06-12T08:00:00+00:00", None, None, f"POST {INTAKE}", INTAKE, 401, "10.1.2.3", None),
    (6, "2026-06-12T08:00:00+00:00", "door-admin", "ershili", f"POST {INTAKE}", INTAKE, 422, "10.1.2.3", None),
]


@pytest.fixture
def access_lines() -> Iterator[TurnLines]:
    """The serve handler (its format) on the access logger, writing into a string."""
    handler = TurnLines(io.StringIO())
    handler.setFormatter(TextLines())
    access = logging.getLogger("dispatcher.access")
    saved = access.level, access.propagate
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    try:
        yield handler
    finally:
        access.removeHandler(handler)
        access.setLevel(saved[0])
        access.propagate = saved[1]


async def test_the_single_door_answers_logs_and_audits_as_before(crew: HubRig, access_lines: TurnLines) -> None:
    app = create_app(Settings(database_url=crew.url, rate_per_s=0), hub=crew.hub)
    admin = await sign_in_as(app, name="door-admin")
    officer = await sign_in_as(
        app, Role.FIELD_OFFICER, name="door-officer", township="ershili", officer_id="no-such-officer"
    )
    far = {**REPORT, "report_id": "door-3", "category": "labour.wage_arrears", "zone": "town-centre"}
    sent: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        (INTAKE, {**REPORT, "location": NEAR}, admin),  # created
        (INTAKE, {**REPORT, "location": NEAR}, admin),  # known: the same report_id
        (INTAKE, {**REPORT, "report_id": "door-2", "location": NEAR}, admin),  # joined: close by
        (f"{INTAKE}?township=ershili", far, officer),  # created, answered with a receipt (not readable)
        (INTAKE, REPORT, {"Authorization": "Bearer dsp_nope"}),  # 401
        (INTAKE, {"report_id": "x"}, admin),  # 422 from the application
    ]
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 4567))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            answers = [await http.post(url, json=body, headers=headers) for url, body, headers in sent]
        got = [(a.status_code, a.headers.raw, len(a.content), hashlib.sha256(a.content).hexdigest()) for a in answers]
        assert got == ANSWERS
        access_lines.flush()
        assert isinstance(access_lines.stream, io.StringIO)
        written = access_lines.stream.getvalue().splitlines()
        lines = [re.sub(r"\d+\.\dms", "Nms", line.split(" ", 2)[2]) for line in written]
        assert lines == ACCESS
        await app.state.context.audit.flush()
        entries = await app.state.context.directory.audit(since=None, until=None, township=None, limit=100)
        assert [
            (e.id, e.at.isoformat(), e.actor, e.township, e.action, e.target, e.outcome, e.source, e.detail)
            for e in entries
        ] == AUDIT
    finally:
        await app.state.context.directory.close()
