"""SQLite's writer hands a table's new rows to SQLite as one JSON text (``sqlite_writer.write``): the values stored,
and their types, are those that ``executemany`` stores, and a value that cannot go through JSON exactly is bound
row by row instead."""

from __future__ import annotations

import math
import random
import sqlite3
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatcher import sql_store, sqlite_writer
from dispatcher.core.incidents import Report
from dispatcher.core.roster import Roster
from dispatcher.sqlite_writer import Insert, json_rows, transact, write
from rules import RuleBook
from tests.conftest import HubRig
from tests.test_restart_load import busy_township, state_of

#: Declared types and the affinity each gives (DATETIME: NUMERIC, as SQLAlchemy's times on SQLite).
_TYPES = ("TEXT", "INTEGER", "REAL", "NUMERIC", "BLOB", "DATETIME", "")
_KINDS = ("float", "int", "text", "mixed")
_COLUMNS = tuple(f"{kind}_{declared or 'none'}".lower() for declared in _TYPES for kind in _KINDS)
_FLOATS = tuple(n for n, name in enumerate(_COLUMNS) if name.startswith("float_"))

_TEXTS = [
    "",
    "plain",
    "路口拥堵",
    "emoji 🚒🚑",
    'quote " and \\ backslash',
    "\\u0000",
    "null",
    "1.5",
    " 12 ",
    "12",
    "-0",
    "1e5",
    "0x10",
    "9223372036854775808",
    "tab\tnewline\ncr\r",
    "\x01\x1f\x7f",
    "\u2028\u2029",
    "2026-06-01 08:00:00.000000",
    "é" * 300,
]
_INTS = [0, 1, -1, True, False, 2**31, -(2**31), 2**53 - 1, -(2**53 - 1)]
_SPECIAL_FLOATS = [0.0, -0.0, 1.0, -1.5, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e16, 2.0**53,
                   0.1, 1 / 3, 31.230416, 121.473701, 1e-7, 123456789.123456789]  # fmt: skip
#: Values that JSON cannot carry exactly, one in a hundred: their group goes row by row.
_POISON: dict[str, list[Any]] = {
    "float": [math.inf, -math.inf, math.nan],
    "int": [2**53, -(2**53), 2**63 - 1, -(2**63)],
    "text": ["a\x00b", "\x00"],
}


def _float(rng: random.Random) -> float:
    if rng.random() < 0.3:
        return rng.choice(_SPECIAL_FLOATS)
    if rng.random() < 0.5:
        return float(struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0])  # any double, some NaN or inf
    return round(rng.uniform(-180, 180), rng.randint(0, 9))


def _value(kind: str, rng: random.Random) -> Any:
    if rng.random() < 0.15:
        return None
    if kind == "mixed":
        kind = rng.choice(("int", "text"))
    if rng.random() < 0.01:
        return rng.choice(_POISON[kind])
    if kind == "float":
        return _float(rng)
    if kind == "int":
        return rng.choice(_INTS) if rng.random() < 0.5 else rng.randint(-(2**53) + 1, 2**53 - 1)
    return rng.choice(_TEXTS)


def _rows(rng: random.Random, count: int) -> list[tuple[Any, ...]]:
    return [tuple(_value(name.split("_")[0], rng) for name in _COLUMNS) for _ in range(count)]


def _stored(conn: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    """Every column's type and value; a real by its bits (0.0 and -0.0 differ, NaN equals NaN)."""
    typed = ", ".join(f'typeof("{c}"), "{c}"' for c in _COLUMNS)
    stored = []
    for row in conn.execute(f"SELECT {typed} FROM {table} ORDER BY rowid"):
        stored.append(tuple(struct.pack("<d", v) if isinstance(v, float) else v for v in row))
    return stored


@pytest.fixture(autouse=True)
def every_insert_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups of any size go as JSON here (a batch's tables have fewer rows in these tests than on a busy door)."""
    monkeypatch.setattr(sqlite_writer, "JSON_MIN_ROWS", 1)


@pytest.fixture
def twin_tables() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for table in ("by_json", "by_rows"):
        declared = ", ".join(f'"{name}" {_TYPES[n // len(_KINDS)]}' for n, name in enumerate(_COLUMNS))
        conn.execute(f"CREATE TABLE {table} ({declared})")
    yield conn
    conn.close()


@pytest.mark.parametrize("seed", range(4))
def test_rows_written_as_json_are_stored_as_executemany_stores_them(twin_tables: sqlite3.Connection, seed: int) -> None:
    """Random floats (any double, tiny, huge, negative zero, infinities, NaN), 64-bit ints, booleans, None and
    texts (NUL, emoji, CJK, quotes, backslashes, numbers as text) into columns of every affinity: each column's
    value and ``typeof`` are the same both ways. Rows go in small groups, so that most groups go as JSON and the
    groups holding a value JSON cannot carry go row by row."""
    rng = random.Random(seed)
    conn = twin_tables
    by_json = Insert("by_json", _COLUMNS, _FLOATS)
    groups = [_rows(rng, rng.randint(1, 6)) for _ in range(300)]
    as_json = 0
    for group in groups:
        as_json += json_rows(group, _FLOATS) is not None
        transact(conn, [(by_json, group)])
        conn.executemany(f"INSERT INTO by_rows VALUES ({', '.join('?' * len(_COLUMNS))})", group)

    assert _stored(conn, "by_json") == _stored(conn, "by_rows")
    assert len(_stored(conn, "by_json")) == sum(map(len, groups))
    assert 30 <= as_json <= len(groups) - 30  # both ways were taken


def _one(value: Any, floats: tuple[int, ...] = ()) -> bytes | None:
    return json_rows([("a", value, 1)], floats)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("a\x00b", id="NUL"),
        pytest.param("\ud800", id="lone-surrogate"),
        pytest.param(b"bytes", id="bytes"),
        pytest.param(2**53, id="int-beyond-53-bits"),
        pytest.param(-(2**53), id="negative-int-beyond-53-bits"),
        pytest.param(2**64, id="int-beyond-64-bits"),
        pytest.param(datetime(2026, 6, 1, tzinfo=UTC), id="datetime"),
    ],
)
def test_a_value_json_cannot_carry_exactly_sends_its_rows_one_by_one(value: Any) -> None:
    assert _one(value) is None


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_float_column_that_is_not_finite_sends_its_rows_one_by_one(value: float) -> None:
    assert _one(value, floats=(1,)) is None
    assert json_rows([("a", 1.5, 2.5), ("b", None, value)], (1, 2)) is None
    assert json_rows([("a", 1.5, 2.5), ("b", None, 0.0)], (1, 2)) is not None


@pytest.mark.parametrize("value", ["null", "", "\x01", 2**53 - 1, -(2**53 - 1), 0.1, -0.0, 1e308, True, None, "🚒"])
def test_values_json_carries_go_as_one_text(value: Any) -> None:
    assert _one(value, floats=(1,) if isinstance(value, float) else ()) is not None


def test_a_text_holding_the_characters_of_an_escaped_nul_is_still_stored_exactly(
    twin_tables: sqlite3.Connection,
) -> None:
    row = tuple("\\u0000 \\\\u0000" if name.startswith("text_") else None for name in _COLUMNS)
    transact(twin_tables, [(Insert("by_json", _COLUMNS, _FLOATS), [row])])
    assert twin_tables.execute("SELECT text_text FROM by_json").fetchone() == ("\\u0000 \\\\u0000",)


def test_a_failed_json_insert_takes_the_whole_batch_back(twin_tables: sqlite3.Connection) -> None:
    conn = twin_tables
    conn.execute('CREATE UNIQUE INDEX one_text ON by_json ("text_text")')
    good = tuple("x" if name == "text_text" else None for name in _COLUMNS)
    with pytest.raises(sqlite3.IntegrityError):
        transact(conn, [(Insert("by_json", _COLUMNS), [good]), (Insert("by_json", _COLUMNS), [good])])
    assert conn.execute("SELECT count(*) FROM by_json").fetchone() == (0,)
    assert not conn.in_transaction


def test_each_new_table_of_a_batch_takes_one_statement(twin_tables: sqlite3.Connection) -> None:
    statements: list[str] = []
    twin_tables.set_trace_callback(statements.append)
    rows = [tuple(n if name.startswith("int_") else None for name in _COLUMNS) for n in range(50)]
    write(twin_tables, [(Insert("by_json", _COLUMNS, _FLOATS), rows)])
    assert len(statements) == 1 and "json_each" in statements[0]
    assert twin_tables.execute("SELECT count(*), sum(int_integer) FROM by_json").fetchone() == (50, sum(range(50)))


def test_a_few_rows_are_bound_row_by_row(twin_tables: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_writer, "JSON_MIN_ROWS", 3)
    statements: list[str] = []
    twin_tables.set_trace_callback(statements.append)
    rows = [tuple(n if name.startswith("int_") else None for name in _COLUMNS) for n in range(3)]
    write(twin_tables, [(Insert("by_json", _COLUMNS), rows[:2]), (Insert("by_json", _COLUMNS), rows)])
    assert ["json_each" in s for s in statements] == [False, False, True]
    assert twin_tables.execute("SELECT count(*) FROM by_json").fetchone() == (5,)


async def test_a_batch_of_reports_writes_each_table_in_one_statement(sqlite_rig: HubRig) -> None:
    store = sqlite_rig.hub.store
    assert isinstance(store, sql_store.SqlIncidentStore) and store._sqlite is not None
    statements: list[str] = []
    await store._sqlite.run(lambda conn: conn.set_trace_callback(statements.append))
    reports = [
        Report(report_id=f"r-{n}", category="traffic.congestion", description="d", zone="five-way", lat=31.2, lon=121.4)
        for n in range(6)
    ]
    await sqlite_rig.hub.report_many(reports, sqlite_rig.clock.now())
    await store._sqlite.run(lambda conn: conn.set_trace_callback(None))
    inserts = [s.split('"')[1] for s in statements if "INSERT INTO" in s]
    assert sorted(inserts) == sorted(set(inserts)) and {"incident", "assignment", "event", "report_key"} <= set(inserts)


async def test_reports_with_values_json_cannot_carry_read_back_the_same_after_a_restart(sqlite_rig: HubRig) -> None:
    """A NUL in a description sends its batch's incidents row by row; the others of later batches go as JSON.
    Both read back as written, from the store and after a restart. (A REAL column stores -0.0 as 0 either way.)"""
    texts = ["nul \x00 inside", 'quote " backslash \\ 路口 🚒', "\\u0000 as text", "null"]
    places = [(31.230416, 121.473701), (-0.0, 5e-324), (89.99999999999999, -179.9999999999999), (0.1, 1 / 3)]
    for n, (text, (lat, lon)) in enumerate(zip(texts, places, strict=True)):
        sqlite_rig.clock.advance(timedelta(seconds=1))
        report = Report(
            report_id=f"r-{n}", category="traffic.congestion", description=text, zone="five-way", lat=lat, lon=lon
        )
        await sqlite_rig.hub.report(report, sqlite_rig.clock.now())

    def seen(incidents: list[Any]) -> list[tuple[str, str, float | None, float | None]]:
        return sorted((i.report.report_id, i.report.description, i.report.lat, i.report.lon) for i in incidents)

    before = seen(await sqlite_rig.hub.store.load_open())
    assert [row[1:] for row in before] == [(t, *p) for t, p in zip(texts, places, strict=True)]
    hub = await sqlite_rig.restart()
    assert seen(await hub.store.load_open()) == before


def _database(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, each value with its type; a real by its bits."""
    conn = sqlite3.connect(path)
    try:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        dump = {}
        for table in tables:
            columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
            typed = ", ".join(f'typeof("{c}"), "{c}"' for c in columns)
            dump[table] = [
                tuple(struct.pack("<d", v) if isinstance(v, float) else v for v in row)
                for row in conn.execute(f'SELECT {typed} FROM "{table}" ORDER BY rowid')
            ]
        return dump
    finally:
        conn.close()


async def test_a_busy_township_stores_the_same_database_as_json_and_row_by_row(
    tmp_path: Path, bundled_rules: RuleBook, bundled_roster: Roster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every kind of row (joined reports, escalation steps, moves, notes, handovers...) written as JSON and written
    by ``executemany``: the same tables, value for value and type for type; and a restart reads back the same."""
    dumps = []
    for json_from in (10**9, 1):
        monkeypatch.setattr(sqlite_writer, "JSON_MIN_ROWS", json_from)
        path = tmp_path / f"from-{json_from}.db"
        crew = HubRig(f"sqlite+aiosqlite:///{path}", bundled_rules, bundled_roster, duplicate_radius_m=200.0)
        await crew.hub.start()
        try:
            await busy_township(crew)
            before = state_of(crew.hub)
            assert state_of(await crew.restart()) == before
        finally:
            await crew.hub.stop()
        dumps.append(_database(path))
    by_rows, by_json = dumps
    assert by_json == by_rows
    assert by_json["incident_report"] and by_json["escalation"] and by_json["event"]
