"""Tables of webhook subscriptions and their delivery log (revision 0014).

Registered on ``SQLModel.metadata`` by :mod:`dispatcher.tables`, which imports this module.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from dispatcher.tables import UtcDateTime


class WebhookSubscriptionRow(SQLModel, table=True):
    """Where a township's events are POSTed, signed with ``secret``; ``delivered_seq``: how far it has got."""

    __tablename__ = "webhook_subscription"

    id: int | None = Field(default=None, primary_key=True)
    township: str = Field(max_length=64, index=True)
    url: str = Field(max_length=2048)
    event_types: str = Field(sa_type=sa.Text, description="JSON list of event type names; ['*']: every event")
    secret: str = Field(max_length=128, description="whsec_…: the HMAC-SHA256 key the receiver verifies with")
    description: str | None = Field(default=None, max_length=500)
    include_drills: bool = False
    reveal_reporters: bool = False
    enabled: bool = True
    delivered_seq: int = Field(default=0, description="every event up to this seq was delivered or skipped")
    failing_since: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    disabled_reason: str | None = Field(default=None, max_length=500)
    created_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(sa_type=UtcDateTime)


class WebhookAttemptRow(SQLModel, table=True):
    """The delivery log: every try of every event to every subscription (append-only)."""

    __tablename__ = "webhook_attempt"

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: int = Field(index=True)
    seq: int
    webhook_id: str = Field(max_length=128)
    attempt: int
    at: datetime = Field(sa_type=UtcDateTime)
    ok: bool
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    duration_ms: float
