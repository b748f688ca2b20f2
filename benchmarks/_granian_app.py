"""The dispatcher as an ASGI factory for granian (``benchmarks/intake.py --http-server granian`` only).

Settings come from the ``DISPATCHER_*`` environment, as ``dispatcher serve`` reads them; granian is not a project
dependency (install it into your own venv to compare).
"""

from __future__ import annotations

from typing import Any


def app() -> Any:
    from dispatcher.settings import Settings
    from server import logs
    from server.app import create_app

    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings)
