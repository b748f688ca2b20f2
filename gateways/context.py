"""What the gateways share, typed: built once by the composition root (``server/app.py``).

A route or middleware reaches it with :func:`context_of`; nothing else is kept on ``app.state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from dispatcher.accounts import SqlDirectory
from dispatcher.clock import Clock
from dispatcher.hub import Hub
from dispatcher.settings import Settings
from gateways.limits import TokenBuckets

if TYPE_CHECKING:
    from dispatcher.field_store import SqlFieldStore
    from dispatcher.media import MediaStore
    from gateways.mqtt import LastKnownStatus, MqttGateway
    from gateways.replicas import Replicas
    from gateways.tenancy import Townships


@dataclass(slots=True, kw_only=True)
class AppContext:
    """The dispatcher's shared parts. ``hub`` is the first township's (routes choose theirs by township)."""

    hub: Hub
    townships: Townships
    directory: SqlDirectory
    clock: Clock
    settings: Settings
    token_buckets: TokenBuckets
    sign_in_buckets: TokenBuckets
    mqtt: MqttGateway | None = None
    mqtt_gateways: Any = None  # township -> its MQTT gateway here (replica mode: carried messages are applied there)
    officer_status: LastKnownStatus | None = None
    webhooks: Any = None  # the webhook deliverer while the app runs (gateways/webhooks.py)
    metrics: Any = None  # the Prometheus registry /metrics writes, made at the first scrape (gateways/metrics.py)
    snapshot_pages: Any = None  # encoded board snapshot pages shared by boards (gateways/board.py)
    media: MediaStore | None = None  # the photos' bytes (dispatcher/media.py)
    field: SqlFieldStore | None = None  # photos' metadata and places (dispatcher/field_store.py)
    ownership: Any = None  # which townships this process hosts (dispatcher/ownership.py)
    tail_feeds: Any = None  # boards of townships hosted elsewhere follow the log (dispatcher/tail_feed.py)
    replicas: Replicas | None = None  # replica mode: who serves which township (gateways/replicas.py)
    audit: Any = None  # where the edge hands audit entries (gateways/audit.py's Trail; None: the directory)


def context_of(connection: HTTPConnection) -> AppContext:
    """The context of the app serving ``connection``."""
    context: AppContext = connection.app.state.context
    return context
