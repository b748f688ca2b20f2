"""Photos and places named by a report, a note or a step: checked before the hub is called, recorded after.

* :func:`attachment_problem`: each photo id must be a photo stored in the request's township, and a place
  code a place of it; the problem is named (the missing photo's id, the unknown code), nothing is stored.
* :func:`record_refs`: once the hub committed the event that names the photos, the incident is recorded
  as referencing them (``media_ref``), which is what lets readers of the incident see them.
* :func:`recover_refs`: at start, the references of the photos named by the last events of the township's
  log are recorded again, in case the process stopped between an event's commit and its references.

The two writes are in two databases' transactions (the incident's event in the township's store, the
reference in the accounts' database), so a crash can fall between them. Nothing is lost then: the event that
names the photos is committed with the change itself (``IncidentReported``, ``ReportAttached``, ``UnitMoved``,
``NoteAdded``, ``IncidentVerified`` carry ``photos``), and the photo's bytes and record were stored before
(upload first). Only the reference, which is derived from the event, may be missing, and :func:`recover_refs`
writes it again from the event at the next start; a client's retry writes it too (docs/field.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import orjson
from fastapi import HTTPException
from starlette.requests import HTTPConnection

from gateways.context import context_of

if TYPE_CHECKING:
    from dispatcher.field_store import SqlFieldStore
    from dispatcher.store import IncidentStore

log = logging.getLogger(__name__)

#: How far back from the last event of the log :func:`recover_refs` looks: an event and its references are
#: written one ``await`` apart, so a crash leaves at most the events of the requests then in flight unrecorded.
RECOVERY_WINDOW = timedelta(minutes=10)
RECOVERY_PAGE = 2000
RECOVERY_PAGES = 50  # at most 100,000 events read at start


def field_store(connection: HTTPConnection) -> SqlFieldStore:
    store = context_of(connection).field
    if store is None:
        raise HTTPException(503, "the photo and place store is not configured in this server")
    return store


def township_id(connection: HTTPConnection) -> str:
    township: str | None = getattr(connection.state, "township", None)
    return township or context_of(connection).hub.rules.township_id


async def attachment_problem(
    connection: HTTPConnection, photos: Sequence[str], place: str | None = None
) -> tuple[str, str] | None:
    """(field, message) of the first problem of ``photos`` and ``place``, or None: both are known."""
    if not photos and place is None:
        return None
    store = field_store(connection)
    township = township_id(connection)
    if len(set(photos)) != len(photos):
        return "photos", "a photo is named twice"
    missing = await store.missing(photos, township)
    if missing:
        return "photos", f"no stored photo {missing[0]}: upload it first (POST /api/v1/media)"
    if place is not None and await store.place(place, township) is None:
        return "place", f"unknown place code {place!r} in township {township}"
    return None


async def check_attachments(connection: HTTPConnection, photos: Sequence[str], place: str | None = None) -> None:
    """Raise 422 naming the field and the first missing photo or unknown place."""
    problem = await attachment_problem(connection, photos, place)
    if problem is not None:
        field, message = problem
        raise HTTPException(422, detail=[{"loc": ["body", field], "msg": message, "type": "value_error"}])


async def record_refs(connection: HTTPConnection, incident_id: int, photos: Sequence[str]) -> None:
    if photos:
        await field_store(connection).add_refs(township_id(connection), incident_id, photos)


async def recover_refs(
    store: IncidentStore,
    field: SqlFieldStore,
    township: str,
    last_seq: int,
    *,
    window: timedelta = RECOVERY_WINDOW,
    page: int = RECOVERY_PAGE,
    pages: int = RECOVERY_PAGES,
) -> int:
    """Record the references of every photo named by the events of the township's log written in the
    ``window`` before its last event (``last_seq``), read back page by page (at most ``pages`` of ``page``).
    Idempotent; returns how many events named photos. Call at start, before requests are taken."""
    chunks: list[list[tuple[int, str]]] = []
    start, cutoff = last_seq, None
    for _ in range(pages):
        if start <= 0:
            break
        start = max(0, start - page)
        events = await store.events_since(start, limit=page)
        if not events:
            break
        if cutoff is None:
            cutoff = events[-1].at - window
        chunks.append([(e.incident_id, e.payload) for e in events if e.incident_id and '"photos"' in e.payload])
        if events[0].at < cutoff:
            break
    named = 0
    for chunk in chunks:
        for incident_id, payload in chunk:
            photos = orjson.loads(payload).get("photos") or []
            if photos:
                await field.add_refs(township, incident_id, photos)
                named += 1
    if named:
        log.info("photo references of %d recent events of township %s recorded again", named, township)
    return named
