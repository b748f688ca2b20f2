"""Photos and places named by a report, a note or a step: checked before the hub is called, recorded after.

* :func:`attachment_problem`: each photo id must be a photo stored in the request's township, and a place
  code a place of it; the problem is named (the missing photo's id, the unknown code), nothing is stored.
* :func:`record_refs`: once the hub committed the event that names the photos, the incident is recorded
  as referencing them (``media_ref``), which is what lets readers of the incident see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fastapi import HTTPException
from starlette.requests import HTTPConnection

from gateways.context import context_of

if TYPE_CHECKING:
    from dispatcher.field_store import SqlFieldStore


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
