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
    # Nearly every entry's texts are ASCII without a NUL (a surrogate is not ASCII): nothing to escape, and
    # no round trip through UTF-8 bytes (each writer batch stores six texts a request).
    if text.isascii() and "\x00" not in text:
        safe = text
    else:
        safe = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return safe[:limit] if limit is not None else safe


#: The ``audit`` table's columns that an entry fills, in the order :func:`audit_values` gives them.
AUDIT_COLUMNS = ("at", "actor", "township", "action", "target", "outcome", "source", "detail")


def audit_values(entry: AuditEntry, at: Any) -> tuple[Any, ...]:
    """The ``audit`` table's row of ``entry`` by position (:data:`AUDIT_COLUMNS`; its id is the database's), with
    ``at`` for its time: ``entry.at`` as the backend binds it."""
    return (
        at,
        storable(entry.actor, 64),
        storable(entry.township, 64),
        storable(entry.action, 160),
        storable(entry.target, 512),
        entry.outcome,
        storable(entry.source, 64),
        storable(entry.detail),
    )


def audit_row(entry: AuditEntry) -> dict[str, Any]:
    """The ``audit`` table's row of ``entry`` by name (its id is the database's)."""
    return dict(zip(AUDIT_COLUMNS, audit_values(entry, entry.at), strict=True))
