"""briefing: the lead's stage end times, the close time, extensions and reworks as columns, filled from the log

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

The briefing read each incident's close and each stage's end from the event log (the first
``IncidentClosed``; the team's first ``UnitMoved`` to a state ending the stage). The writer now
stores them with the rows, with the number of extensions approved (延期) and of verifications failed
(返工); this revision adds the columns and fills them from the stored events by exactly those
definitions, so the figures of the history before it do not change.
"""

from collections.abc import Sequence

import sqlalchemy as sa

import dispatcher.tables
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The moves that end each stage (dispatcher.core.incidents.ACKED_BY, ARRIVED_BY, RESOLVED_BY), frozen here
# as they were when the columns were added.
_ENDS = {
    'acked_at': ('acknowledged', 'en_route', 'on_scene', 'resolved'),
    'arrived_at': ('on_scene',),
    'resolved_at': ('resolved',),
}


def upgrade() -> None:
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.add_column(sa.Column('closed_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('extensions', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('reworks', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('assignment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acked_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('arrived_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resolved_at', dispatcher.tables.UtcDateTime(timezone=True), nullable=True))
    fill(op.get_bind())


def fill(conn: sa.Connection) -> None:
    """Fill the columns from the stored events (also used by benchmarks/reports.py on its history).

    One pass over the closes and one over the moves, each grouped per incident (and team) and joined
    back with ``UPDATE … FROM`` (SQLite 3.33 and later, PostgreSQL); the times are copied as stored.
    """
    postgres = conn.dialect.name == 'postgresql'
    conn.execute(
        sa.text(
            """
            UPDATE incident SET closed_at = c.at
            FROM (SELECT incident_id, MIN(at) AS at FROM event WHERE type = 'IncidentClosed'
                  GROUP BY incident_id) AS c
            WHERE incident.id = c.incident_id
            """
        )
    )
    if postgres:
        decided = "json_to_record(e.payload::json) AS d(kind text, state text)"
        verified = "json_to_record(e.payload::json) AS v(passed boolean)"
        approved, failed = "d.kind = 'extension' AND d.state = 'approved'", "NOT v.passed"
    else:
        decided = verified = ''
        approved = "json_extract(e.payload, '$.kind') = 'extension' AND json_extract(e.payload, '$.state') = 'approved'"
        failed = "json_extract(e.payload, '$.passed') = 0"
    for column, kind, parsed, which in (
        ('extensions', 'RequestDecided', decided, approved),
        ('reworks', 'IncidentVerified', verified, failed),
    ):
        source = f'event e CROSS JOIN LATERAL {parsed}' if parsed else 'event e'
        conn.execute(
            sa.text(
                f"""
                UPDATE incident SET {column} = c.n
                FROM (SELECT e.incident_id AS incident_id, COUNT(*) AS n FROM {source}
                      WHERE e.type = '{kind}' AND {which} GROUP BY e.incident_id) AS c
                WHERE incident.id = c.incident_id
                """
            )
        )
    if postgres:
        source = "event e CROSS JOIN LATERAL json_to_record(e.payload::json) AS m(team text, to_state text)"
        team, to_state = 'm.team', 'm.to_state'
    else:
        source = 'event e'
        team, to_state = "json_extract(e.payload, '$.team')", "json_extract(e.payload, '$.to_state')"
    ends = ',\n'.join(
        f"MIN(CASE WHEN {to_state} IN ({', '.join(repr(s) for s in states)}) THEN e.at END) AS {column}"
        for column, states in _ENDS.items()
    )
    conn.execute(
        sa.text(
            f"""
            UPDATE assignment SET acked_at = m.acked_at, arrived_at = m.arrived_at, resolved_at = m.resolved_at
            FROM (SELECT e.incident_id AS incident_id, {team} AS team, {ends}
                  FROM {source} WHERE e.type = 'UnitMoved' GROUP BY e.incident_id, {team}) AS m
            WHERE assignment.incident_id = m.incident_id AND assignment.team = m.team
            """
        )
    )


def downgrade() -> None:
    with op.batch_alter_table('assignment', schema=None) as batch_op:
        batch_op.drop_column('resolved_at')
        batch_op.drop_column('arrived_at')
        batch_op.drop_column('acked_at')
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.drop_column('reworks')
        batch_op.drop_column('extensions')
        batch_op.drop_column('closed_at')
