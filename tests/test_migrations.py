"""The Alembic migrations build exactly the schema the table models describe, on both backends."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import dispatcher.tables  # noqa: F401 - registers the tables
from dispatcher.sql_store import SqlIncidentStore


async def test_migrations_match_the_models(database_url: str) -> None:
    store = SqlIncidentStore(database_url)
    await store.open()  # runs the migrations
    try:
        async with store._engine.connect() as conn:

            def differences(sync_conn: Any) -> list[Any]:
                context = MigrationContext.configure(sync_conn)
                return list(compare_metadata(context, SQLModel.metadata))

            diff = await conn.run_sync(differences)
    finally:
        await store.close()
    assert diff == []
