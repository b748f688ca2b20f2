"""Hostile values at the edge: each is refused with its problem named before it can reach a writer batch.

Three layers, cheapest first:

- a fuzz of every input model and of the MQTT codec (hypothesis, fixed seed): whatever goes in, either
  it is refused, or every value that comes out is one both stores can hold;
- the values the fuzzers found (and the stress run of issue 21 reported) as an explicit table, sent
  through the HTTP app on each backend: each is a 422 or 404 naming the problem, and the writer still
  takes a good report afterwards;
- ``tests/e2e/test_hostile_input.py`` runs schemathesis against a real server on both backends.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from dispatcher.roster_file import OfficerIn, RosterIn
from dispatcher.settings import BUNDLED_TABLE, Settings
from dispatcher.values import INT32_MAX
from gateways.auth import AccountCreate, DeviceTokenCreate
from gateways.cap import AlertCreate
from gateways.mqtt.codec import DeadLetter, Refusal, decode
from gateways.mqtt.topics import Topics, default_prefix
from gateways.schemas import (
    AlarmAckIn,
    CancelIn,
    CloseIn,
    EscalateIn,
    HandoverAckIn,
    IncidentCreate,
    MergeIn,
    NoteIn,
    OfficerChoiceIn,
    PriorityIn,
    ReassignIn,
    SplitIn,
    TeamIn,
    UnitActionIn,
    UnitReportIn,
)
from server.app import create_app
from tests.conftest import HubRig, sign_in_as

FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None)

# -- what both stores can hold -----------------------------------------------------------------


def storable(value: Any) -> bool:
    """True when ``value`` (and everything inside it) fits the columns of SQLite and PostgreSQL alike."""
    if isinstance(value, bool) or value is None or isinstance(value, datetime):
        return True
    if isinstance(value, int):
        return -(2**31) <= value <= INT32_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, BaseModel):
        return storable(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return all(storable(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(storable(v) for v in value)
    return True  # enums and the like: values the models chose, not the caller


# -- hostile values ----------------------------------------------------------------------------

EDGE_INTS = [0, -1, 1, 5, INT32_MAX, 2**31, -(2**31) - 1, 2**53, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, -(10**20)]
NUL_AND_SURROGATES = ["\x00", "a\x00b", "\ud800", "x\udfff", "\udc00\ud800"]
# Each class the stress run found gets a branch of its own (st.one_of draws its branches about evenly),
# beside free text and numbers of every size: at a few hundred examples each class is met many times.
hostile_scalar = st.one_of(
    st.sampled_from(EDGE_INTS),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.sampled_from(NUL_AND_SURROGATES),
    st.text(alphabet=st.characters() | st.just("\x00") | st.characters(categories=["Cs"]), max_size=12),
    st.integers(),
    st.floats(),
    st.sampled_from(["traffic.congestion", "five-way", "traffic-police", "r-1", 28.848, 118.912, True, None]),
)

AT = {"lat": 28.848, "lon": 118.912}
WHO = {"actor": "operator:王芳", "version": 1}
#: A body each input model takes; the fuzz spoils one or two of its values at a time (a body spoilt
#: everywhere is refused for its first fault, and the others are never looked at).
VALID: dict[type[BaseModel], dict[str, Any]] = {
    AlertCreate: {
        "category": ["Transport"],
        "urgency": "Expected",
        "severity": "Moderate",
        "certainty": "Observed",
        "area": {"circle": {"lat": 28.8, "lon": 118.9, "radius_m": 500}},
        "text": {
            "zh-CN": {"event": "道路封闭", "headline": "封路", "description": "五岔口封闭"},
            "en": {"event": "Road closed", "headline": "Closed", "description": "Five-way closed"},
        },
    },
    IncidentCreate: {
        "report_id": "r-1",
        "category": "traffic.congestion",
        "description": "集市日五岔口拥堵",
        "location": AT,
        "zone": "five-way",
        "severity": 3,
        "reporter": "tp-01",
    },
    UnitActionIn: {**WHO, "reason": "not ours"},
    CloseIn: WHO,
    CancelIn: {**WHO, "reason": "a drill"},
    OfficerChoiceIn: {**WHO, "officer": "tp-02"},
    TeamIn: {**WHO, "team": "traffic-police"},
    ReassignIn: {**WHO, "to_team": "traffic-police"},
    EscalateIn: {**WHO, "team": "traffic-police"},
    PriorityIn: {**WHO, "priority": 2},
    MergeIn: {"into": 2, "actor": "operator"},
    SplitIn: {"report_id": "r-2", "actor": "operator"},
    UnitReportIn: {"status": "available", "location": AT},
    HandoverAckIn: {"actor": "tp-05"},
    NoteIn: {"text": "called back", "author": "operator"},
    AlarmAckIn: {"actor": "operator"},
    AccountCreate: {
        "name": "op-1",
        "role": "field_officer",
        "township": "*",
        "officer_id": "tp-01",
        "module": "enforcement",
        "password": "a long enough password",
    },
    DeviceTokenCreate: {"label": "tablet 3"},
    OfficerIn: {"id": "o-1", "name": "李", "team": "t", "post": "队员", "department": "d", "phone": "110"},
    RosterIn: {"roster": 1, "version": "v1"},
}


def _places(body: dict[str, Any]) -> list[tuple[str, ...]]:
    """Every value's place in ``body``: ("severity",), ("location", "lat")..."""
    return [(k, sub) for k, v in body.items() if isinstance(v, dict) for sub in v] + [
        (k,) for k, v in body.items() if not isinstance(v, dict)
    ]


@st.composite
def spoilt(draw: st.DrawFn, valid: dict[str, Any]) -> dict[str, Any]:
    """``valid`` with one or two of its values replaced by hostile ones."""
    body: dict[str, Any] = json.loads(json.dumps(valid))
    for place in draw(st.lists(st.sampled_from(_places(body)), min_size=1, max_size=2, unique=True)):
        *outer, last = place
        target = body[outer[0]] if outer else body
        target[last] = draw(hostile_scalar)
    return body


def test_the_valid_bodies_are_valid() -> None:
    for model, body in VALID.items():
        model.model_validate(body)


def as_fastapi_reads(body: Any) -> Any:
    """The body as FastAPI hands it to pydantic: read by the standard library's JSON reader (which takes
    NaN, Infinity, integers of any size and ``\\ud800`` escapes)."""
    return json.loads(json.dumps(body))


@FUZZ
@given(data=st.data(), model=st.sampled_from(list(VALID)))
@example(data=None, model=IncidentCreate).via("NUL in a description (PostgreSQL refused the batch)")
def test_every_input_model_refuses_or_yields_storable_values(data: Any, model: type[BaseModel]) -> None:
    if data is None:  # the explicit example
        body: Any = {"report_id": "r-1", "description": "a\x00b", "location": {"lat": 28.8, "lon": 118.9}}
    else:
        body = data.draw(spoilt(VALID[model]))
    try:
        parsed = model.model_validate(as_fastapi_reads(body))
    except ValidationError:
        return
    assert storable(parsed), (model.__name__, body, parsed)


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (IncidentCreate, {"report_id": "r", "zone": "z", "description": "x\x00"}),
        (IncidentCreate, {"report_id": "r", "zone": "z", "description": "x", "reporter": "\x00"}),
        (IncidentCreate, {"report_id": "r", "description": "x", "location": {"lat": math.nan, "lon": 1}}),
        (IncidentCreate, {"report_id": "r", "description": "x", "location": {"lat": 1, "lon": math.inf}}),
        (UnitReportIn, {"location": {"lat": -math.inf, "lon": 1}}),
        (MergeIn, {"into": 2**31}),
        (MergeIn, {"into": 2**63}),
        (CloseIn, {"version": 2**31}),
        (NoteIn, {"text": "a\udc00"}),
        (CancelIn, {"reason": "a\x00"}),
        (TeamIn, {"team": "\x00"}),
        (RosterIn, {"roster": 1, "version": "v\x00"}),
        (OfficerIn, {"id": "o-1", "name": "\x00", "team": "t", "post": "p"}),
        (DeviceTokenCreate, {"label": "\x00"}),
    ],
)
def test_each_value_found_is_refused_by_its_model(model: type[BaseModel], body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(as_fastapi_reads(body))


# -- the MQTT codec ------------------------------------------------------------------------------

T = Topics(default_prefix("ershili"))
NOW = datetime(2026, 6, 12, 8, 0, tzinfo=UTC)


def decoded(topic: str, body: Any) -> Any:
    raw = json.dumps(body).encode()  # stdlib: NaN, Infinity, big integers and \ud800 escapes as devices may send
    return decode(T, topic, raw, received_at=NOW, max_bytes=64 * 1024, has_zone=lambda z: z == "five-way")


#: A payload each inbound topic takes, spoilt by the fuzz as the HTTP bodies are.
VALID_MQTT: dict[str, dict[str, Any]] = {
    T.reports: VALID[IncidentCreate],
    T.officer_status("o-1"): {"officer_id": "o-1", "status": "en_route", **AT, "at": "2026-06-12T07:59:00+00:00"},
    T.officer_acks("o-1"): {"officer_id": "o-1", "incident_id": 4, "team": "traffic-police", "action": "acknowledge"},
}


@FUZZ
@given(data=st.data(), topic=st.sampled_from(list(VALID_MQTT)))
@example(data=None, topic=T.reports).via("a NUL report, retried forever on PostgreSQL")
def test_the_codec_refuses_or_yields_storable_commands(data: Any, topic: str) -> None:
    if data is None:
        body: Any = {**VALID_MQTT[topic], "description": "a\x00b"}
    else:
        body = data.draw(spoilt(VALID_MQTT[topic]))
    result = decoded(topic, body)
    if isinstance(result, DeadLetter):
        assert result.detail, result
        return
    assert storable(result), (topic, body, result)


@pytest.mark.parametrize(
    ("topic", "body", "named"),
    [
        (T.reports, {"report_id": "r-1", "zone": "five-way", "description": "a\x00b"}, "description: the NUL"),
        (T.reports, {"report_id": "r-1", "zone": "five-way", "description": "x", "reporter": "\x00"}, "reporter"),
        (T.officer_status("o-1"), {"status": "available", "lat": math.nan, "lon": 1}, "lat: Input should be a finite"),
        (T.officer_status("o-1"), {"status": "available", "lat": 1, "lon": math.inf}, "lon: Input should be a finite"),
        (T.officer_acks("o-1"), {"incident_id": 2**31, "team": "t", "action": "acknowledge"}, "incident_id"),
        (T.officer_acks("o-1"), {"incident_id": 2**63, "team": "t", "action": "acknowledge"}, "incident_id"),
        (T.officer_acks("o-1"), {"incident_id": 1, "team": "t\x00", "action": "acknowledge"}, "team: the NUL"),
    ],
)
def test_the_codec_sends_each_value_found_to_the_dead_letters(topic: str, body: Any, named: str) -> None:
    result = decoded(topic, body)
    assert isinstance(result, DeadLetter), result
    assert result.reason is Refusal.SCHEMA
    assert named in result.detail, result.detail


# -- through the HTTP app, on each backend -------------------------------------------------------

RULES_WITH_NUL = Path(BUNDLED_TABLE).read_text(encoding="utf-8").replace("version: ", 'version: "v\\0"  #', 1).encode()
GOOD = {"report_id": "good-0", "category": "traffic.congestion", "zone": "five-way", "description": "堵"}

# (method, path, raw JSON body or None, the answer, a piece of its text that names the problem)
FOUND: list[tuple[str, str, bytes | None, int, str]] = [
    (
        "POST",
        "/api/v1/incidents",
        b'{"report_id":"h1","description":"x","location":{"lat":NaN,"lon":1}}',
        422,
        "finite",
    ),
    (
        "POST",
        "/api/v1/incidents",
        b'{"report_id":"h2","description":"x","location":{"lat":1,"lon":Infinity}}',
        422,
        "finite",
    ),
    ("POST", "/api/v1/incidents", b'{"report_id":"h3","zone":"five-way","description":"x\\ud800"}', 422, "surrogate"),
    ("POST", "/api/v1/incidents", b'{"report_id":"h4","zone":"five-way","description":"x\\u0000"}', 422, "NUL"),
    (
        "POST",
        "/api/v1/incidents",
        b'{"report_id":"h5","zone":"five-way","description":"x","reporter":"\\u0000"}',
        422,
        "NUL",
    ),
    ("POST", "/api/v1/units/tp-01/status", b'{"location":{"lat":NaN,"lon":1}}', 422, "finite"),
    # found by test_no_spoilt_request_gets_a_server_error once the above were refused: orjson cannot echo it
    (
        "POST",
        "/api/v1/incidents",
        b'{"report_id":"h6","description":"x","location":{"lat":-9223372036854775809,"lon":1}}',
        422,
        "-9223372036854775809",
    ),
    ("POST", "/api/v1/incidents/1/notes", b'{"text":"a\\udc00"}', 422, "surrogate"),
    ("POST", "/api/v1/incidents/1/cancel", b'{"reason":"a\\u0000"}', 422, "NUL"),
    ("POST", "/api/v1/incidents/1/merge", b'{"into":2147483648}', 422, "2147483647"),
    ("POST", "/api/v1/incidents/1/close", b'{"version":9223372036854775808}', 422, "2147483647"),
    ("GET", "/api/v1/incidents?offset=9223372036854775808", None, 422, "offset"),
    ("GET", "/api/v1/incidents?offset=2147483648", None, 422, "offset"),
    ("GET", "/api/v1/incidents?team=a%00b", None, 422, "NUL"),
    ("GET", "/api/v1/incidents/-99999999999999999999", None, 422, "greater than or equal to 1"),
    ("GET", "/api/v1/incidents/-9223372036854775809", None, 422, "greater than or equal to 1"),
    ("GET", "/api/v1/incidents/2147483648", None, 404, "no incident 2147483648"),
    ("GET", "/api/v1/incidents/9223372036854775808", None, 404, "no incident"),
    ("POST", "/api/v1/incidents/2147483648/close", b"{}", 404, "no incident"),
    ("POST", "/api/v1/incidents/2147483648/escalate", b"{}", 404, "no incident"),
    ("POST", "/api/v1/incidents/2147483648/assignments/t/acknowledge", b"{}", 404, "no incident"),
    ("POST", "/api/v1/incidents/1/alarms/2147483648/ack", b"{}", 422, "alarm_seq"),
    ("GET", "/api/v1/events?since=2147483648", None, 422, "since"),
    ("POST", "/api/v1/handovers/2147483648/ack", b'{"actor":"x"}', 404, "no handover"),
    ("GET", "/api/v1/handovers?team=a%00", None, 422, "NUL"),
    ("POST", "/api/v1/units/a%00/status", b'{"status":"available"}', 422, "NUL"),
    ("GET", "/api/v1/rules/explain?lat=NaN&lon=1", None, 422, "finite"),
    ("POST", "/api/v1/accounts/x/tokens", b'{"label":"a\\u0000"}', 422, "NUL"),
    ("PUT", "/api/v1/roster", b'{"roster":1,"version":"v\\u0000"}', 422, "NUL"),
    # a table whose version holds a NUL went live: every report after it failed on PostgreSQL
    ("PUT", "/api/v1/rules", RULES_WITH_NUL, 422, "NUL"),
    # the name tried is stored (failure count, audit): a 500 on PostgreSQL
    ("POST", "/api/v1/auth/token", b"username=a%00&password=x", 422, "NUL"),
]
_CONTENT_TYPE = {"/api/v1/rules": "application/yaml", "/api/v1/auth/token": "application/x-www-form-urlencoded"}


@pytest.fixture
async def http(rig: HubRig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=rig.url, rate_per_s=0), hub=rig.hub)  # the fuzz sends hundreds
    # An error in the app comes back as the 500 a client would see, not as an exception in the test.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        headers = await sign_in_as(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            yield client
    finally:
        await app.state.context.directory.close()


async def test_each_value_found_is_named_in_its_answer_and_the_writer_goes_on(http: httpx.AsyncClient) -> None:
    assert (await http.post("/api/v1/incidents", json=GOOD)).status_code == 201  # incident 1
    wrong = []
    for n, (method, path, body, status, named) in enumerate(FOUND):
        headers = {"content-type": _CONTENT_TYPE.get(path, "application/json")} if body is not None else {}
        answer = await http.request(method, path, content=body, headers=headers)
        if answer.status_code != status or named not in answer.text:
            wrong.append((method, path, body, answer.status_code, answer.text[:200]))
        # ...and the next good report is taken: nothing of it reached (and failed) a writer batch.
        after = await http.post("/api/v1/incidents", json={**GOOD, "report_id": f"good-{n + 1}"})
        if after.status_code != 201:
            wrong.append(("after", path, body, after.status_code, after.text[:200]))
    assert wrong == []


async def test_a_refusal_echoes_nan_and_surrogates_as_valid_json(http: httpx.AsyncClient) -> None:
    answer = await http.post(
        "/api/v1/incidents",
        content=b'{"report_id":"e1","description":"a\\ud800","location":{"lat":NaN,"lon":Infinity}}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422
    problem = orjson.loads(answer.content)
    assert answer.headers["content-type"] == "application/problem+json" and problem["code"] == "invalid"
    fields = {p["field"]: p for p in problem["errors"]}
    assert "lone surrogate" in fields["description"]["message"]
    assert fields["location.lat"]["input"] == "nan"
    assert fields["location.lon"]["input"] == "inf"
    assert fields["description"]["input"] == "a\\ud800"


# -- the HTTP fuzz: spoilt bodies, and hostile values in paths and queries -------------------------------

#: Routes taking one of the bodies above (incident 1 is the good report every run starts with).
BODY_ROUTES: list[tuple[str, type[BaseModel]]] = [
    ("/api/v1/incidents", IncidentCreate),
    ("/api/v1/incidents/1/notes", NoteIn),
    ("/api/v1/incidents/1/priority", PriorityIn),
    ("/api/v1/incidents/1/teams", TeamIn),
    ("/api/v1/incidents/1/escalate", EscalateIn),
    ("/api/v1/incidents/1/merge", MergeIn),
    ("/api/v1/incidents/1/split", SplitIn),
    ("/api/v1/incidents/1/assignments/traffic-police/officer", OfficerChoiceIn),
    ("/api/v1/incidents/1/assignments/traffic-police/reassign", ReassignIn),
    ("/api/v1/incidents/1/assignments/traffic-police/acknowledge", UnitActionIn),
    ("/api/v1/incidents/1/alarms/1/ack", AlarmAckIn),
    ("/api/v1/units/tp-01/status", UnitReportIn),
    ("/api/v1/handovers/1/ack", HandoverAckIn),
]
_fresh = itertools.count()
#: Paths and queries with one hostile value put in at ``{}``.
VALUE_ROUTES: list[tuple[str, str]] = [
    ("GET", "/api/v1/incidents/{}"),
    ("POST", "/api/v1/incidents/{}/close"),
    ("POST", "/api/v1/incidents/{}/escalate"),
    ("POST", "/api/v1/incidents/1/assignments/{}/acknowledge"),
    ("POST", "/api/v1/incidents/1/alarms/{}/ack"),
    ("GET", "/api/v1/incidents?offset={}"),
    ("GET", "/api/v1/incidents?team={}"),
    ("GET", "/api/v1/incidents?module={}"),
    ("GET", "/api/v1/events?since={}"),
    ("POST", "/api/v1/handovers/{}/ack"),
    ("GET", "/api/v1/handovers?team={}"),
    ("GET", "/api/v1/rules/explain?lat={}&lon=118.9"),
    ("POST", "/api/v1/units/{}/status"),
]


def in_url(value: Any) -> str:
    """``value`` as a client would put it into a URL (a lone surrogate as the bytes it would be sent as)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), bodies=st.booleans())
async def test_no_spoilt_request_gets_a_server_error(http: httpx.AsyncClient, data: Any, bodies: bool) -> None:
    if (await http.get("/api/v1/incidents/1")).status_code == 404:  # the first example on this backend
        assert (await http.post("/api/v1/incidents", json=GOOD)).status_code == 201
    if bodies:
        path, model = data.draw(st.sampled_from(BODY_ROUTES))
        body = data.draw(spoilt(VALID[model]))
        if body.get("version") == 1:
            del body["version"]  # the incident has moved on: a stale version stops the command before the store
        if body.get("report_id") == "r-1" and model is IncidentCreate:
            body["report_id"] = f"fuzz-{next(_fresh)}"  # a known report_id is answered from memory, not stored
        method, content = "POST", json.dumps(body).encode()
    else:
        method, template = data.draw(st.sampled_from(VALUE_ROUTES))
        path = template.format(in_url(data.draw(hostile_scalar.filter(lambda v: v is not None))))
        content = b"{}" if method == "POST" else b""
    answer = await http.request(method, path, content=content, headers={"content-type": "application/json"})
    assert answer.status_code < 500, (method, path, content, answer.status_code, answer.text[:300])
    if answer.status_code == 422:
        assert orjson.loads(answer.content)["detail"], answer.text
