"""The board's translation files: the same keys in both languages, and every label the page names exists."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from pathlib import Path

from dispatcher import accounts
from dispatcher.core import events, incidents, lifecycle, roster
from gateways import problems
from rules.matcher import Queue

STATIC = Path(__file__).resolve().parent.parent / "gateways" / "static"
LANGS = {name: json.loads((STATIC / "i18n" / f"{name}.json").read_text(encoding="utf-8")) for name in ("zh-CN", "en")}


def test_both_languages_have_the_same_keys_and_no_empty_label() -> None:
    zh, en = LANGS["zh-CN"], LANGS["en"]
    assert set(zh) == set(en)
    assert all(isinstance(v, str) and v.strip() for d in (zh, en) for v in d.values())
    assert zh["lane.main"] != en["lane.main"]


def test_every_key_the_page_names_is_translated() -> None:
    script = (STATIC / "board.js").read_text(encoding="utf-8")
    page = (STATIC / "board.html").read_text(encoding="utf-8")
    named = set(re.findall(r"\bt\('([a-z_.\-]+)'", script))
    named |= set(re.findall(r'data-i18n(?:-placeholder|-title)?="([^"]+)"', page))
    # Keys built from the lifecycle's values: every status, unit state, role, promise kind and action.
    for status in ("reported", "dispatched", "acknowledged", "en_route", "on_scene", "resolved", "closed", "cancelled"):
        named.add(f"status.{status}")
    for state in ("dispatched", "acknowledged", "en_route", "on_scene", "resolved"):
        named.add(f"unit.{state}")
    named |= {"role.lead", "role.support", "kind.ack", "kind.arrive", "kind.resolve"}
    named |= {f"dl.{s}" for s in ("pending", "met", "missed", "void")}
    named |= {f"action.{a}" for a in ("acknowledge", "en-route", "on-scene", "resolve", "reassign", "add_team")}
    assert len(named) > 60
    for lang, labels in LANGS.items():
        assert sorted(named - set(labels)) == [], lang


#: Where the values of each key the page builds at run time (``t(`prefix.${value}`)``) come from.
BUILT_KEYS: dict[str, set[str]] = {
    "status": {s.value for s in lifecycle.IncidentStatus},
    "unit": {s.value for s in lifecycle.AssignmentState},
    "role": {r.value for r in lifecycle.Role},
    "role.account": {r.value for r in accounts.Role},
    "kind": {k.value for k in events.DeadlineKind},
    "dl": {s.value for s in incidents.DeadlineState},
    "delivery": {s.value for s in incidents.DeliveryState},
    "why": {r.value for r in events.AssignReason},
    "stat": {q.value for q in Queue},
    "action": {a.value for a in lifecycle.UnitAction},
    "ustatus": {s.value for s in roster.UnitStatus},
    "problem": set(problems.TITLES),
    "ev": {
        name
        for name, cls in inspect.getmembers(events, inspect.isclass)
        if issubclass(cls, events.Event) and cls is not events.Event and dataclasses.is_dataclass(cls)
    },
}


def test_every_key_the_page_builds_at_run_time_is_translated() -> None:
    """Keys are derived from the enums they are built from: a new status or queue without a label fails here."""
    script = (STATIC / "board.js").read_text(encoding="utf-8")
    prefixes = set(re.findall(r"\bt\(`([a-z_.\-]+)\.\$\{", script))
    assert prefixes, "the scan found no built keys: has the page's t() changed shape?"
    assert sorted(prefixes - set(BUILT_KEYS)) == [], "a key built from values this test does not know"
    for lang, labels in LANGS.items():
        missing = sorted(f"{p}.{v}" for p in prefixes for v in BUILT_KEYS[p] if f"{p}.{v}" not in labels)
        assert missing == [], lang
