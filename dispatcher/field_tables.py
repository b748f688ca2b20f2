"""Table models of the field officer's app (issue 12): photos (``media``, ``media_ref``) and places (``place``).

Kept apart from :mod:`dispatcher.tables` (which imports this module) so that the incident tables stay one
concern; revision 0007 creates them.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from dispatcher.tables import _utc


class MediaRow(SQLModel, table=True):
    """One stored photo, keyed by the SHA-256 of its bytes; the bytes live in the media store (a directory)."""

    __tablename__ = "media"

    sha256: str = Field(primary_key=True, max_length=64)
    content_type: str = Field(max_length=32)
    bytes: int
    width: int
    height: int
    uploaded_by: str = Field(max_length=64, index=True)
    uploaded_at: datetime = _utc()
    client_taken_at: datetime | None = _utc(nullable=True)
    client_lat: float | None = None
    client_lon: float | None = None
    client_accuracy_m: float | None = None
    exif_taken_at: str | None = Field(default=None, max_length=40, description="as the camera wrote it (ISO)")
    exif_lat: float | None = None
    exif_lon: float | None = None
    township: str = Field(max_length=64)


class MediaRefRow(SQLModel, table=True):
    """A photo referenced by an incident's report, note or step: who may read the incident may see the photo."""

    __tablename__ = "media_ref"

    sha256: str = Field(primary_key=True, max_length=64)
    township: str = Field(primary_key=True, max_length=64)
    incident_id: int = Field(primary_key=True)


class PlaceRow(SQLModel, table=True):
    """A place with a printed code (龙游通): a household, shop, stall or public facility."""

    __tablename__ = "place"

    code: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=16)
    name: str = Field(max_length=128)
    address: str = Field(max_length=256)
    zone: str | None = Field(default=None, max_length=64)
    lat: float | None = None
    lon: float | None = None
    contact_name: str | None = Field(default=None, max_length=64)
    contact_phone: str | None = Field(default=None, max_length=32)
    township: str = Field(max_length=64)
    notes: str | None = Field(default=None, sa_type=sa.Text)
