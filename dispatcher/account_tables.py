"""Tables of accounts, API tokens, sign-in failures and the audit trail (revision 0004).

Registered on ``SQLModel.metadata`` by :mod:`dispatcher.tables`, which imports this module.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from dispatcher.tables import UtcDateTime


class AccountRow(SQLModel, table=True):
    """A person or a device that may use the API: its role, its township (``*``: the county) and scope."""

    __tablename__ = "account"

    name: str = Field(primary_key=True, max_length=64)
    role: str = Field(max_length=32)
    township: str = Field(max_length=64, description="a township id, or * for the county (sees every township)")
    officer_id: str | None = Field(default=None, max_length=64, description="field officers: their roster id")
    module: str | None = Field(default=None, max_length=64, description="module leads: the module they lead")
    password_hash: str | None = Field(default=None, max_length=256, description="argon2id; none: tokens only")
    disabled: bool = False
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class ApiTokenRow(SQLModel, table=True):
    """A bearer token: only its SHA-256 is stored. ``kind`` is ``session`` (signed in) or ``device``."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    account: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)
    label: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)


class SignInFailureRow(SQLModel, table=True):
    """Failed sign-ins by the name tried (known or not), for the lockout."""

    __tablename__ = "sign_in_failure"

    name: str = Field(primary_key=True, max_length=64)
    failures: int = 0
    window_start: datetime = Field(sa_type=UtcDateTime)
    locked_until: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)


class AuditRow(SQLModel, table=True):
    """The audit trail: append-only, like the event log (rows are inserted, never updated or deleted)."""

    __tablename__ = "audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UtcDateTime, index=True)
    actor: str | None = Field(default=None, max_length=64, description="the account; none: not signed in")
    township: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=160, description="e.g. POST /api/v1/incidents/{incident_id}/close, sign-in")
    target: str | None = Field(default=None, max_length=512, description="the concrete path or object")
    outcome: int = Field(description="the HTTP status answered")
    source: str | None = Field(default=None, max_length=64, description="the client address")
    detail: str | None = Field(default=None, sa_type=sa.Text)
