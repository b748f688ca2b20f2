"""leases: replicas' heartbeats, townships' leases (county database) and fences (township database)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

import dispatcher.tables
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dispatcher_replica',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
    sa.Column('seen_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('township_lease',
    sa.Column('township', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('township')
    )
    op.create_table('township_fence',
    sa.Column('township', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('township')
    )


def downgrade() -> None:
    op.drop_table('township_fence')
    op.drop_table('township_lease')
    op.drop_table('dispatcher_replica')
