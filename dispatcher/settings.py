"""Settings from the command line or the environment (``DISPATCHER_*``); built in the composition root."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_TABLE = Path(str(files("rules").joinpath("tables", "ershili.yaml")))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCHER_", extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///dispatcher.db",
        description="any SQLAlchemy async URL: sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db",
    )
    rules_path: Path = Field(
        default=BUNDLED_TABLE,
        description="the rule table (boundary list) put in force at first start; later the table put in force "
        "last (stored in the database) wins, unless rules_from_file; its folder is where includes are read",
    )
    rules_from_file: bool = Field(
        default=False,
        description="put the table at rules_path in force at start even though the database holds a newer one "
        "(recorded as a new version by file:<name>, unless it is the stored table already)",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per line, with request id, township and incident"
    )
    access_log: bool = Field(
        default=True, description="one line per HTTP request on the dispatcher.access logger (false: none)"
    )
    writer_queue_size: int = Field(default=10_000, ge=1, description="commands waiting for the writer")
    writer_batch_max: int = Field(default=512, ge=1, description="commands committed in one transaction at most")
    board_queue_size: int = Field(default=2_000, ge=1, description="events a board may lag before it is dropped")
    board_snapshot_page: int = Field(default=200, ge=1, description="open incidents per snapshot frame of a board")
    feed_ring_size: int = Field(default=20_000, ge=1, description="recent events kept in memory for resuming boards")
    db_pool_size: int = Field(default=10, ge=1)
    gc_freeze: bool = Field(default=True, description="keep the garbage collector off long-lived objects")
    switch_interval_ms: float = Field(
        default=0.5,
        gt=0,
        le=100,
        description="how long one thread may hold Python's GIL while another waits for it (Python's default: 5): "
        "the SQLite writer's thread gets it back that soon after each statement while the event loop works",
    )
    message_model: Path | None = Field(
        default=None,
        description="a message model file (dispatcher classify train) deciding a description's category where the "
        "table's keywords are weak or tie, triage below its confidence; kept when another rule table is put in force",
    )
    roster_path: Path | None = Field(
        default=None,
        description="the roster loaded at first start (later the stored one is used); "
        "default: the bundled roster when running the bundled rule table",
    )
    no_roster: bool = Field(default=False, description="dispatch every team as a whole, choosing no officers")
    duplicate_radius_m: float = Field(
        default=200.0, ge=0, description="a report this close to an open incident of its category joins it (0: off)"
    )
    duplicate_window_s: float = Field(
        default=1800.0, gt=0, description="... when that incident's latest report is at most this old"
    )

    county_webhook_url: str | None = Field(
        default=None,
        description="where county matters are POSTed (http://...): each township's county hand-over webhook "
        "subscription, made or repointed at start; unset: none is made (one may be made through the API)",
    )
    map_tiles_url: str | None = Field(
        default=None,
        pattern=r"^(https?://[^\s]+|/[^\s]*)$",
        description=(
            "the township's own tile server for the board's map, an XYZ template such as"
            " http://tiles.township.local/{z}/{x}/{y}.png (Web Mercator tiles); unset: no tiles, nothing fetched"
        ),
    )
    county_webhook_secret: SecretStr | None = Field(
        default=None,
        description="the county hand-over subscription's Standard Webhooks secret (whsec_…), given to the county "
        "too; unset: a new one, kept in the database",
    )
    county_webhook_attempts: int = Field(
        default=8, ge=1, le=100, description="tries of a county hand-over before its delivery is marked failed"
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=300, description="webhook subscriptions: per request")
    webhook_hosts: str | None = Field(
        default=None,
        description="comma-separated host names webhook subscriptions may point at (unset: any host)",
    )
    webhook_first_backoff_s: float = Field(default=1.0, gt=0, description="webhooks: wait after a first failure")
    webhook_max_backoff_s: float = Field(default=300.0, gt=0, description="webhooks: longest wait between tries")
    webhook_attempts_kept: int = Field(
        default=10_000, ge=1, description="webhooks: the newest attempts kept in each subscription's delivery log"
    )
    webhook_disable_after_s: float = Field(
        default=86_400.0, gt=0, description="webhooks: a subscription failing this long is disabled (an alarm)"
    )

    mqtt_url: str | None = Field(
        default=None, description="mqtt://user:password@host:1883 turns the MQTT gateway on; unset: HTTP only"
    )
    mqtt_prefix: str | None = Field(default=None, description="topic prefix; default township/<township-id>/")
    mqtt_client_id: str = Field(
        default="dispatcher", min_length=1, max_length=128, description="fixed: the broker keeps its session"
    )
    mqtt_max_payload_bytes: int = Field(default=64 * 1024, ge=1, description="larger payloads go to deadletter")
    mqtt_shared_group: str | None = Field(
        default=None,
        pattern=r"^[^/+#$\s]{1,64}$",
        description="replicas subscribe as members of this MQTT 5 shared subscription group ($share/<group>/...):"
        " each device message is taken by one replica; unset: plain subscriptions",
    )
    # -- accounts, tokens, limits, townships (docs/security.md) --
    admin_password: SecretStr | None = Field(
        default=None,
        description="the password of the administrator 'admin' created at the first start; "
        "unset: a generated one is printed once to the console",
    )
    token_ttl_s: float = Field(default=8 * 3600.0, gt=0, description="how long a signed-in session token lives")
    lockout_failures: int = Field(default=5, ge=1, description="failed sign-ins of one name that lock it ...")
    lockout_window_s: float = Field(default=900.0, gt=0, description="... within this window ...")
    lockout_s: float = Field(default=900.0, gt=0, description="... for this long")
    body_limit_bytes: int = Field(default=64 * 1024, ge=1024, description="largest request body (413 beyond)")
    rate_per_s: float = Field(default=20.0, description="requests per second per token, sustained (0: no limit)")
    rate_burst: float = Field(default=200.0, ge=0, description="requests per token in a burst (0: no limit)")
    sign_in_per_min: float = Field(default=30.0, description="sign-ins per minute per client address (0: no limit)")
    townships: str | None = Field(
        default=None,
        description="serve several townships: 'id=rules_path:database_url' entries separated by ';' "
        "(accounts and the audit trail stay in database_url); unset: one township, rules_path on database_url",
    )

    # -- replicas: a county's townships over several processes (docs/operations.md) --
    replica_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="replica mode (PostgreSQL only): this process's id among the replicas sharing database_url; "
        "each township runs on the replica holding its lease, the others carry its requests there",
    )
    advertise_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+/?$",
        description="replica mode: where the other replicas reach this one (http://10.0.0.5:8000)",
    )
    db_connections: int = Field(
        default=20,
        ge=2,
        le=1000,
        description="replica mode: PostgreSQL connections this replica opens at most for its townships' hubs, "
        "their boards' reads, accounts and the field app (one budget, whatever the number of townships; "
        "the lease rounds take one more, each township database tailed for a board one more)",
    )
    lease_ttl_s: float = Field(
        default=6.0,
        ge=1.0,
        le=300.0,
        description="replica mode: a lease not renewed for this long is free; renewed every quarter of it "
        "(a dead replica's townships move after at most this, plus a round)",
    )

    # -- the field app's photos (docs/field.md) --
    media_dir: Path | None = Field(
        default=None,
        description="where photos are stored (content-addressed); default: a folder 'media' beside the SQLite "
        "database file, or ./media for PostgreSQL",
    )
    media_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="largest photo taken (413 beyond)")

    def media_path(self) -> Path:
        """The photo store's folder: ``media_dir``, else ``media`` beside the SQLite file, else ``./media``."""
        if self.media_dir is not None:
            return self.media_dir
        prefix, _, rest = self.database_url.partition(":///")
        if prefix.startswith("sqlite") and rest and rest != ":memory:":
            return Path(rest).expanduser().resolve().parent / "media"
        return Path("media")

    def township_entries(self) -> list[tuple[str, Path, str]]:
        """The ``townships`` entries as (id, rules path, database URL); raises ValueError when malformed."""
        entries = []
        for raw in (self.townships or "").split(";"):
            if not raw.strip():
                continue
            township_id, eq, rest = raw.strip().partition("=")
            rules, colon, url = rest.partition(":")
            if not (eq and colon and township_id and rules and url):
                raise ValueError(f"DISPATCHER_TOWNSHIPS: write id=rules_path:database_url, not {raw.strip()!r}")
            entries.append((township_id.strip(), Path(rules.strip()), url.strip()))
        return entries

    def roster_file(self) -> Path | None:
        if self.no_roster:
            return None
        if self.roster_path is not None:
            return self.roster_path
        from dispatcher.roster_file import BUNDLED_ROSTER

        return BUNDLED_ROSTER if self.rules_path == BUNDLED_TABLE else None
