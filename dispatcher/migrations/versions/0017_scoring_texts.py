"""scoring tables' YAML out of the event log; the briefing's returns by a partial index

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

A ``ScoringPutInForce`` event carried the table's YAML (up to 64 KB) onto the board's live feed, the
MQTT outbox and every webhook. The text is now stored once in ``scoring_text`` under its SHA-256 digest
and the event names the digest. Events logged before keep their ``body`` and are read as they are.

The briefing counts the 回退 (``AssignmentReturned``) of a period: it read every event of the period to
find them. A partial index on ``event.at`` holds the return events only, so no other insert maintains it.
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
    op.create_index('ix_event_returned_at', 'event', ['at'], unique=False,
                    postgresql_where=sa.text("type = 'AssignmentReturned'"),
                    sqlite_where=sa.text("type = 'AssignmentReturned'"))


def downgrade() -> None:
    op.drop_index('ix_event_returned_at', table_name='event')
    op.drop_table('scoring_text')
