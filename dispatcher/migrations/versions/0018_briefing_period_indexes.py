"""the briefing reads a period's incidents by index: by report, by close, by the lead's deadline

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04

A period's figures count the incidents reported in it, and those reported before it whose lead's resolve
deadline or whose close falls in it. Without an index on the report time every period read every incident
reported before its end (a month cost almost as much as a year). Three indexes find the three kinds: the
report time; the close (partial: open incidents are not in it) and the lead's resolve deadline (partial:
the supporting teams' rows are not in it). The units of the incidents before the period (a row of zeros
each) are found by the index on their column: two more indexes, on the zone (which had none) and on the
leads' team (partial: the team index holds every supporting team's rows, read through for a team that
only ever supported).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_incident_reported_at', 'incident', ['reported_at'], unique=False)
    op.create_index('ix_incident_zone', 'incident', ['zone'], unique=False)
    op.create_index('ix_incident_closed_at', 'incident', ['closed_at'], unique=False,
                    postgresql_where=sa.text('closed_at IS NOT NULL'),
                    sqlite_where=sa.text('closed_at IS NOT NULL'))
    op.create_index('ix_assignment_lead_due', 'assignment', ['resolve_due_at'], unique=False,
                    postgresql_where=sa.text("role = 'lead'"),
                    sqlite_where=sa.text("role = 'lead'"))
    op.create_index('ix_assignment_lead_team', 'assignment', ['team'], unique=False,
                    postgresql_where=sa.text("role = 'lead'"),
                    sqlite_where=sa.text("role = 'lead'"))


def downgrade() -> None:
    op.drop_index('ix_assignment_lead_team', table_name='assignment')
    op.drop_index('ix_assignment_lead_due', table_name='assignment')
    op.drop_index('ix_incident_closed_at', table_name='incident')
    op.drop_index('ix_incident_zone', table_name='incident')
    op.drop_index('ix_incident_reported_at', table_name='incident')
