"""Reading example inputs and incident histories for ``explain`` and ``diff`` (JSON, JSON lines)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from rules.matcher import RoutingInput


class InputError(ValueError):
    """A history or input file that cannot be read; the message names the file and record."""


def routing_input(record: dict[str, Any]) -> RoutingInput:
    """A routing input from a report as the API takes it (or an incident as the API returns it).

    ``occurred_at`` (or ``reported_at``) gives the time; ``location`` the coordinates.
    """
    location = record.get("location") or {}
    when = record.get("occurred_at") or record.get("reported_at") or record.get("at")
    at = datetime.fromisoformat(when) if isinstance(when, str) else None
    if at is not None and at.tzinfo is None:
        raise ValueError(f"time {when!r} has no timezone")
    category = record.get("reported_category", record.get("category"))
    return RoutingInput(
        category=category,
        description=str(record.get("description") or ""),
        zone=record.get("zone"),
        lat=location.get("lat"),
        lon=location.get("lon"),
        severity=record.get("severity"),
        reporter_kind=record.get("reporter_kind"),
        at=at,
    )


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records from a JSON array, an API listing (``{"data": [...]}``) or JSON lines, numbered from 1."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if isinstance(data, dict):
            data = [data]
        if isinstance(data, list):
            for number, record in enumerate(data, 1):
                if not isinstance(record, dict):
                    raise InputError(f"{path}: record {number} is not an object")
                yield number, record
            return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: not a JSON object")
        yield number, record
