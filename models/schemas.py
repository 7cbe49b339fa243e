"""Read schemas: the one shape of each record that rearguard shows to machines.

The CLI's ``--json``, the HTTP intake's responses (and so its OpenAPI document) and the
exports' machine-readable parts all build a record's form here, from its table row, so that a
field added or renamed changes every output at once. Each schema has an ``of`` constructor
taking the row (and what the row does not hold, such as where the production alias points).

Times are written as :meth:`datetime.isoformat` writes them (``+00:00``, not ``Z``), as the
outputs always have; approval requests' to the second.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from rearguard.models.audit.redaction import redact_text, redact_value
from rearguard.models.enums import AssetKind, IncidentSource, IncidentStatus, Severity

if TYPE_CHECKING:
    # The rows are only read here: without the tables (SQLModel), `incident list --json`
    # starts without SQLAlchemy.
    from rearguard.models.db.tables import (
        ApprovalRequest,
        Asset,
        AssetVersion,
        Drill,
        DrillRun,
        Incident,
        NotificationOutbox,
        TimelineEvent,
        VersionScan,
    )
    from rearguard.models.incidents.rows import IncidentRow

    # At run time, types imports the drills, which import these schemas.
    from rearguard.models.incidents.types import IncidentType

IsoTime = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str)]
IsoSeconds = Annotated[
    datetime,
    PlainSerializer(lambda moment: _aware(moment).isoformat(timespec="seconds"), return_type=str),
]


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive UTC times for columns written before UTCDateTime existed.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class ReadSchema(BaseModel):
    """What every read schema shares: frozen, and its JSON form one call away."""

    model_config = ConfigDict(frozen=True)

    def json_value(self) -> Any:
        """The JSON-compatible value (dicts, lists, strings, numbers) of this record."""
        return self.model_dump(mode="json")


class IncidentRead(ReadSchema):
    """An incident as it is recorded."""

    id: int
    type: str = Field(description="incident type: the playbook that handles it")
    severity: Severity
    status: IncidentStatus
    asset: str | None = Field(description="the affected asset (the dataset for data_poisoning)")
    since: IsoTime | None = Field(description="suspected start of the compromise")
    summary: str
    source: IncidentSource
    dedup_key: str | None = Field(description="what groups later alerts onto this incident")
    atlas_ids: list[str] = Field(description="MITRE ATLAS technique ids")
    opened_by: str
    opened_at: IsoTime
    updated_at: IsoTime
    reason: str | None = Field(description="why the playbook failed, when it did")
    state: dict[str, Any] = Field(
        description="what the playbook decided so far (compromised and selected versions)"
    )

    @classmethod
    def of(cls, incident: Incident | IncidentRow) -> IncidentRead:
        """The read form of an incident row (of the table model, or read with plain SQL)."""
        return cls(**_incident_fields(incident))

    @property
    def compromised(self) -> str | None:
        """The version found compromised, once the playbook has said."""
        return _label(self.state.get("compromised"))

    @property
    def selected(self) -> str | None:
        """The known-good version selected for the rollback, once the playbook has said."""
        return _label(self.state.get("selected"))

    def redacted(self) -> Self:
        """A copy whose free texts (summary, reason, who, dedup key, state) hide secrets."""
        return self.model_copy(
            update={
                "summary": redact_text(self.summary),
                "reason": redact_text(self.reason) if self.reason else None,
                "opened_by": redact_text(self.opened_by),
                "dedup_key": redact_text(self.dedup_key) if self.dedup_key else None,
                "state": redact_value(self.state),
            }
        )


def _label(value: Any) -> str | None:
    return str(value) if value else None


def _incident_fields(incident: Incident | IncidentRow) -> dict[str, Any]:
    return {
        "id": incident.id,
        "type": incident.type,
        "severity": incident.severity,
        "status": incident.status,
        "asset": incident.asset_name,
        "since": incident.since,
        "summary": incident.summary,
        "source": incident.source,
        "dedup_key": incident.dedup_key,
        "atlas_ids": list(incident.atlas_ids),
        "opened_by": incident.opened_by,
        "opened_at": incident.opened_at,
        "updated_at": incident.updated_at,
        "reason": incident.reason,
        "state": dict(incident.state),
    }


class IncidentNow(IncidentRead):
    """An incident and the version its asset's production alias points at now."""

    production: str | None = Field(description="the label production serves now, if any")

    @classmethod
    def of_now(cls, incident: Incident, *, production: str | None) -> IncidentNow:
        """The read form of an incident row, with where production points."""
        return cls(**_incident_fields(incident), production=production)


class EventRead(ReadSchema):
    """One timeline event, with every hashed field and its hash."""

    seq: int
    ts: str = Field(description="canonical UTC timestamp, as hashed")
    kind: str = Field(description="intent, outcome, decision, notification, state or alert")
    action: str
    actor: str
    asset: str | None
    version: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, event: TimelineEvent) -> EventRead:
        """The read form of a stored event (its canonical JSON data parsed)."""
        return cls(
            seq=event.seq,
            ts=event.ts,
            kind=event.kind,
            action=event.action,
            actor=event.actor,
            asset=event.asset,
            version=event.version,
            data=json.loads(event.data),
            prev_hash=event.prev_hash,
            hash=event.hash,
        )


class IncidentDetail(IncidentNow):
    """An incident, where production points, and its timeline."""

    timeline: list[EventRead]

    @classmethod
    def of_timeline(
        cls, incident: Incident, events: list[TimelineEvent], *, production: str | None
    ) -> IncidentDetail:
        """The read form of an incident row with its events."""
        return cls(
            **_incident_fields(incident),
            production=production,
            timeline=[EventRead.of(e) for e in events],
        )


class ApprovalRequestRead(ReadSchema):
    """One round of an approval request; a pending one past its deadline is overdue."""

    id: int
    incident_id: int
    step: str
    round: int
    status: str = Field(description="pending, approved, denied, timed_out or escalated")
    overdue: bool
    approvers: list[str]
    requested_at: IsoSeconds
    deadline: IsoSeconds
    on_timeout: str | None
    escalate_to: list[str]
    decided_by: str | None
    decided_at: IsoSeconds | None
    comment: str | None
    flow_run_id: str | None

    @classmethod
    def of(cls, request: ApprovalRequest, *, now: datetime | None = None) -> ApprovalRequestRead:
        """The read form of a request row, overdue as of ``now`` (default: now)."""
        return cls(
            id=int(request.id or 0),
            incident_id=request.incident_id,
            step=request.step,
            round=request.round,
            status=request.status,
            overdue=request.is_overdue(now=now),
            approvers=list(request.approvers),
            requested_at=request.requested_at,
            deadline=request.deadline,
            on_timeout=request.policy.get("on_timeout"),
            escalate_to=list(request.policy.get("escalate_to", [])),
            decided_by=request.decided_by,
            decided_at=request.decided_at,
            comment=request.comment,
            flow_run_id=request.flow_run_id,
        )


class DrillRead(ReadSchema):
    """A scheduled drill and when it runs next."""

    name: str
    playbook: str
    asset: str
    cron: str
    timezone: str
    rto_s: float | None = Field(description="recovery-time objective, seconds")
    next_run: IsoTime | None
    created_by: str
    created_at: IsoTime

    @classmethod
    def of(cls, drill: Drill, *, next_run: datetime | None) -> DrillRead:
        """The read form of a drill row, with its next fire time."""
        return cls(
            name=drill.name,
            playbook=drill.playbook,
            asset=drill.asset_name,
            cron=drill.cron,
            timezone=drill.timezone,
            rto_s=drill.rto_s,
            next_run=next_run,
            created_by=drill.created_by,
            created_at=drill.created_at,
        )


class DrillEventLine(ReadSchema):
    """One event of a drill's sandbox incident, in one line."""

    seq: int
    ts: str
    kind: str
    action: str
    detail: str


class DrillRunRead(ReadSchema):
    """One drill run (or a row counting scheduled runs that were missed)."""

    id: int
    drill: str
    playbook: str
    asset: str
    trigger: str = Field(description="schedule, manual or missed")
    status: str = Field(description="running, pass, fail or missed")
    scheduled_for: IsoTime | None
    started_at: IsoTime | None
    finished_at: IsoTime | None
    recovery_s: float | None
    rto_s: float | None
    within_rto: bool | None
    reason: str | None
    incident_id: int | None = Field(description="the drill's incident in the application")
    sandbox_incident_id: int | None
    sandbox: str | None = Field(description="the sandbox's home, when it was kept")
    injected: dict[str, Any] = Field(description="what the drill planted in the sandbox")
    steps: list[dict[str, Any]] = Field(description="the playbook's steps and how each ended")
    timeline: list[DrillEventLine]
    timeline_digest: str | None = Field(description="the hash of the sandbox timeline's end")

    @classmethod
    def of(cls, run: DrillRun) -> DrillRunRead:
        """The read form of a drill run row."""
        within = (
            None if run.recovery_s is None or run.rto_s is None else run.recovery_s <= run.rto_s
        )
        return cls(
            id=int(run.id or 0),
            drill=run.drill_name,
            playbook=run.playbook,
            asset=run.asset_name,
            trigger=run.trigger,
            status=run.status,
            scheduled_for=run.scheduled_for,
            started_at=run.started_at,
            finished_at=run.finished_at,
            recovery_s=run.recovery_s,
            rto_s=run.rto_s,
            within_rto=within,
            reason=run.reason,
            incident_id=run.incident_id,
            sandbox_incident_id=run.sandbox_incident_id,
            sandbox=run.sandbox,
            injected=dict(run.injected),
            steps=list(run.steps),
            timeline=[DrillEventLine(**line) for line in run.timeline],
            timeline_digest=run.timeline_digest,
        )


class RecoveryTimes(ReadSchema):
    """The spread of a drill's recovery times, seconds."""

    min: float
    median: float
    max: float


class DrillSummary(ReadSchema):
    """How the drills of one playbook on one asset went; missed runs count as not passed."""

    playbook: str
    asset: str
    runs: int
    passed: int
    failed: int
    missed: int
    success_rate: float
    recovery_s: RecoveryTimes | None


class DrillHistory(ReadSchema):
    """Drill runs, newest first, and their summary per playbook and asset."""

    summary: list[DrillSummary]
    runs: list[DrillRunRead]


class ManifestEntryRead(ReadSchema):
    """One file of a version: its path in the version, SHA-256 and size."""

    path: str
    sha256: str
    size: int


class EngineVerdictRead(ReadSchema):
    """A second-opinion engine's verdict on a whole version."""

    engine: str
    version: str | None = Field(description="its installed version; null when not installed")
    verdict: str = Field(description="flagged, clean, error or not installed")


class ScanRecordRead(ReadSchema):
    """A version's latest scan record: the scanner and rules its verdict was reached with."""

    scanner_version: int = Field(description="rearguard's scanner rules version at the scan")
    allow_fingerprint: str = Field(description="sha256 of the asset's effective allow-list")
    verdict: str = Field(description="clean or blocked")
    counts: dict[str, int] = Field(description="blocking findings by severity")
    allowed: int = Field(description="findings the asset's allowance accepted")
    engines: list[EngineVerdictRead]
    scanned_during: str = Field(description="registration, approval, promotion, verify, ...")
    scanned_at: IsoTime

    @classmethod
    def of(cls, row: VersionScan) -> ScanRecordRead:
        """The read form of a ``version_scan`` row."""
        return cls(
            scanner_version=row.scanner_version,
            allow_fingerprint=row.allow_fingerprint,
            verdict=row.verdict,
            counts=dict(row.counts),
            allowed=row.allowed,
            engines=[EngineVerdictRead(**engine) for engine in row.engines],
            scanned_during=row.scanned_during,
            scanned_at=row.scanned_at,
        )


class VersionRead(ReadSchema):
    """One version of an asset, with its manifest and its latest scan record."""

    label: str
    status: str
    digest: str = Field(description="SHA-256 of the canonical manifest")
    files: int
    bytes: int
    registered_by: str
    registered_at: IsoTime | None
    approved_by: str | None
    approved_at: IsoTime | None
    trained_on: str | None = Field(description="the dataset version, as DATASET@LABEL")
    status_reason: str | None
    manifest: list[ManifestEntryRead]
    scan: ScanRecordRead | None = Field(description="its latest scan record; null before any")

    @classmethod
    def of(
        cls,
        version: AssetVersion,
        *,
        manifest: list[ManifestEntryRead],
        trained_on: str | None,
        scan: ScanRecordRead | None = None,
    ) -> VersionRead:
        """The read form of a version row, with its manifest, lineage and scan record."""
        return cls(
            label=version.label,
            status=str(version.status),
            digest=version.digest,
            files=version.file_count,
            bytes=version.total_size,
            registered_by=version.registered_by,
            registered_at=version.registered_at,
            approved_by=version.approved_by,
            approved_at=version.approved_at,
            trained_on=trained_on,
            status_reason=version.status_reason,
            manifest=manifest,
            scan=scan,
        )


class RescannedVersionRead(ReadSchema):
    """One version ``assets rescan`` scanned again, and what it found."""

    asset: str
    version: str
    why: str = Field(description="why its record was out of date (or forced)")
    status_before: str
    status_after: str
    verdict_before: str = Field(description="the recorded verdict: clean, blocked or none")
    verdict_after: str = Field(description="clean, blocked, or tampered (bytes differ)")
    blocks: bool = Field(description="it now blocks trust (and is suspect)")
    problems: list[str]
    counts: dict[str, int] = Field(description="blocking findings by severity")
    incident: int | None = Field(description="the incident opened or attached to, if any")


class RescanRead(ReadSchema):
    """What ``assets rescan`` scanned again and found."""

    ok: bool = Field(description="no rescanned version blocks trust")
    scanner_version: int
    engines: dict[str, str | None] = Field(description="configured engines, installed versions")
    rescanned: list[RescannedVersionRead]
    current: int = Field(description="versions whose scan record is current: not rescanned")
    incidents: list[int] = Field(description="incidents opened or attached to")


class AssetSummary(ReadSchema):
    """An asset in a list: where production points and how many versions it has."""

    name: str
    kind: AssetKind
    production: str | None = Field(description="the label the production alias points at")
    production_status: str | None = Field(description="the status of the version in production")
    production_reason: str | None = Field(
        description="why that version has its status (who or what set it)"
    )
    trained_on: str | None = Field(
        description="the dataset version it was trained on, as DATASET@LABEL"
    )
    versions: int
    known_good: int


class AssetRead(ReadSchema):
    """An asset, its versions and where its production alias points."""

    name: str
    kind: AssetKind
    validate_command: str | None
    alias: str = Field(description="the production alias's name ([registry] alias)")
    production: str | None = Field(description="the label the production alias points at")
    alias_location: str | None = Field(description="where serving systems read the alias")
    versions: list[VersionRead]

    @classmethod
    def of(
        cls,
        asset: Asset,
        *,
        alias: str,
        production: str | None,
        versions: list[VersionRead],
        alias_location: str | None = None,
    ) -> AssetRead:
        """The read form of an asset row with its versions."""
        return cls(
            name=asset.name,
            kind=asset.kind,
            validate_command=asset.validate_command,
            alias=alias,
            production=production,
            alias_location=alias_location,
            versions=versions,
        )


class PlaybookRead(ReadSchema):
    """An incident type's catalog entry: what it answers, what it needs, what its playbook does."""

    type: str
    title: str
    entrypoint: str = Field(description="the Prefect flow, as module:function")
    atlas_ids: list[str]
    provisions: list[str] = Field(description="Code of Practice provisions it gives evidence for")
    steps: list[str] = Field(description="the steps its playbook records, in order")
    asset_kinds: list[AssetKind]
    inputs: list[str] = Field(
        description="what `incident open` needs: asset, digest, dataset, since"
    )
    drill_aims_for: IncidentStatus | None = Field(
        description="the status a drill's incident must reach to pass; null: not drillable"
    )

    @classmethod
    def of(cls, spec: IncidentType) -> PlaybookRead:
        """The read form of a catalog entry."""
        return cls(
            type=spec.type,
            title=spec.title,
            entrypoint=spec.entrypoint,
            atlas_ids=list(spec.atlas_ids),
            provisions=list(spec.provisions),
            steps=list(spec.steps),
            asset_kinds=list(spec.asset_kinds),
            inputs=[str(i) for i in spec.inputs],
            drill_aims_for=spec.drill.aims_for if spec.drill else None,
        )


class NotificationRead(ReadSchema):
    """One message of the notification outbox (its render context left out)."""

    id: int
    incident_id: int | None
    event: str
    channel: str
    destination: str
    status: str = Field(description="pending, sending, delivered or failed")
    attempts: int
    in_doubt: bool = Field(description="a send may have reached the channel")
    next_attempt_at: IsoTime | None
    last_error: str | None
    receipt: Any = Field(description="what the channel answered, when it was delivered")
    created_at: IsoTime
    delivered_at: IsoTime | None

    @classmethod
    def of(cls, row: NotificationOutbox) -> NotificationRead:
        """The read form of an outbox row."""
        # lazy: the Slack settings (pydantic-settings) only for the rows that show one.
        from rearguard.models.config.slack_commands import shown_destination

        return cls(
            id=int(row.id or 0),
            incident_id=row.incident_id,
            event=row.event,
            channel=row.channel,
            destination=shown_destination(row.channel, row.destination),
            status=row.status,
            attempts=row.attempts,
            in_doubt=row.in_doubt,
            next_attempt_at=row.next_attempt_at,
            last_error=row.last_error,
            receipt=json.loads(row.receipt) if row.receipt else None,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
        )
