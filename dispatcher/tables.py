"""Table models (SQLModel). API models live apart, in :mod:`gateways.schemas`."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    PostgreSQL stores ``timestamptz``. SQLite has no datetime type: there the value is stored as
    ISO-8601 text in UTC with microseconds (``2026-06-12 08:00:00.000000``, which sorts in time
    order), converted here in one step instead of through SQLAlchemy's generic DATETIME processor:
    the writer binds some thirty datetimes per report, so this is on the intake's hot path.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(32))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass timezone-aware UTC times")
        if dialect.name == "sqlite":
            if value.tzinfo is not UTC:
                value = value.astimezone(UTC)
            return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return value

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return _parse_utc(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@lru_cache(maxsize=8192)
def _parse_utc(text: str) -> datetime:
    """One stored SQLite time as an aware UTC datetime. Cached: the assignments of one incident share
    their dispatch and due times, so loading the open incidents at start parses each time once."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _utc(nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_type=UtcDateTime, nullable=nullable, index=index)


class IncidentRow(SQLModel, table=True):
    __tablename__ = "incident"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    report_id: str = Field(max_length=128, unique=True)
    category: str | None = Field(default=None, max_length=96, description="as routed (reported or classified)")
    reported_category: str | None = Field(default=None, max_length=96, description="as the reporter gave it")
    description: str = Field(sa_type=sa.Text)
    zone: str | None = Field(default=None, max_length=64, index=True)
    zones: str = Field(default="", max_length=512)
    lat: float | None = None
    lon: float | None = None
    severity: int | None = None
    reporter: str | None = Field(default=None, max_length=256)
    reporter_kind: str | None = Field(default=None, max_length=16)
    exercise: bool = Field(default=False, index=True, description="a drill: kept apart from real figures")
    occurred_at: datetime | None = _utc(nullable=True)
    status: str = Field(max_length=16, index=True)
    module: str = Field(max_length=64, index=True)
    queue: str | None = Field(default=None, max_length=16)
    priority: int
    rule_id: str | None = Field(default=None, max_length=64)
    table_version: str = Field(max_length=64)
    handover: str | None = Field(default=None, max_length=64, description="county department it goes to")
    escalation: str = Field(sa_type=sa.Text, description="the chain it started with, as JSON")
    reported_at: datetime = _utc()
    updated_at: datetime = _utc()
    version: int
    report_count: int = Field(default=1, description="the first report and every one that joined it")
    merged_into: int | None = Field(default=None, description="the incident it was folded into")
    ack_within_s: float | None = Field(default=None, description="the promised windows, for teams sent later")
    arrive_within_s: float | None = None
    resolve_within_s: float | None = None
    resolve_within_work: str | None = Field(default=None, max_length=16, description="in working time: 5wd, 8wh")
    closing_loop: str | None = Field(
        default=None, sa_type=sa.Text, description="verification, extensions, parking (JSON; none: nothing of it)"
    )
    delivery_state: str | None = Field(default=None, max_length=16, description="county forwarding: pending, ...")
    delivery_attempts: int = Field(default=0)
    delivery_error: str | None = Field(default=None, max_length=512)
    delivery_settled_at: datetime | None = _utc(nullable=True)
    place: str | None = Field(default=None, max_length=64, index=True, description="the place code it came from")
    accuracy_m: float | None = Field(default=None, description="the phone's GPS accuracy for lat/lon")
    photos: str | None = Field(default=None, max_length=400, description="the report's photos: sha256 ids, comma")
    closed_at: datetime | None = _utc(nullable=True)  # the first close (结案): the briefing reads it, not the log
    extensions: int = Field(default=0, description="extensions (延期) approved")
    reworks: int = Field(default=0, description="verifications failed (返工)")

    # The briefing finds a period's incidents by report and by close (revision 0018).
    __table_args__ = (
        sa.Index("ix_incident_reported_at", "reported_at"),
        sa.Index(
            "ix_incident_closed_at",
            "closed_at",
            postgresql_where=sa.text("closed_at IS NOT NULL"),
            sqlite_where=sa.text("closed_at IS NOT NULL"),
        ),
    )


class AssignmentRow(SQLModel, table=True):
    """One team's part in an incident, with its three deadlines (absolute due time, state, when settled).

    The deadlines are columns rather than rows of their own: the kinds are fixed (acknowledge, arrive,
    resolve), and a report dispatching five teams then writes five rows instead of twenty.
    """

    __tablename__ = "assignment"

    incident_id: int = Field(primary_key=True, foreign_key="incident.id")
    team: str = Field(primary_key=True, max_length=64)
    position: int = Field(description="0 for the lead, then the supporting teams in rule order")
    role: str = Field(max_length=16)
    state: str = Field(max_length=16)
    dispatched_at: datetime = _utc()
    updated_at: datetime = _utc()
    ack_due_at: datetime | None = _utc(nullable=True)
    ack_state: str | None = Field(default=None, max_length=16)
    ack_settled_at: datetime | None = _utc(nullable=True)
    arrive_due_at: datetime | None = _utc(nullable=True)
    arrive_state: str | None = Field(default=None, max_length=16)
    arrive_settled_at: datetime | None = _utc(nullable=True)
    resolve_due_at: datetime | None = _utc(nullable=True)
    resolve_state: str | None = Field(default=None, max_length=16)
    resolve_settled_at: datetime | None = _utc(nullable=True)
    officer: str | None = Field(default=None, max_length=64, index=True, description="the unit sent")
    tried: str = Field(default="", max_length=1024, description="officers sent before, comma-separated")
    waiting: bool = Field(default=False, description="the team has a roster but nobody could go yet")
    # The team's first move ending each stage (the briefing's stage times), as in its UnitMoved events.
    acked_at: datetime | None = _utc(nullable=True)
    arrived_at: datetime | None = _utc(nullable=True)
    resolved_at: datetime | None = _utc(nullable=True)

    __table_args__ = (
        sa.Index("ix_assignment_team_incident", "team", "incident_id"),
        # The briefing finds the leads due in a period, and the teams that led before it, by these (revision 0018).
        sa.Index(
            "ix_assignment_lead_due",
            "resolve_due_at",
            postgresql_where=sa.text("role = 'lead'"),
            sqlite_where=sa.text("role = 'lead'"),
        ),
        sa.Index(
            "ix_assignment_lead_team",
            "team",
            postgresql_where=sa.text("role = 'lead'"),
            sqlite_where=sa.text("role = 'lead'"),
        ),
        # Each incident's lead without reading its supporting teams' rows (revision 0019).
        sa.Index(
            "ix_assignment_lead_incident",
            "incident_id",
            postgresql_where=sa.text("role = 'lead'"),
            sqlite_where=sa.text("role = 'lead'"),
        ),
    )


class EscalationRow(SQLModel, table=True):
    """One step of an incident's leadership chain for one missed promise of one assignment.

    The primary key is the escalation's identity: a step is inserted once and then only changes
    state (pending → raised or void), so a retry or a restart cannot raise it twice.
    """

    __tablename__ = "escalation"

    incident_id: int = Field(primary_key=True, foreign_key="incident.id")
    team: str = Field(primary_key=True, max_length=64)
    kind: str = Field(primary_key=True, max_length=16, description="ack, arrive, resolve or manual")
    step: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    level: str = Field(max_length=32)
    due_at: datetime = _utc()
    state: str = Field(max_length=16)
    settled_at: datetime | None = _utc(nullable=True)


class ReportKeyRow(SQLModel, table=True):
    """Every ``report_id`` ever taken, first reports and joined ones alike: a phone's retry is known by it.

    The incident and its joined reports keep their report ids in two tables; this one key across
    both is what makes a retry after a restart find its report instead of joining or opening again.
    """

    __tablename__ = "report_key"

    report_id: str = Field(primary_key=True, max_length=128)


class IncidentReportRow(SQLModel, table=True):
    """A further report that joined an incident (duplicates, merges); the first report is the incident's own."""

    __tablename__ = "incident_report"

    report_id: str = Field(primary_key=True, max_length=128)
    incident_id: int = Field(index=True)
    position: int
    category: str | None = Field(default=None, max_length=96)
    description: str = Field(sa_type=sa.Text)
    zone: str | None = Field(default=None, max_length=64)
    lat: float | None = None
    lon: float | None = None
    severity: int | None = None
    reporter: str | None = Field(default=None, max_length=256)
    reporter_kind: str | None = Field(default=None, max_length=16)
    exercise: bool = False
    occurred_at: datetime | None = _utc(nullable=True)
    attached_at: datetime = _utc()
    merged_from: int | None = None
    place: str | None = Field(default=None, max_length=64)
    accuracy_m: float | None = None
    photos: str | None = Field(default=None, max_length=400)


class OfficerStatusRow(SQLModel, table=True):
    """Each officer's last reported status and position (the roster itself is a versioned document)."""

    __tablename__ = "officer_status"

    officer_id: str = Field(primary_key=True, max_length=64)
    status: str = Field(max_length=16)
    lat: float | None = None
    lon: float | None = None
    position_at: datetime | None = _utc(nullable=True)
    updated_at: datetime = _utc()


class RosterRow(SQLModel, table=True):
    """Every roster the dispatcher ran with, newest last: officers, shifts and duty overrides as JSON."""

    __tablename__ = "roster"

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=64)
    body: str = Field(sa_type=sa.Text)
    loaded_at: datetime = _utc()
    loaded_by: str | None = Field(default=None, max_length=128)


class ShiftHandoverRow(SQLModel, table=True):
    """交接班: what one shift handed the next (open matters, running deadlines), and who took it."""

    __tablename__ = "shift_handover"

    id: int | None = Field(default=None, primary_key=True)
    team: str = Field(max_length=64, index=True)
    shift_id: str = Field(max_length=64)
    at: datetime = _utc()
    summary: str = Field(sa_type=sa.Text)
    incoming_lead: str | None = Field(default=None, max_length=64)
    acknowledged_by: str | None = Field(default=None, max_length=128)
    acknowledged_at: datetime | None = _utc(nullable=True)


class RuleTableRow(SQLModel, table=True):
    """Every rule table put in force, newest last: the YAML text as given, who put it in force and when.

    Ids are given by the hub's writer (in the same transaction as the ``RulesPutInForce`` event).
    """

    __tablename__ = "rule_table"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    version: str = Field(max_length=64)
    body: str = Field(sa_type=sa.Text)
    put_at: datetime = _utc()
    put_by: str | None = Field(default=None, max_length=128)


class ScoringTextRow(SQLModel, table=True):
    """The YAML of a scoring table put in force, stored once under its SHA-256 digest (hex).

    The ``ScoringPutInForce`` event names the digest (the event log, and so the board's feed, carries no
    YAML); the row is written before the event, so an event never names a missing text.
    """

    __tablename__ = "scoring_text"

    digest: str = Field(primary_key=True, max_length=64)
    version: str = Field(max_length=64)
    body: str = Field(sa_type=sa.Text)
    stored_at: datetime = _utc()


class EventRow(SQLModel, table=True):
    """The append-only event log: rows are inserted, never updated or deleted."""

    __tablename__ = "event"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    # NULL: a fact of the township's log (a handover, a roster, a rule table), about no incident.
    incident_id: int | None = Field(default=None, index=True)
    type: str = Field(max_length=48)
    at: datetime = _utc()
    payload: str = Field(sa_type=sa.Text)

    # The briefing's 回退 by time (revision 0017): partial, so only the (few) return events pay for it.
    __table_args__ = (
        sa.Index(
            "ix_event_returned_at",
            "at",
            postgresql_where=sa.text("type = 'AssignmentReturned'"),
            sqlite_where=sa.text("type = 'AssignmentReturned'"),
        ),
    )


class OutboxCursorRow(SQLModel, table=True):
    """How far an outbox (the MQTT gateway's, one row per client id) has published the event log.

    Written after the fact and in batches: after a crash the outbox re-sends from here, so a few
    events may go out twice (consumers deduplicate by ``seq``) but none is skipped.
    """

    __tablename__ = "outbox_cursor"

    name: str = Field(primary_key=True, max_length=128)
    last_seq: int = Field(description="every event up to this seq was acknowledged by the broker")
    updated_at: datetime = _utc()


# Accounts, tokens and the audit trail (revision 0004) live in their own module; imported here so that
# every user of this module's metadata (the store, the migrations, their test) sees them.
import dispatcher.account_tables  # noqa: E402
import dispatcher.field_tables as _field_tables  # noqa: E402, F401  (photos and places, revision 0007)
import dispatcher.lease_tables  # noqa: E402  (replicas and leases, revision 0016)
import dispatcher.webhook_tables  # noqa: E402, F401
