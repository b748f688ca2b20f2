"""township log: events about no incident (incident_id NULL) and every rule table put in force

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

import dispatcher.tables
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('rule_table',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('put_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=False),
    sa.Column('put_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    # The handover, roster and rule-table facts belong to no incident. On SQLite this copies the log
    # once (batch mode); on PostgreSQL it only drops the constraint.
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.alter_column('incident_id', existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM event WHERE incident_id IS NULL")
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.alter_column('incident_id', existing_type=sa.Integer(), nullable=False)
    op.drop_table('rule_table')
