"""Alembic migrations, shipped inside the package and run at start (``upgrade_to_head``)."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

HERE = Path(__file__).parent
log = logging.getLogger(__name__)


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


#: The PostgreSQL advisory lock key that makes migrations of one database one at a time ("disp" "migr").
MIGRATION_LOCK_KEY = 0x64697370_6D696772


def upgrade_to_head(connection: Connection) -> None:
    """Bring the schema on ``connection`` to the newest revision (synchronous; use ``run_sync``, inside a
    transaction: ``engine.begin()``).

    On PostgreSQL it first takes a transaction-level advisory lock, so that processes starting at once on a
    new database (replicas of a county) migrate it one after the other: the second waits for the first's
    ``COMMIT``, then finds the schema at the head and changes nothing. Logs one line when it upgraded
    (Alembic's own lines, one per revision, are left to its logger).
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
    before = MigrationContext.configure(connection).get_current_revision()
    command.upgrade(alembic_config(connection), "head")
    after = MigrationContext.configure(connection).get_current_revision()
    if after != before:
        log.info("database schema upgraded from %s to %s", before or "nothing (a new database)", after)
