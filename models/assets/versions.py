"""Asset registry services: register, approve, promote, describe, verify."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from rearguard.models.assets.checks import parse_command
from rearguard.models.assets.denylist import denied_among, denied_in_version, refuse_denied
from rearguard.models.assets.evidence import load_evidence
from rearguard.models.assets.scan_records import latest_scans, save_scan
from rearguard.models.audit.chain import append_event
from rearguard.models.db.engine import Database
from rearguard.models.db.tables import Alias, Asset, AssetVersion, VersionFile, utcnow
from rearguard.models.enums import AssetKind, EventKind, VersionStatus
from rearguard.models.errors import ConflictError, IntegrityViolation, NotFoundError, UsageError
from rearguard.models.failpoints import failpoint
from rearguard.models.integrity.scan.policy import ScanPolicy
from rearguard.models.integrity.scan.record import ScanRecord
from rearguard.models.integrity.signatures import (
    SignatureResult,
    SignatureVerdict,
    SigningPolicy,
    check_signature,
)
from rearguard.models.integrity.verification import VersionCheck, check_version, scan_version
from rearguard.models.names import check_name
from rearguard.models.registry.base import (
    SIGNATURE_FILE,
    ManifestEntry,
    Progress,
    RegistryBackend,
    StagedVersion,
    manifest_digest,
)
from rearguard.models.schemas import (
    AssetRead,
    AssetSummary,
    ManifestEntryRead,
    ScanRecordRead,
    VersionRead,
)


def get_asset(*, session: Session, name: str) -> Asset:
    """Return an asset by name.

    Raises:
        NotFoundError: there is no such asset.
    """
    asset = session.exec(select(Asset).where(Asset.name == name)).first()
    if asset is None:
        raise NotFoundError(f"unknown asset {name!r}", hint="see `rearguard assets list`")
    return asset


def get_version(*, session: Session, asset: Asset, label: str) -> AssetVersion:
    """Return a version of an asset by label.

    Raises:
        NotFoundError: the asset has no such version.
    """
    version = session.exec(
        select(AssetVersion).where(AssetVersion.asset_id == asset.id, AssetVersion.label == label)
    ).first()
    if version is None:
        raise NotFoundError(
            f"asset {asset.name!r} has no version {label!r}",
            hint=f"see `rearguard assets show {asset.name}`",
        )
    return version


def list_versions(*, session: Session, asset: Asset) -> list[AssetVersion]:
    """Return an asset's versions, newest registration first."""
    statement = (
        select(AssetVersion)
        .where(AssetVersion.asset_id == asset.id)
        .order_by(col(AssetVersion.registered_at).desc(), col(AssetVersion.id).desc())
    )
    return list(session.exec(statement))


def manifest_of(*, session: Session, version: AssetVersion) -> list[ManifestEntry]:
    """Return a version's recorded manifest, sorted by path."""
    rows = session.exec(
        select(VersionFile)
        .where(VersionFile.version_id == version.id)
        .order_by(col(VersionFile.path))
    )
    return [ManifestEntry(row.path, row.sha256, row.size) for row in rows]


def alias_version(*, session: Session, asset: Asset, alias: str) -> AssetVersion | None:
    """Return the version an alias points at, as recorded in the database."""
    row = session.get(Alias, (asset.id, alias))
    return session.get(AssetVersion, row.version_id) if row else None


def parse_version_ref(ref: str) -> tuple[str, str]:
    """Split ``NAME@LABEL`` into its parts.

    Raises:
        UsageError: the reference is not of that form.
    """
    name, sep, label = ref.partition("@")
    if not sep or not name or not label:
        raise UsageError(f"invalid version reference {ref!r}", hint="write it as NAME@LABEL")
    return check_name(name, what="asset name"), check_name(label, what="version label")


@dataclass(frozen=True)
class Registration:
    """What a registration stored."""

    asset: str
    label: str
    kind: str
    digest: str
    files: list[ManifestEntry]
    status: VersionStatus = VersionStatus.CANDIDATE
    scan: VersionCheck | None = None
    signature: SignatureVerdict | None = None


def register_version(
    *,
    db: Database,
    registry: RegistryBackend,
    name: str,
    source: Path,
    label: str,
    kind: AssetKind | None,
    actor: str,
    trained_on: str | None = None,
    validate_command: str | None = None,
    progress: Progress | None = None,
    policy: ScanPolicy | None = None,
    signature: Path | None = None,
    signing: SigningPolicy | None = None,
) -> Registration:
    """Copy content into the store and record it as a new candidate version.

    Nothing is recorded unless everything is: the content is staged first, the database rows
    and the audit event commit together with the version's directory appearing in the store,
    and a failed commit removes that directory.

    The staged files are scanned by content. A version with a finding that blocks trust is
    still registered (its bytes are evidence, and a person may want them for forensics), but
    as ``suspect``, with the findings in the registration event: it can never be approved or
    promoted while the findings stand.

    An OMS signature (the source directory's ``model.sig``, or ``signature``) is kept beside
    the version's files, outside its manifest, and checked against the staged files: one that
    says they changed after signing, or that does not verify under the key it names, makes the
    version ``suspect`` too. The registration event records the signature's verdict.

    Args:
        db: the database.
        registry: the store.
        name: asset name; the asset is created on its first registration.
        source: the file or directory to register.
        label: the new version's label; must be new for the asset.
        kind: the asset's kind; required for a new asset, checked for an existing one.
        actor: who registers it.
        trained_on: ``DATASET@LABEL`` the version was trained on, if any.
        validate_command: a command that validates a version of this asset.
        progress: called with bytes copied.
        policy: which scan findings block trust (default: every finding).
        signature: an OMS bundle for the content (instead of the directory's ``model.sig``).
        signing: whose signatures the asset trusts (default: none is checked).

    Returns:
        What was registered.

    Raises:
        UsageError: a name, the path, the kind, the lineage or the command is invalid; the
            signature is not a readable OMS bundle, or the directory has one too.
        ConflictError: the label is already registered for the asset.
        IntegrityViolation: a file's digest is on the denylist (nothing is stored).
    """
    check_name(name, what="asset name")
    check_name(label, what="version label")
    if validate_command is not None:
        parse_command(validate_command)
    with db.read_session() as session:
        asset = session.exec(select(Asset).where(Asset.name == name)).first()
        if asset is not None:
            if kind is not None and asset.kind != kind:
                raise UsageError(f"asset {name!r} is a {asset.kind}, not a {kind}")
            if session.exec(
                select(AssetVersion.id).where(
                    AssetVersion.asset_id == asset.id, AssetVersion.label == label
                )
            ).first():
                raise ConflictError(f"{name}@{label} is already registered; labels are immutable")
        lineage_ref = parse_version_ref(trained_on) if trained_on else None
        if lineage_ref:
            _lineage_version(session, lineage_ref)
    bundle = _signature_source(source, signature)
    staged = registry.stage_version(source=source, progress=progress)
    entries = staged.manifest
    digest = manifest_digest(entries)
    published = False
    policy = policy or ScanPolicy()
    try:
        verdict = _check_staged_signature(staged, bundle, signing)
        root = staged.work / "version"
        scan = scan_version(
            asset=name,
            label=label,
            files=[(entry.path, root / entry.path) for entry in entries],
            policy=policy,
        )
        record = scan.scan_record(policy)
        distrust = [scan_reason(scan)] if scan.scan_blocked else []
        if verdict is not None and verdict.suspicious:
            distrust.append(verdict.describe())
        with db.session() as session:
            asset = session.exec(select(Asset).where(Asset.name == name)).first()
            if asset is None:
                asset = Asset(name=name, kind=kind or AssetKind.MODEL)
                session.add(asset)
                session.flush()
            if validate_command is not None:
                asset.validate_command = validate_command
                session.add(asset)
            lineage = _lineage_version(session, lineage_ref) if lineage_ref else None
            version = add_version_rows(
                session=session,
                asset=asset,
                label=label,
                entries=entries,
                actor=actor,
                trained_on_id=lineage.id if lineage else None,
            )
            if distrust:
                version.status = VersionStatus.SUSPECT
                version.status_reason = "; ".join(distrust)
                session.add(version)
            if record is not None:
                save_scan(
                    session,
                    asset=name,
                    version=version,
                    record=record,
                    during="registration",
                    actor=actor,
                    announce=False,  # the registration event carries it
                )
            append_event(
                session,
                kind=EventKind.STATE,
                action="asset.registered",
                actor=actor,
                asset=name,
                version=label,
                data={
                    "kind": str(asset.kind),
                    "digest": digest,
                    "files": len(entries),
                    "bytes": version.total_size,
                    "trained_on": trained_on,
                    "validate_command": validate_command,
                    "status": str(version.status),
                    "scan": scan_event_data(scan, record),
                    "signature": verdict.record() if verdict is not None else None,
                },
            )
            resolved_kind = str(asset.kind)
            # Only now, with the flushed row holding the label (the SQLite write lock; on
            # PostgreSQL the unique index entry, which blocks a competing insert until this
            # transaction ends), may the store's directory for the label be replaced.
            registry.publish_version(staged, asset=name, label=label, kind=resolved_kind)
            published = True
            if version.status == VersionStatus.SUSPECT:
                registry.mirror_status(asset=name, label=label, status=str(version.status))
    except BaseException as exc:
        if published:
            registry.discard_version(asset=name, label=label)
        if isinstance(exc, IntegrityError):
            raise ConflictError(
                f"{name}@{label} is already registered; labels are immutable"
            ) from exc
        raise
    finally:
        registry.discard_staged(staged)
    status = VersionStatus.SUSPECT if distrust else VersionStatus.CANDIDATE
    return Registration(name, label, resolved_kind, digest, entries, status, scan, verdict)


def _signature_source(source: Path, signature: Path | None) -> Path | None:
    """The bundle to keep with a new version: ``signature``, else the directory's own.

    Raises:
        UsageError: both are given, or ``signature`` is not a file.
    """
    own = source / SIGNATURE_FILE if source.is_dir() else None
    if own is not None and not own.is_file():
        own = None
    if signature is None:
        return own
    if own is not None:
        raise UsageError(
            f"{source} holds its own {SIGNATURE_FILE}, and --signature gives another",
            hint=f"keep one: remove {own}, or leave out --signature",
        )
    if not signature.is_file():
        raise UsageError(f"the signature {signature} is not a file")
    return signature


def _check_staged_signature(
    staged: StagedVersion, bundle: Path | None, signing: SigningPolicy | None
) -> SignatureVerdict | None:
    """Keep the bundle with the staged files and check it; None when nothing is to be said.

    Raises:
        UsageError: the bundle is malformed (nothing is registered).
    """
    kept = None
    if bundle is not None:
        kept = staged.work / "version" / SIGNATURE_FILE
        try:
            shutil.copyfile(bundle, kept)
        except OSError as exc:
            raise UsageError(f"cannot read the signature {bundle}: {exc.strerror}") from exc
        kept.chmod(0o444)  # as read-only as the stored files beside it
    if kept is None and (signing is None or not signing.required):
        return None
    verdict = check_signature(
        bundle=kept, manifest=staged.manifest, policy=signing or SigningPolicy()
    )
    if verdict.result == SignatureResult.MALFORMED:
        raise UsageError(
            f"{bundle}: {verdict.reason}", hint="give an OMS bundle (model_signing sign)"
        )
    return verdict


def scan_reason(check: VersionCheck, *, prefix: str = "scan") -> str:
    """A failed check's reason for a version's status: its first problem, and how many more."""
    more = len(check.problems) - 1
    return f"{prefix}: {check.problems[0]}" + (f" (and {more} more)" if more > 0 else "")


def scan_event_data(check: VersionCheck, record: ScanRecord | None) -> dict[str, object]:
    """What the timeline keeps of a version's scan: blocking findings and accepted ones, each
    engine's verdict on each file, and the scan record (scanner version, allow-list
    fingerprint, verdict, counts by severity, engines), when the scan makes one."""
    return {
        "blocked": check.scan_blocked,
        "findings": check.as_dict()["findings"],
        "allowed": check.allowed_record(),
        "opinions": [opinion.as_dict() for opinion in check.opinions],
        "record": record.as_dict() if record is not None else None,
    }


def record_allowance(
    session: Session, *, check: VersionCheck, actor: str, incident_id: int | None = None
) -> None:
    """Record in the timeline that an asset's allowance accepted findings, with who and why."""
    allowed = check.allowed_record()
    if allowed is None:
        return
    append_event(
        session,
        kind=EventKind.DECISION,
        action="scan.allowed",
        actor=actor,
        incident_id=incident_id,
        asset=check.asset,
        version=check.label,
        data=allowed,
    )


def verified(
    session: Session,
    *,
    registry: RegistryBackend,
    asset: Asset,
    version: AssetVersion,
    workers: int,
    policy: ScanPolicy | None,
    consequence: str = "",
) -> VersionCheck:
    """Re-verify a version before a person's decision on it (approve, promote, sign).

    Args:
        consequence: said after "fails verification" when it does (", so it is not signed").

    Returns:
        The check, which passed.

    Raises:
        IntegrityViolation: its files no longer match its manifest, or its content is refused.
    """
    check = verify_one(
        session=session,
        registry=registry,
        asset=asset,
        version=version,
        workers=workers,
        policy=policy,
    )
    if not check.ok:
        raise IntegrityViolation(
            f"{asset.name}@{version.label} fails verification{consequence}: {check.summary()}"
        )
    return check


def _verify_for_trust(
    session: Session,
    *,
    registry: RegistryBackend,
    asset: Asset,
    version: AssetVersion,
    workers: int,
    policy: ScanPolicy | None,
    signing: SigningPolicy | None,
    actor: str,
    during: str,
) -> None:
    """Re-verify a version a person is about to trust (approve, promote): its files against
    the manifest, a scan of its content, its signature with ``signing``; record the allowed
    findings and the scan, in the caller's transaction.

    Raises:
        IntegrityViolation: it fails verification, or its signature does not hold.
    """
    check = verified(
        session, registry=registry, asset=asset, version=version, workers=workers, policy=policy
    )
    hold_signature(session, version=version, check=check, policy=signing, actor=actor)
    record_allowance(session, check=check, actor=actor)
    record = check.scan_record(policy or ScanPolicy())
    if record is not None:
        save_scan(
            session, asset=asset.name, version=version, record=record, during=during, actor=actor
        )


def hold_signature(
    session: Session,
    *,
    version: AssetVersion,
    check: VersionCheck,
    policy: SigningPolicy | None,
    actor: str,
) -> None:
    """Refuse trust in a version whose signature does not hold; record the check when there is
    a signature to speak of.

    Args:
        session: the caller's transaction (the event commits with the decision).
        version: the version, just re-verified.
        check: that re-verification (it found the version's ``model.sig``, if any).
        policy: the asset's signing policy; None checks nothing.
        actor: who decides.

    Raises:
        IntegrityViolation: the signature blocks trust (missing where required, untrusted,
            invalid, for other files, malformed); the message names the expected signer.
    """
    if policy is None:
        return
    verdict = check_signature(
        bundle=check.signature_file,
        manifest=manifest_of(session=session, version=version),
        policy=policy,
    )
    if verdict.blocks:
        raise IntegrityViolation(f"{check.asset}@{check.label}: {verdict.describe()}")
    if verdict.result != SignatureResult.UNSIGNED:
        append_event(
            session,
            kind=EventKind.STATE,
            action="signature.checked",
            actor=actor,
            asset=check.asset,
            version=check.label,
            data={"digest": version.digest, **verdict.record()},
        )


def add_version_rows(
    *,
    session: Session,
    asset: Asset,
    label: str,
    entries: list[ManifestEntry],
    actor: str,
    trained_on_id: int | None = None,
    registered_at: datetime | None = None,
) -> AssetVersion:
    """Add a new candidate version's row and its manifest rows (flushed, not committed).

    Args:
        session: the caller's transaction.
        asset: the asset (flushed, so it has an id).
        label: the version's label.
        entries: its manifest.
        actor: who registers it.
        trained_on_id: the dataset version it was trained on, if any.
        registered_at: when it was registered (default: now).

    Raises:
        IntegrityViolation: a file's digest is on the denylist.
    """
    refuse_denied(
        denied_among(session=session, digests=(e.sha256 for e in entries)),
        what=f"{asset.name}@{label}",
    )
    assert asset.id is not None  # flushed by the caller, as documented
    version = AssetVersion(
        asset_id=asset.id,
        label=label,
        digest=manifest_digest(entries),
        total_size=sum(e.size for e in entries),
        file_count=len(entries),
        trained_on_id=trained_on_id,
        registered_by=actor,
        registered_at=registered_at or utcnow(),
    )
    session.add(version)
    session.flush()
    assert version.id is not None  # the flush above assigned it
    session.add_all(
        VersionFile(version_id=version.id, path=e.path, sha256=e.sha256, size=e.size)
        for e in entries
    )
    return version


def _lineage_version(session: Session, ref: tuple[str, str]) -> AssetVersion:
    asset = get_asset(session=session, name=ref[0])
    if asset.kind != AssetKind.DATASET:
        raise UsageError(f"--trained-on must name a dataset; {ref[0]!r} is a {asset.kind}")
    return get_version(session=session, asset=asset, label=ref[1])


def refuse_unrecorded(*, session: Session, asset: Asset, version: AssetVersion) -> None:
    """Refuse a version whose row (status, digest, manifest, approver) the audit chain does
    not bear out: trust comes from the chain, the row is its cache.

    Raises:
        IntegrityViolation: the row and the chain disagree (exit 3), saying how.
    """
    load_evidence(session, asset=asset.name).refuse_doubted(
        asset=asset.name, version=version, manifest=manifest_of(session=session, version=version)
    )


def verify_one(
    *,
    session: Session,
    registry: RegistryBackend,
    asset: Asset,
    version: AssetVersion,
    workers: int = 1,
    progress: Progress | None = None,
    policy: ScanPolicy | None = None,
) -> VersionCheck:
    """Re-hash one version against its manifest and scan its files' content."""
    return check_version(
        registry=registry,
        asset=asset.name,
        label=version.label,
        manifest=manifest_of(session=session, version=version),
        workers=workers,
        progress=progress,
        policy=policy,
    )


def set_status(
    *,
    session: Session,
    registry: RegistryBackend,
    asset: Asset,
    version: AssetVersion,
    status: VersionStatus,
    actor: str,
    reason: str,
    incident_id: int | None = None,
    details: Mapping[str, object] | None = None,
) -> bool:
    """Change a version's status and record it; return False when it already had it.

    The registry shows the new status too (MLflow: the ``rearguard.status`` tag) before the
    caller's transaction commits: if that fails, nothing changes; if the commit fails after
    it, the status is set again, and mirrored again, by the rerun.

    ``details`` (e.g. the scan findings behind the change) go into the event beside the
    change and its reason.
    """
    if version.status == status:
        return False
    previous = version.status
    version.status = status
    version.status_reason = reason
    session.add(version)
    append_event(
        session,
        kind=EventKind.STATE,
        action=f"version.{status}",
        actor=actor,
        incident_id=incident_id,
        asset=asset.name,
        version=version.label,
        data={**(details or {}), "from": str(previous), "to": str(status), "reason": reason},
    )
    registry.mirror_status(asset=asset.name, label=version.label, status=str(status))
    return True


def approve_version(
    *,
    db: Database,
    registry: RegistryBackend,
    name: str,
    label: str,
    by: str,
    workers: int = 1,
    policy: ScanPolicy | None = None,
    signing: SigningPolicy | None = None,
) -> AssetVersion:
    """Mark a version known-good on a named person's word, after re-verifying it.

    Re-verifying scans its files: a finding that blocks trust refuses the approval; findings
    the asset's allowance accepts are recorded in the timeline with who allowed them and why.
    With ``signing``, its signature must hold too (see :func:`hold_signature`).

    Raises:
        NotFoundError: unknown asset or version.
        UsageError: the version is quarantined or retired.
        IntegrityViolation: its files no longer match the manifest, its signature does not
            hold (the message names whose signature was expected), or its row is not what the
            audit chain records of it.
    """
    if not by.strip():
        raise UsageError("an approval needs the name of the person approving (--by)")
    with db.session() as session:
        asset = get_asset(session=session, name=name)
        version = get_version(session=session, asset=asset, label=label)
        refuse_unrecorded(session=session, asset=asset, version=version)
        if version.status in (VersionStatus.QUARANTINED, VersionStatus.RETIRED):
            raise UsageError(f"{name}@{label} is {version.status} and cannot be approved")
        if version.status == VersionStatus.KNOWN_GOOD:
            return version
        _verify_for_trust(
            session,
            registry=registry,
            asset=asset,
            version=version,
            workers=workers,
            policy=policy,
            signing=signing,
            actor=by,
            during="approval",
        )
        version.approved_by = by
        version.approved_at = utcnow()
        set_status(
            session=session,
            registry=registry,
            asset=asset,
            version=version,
            status=VersionStatus.KNOWN_GOOD,
            actor=by,
            reason=f"approved by {by}",
        )
        return version


def move_alias(
    *,
    session: Session,
    registry: RegistryBackend,
    asset: Asset,
    version: AssetVersion,
    alias: str,
    actor: str,
    incident_id: int | None = None,
) -> str | None:
    """Point an alias at a version: the store's atomic rename, then the database row.

    The caller's transaction commits the row and the event together; if the process dies
    between the rename and the commit, the next call finds the store already moved and
    records it, so a rerun converges.

    Returns:
        The label the alias pointed at before, or None.
    """
    assert asset.id is not None and version.id is not None  # both are stored rows
    row = session.get(Alias, (asset.id, alias))
    before = session.get_one(AssetVersion, row.version_id).label if row else None
    on_disk = registry.read_alias(asset=asset.name, alias=alias)
    if on_disk != version.label:
        registry.move_alias(asset=asset.name, alias=alias, label=version.label)
        failpoint("alias.after_move")
    if row is not None and row.version_id == version.id:
        return before
    if row is None:
        row = Alias(asset_id=asset.id, name=alias, version_id=version.id, moved_by=actor)
    row.version_id, row.moved_by, row.moved_at = version.id, actor, utcnow()
    session.add(row)
    append_event(
        session,
        kind=EventKind.STATE,
        action="alias.moved",
        actor=actor,
        incident_id=incident_id,
        asset=asset.name,
        version=version.label,
        data={"alias": alias, "from": before, "to": version.label},
    )
    return before


def promote_version(
    *,
    db: Database,
    registry: RegistryBackend,
    name: str,
    label: str,
    alias: str,
    actor: str,
    workers: int = 1,
    policy: ScanPolicy | None = None,
    signing: SigningPolicy | None = None,
) -> str | None:
    """Move an alias to a version after re-verifying it (hashes and a scan of its content,
    and with ``signing`` its signature: see :func:`hold_signature`).

    Raises:
        NotFoundError: unknown asset or version.
        UsageError: the version is suspect, quarantined or retired.
        IntegrityViolation: its files no longer match the manifest, one is denylisted, or its
            signature does not hold, or its row is not what the audit chain records of it.
    """
    with db.session() as session:
        asset = get_asset(session=session, name=name)
        version = get_version(session=session, asset=asset, label=label)
        refuse_unrecorded(session=session, asset=asset, version=version)
        if version.status not in (VersionStatus.CANDIDATE, VersionStatus.KNOWN_GOOD):
            raise UsageError(f"{name}@{label} is {version.status} and cannot be promoted")
        refuse_denied(denied_in_version(session=session, version=version), what=f"{name}@{label}")
        _verify_for_trust(
            session,
            registry=registry,
            asset=asset,
            version=version,
            workers=workers,
            policy=policy,
            signing=signing,
            actor=actor,
            during="promotion",
        )
        return move_alias(
            session=session,
            registry=registry,
            asset=asset,
            version=version,
            alias=alias,
            actor=actor,
        )


def describe_asset(
    *, session: Session, asset: Asset, alias: str, alias_location: str | None = None
) -> AssetRead:
    """Everything ``assets show`` prints: the asset, its versions and where the alias points.

    Args:
        session: an open session.
        asset: the asset.
        alias: the production alias's name.
        alias_location: where serving systems read the alias, when the caller knows it.
    """
    current = alias_version(session=session, asset=asset, alias=alias)
    versions = list_versions(session=session, asset=asset)
    lineage_labels = _labels_by_id(session, [v.trained_on_id for v in versions])
    scans = latest_scans(session=session, version_ids=(v.id for v in versions if v.id))
    return AssetRead.of(
        asset,
        alias=alias,
        production=current.label if current else None,
        alias_location=alias_location,
        versions=[
            VersionRead.of(
                v,
                manifest=[
                    ManifestEntryRead(path=e.path, sha256=e.sha256, size=e.size)
                    for e in manifest_of(session=session, version=v)
                ],
                trained_on=lineage_labels.get(v.trained_on_id),
                scan=ScanRecordRead.of(scans[v.id]) if v.id in scans else None,
            )
            for v in versions
        ],
    )


def _labels_by_id(session: Session, ids: list[int | None]) -> dict[int | None, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.exec(
        select(AssetVersion.id, Asset.name, AssetVersion.label)
        .join(Asset, col(Asset.id) == AssetVersion.asset_id)
        .where(col(AssetVersion.id).in_(wanted))
    )
    return {vid: f"{name}@{label}" for vid, name, label in rows}


def list_assets(*, session: Session) -> list[Asset]:
    """Return every asset, by name."""
    return list(session.exec(select(Asset).order_by(col(Asset.name))))


def summarize_assets(*, session: Session, alias: str) -> list[AssetSummary]:
    """Every asset, by name, as ``assets list`` shows it: where production points, whether that
    version is trusted (and why not), what it was trained on, how many versions it has."""
    summaries: list[AssetSummary] = []
    for asset in list_assets(session=session):
        versions = list_versions(session=session, asset=asset)
        current = alias_version(session=session, asset=asset, alias=alias)
        lineage = _labels_by_id(session, [current.trained_on_id] if current else [])
        summaries.append(
            AssetSummary(
                name=asset.name,
                kind=asset.kind,
                production=current.label if current else None,
                production_status=str(current.status) if current else None,
                production_reason=current.status_reason if current else None,
                trained_on=lineage.get(current.trained_on_id) if current else None,
                versions=len(versions),
                known_good=sum(v.status == VersionStatus.KNOWN_GOOD for v in versions),
            )
        )
    return summaries
