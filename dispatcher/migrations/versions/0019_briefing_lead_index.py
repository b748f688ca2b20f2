"""the briefing finds each incident's lead by a partial index on the leads' incident

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04

Every figure and stage time joins the period's incidents to their current lead. The only index by incident
was the primary key (incident, team), which holds every team's part: each incident's supporting teams' rows
were read from the table too, to see that they were not the lead (2.3 rows an incident on the township-year).
This index holds the leads only: on SQLite the join of a year's 100,000 incidents to their leads went from
120 to 73 ms, and it is read twice a year's figures (the figures, then the stage times). One entry a lead,
written with the report; a lead's moves do not change it.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_assignment_lead_incident', 'assignment', ['incident_id'], unique=False,
                    postgresql_where=sa.text("role = 'lead'"),
                    sqlite_where=sa.text("role = 'lead'"))


def downgrade() -> None:
    op.drop_index('ix_assignment_lead_incident', table_name='assignment')
