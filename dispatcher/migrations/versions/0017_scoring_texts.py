"""scoring tables: their YAML kept in a table of its own, named by digest, out of the event log

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

A ``ScoringPutInForce`` event carried the table's YAML (up to 64 KB) onto the board's live feed, the
MQTT outbox and every webhook. The text is now stored once in ``scoring_text`` under its SHA-256 digest
and the event names the digest. Events logged before keep their ``body`` and are read as they are.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

import dispatcher.tables
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('scoring_text',
    sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('stored_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('digest')
    )


def downgrade() -> None:
    op.drop_table('scoring_text')
