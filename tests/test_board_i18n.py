"""The board's translation files: the same keys in both languages, and every label the page names exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
