"""Settings from the command line or the environment (``DISPATCHER_*``); built in the composition root."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_TABLE = Path(str(files("rules").joinpath("tables", "ershili.yaml")))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCHER_", extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///dispatcher.db",
        description="any SQLAlchemy async URL: sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db",
    )
    rules_path: Path = Field(default=BUNDLED_TABLE, description="the rule table (boundary list) to route with")
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    writer_queue_size: int = Field(default=10_000, ge=1, description="commands waiting for the writer")
    writer_batch_max: int = Field(default=512, ge=1, description="commands committed in one transaction at most")
    board_queue_size: int = Field(default=2_000, ge=1, description="events a board may lag before it is dropped")
    feed_ring_size: int = Field(default=20_000, ge=1, description="recent events kept in memory for resuming boards")
    db_pool_size: int = Field(default=10, ge=1)
    gc_freeze: bool = Field(default=True, description="keep the garbage collector off long-lived objects")
    mqtt_url: str | None = Field(
        default=None, description="mqtt://user:password@host:1883 turns the MQTT gateway on; unset: HTTP only"
    )
    mqtt_prefix: str | None = Field(default=None, description="topic prefix; default township/<township-id>/")
    mqtt_client_id: str = Field(
        default="dispatcher", min_length=1, max_length=128, description="fixed: the broker keeps its session"
    )
    mqtt_max_payload_bytes: int = Field(default=64 * 1024, ge=1, description="larger payloads go to deadletter")
