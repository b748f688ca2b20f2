"""Tables of the county's replicas and their township leases (revision 0016).

Registered on ``SQLModel.metadata`` by :mod:`dispatcher.tables`, which imports this module. The replica and
lease rows live in the county database (``DISPATCHER_DATABASE_URL``, beside the accounts); a township's fence
row lives in that township's own database, where its hub's writes are fenced (see :mod:`dispatcher.leases`).
Every database gets all three tables (one migration chain); each is used where said.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from dispatcher.tables import UtcDateTime


class ReplicaRow(SQLModel, table=True):
    """A replica's heartbeat: the URL other replicas forward its townships' requests to, when it was last seen."""

    __tablename__ = "dispatcher_replica"

    id: str = Field(primary_key=True, max_length=128)
    url: str = Field(max_length=2048)
    seen_at: datetime = Field(sa_type=UtcDateTime)


class LeaseRow(SQLModel, table=True):
    """A township's lease: ``holder`` runs its hub until ``expires_at``; ``epoch`` grows by one at each take."""

    __tablename__ = "township_lease"

    township: str = Field(primary_key=True, max_length=64)
    holder: str | None = Field(default=None, max_length=128)
    epoch: int = Field(default=0, sa_type=sa.BigInteger)
    expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)


class FenceRow(SQLModel, table=True):
    """In a township's database: the epoch of the lease whose holder alone may write; it only grows."""

    __tablename__ = "township_fence"

    township: str = Field(primary_key=True, max_length=64)
    epoch: int = Field(sa_type=sa.BigInteger)
