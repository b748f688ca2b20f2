"""How ``dispatcher serve`` logs: one format, the dispatcher's own lines, the libraries' chatter kept down."""

from __future__ import annotations

import logging

#: Libraries whose INFO lines say nothing an operator acts on: APScheduler writes a line per job it adds (one per
#: shift of the roster) and per scheduler started, Alembic two per connection. The dispatcher says each once itself
#: (``shift changes: N cron jobs armed``, ``database schema upgraded from … to …``). Their warnings still show.
QUIET = ("apscheduler", "alembic")


def configure_logging(level: str) -> None:
    """The root logger at ``level`` with one line format; the :data:`QUIET` libraries at WARNING unless debugging."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level.upper())
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING if root.level > logging.DEBUG else logging.NOTSET)
