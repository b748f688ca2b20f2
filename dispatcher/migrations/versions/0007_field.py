"""field app: photos (media, media_ref), places (place), and a report's place, GPS accuracy and photos

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

import dispatcher.tables
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STR = sqlmodel.sql.sqltypes.AutoString
_UTC = dispatcher.tables.UtcDateTime


def upgrade() -> None:
    op.create_table('media',
    sa.Column('sha256', _STR(length=64), nullable=False),
    sa.Column('content_type', _STR(length=32), nullable=False),
    sa.Column('bytes', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('uploaded_by', _STR(length=64), nullable=False),
    sa.Column('uploaded_at', _UTC(timezone=True), nullable=False),
    sa.Column('client_taken_at', _UTC(timezone=True), nullable=True),
    sa.Column('client_lat', sa.Float(), nullable=True),
    sa.Column('client_lon', sa.Float(), nullable=True),
    sa.Column('client_accuracy_m', sa.Float(), nullable=True),
    sa.Column('exif_taken_at', _STR(length=40), nullable=True),
    sa.Column('exif_lat', sa.Float(), nullable=True),
    sa.Column('exif_lon', sa.Float(), nullable=True),
    sa.Column('township', _STR(length=64), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_index(op.f('ix_media_uploaded_by'), 'media', ['uploaded_by'], unique=False)
    op.create_table('media_ref',
    sa.Column('sha256', _STR(length=64), nullable=False),
    sa.Column('township', _STR(length=64), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('sha256', 'township', 'incident_id')
    )
    op.create_table('place',
    sa.Column('code', _STR(length=64), nullable=False),
    sa.Column('kind', _STR(length=16), nullable=False),
    sa.Column('name', _STR(length=128), nullable=False),
    sa.Column('address', _STR(length=256), nullable=False),
    sa.Column('zone', _STR(length=64), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('contact_name', _STR(length=64), nullable=True),
    sa.Column('contact_phone', _STR(length=32), nullable=True),
    sa.Column('township', _STR(length=64), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('code')
    )
    for table in ('incident', 'incident_report'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('place', _STR(length=64), nullable=True))
            batch_op.add_column(sa.Column('accuracy_m', sa.Float(), nullable=True))
            batch_op.add_column(sa.Column('photos', _STR(length=400), nullable=True))
    op.create_index(op.f('ix_incident_place'), 'incident', ['place'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_incident_place'), table_name='incident')
    for table in ('incident_report', 'incident'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('photos')
            batch_op.drop_column('accuracy_m')
            batch_op.drop_column('place')
    op.drop_table('place')
    op.drop_table('media_ref')
    op.drop_index(op.f('ix_media_uploaded_by'), table_name='media')
    op.drop_table('media')
