"""SQLModel tables: the persistent state of rearguard.

Timestamps are stored as timezone-aware UTC datetimes; the audit chain keeps its own
canonical text timestamps so that hashing never depends on a driver's datetime round trip.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy import inspect as sa_inspect
from sqlmodel import Field, SQLModel

from rearguard.models.enums import (
    AssetKind,
    IncidentSource,
    IncidentStatus,
    Severity,
    VersionStatus,
)


def table_of(model: type[SQLModel]) -> Table:
    """Return the Core table of a table model, for statements that skip the ORM.

    SQLAlchemy sets ``__table__`` on the class at runtime, but SQLModel does not declare it;
    the mapper gives the same table with its type.
    """
    table = sa_inspect(model).local_table
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table


def utcnow() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; give a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _tz_column(*, nullable: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class Asset(SQLModel, table=True):
    """A versioned thing the AI system depends on."""

    __tablename__ = "asset"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=128)
    kind: AssetKind = Field(sa_type=String(16))
    validate_command: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _tz_column()


class AssetVersion(SQLModel, table=True):
    """One immutable content of an asset."""

    __tablename__ = "asset_version"
    __table_args__ = (UniqueConstraint("asset_id", "label", name="uq_version_label"),)

    id: int | None = Field(default=None, primary_key=True)
    asset_id: int = Field(foreign_key="asset.id", index=True)
    label: str = Field(max_length=128)
    status: VersionStatus = Field(default=VersionStatus.CANDIDATE, sa_type=String(16))
    digest: str = Field(max_length=64, description="sha256 of the canonical manifest")
    total_size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    file_count: int = 0
    trained_on_id: int | None = Field(default=None, foreign_key="asset_version.id")
    registered_by: str = Field(max_length=128)
    registered_at: datetime = _tz_column()
    approved_by: str | None = Field(default=None, max_length=128)
    approved_at: datetime | None = _tz_column(nullable=True)
    status_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class VersionFile(SQLModel, table=True):
    """One file of a version's manifest."""

    __tablename__ = "version_file"
    __table_args__ = (Index("ix_version_file_sha256", "sha256"),)

    version_id: int = Field(foreign_key="asset_version.id", primary_key=True)
    path: str = Field(primary_key=True, max_length=1024)
    sha256: str = Field(max_length=64)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))


class VersionScan(SQLModel, table=True):
    """A version's latest scan record: the scanner and rules its verdict was reached with.

    One row per version, replaced by each scan of its own bytes (registration, approval,
    promotion, verify, sweep, rescan); the timeline keeps every record that changed.
    """

    __tablename__ = "version_scan"

    version_id: int = Field(
        foreign_key="asset_version.id", primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    scanner_version: int
    allow_fingerprint: str = Field(max_length=64)
    verdict: str = Field(max_length=16, description="clean or blocked")
    counts: dict[str, int] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False),
        description="blocking findings by severity",
    )
    allowed: int = Field(default=0, description="findings the asset's allowance accepted")
    engines: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False),
        description="each second-opinion engine's name, version and verdict",
    )
    scanned_during: str = Field(max_length=16, description="registration, verify, rescan, ...")
    scanned_at: datetime = _tz_column()


class DeniedDigest(SQLModel, table=True):
    """A file digest known to be malicious: no version holding it is registered or promoted."""

    __tablename__ = "denied_digest"

    sha256: str = Field(primary_key=True, max_length=64)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    incident_id: int | None = Field(default=None)
    added_by: str = Field(max_length=128)
    added_at: datetime = _tz_column()


class Alias(SQLModel, table=True):
    """A pointer that serving systems read; moving the production alias is the rollback."""

    __tablename__ = "alias"

    asset_id: int = Field(foreign_key="asset.id", primary_key=True)
    name: str = Field(primary_key=True, max_length=64)
    version_id: int = Field(foreign_key="asset_version.id")
    moved_at: datetime = _tz_column()
    moved_by: str = Field(max_length=128)


class Incident(SQLModel, table=True):
    """One security incident against one or more assets."""

    __tablename__ = "incident"

    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(max_length=64, index=True)
    severity: Severity = Field(default=Severity.SEV2, sa_type=String(8))
    status: IncidentStatus = Field(default=IncidentStatus.OPEN, sa_type=String(16), index=True)
    asset_name: str | None = Field(default=None, max_length=128, index=True)
    since: datetime | None = _tz_column(nullable=True)
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    source: IncidentSource = Field(default=IncidentSource.CLI, sa_type=String(16))
    dedup_key: str | None = Field(default=None, max_length=256, index=True)
    atlas_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    opened_by: str = Field(max_length=128)
    opened_at: datetime = _tz_column()
    updated_at: datetime = _tz_column()
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    state: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False),
        description="what the playbook decided so far (compromised and selected versions)",
    )


class IncidentDedupKey(SQLModel, table=True):
    """Which incident a dedup key belongs to: one row per key, so the database itself refuses a
    second incident for a key while the first is active, whatever the number of intake processes.

    ``incident_id`` is NULL only inside the transaction that claimed the key and is opening the
    incident; it is set before that transaction commits.
    """

    __tablename__ = "incident_dedup_key"

    dedup_key: str = Field(primary_key=True, max_length=320)
    incident_id: int | None = Field(default=None, index=True)
    claimed_at: datetime = _tz_column()


class TimelineEvent(SQLModel, table=True):
    """One append-only, hash-chained record."""

    __tablename__ = "timeline_event"
    # One asset's evidence (models/assets/evidence.py) is one query on this index.
    __table_args__ = (Index("ix_timeline_event_asset_seq", "asset", "seq"),)

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    ts: str = Field(max_length=32, description="canonical UTC timestamp, as hashed")
    incident_id: int | None = Field(default=None, index=True)
    kind: str = Field(max_length=16)
    action: str = Field(max_length=64)
    actor: str = Field(max_length=128)
    asset: str | None = Field(default=None, max_length=128)
    version: str | None = Field(default=None, max_length=128)
    data: str = Field(sa_column=Column(Text, nullable=False), description="canonical JSON")
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class ChainHead(SQLModel, table=True):
    """The last sequence number and hash of the chain, so truncation is detectable."""

    __tablename__ = "chain_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = Field(max_length=64)


class AuditCheckpoint(SQLModel, table=True):
    """A signed checkpoint of the chain: its signed JSON line, as published to every sink."""

    __tablename__ = "audit_checkpoint"

    number: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    seq: int = Field(description="the chain head's sequence number it vouches for")
    hash: str = Field(max_length=64, description="sha256 of the signed payload")
    record: str = Field(sa_column=Column(Text, nullable=False), description="the signed line")


class CheckpointDelivery(SQLModel, table=True):
    """One checkpoint to one sink: pending until published, retried in checkpoint order.

    A publisher claims a delivery (``attempts`` one more, ``lease_until`` set) before it
    publishes, so that two processes never publish it at once; a failure sets
    ``next_attempt_at`` (back-off), before which automatic passes leave the sink alone.
    """

    __tablename__ = "checkpoint_delivery"
    __table_args__ = (Index("ix_checkpoint_delivery_published_at", "published_at"),)

    number: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    sink: str = Field(primary_key=True, max_length=512)
    published_at: datetime | None = _tz_column(nullable=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    next_attempt_at: datetime | None = _tz_column(nullable=True)
    lease_until: datetime | None = _tz_column(nullable=True)


class CheckpointIncident(SQLModel, table=True):
    """A checkpoint that holds an incident's digest: what an export of it carries."""

    __tablename__ = "checkpoint_incident"

    incident_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    number: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})


class NotificationOutbox(SQLModel, table=True):
    """One notification to one destination of one channel, waiting for (or past) delivery.

    Written in the transaction of the timeline event that causes it; the dispatcher claims it
    (``sending`` with a lease), delivers it, and records the receipt as a timeline event in the
    transaction that marks it ``delivered`` or ``failed``. Rows of one ``ordering_key`` (an
    incident's messages to one destination) are delivered in ``id`` order.
    """

    __tablename__ = "notification_outbox"
    __table_args__ = (Index("ix_notification_outbox_status_id", "status", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int | None = Field(default=None, index=True)
    event: str = Field(max_length=32)
    channel: str = Field(max_length=16)
    destination: str = Field(max_length=256)
    ordering_key: str = Field(max_length=320)
    dedup_key: str = Field(max_length=64, unique=True, description="one row per cause and target")
    idempotency_key: str = Field(max_length=36, unique=True, description="sent with the message")
    cause_seq: int | None = Field(default=None, description="the timeline event that caused it")
    payload: str = Field(sa_column=Column(Text, nullable=False), description="render context")
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    in_doubt: bool = Field(default=False, description="a send may have reached the channel")
    next_attempt_at: datetime = _tz_column()
    lease_until: datetime | None = _tz_column(nullable=True)
    claimed_by: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    receipt: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _tz_column()
    updated_at: datetime = _tz_column()
    delivered_at: datetime | None = _tz_column(nullable=True)


class NotificationThread(SQLModel, table=True):
    """Where an incident's messages to one Slack destination go: its channel id and thread."""

    __tablename__ = "notification_thread"

    incident_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    destination: str = Field(primary_key=True, max_length=256)
    channel_id: str = Field(max_length=64)
    thread_ts: str | None = Field(default=None, max_length=32)
    created_at: datetime = _tz_column()


class ApprovalRequest(SQLModel, table=True):
    """One round of waiting for a named person's decision before a playbook step.

    A round ends approved, denied, timed out (the policy then proceeds or aborts) or escalated
    (a new round asks more people). ``callback_id`` is the opaque id Slack buttons carry.
    """

    __tablename__ = "approval_request"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(index=True)
    step: str = Field(max_length=64)
    round: int = 1
    callback_id: str = Field(max_length=64, unique=True)
    requested_at: datetime = _tz_column()
    deadline: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    approvers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    policy: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False),
        description="the rule as it was when the request opened (timeout, on_timeout, escalate_to)",
    )
    status: str = Field(default="pending", max_length=16, index=True)
    decided_by: str | None = Field(default=None, max_length=128)
    decided_at: datetime | None = _tz_column(nullable=True)
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    flow_run_id: str | None = Field(default=None, max_length=36)

    def is_overdue(self, *, now: datetime | None = None) -> bool:
        """True when the request is pending past its deadline (nobody has recorded the timeout
        yet), as of ``now`` (default: now)."""
        deadline = (
            self.deadline.replace(tzinfo=UTC) if self.deadline.tzinfo is None else self.deadline
        )
        return self.status == "pending" and deadline <= (now or utcnow())


class SeenCallback(SQLModel, table=True):
    """A signed callback already accepted (its signature), so that a replay is refused."""

    __tablename__ = "seen_callback"

    signature: str = Field(primary_key=True, max_length=128)
    received_at: datetime = _tz_column()


class Drill(SQLModel, table=True):
    """A recovery drill: a playbook run against a sandbox of an asset, on a cron schedule."""

    __tablename__ = "drill"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=128)
    playbook: str = Field(max_length=64)
    asset_name: str = Field(max_length=128)
    cron: str = Field(max_length=128)
    timezone: str = Field(max_length=64)
    rto_s: float | None = Field(default=None, description="recovery-time objective, seconds")
    created_by: str = Field(max_length=128)
    created_at: datetime = _tz_column()
    updated_at: datetime = _tz_column()


class DrillRun(SQLModel, table=True):
    """One run of a drill (or one missed run): its result, per step, against the RTO.

    Kept by drill name, not by a foreign key, so the history outlives a removed drill.
    """

    __tablename__ = "drill_run"

    id: int | None = Field(default=None, primary_key=True)
    drill_name: str = Field(max_length=128, index=True)
    playbook: str = Field(max_length=64)
    asset_name: str = Field(max_length=128)
    trigger: str = Field(max_length=16, description="schedule, manual, slack or missed")
    status: str = Field(max_length=16, description="running, pass, fail or missed")
    scheduled_for: datetime | None = _tz_column(nullable=True)
    started_at: datetime = _tz_column()
    finished_at: datetime | None = _tz_column(nullable=True)
    recovery_s: float | None = None
    rto_s: float | None = None
    incident_id: int | None = Field(default=None, description="the drill's incident here")
    sandbox_incident_id: int | None = None
    sandbox: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    injected: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    steps: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    timeline: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False),
        description="the sandbox incident's timeline, one compact line per event",
    )
    timeline_digest: str | None = Field(
        default=None, max_length=64, description="hash of the sandbox chain's last event"
    )


class MetricCounter(SQLModel, table=True):
    """One Prometheus counter (or histogram bucket or sum) for one set of labels.

    Incremented in the transaction of what it counts (``rearguard.models.metrics.counters``),
    so a scrape reads these few rows instead of recounting incidents, alerts and deliveries.
    """

    __tablename__ = "metric_counter"

    name: str = Field(primary_key=True, max_length=64)
    labels: str = Field(primary_key=True, max_length=512, description="canonical JSON")
    value: float = 0.0
