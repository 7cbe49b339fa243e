"""A person's ways out for a version or an asset: release, retire, and the asset's check.

Each one is a single transaction holding the change and its chain event, with who did it and
why (the reason is redacted before it is recorded).
"""

from __future__ import annotations

from dataclasses import dataclass

from rearguard.models.assets.checks import parse_command
from rearguard.models.assets.denylist import denied_in_version, refuse_denied
from rearguard.models.assets.versions import (
    alias_version,
    get_asset,
    get_version,
    set_status,
    verify_one,
)
from rearguard.models.audit.chain import append_event
from rearguard.models.audit.redaction import redact_text
from rearguard.models.db.engine import Database
from rearguard.models.enums import EventKind, VersionStatus
from rearguard.models.errors import IntegrityViolation, UsageError
from rearguard.models.registry.base import RegistryBackend

_MAX_REASON = 2_000
RELEASABLE = (VersionStatus.QUARANTINED, VersionStatus.SUSPECT)


def check_reason(reason: str) -> str:
    """A person's stated reason, stripped and redacted.

    Raises:
        UsageError: it is empty or too long.
    """
    text = reason.strip()
    if not text:
        raise UsageError('say why: --reason "..." is required')
    if len(text) > _MAX_REASON:
        raise UsageError(f"the reason is {len(text)} characters; at most {_MAX_REASON}")
    return redact_text(text)


@dataclass(frozen=True)
class StatusChange:
    """A version's status before and after a person's decision."""

    asset: str
    label: str
    before: str
    after: str
    changed: bool


def release_version(
    *,
    db: Database,
    registry: RegistryBackend,
    name: str,
    label: str,
    by: str,
    reason: str,
    workers: int = 1,
) -> StatusChange:
    """Return a quarantined or suspect version to ``candidate`` after re-verifying it.

    Its earlier approval is cleared: making it known-good again is ``assets approve``, a
    separate decision.

    Raises:
        NotFoundError: unknown asset or version.
        UsageError: the version is neither quarantined nor suspect, or no reason is given.
        IntegrityViolation: its files no longer match its manifest, or hold a denylisted digest.
    """
    why = check_reason(reason)
    with db.session() as session:
        asset = get_asset(session=session, name=name)
        version = get_version(session=session, asset=asset, label=label)
        before = str(version.status)
        if version.status not in RELEASABLE:
            raise UsageError(
                f"{name}@{label} is {version.status}; only a quarantined or suspect version "
                "is released"
            )
        refuse_denied(denied_in_version(session=session, version=version), what=f"{name}@{label}")
        check = verify_one(
            session=session, registry=registry, asset=asset, version=version, workers=workers
        )
        if not check.ok:
            raise IntegrityViolation(
                f"{name}@{label} fails verification, so it stays {version.status}: "
                f"{check.summary()}"
            )
        version.approved_by = None
        version.approved_at = None
        set_status(
            session=session,
            registry=registry,
            asset=asset,
            version=version,
            status=VersionStatus.CANDIDATE,
            actor=by,
            reason=f"released by {by}: {why}",
        )
    return StatusChange(name, label, before, str(VersionStatus.CANDIDATE), True)


def retire_version(
    *,
    db: Database,
    registry: RegistryBackend,
    name: str,
    label: str,
    by: str,
    reason: str,
    alias: str,
) -> StatusChange:
    """Retire a version: never restored or promoted again. Never the one ``alias`` serves.

    Raises:
        NotFoundError: unknown asset or version.
        UsageError: the version is in production, or no reason is given.
    """
    why = check_reason(reason)
    with db.session() as session:
        asset = get_asset(session=session, name=name)
        version = get_version(session=session, asset=asset, label=label)
        current = alias_version(session=session, asset=asset, alias=alias)
        if current is not None and current.id == version.id:
            raise UsageError(
                f"{name}@{label} is what {alias} serves; it cannot be retired",
                hint=f"promote another version first (`rearguard assets promote {name} LABEL`)",
            )
        before = str(version.status)
        changed = set_status(
            session=session,
            registry=registry,
            asset=asset,
            version=version,
            status=VersionStatus.RETIRED,
            actor=by,
            reason=f"retired by {by}: {why}",
        )
    return StatusChange(name, label, before, str(VersionStatus.RETIRED), changed)


def set_check(
    *, db: Database, name: str, command: str | None, by: str, reason: str | None = None
) -> str | None:
    """Set (or with None, clear) an asset's validation command, recorded as ``asset.check``.

    The caller resolves relative paths first (``checks.resolve_command``).

    Returns:
        The command it had before.

    Raises:
        NotFoundError: unknown asset.
        UsageError: the command is empty or unparsable.
    """
    if command is not None:
        parse_command(command)
    why = redact_text(reason.strip()) if reason and reason.strip() else None
    with db.session() as session:
        asset = get_asset(session=session, name=name)
        before = asset.validate_command
        if before == command:
            return before
        asset.validate_command = command
        session.add(asset)
        append_event(
            session,
            kind=EventKind.DECISION,
            action="asset.check_set" if command is not None else "asset.check_cleared",
            actor=by,
            asset=name,
            data={"from": before, "to": command, "reason": why},
        )
    return before
