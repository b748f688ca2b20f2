"""Open311's encodings without a server: XML that stays well-formed whatever a report holds, and the dates."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from gateways.open311 import Open311Error, _instant, answer


def test_a_report_with_control_characters_still_makes_well_formed_xml() -> None:
    items = [{"service_request_id": "1", "description": "铃\x07声\x1b[0m", "lat": 28.8, "metadata": True}]
    root = ET.fromstring(answer("xml", "service_requests", "request", items).body)
    assert root.findtext("request/description") == "铃\ufffd声\ufffd[0m"
    assert root.findtext("request/metadata") == "true" and root.findtext("request/lat") == "28.8"
    assert orjson.loads(answer("json", "service_requests", "request", items).body) == items  # JSON carries them


def test_open311_dates_need_their_time_zone() -> None:
    assert _instant("start_date", "2026-06-12T08:00:00Z") == datetime(2026, 6, 12, 8, tzinfo=UTC)
    # a "+" in a query string arrives as a space when the client did not escape it
    assert _instant("start_date", "2026-06-12T16:00:00 08:00") == datetime(
        2026, 6, 12, 16, tzinfo=timezone(timedelta(hours=8))
    )
    assert _instant("end_date", None) is None
    for bad, problem in [("2026-06-12T08:00:00", "time zone"), ("yesterday", "W3C")]:
        with pytest.raises(Open311Error, match=problem) as refused:
            _instant("start_date", bad)
        assert refused.value.status == 400
