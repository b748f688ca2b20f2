"""report key: every report id ever taken, so that a retry is recognised across restarts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('report_key',
    sa.Column('report_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.PrimaryKeyConstraint('report_id')
    )
    # The ids already taken: each incident's first report and every report that joined one.
    op.execute(
        "INSERT INTO report_key (report_id) "
        "SELECT report_id FROM incident UNION SELECT report_id FROM incident_report"
    )


def downgrade() -> None:
    op.drop_table('report_key')
