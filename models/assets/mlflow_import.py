"""Adopting versions that were registered with MLflow, not with rearguard.

``rearguard assets import NAME`` records every version of a registered model that rearguard
does not know yet: its artifacts, hashed where MLflow stores them now, become the version's
baseline manifest; the MLflow production alias becomes the asset's. Nothing is uploaded or
moved in MLflow, except a ``rearguard.label`` tag on versions that had none (their number) and
the ``rearguard.status`` tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from rearguard.models.assets.scan_records import save_scan
from rearguard.models.assets.versions import (
    add_version_rows,
    get_version,
    move_alias,
    record_allowance,
    scan_event_data,
    scan_reason,
    set_status,
)
from rearguard.models.audit.chain import append_event
from rearguard.models.db.engine import Database
from rearguard.models.db.tables import Asset, AssetVersion, utcnow
from rearguard.models.enums import AssetKind, EventKind, VersionStatus
from rearguard.models.errors import ConflictError, UsageError
from rearguard.models.integrity.hashing import hash_files
from rearguard.models.integrity.scan.policy import ScanPolicy
from rearguard.models.integrity.signatures import (
    SignatureVerdict,
    SigningPolicy,
    check_signature,
)
from rearguard.models.integrity.verification import VersionCheck, scan_version
from rearguard.models.names import check_name
from rearguard.models.registry.base import SIGNATURE_FILE, ManifestEntry, RegistryBackend
from rearguard.models.registry.mlflow_backend import LABEL_TAG, MlflowRegistry, MlflowVersion


@dataclass
class Adoption:
    """What an import recorded."""

    asset: str
    kind: str
    imported: list[dict[str, object]] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    alias: str | None = None


def import_versions(
    *,
    db: Database,
    registry: RegistryBackend,
    name: str,
    kind: AssetKind | None,
    actor: str,
    alias: str,
    status: VersionStatus = VersionStatus.CANDIDATE,
    workers: int = 1,
    policy: ScanPolicy | None = None,
    signing: SigningPolicy | None = None,
) -> Adoption:
    """Record the versions of MLflow registered model ``name`` that rearguard does not know.

    Args:
        db: the database.
        registry: the registry; must be MLflow's.
        name: the registered model, which becomes (or is) the asset of that name.
        kind: the asset's kind (default: the versions' ``rearguard.kind`` tag, else model).
        actor: who imports them; with ``status`` known_good, the person approving them.
        alias: the production alias, recorded where MLflow points it.
        status: candidate, or known_good on ``actor``'s word.
        workers: hashing threads.
        policy: which scan findings block trust; a version with one is imported as suspect,
            never known_good (default: every finding blocks).
        signing: the asset's signing policy for the versions' ``model.sig`` (default: none is
            checked); a version whose signature blocks trust is never imported known_good, and
            one whose signature says its files changed is imported as suspect.

    Returns:
        The imported versions (label, MLflow version, digest, files) and those already known.

    Raises:
        UsageError: the registry is not MLflow, a status other than candidate or known_good,
            a label that is not a safe name, a version without artifact files, or a kind
            that differs from the asset's.
        NotFoundError: MLflow has no such registered model.
        IntegrityViolation: a version holds a denylisted digest (nothing is imported).
    """
    check_name(name, what="asset name")
    if not isinstance(registry, MlflowRegistry):
        raise UsageError(
            "assets import adopts versions registered with MLflow; the registry is the local store",
            hint='set [registry] backend = "mlflow" and its tracking_uri',
        )
    if status not in (VersionStatus.CANDIDATE, VersionStatus.KNOWN_GOOD):
        raise UsageError(f"imported versions are candidate or known_good, not {status}")
    versions = registry.model_versions(asset=name)
    with db.read_session() as session:
        asset = session.exec(select(Asset).where(Asset.name == name)).first()
        known = set(
            session.exec(select(AssetVersion.label).where(AssetVersion.asset_id == asset.id))
            if asset
            else ()
        )
    new = [v for v in versions if v.label not in known]
    manifests = [_hash(registry, name, version, workers) for version in new]
    policy = policy or ScanPolicy()
    scans = [
        _scan(registry, name, version.label, entries, policy)
        for version, entries in zip(new, manifests, strict=True)
    ]
    signatures = [
        check_signature(bundle=scan.signature_file, manifest=entries, policy=signing)
        if signing is not None
        else None
        for scan, entries in zip(scans, manifests, strict=True)
    ]
    tagged = [AssetKind(v.kind) for v in versions if v.kind in {k.value for k in AssetKind}]
    resolved = kind or (tagged[0] if tagged else AssetKind.MODEL)
    adoption = Adoption(
        asset=name, kind=str(resolved), known=[v.label for v in versions if v.label in known]
    )
    try:
        _record(
            db,
            registry,
            adoption,
            new,
            manifests,
            scans,
            signatures,
            policy=policy,
            kind=kind,
            actor=actor,
            alias=alias,
            status=status,
        )
    except IntegrityError as exc:  # a label registered meanwhile, or two versions sharing one
        raise ConflictError(
            f"a version of {name} was registered under the same label meanwhile, or two MLflow "
            f"versions carry the same {LABEL_TAG} tag",
            hint="check the labels, then import again",
        ) from exc
    return adoption


def _record(
    db: Database,
    registry: MlflowRegistry,
    adoption: Adoption,
    new: list[MlflowVersion],
    manifests: list[list[ManifestEntry]],
    scans: list[VersionCheck],
    signatures: list[SignatureVerdict | None],
    *,
    policy: ScanPolicy,
    kind: AssetKind | None,
    actor: str,
    alias: str,
    status: VersionStatus,
) -> None:
    """Add the new versions' rows, statuses and events, and the alias, in one transaction."""
    name = adoption.asset
    with db.session() as session:
        asset = session.exec(select(Asset).where(Asset.name == name)).first()
        if asset is None:
            asset = Asset(name=name, kind=AssetKind(adoption.kind))
            session.add(asset)
            session.flush()
        elif kind is not None and asset.kind != kind:
            raise UsageError(f"asset {name!r} is a {asset.kind}, not a {kind}")
        adoption.kind = str(asset.kind)
        for version, entries, scan, signature in zip(
            new, manifests, scans, signatures, strict=True
        ):
            row = add_version_rows(
                session=session,
                asset=asset,
                label=version.label,
                entries=entries,
                actor=actor,
                registered_at=version.created,
            )
            distrust = [scan_reason(scan)] if scan.scan_blocked else []
            if signature is not None and signature.suspicious:
                distrust.append(signature.describe())
            if distrust:
                row.status = VersionStatus.SUSPECT
                row.status_reason = "; ".join(distrust)
                session.add(row)
            record = scan.scan_record(policy)
            if record is not None:
                save_scan(
                    session,
                    asset=name,
                    version=row,
                    record=record,
                    during="import",
                    actor=actor,
                    announce=False,  # the import event carries it
                )
            append_event(
                session,
                kind=EventKind.STATE,
                action="asset.imported",
                actor=actor,
                asset=name,
                version=version.label,
                data={
                    "source": "mlflow",
                    "mlflow_version": version.number,
                    "kind": str(asset.kind),
                    "digest": row.digest,
                    "files": row.file_count,
                    "bytes": row.total_size,
                    "scan": scan_event_data(scan, record),
                    "signature": signature.record() if signature is not None else None,
                },
            )
            registry.mirror_status(asset=name, label=version.label, status=str(row.status))
            blocked = scan.scan_blocked or (signature is not None and signature.blocks)
            if status == VersionStatus.KNOWN_GOOD and not blocked:
                record_allowance(session, check=scan, actor=actor)
                row.approved_by, row.approved_at = actor, utcnow()
                set_status(
                    session=session,
                    registry=registry,
                    asset=asset,
                    version=row,
                    status=status,
                    actor=actor,
                    reason=f"approved by {actor} on import from MLflow",
                )
            adoption.imported.append(
                {
                    "version": version.label,
                    "mlflow_version": version.number,
                    "digest": row.digest,
                    "files": row.file_count,
                    "status": str(row.status),
                }
            )
        served = registry.read_alias(asset=name, alias=alias)
        if served is not None:
            move_alias(
                session=session,
                registry=registry,
                asset=asset,
                version=get_version(session=session, asset=asset, label=served),
                alias=alias,
                actor=actor,
            )
        adoption.alias = served


def _scan(
    registry: MlflowRegistry,
    name: str,
    label: str,
    manifest: list[ManifestEntry],
    policy: ScanPolicy,
) -> VersionCheck:
    """Scan a version's artifacts as they are now (noting where its signature is, if any)."""
    files = registry.version_files(asset=name, label=label)
    check = scan_version(
        asset=name,
        label=label,
        files=[(entry.path, files[entry.path]) for entry in manifest],
        policy=policy,
    )
    check.signature_file = files.get(SIGNATURE_FILE)
    return check


def _hash(
    registry: MlflowRegistry, name: str, version: MlflowVersion, workers: int
) -> list[ManifestEntry]:
    """A version's manifest as its artifacts are now.

    Raises:
        UsageError: the label is not a safe name, or the version has no artifact files.
    """
    check_name(version.label, what=f"label of MLflow version {version.number}")
    files = registry.version_files(asset=name, label=version.label)
    if not files:
        raise UsageError(f"MLflow version {version.number} of {name} holds no artifact files")
    paths = sorted(p for p in files if p != SIGNATURE_FILE)
    digests = hash_files([files[p] for p in paths], workers=workers)
    return [ManifestEntry(p, d, s) for p, (d, s) in zip(paths, digests, strict=True)]
