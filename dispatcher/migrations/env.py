"""Alembic environment: runs on the connection the store hands over (see ``upgrade_to_head``)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import dispatcher.tables  # noqa: F401 - registers the tables on SQLModel.metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through dispatcher.migrations.upgrade_to_head(connection)")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
