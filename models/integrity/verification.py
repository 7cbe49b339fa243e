"""Integrity checks of stored versions: re-hash against the manifest, scan every file's content.

Nothing here loads an artifact: bytes stream through hashlib, and every file is identified by
its bytes and scanned by the artifact scanner (:mod:`rearguard.models.integrity.scan.engine`),
whatever its name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rearguard.models.errors import NotFoundError
from rearguard.models.integrity.hashing import hash_files
from rearguard.models.integrity.prehash import HashedAhead
from rearguard.models.integrity.scan.engine import scan_file
from rearguard.models.integrity.scan.findings import Finding
from rearguard.models.integrity.scan.opinions import Opinion, second_opinions
from rearguard.models.integrity.scan.policy import Allowance, ScanPolicy
from rearguard.models.integrity.scan.record import ScanRecord, record_of
from rearguard.models.registry.base import (
    SIGNATURE_FILE,
    ManifestEntry,
    Progress,
    RegistryBackend,
)


@dataclass
class VersionCheck:
    """What re-verifying one version found."""

    asset: str
    label: str
    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    tampered: bool = False
    scan_blocked: bool = False
    flagged_files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    allowed: list[Finding] = field(default_factory=list)
    allowance: Allowance | None = None
    opinions: list[Opinion] = field(default_factory=list)
    scan_incomplete: bool = False
    signature_file: Path | None = None

    @property
    def ok(self) -> bool:
        """True when every file matches its manifest entry and no scan finding blocks trust."""
        return not self.problems

    def allowed_record(self) -> dict[str, object] | None:
        """What the asset's allowance accepted, with who and why (for the timeline), if any."""
        if not self.allowed or self.allowance is None:
            return None
        return {
            "allowed_by": self.allowance.allowed_by,
            "reason": self.allowance.reason,
            "findings": [finding_dict(f) for f in self.allowed],
        }

    def scan_record(
        self, policy: ScanPolicy, *, fingerprint: str | None = None
    ) -> ScanRecord | None:
        """The version's scan record, when the scan judged the version's own bytes, all of them.

        None when its files no longer match the manifest (what was scanned is not the version)
        or one could not be read.

        Args:
            policy: the policy the scan judged by.
            fingerprint: the policy's allow-list fingerprint, when the caller has it.
        """
        if self.tampered or self.scan_incomplete:
            return None
        return record_of(
            findings=self.findings,
            allowed=self.allowed,
            opinions=self.opinions,
            policy=policy,
            fingerprint=fingerprint,
        )

    def summary(self) -> str:
        """One line for the user."""
        if self.ok:
            return f"{self.files} files, {self.bytes} bytes verified"
        return "; ".join(self.problems)

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly form."""
        return {
            "asset": self.asset,
            "version": self.label,
            "ok": self.ok,
            "files": self.files,
            "bytes": self.bytes,
            "problems": list(self.problems),
            "findings": [finding_dict(f) for f in self.findings],
            "allowed": self.allowed_record(),
            "opinions": [opinion.as_dict() for opinion in self.opinions],
        }


def finding_dict(finding: Finding) -> dict[str, object]:
    """A finding in JSON form (the shape ``rearguard scan --json`` prints)."""
    return {
        "file": finding.file,
        "member": finding.member,
        "offset": finding.offset,
        "construct": finding.construct,
        "severity": str(finding.severity),
        "reason": finding.reason,
    }


def check_version(
    *,
    registry: RegistryBackend,
    asset: str,
    label: str,
    manifest: Sequence[ManifestEntry],
    workers: int = 1,
    progress: Progress | None = None,
    ahead: HashedAhead | None = None,
    policy: ScanPolicy | None = None,
) -> VersionCheck:
    """Re-hash a version's files now and compare them with its manifest; scan their content.

    Args:
        registry: where the version is stored.
        asset: asset name.
        label: version label.
        manifest: the manifest recorded at registration.
        workers: threads hashing files in parallel.
        progress: called with bytes hashed (possibly from worker threads).
        ahead: the child hashing files ahead of the command (``assets verify``), if any.
        policy: which findings block trust (default: every finding).

    Returns:
        The check, listing every problem found.
    """
    policy = policy or ScanPolicy()
    check = VersionCheck(asset=asset, label=label, allowance=policy.allowance)
    try:
        present = registry.version_files(asset=asset, label=label)
    except NotFoundError as exc:
        check.problems.append(str(exc))
        check.tampered = True
        return check
    expected = {entry.path: entry for entry in manifest}
    # A version's model.sig is its signature, beside its files; only a version registered
    # before signatures were kept apart lists it in its manifest, as one of its files.
    if SIGNATURE_FILE not in expected:
        check.signature_file = present.pop(SIGNATURE_FILE, None)
    for extra in sorted(set(present) - set(expected)):
        check.problems.append(f"{extra}: unexpected file (not in the manifest)")
        check.tampered = True
    to_hash: list[tuple[ManifestEntry, Path]] = []
    for path, entry in sorted(expected.items()):
        location = present.get(path)
        if location is None or not location.is_file():
            check.problems.append(f"{path}: missing")
            check.tampered = True
        else:
            to_hash.append((entry, location))
    try:
        digests = hash_files(
            [loc for _, loc in to_hash], workers=workers, progress=progress, ahead=ahead
        )
    except OSError as exc:
        check.problems.append(f"unreadable: {exc}")
        check.tampered = True
        return check
    for (entry, _), (digest, size) in zip(to_hash, digests, strict=True):
        check.files += 1
        check.bytes += size
        if digest != entry.sha256:
            check.problems.append(
                f"{entry.path}: sha256 mismatch (recorded {entry.sha256[:12]}…, "
                f"found {digest[:12]}…, {size} bytes)"
            )
            check.tampered = True
    _scan_files(check, [(entry.path, location) for entry, location in to_hash], policy)
    return check


def _scan_files(check: VersionCheck, files: Sequence[tuple[str, Path]], policy: ScanPolicy) -> None:
    """Scan a version's files, judge their findings, and ask the second-opinion engines.

    Args:
        check: the version's check, updated in place.
        files: each file's path in the version, and where its bytes are now.
        policy: which findings block trust, and which engines to ask.
    """
    scanned = [
        (location, shown) for shown, location in files if _judge(check, shown, location, policy)
    ]
    if policy.engines:
        check.opinions += second_opinions(scanned, engines=policy.engines)


def scan_version(
    *, asset: str, label: str, files: Sequence[tuple[str, Path]], policy: ScanPolicy
) -> VersionCheck:
    """Scan a version's files where they are (staged, or in a registry), without re-hashing.

    Args:
        asset: asset name.
        label: version label.
        files: each file's path in the version, and where its bytes are.
        policy: which findings block trust, and which engines to ask.

    Returns:
        The check, with the scan's findings and second opinions.
    """
    check = VersionCheck(asset=asset, label=label, allowance=policy.allowance)
    _scan_files(check, files, policy)
    return check


def _judge(check: VersionCheck, shown: str, location: Path, policy: ScanPolicy) -> bool:
    """Scan one file and add what the policy makes of its findings; False when unreadable."""
    try:
        findings = scan_file(location, display=shown, limits=policy.limits)
    except OSError as exc:
        check.problems.append(f"{shown}: unreadable: {exc}")
        check.scan_incomplete = True
        return False
    for finding in findings:
        if policy.accepts(finding):
            check.allowed.append(finding)
        elif policy.blocks(finding):
            check.findings.append(finding)
            check.problems.append(finding.describe())
            check.scan_blocked = True
            if shown not in check.flagged_files:
                check.flagged_files.append(shown)
    return True


def check_versions(
    *,
    registry: RegistryBackend,
    items: Sequence[tuple[str, str, Sequence[ManifestEntry]]],
    workers: int = 1,
    progress: Progress | None = None,
    ahead: HashedAhead | None = None,
    policies: Callable[[str], ScanPolicy] | None = None,
) -> list[VersionCheck]:
    """Check several versions, sharing the hashing threads between them.

    Args:
        registry: where the versions are stored.
        items: (asset, label, manifest) triples.
        workers: total hashing threads.
        progress: called with bytes hashed.
        ahead: the child hashing files ahead of the command, if any.
        policies: the scan policy of an asset, by name (default: every finding blocks).

    Returns:
        One check per item, in order.
    """

    def policy(asset: str) -> ScanPolicy | None:
        return policies(asset) if policies is not None else None

    if workers <= 1 or len(items) <= 1:
        # One version (or one thread): its files share the hashing threads.
        return [
            check_version(
                registry=registry,
                asset=a,
                label=lb,
                manifest=m,
                workers=workers,
                progress=progress,
                ahead=ahead,
                policy=policy(a),
            )
            for a, lb, m in items
        ]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [
            pool.submit(
                check_version,
                registry=registry,
                asset=a,
                label=lb,
                manifest=m,
                workers=1,
                progress=progress,
                ahead=ahead,
                policy=policy(a),
            )
            for a, lb, m in items
        ]
        return [future.result() for future in futures]
