"""dispatch: officers on assignments, escalation steps, joined reports, county delivery, roster, unit status, shift handovers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 12:47:11.354528
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

import dispatcher.tables
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('incident_report',
    sa.Column('report_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=96), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('zone', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('severity', sa.Integer(), nullable=True),
    sa.Column('reporter', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
    sa.Column('reporter_kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('exercise', sa.Boolean(), nullable=False),
    sa.Column('occurred_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=True),
    sa.Column('attached_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=False),
    sa.Column('merged_from', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('report_id')
    )
    with op.batch_alter_table('incident_report', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incident_report_incident_id'), ['incident_id'], unique=False)

    op.create_table('officer_status',
    sa.Column('officer_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('position_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('officer_id')
    )
    op.create_table('roster',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('loaded_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=False),
    sa.Column('loaded_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('shift_handover',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('shift_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at', dispatcher.tables.UtcDateTime(timezone=True), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('incoming_lead', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('acknowledged_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('acknowledged_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('shift_handover', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shift_handover_team'), ['team'], unique=False)

    op.create_table('escalation',
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('team', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('step', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('level', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('due_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('settled_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.PrimaryKeyConstraint('incident_id', 'team', 'kind', 'step')
    )
    with op.batch_alter_table('assignment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('officer', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('tried', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('waiting', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index(batch_op.f('ix_assignment_officer'), ['officer'], unique=False)

    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.add_column(sa.Column('report_count', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('merged_into', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('ack_within_s', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('arrive_within_s', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('resolve_within_s', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('delivery_state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('delivery_attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('delivery_error', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True))
        batch_op.add_column(sa.Column('delivery_settled_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.drop_column('delivery_settled_at')
        batch_op.drop_column('delivery_error')
        batch_op.drop_column('delivery_attempts')
        batch_op.drop_column('delivery_state')
        batch_op.drop_column('resolve_within_s')
        batch_op.drop_column('arrive_within_s')
        batch_op.drop_column('ack_within_s')
        batch_op.drop_column('merged_into')
        batch_op.drop_column('report_count')

    with op.batch_alter_table('assignment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_assignment_officer'))
        batch_op.drop_column('waiting')
        batch_op.drop_column('tried')
        batch_op.drop_column('officer')

    op.drop_table('escalation')
    with op.batch_alter_table('shift_handover', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shift_handover_team'))

    op.drop_table('shift_handover')
    op.drop_table('roster')
    op.drop_table('officer_status')
    with op.batch_alter_table('incident_report', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_incident_report_incident_id'))

    op.drop_table('incident_report')
