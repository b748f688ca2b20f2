"""An audit entry and the row it is stored as: shared by the directory and the hub's writer.

The directory (:class:`dispatcher.accounts.SqlDirectory`) stores entries in a transaction of their own; a hub
whose database is the directory's stores them in its writer's batch (:meth:`dispatcher.writer.Writer.record_audit`),
so that the audit trail of a report costs no second transaction. Both write the same row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    action: str
    outcome: int
    actor: str | None = None
    township: str | None = None
    target: str | None = None
    source: str | None = None
    detail: str | None = None
    id: int | None = None


def storable(text: str | None, limit: int | None = None) -> str | None:
    """``text`` as every backend can store it, cut to ``limit`` characters; None stays None.

    What a hostile request puts in a path, a name or a label reaches the audit trail as it came:
    PostgreSQL's text holds no NUL and no backend stores a lone surrogate (it is not UTF-8), so
    both are written as escapes (``\\x00``, ``\\ud800``) rather than lose the entry.
    """
    if text is None:
        return None
    safe = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return safe[:limit] if limit is not None else safe


def audit_row(entry: AuditEntry) -> dict[str, Any]:
    """The ``audit`` table's row of ``entry`` (its id is the database's)."""
    return {
        "at": entry.at,
        "actor": storable(entry.actor, 64),
        "township": storable(entry.township, 64),
        "action": storable(entry.action, 160),
        "target": storable(entry.target, 512),
        "outcome": entry.outcome,
        "source": storable(entry.source, 64),
        "detail": storable(entry.detail),
    }
