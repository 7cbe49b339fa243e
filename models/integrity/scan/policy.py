"""What a version's findings mean for trust: which block it, which a person allowed.

The scanner reports everything; the policy decides. By default every severity blocks approval,
promotion and known-good selection (``[scanning] block``). An asset's ``[assets.NAME.scanning]``
table may accept ``unknown`` constructs by name, with who decided and why; a ``dangerous``,
``malformed`` or ``not_scanned`` finding is never accepted that way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rearguard.models.config.scanning import AssetScanning, ScanningSettings
from rearguard.models.config.settings import Settings
from rearguard.models.integrity.scan.engine import Limits
from rearguard.models.integrity.scan.findings import Finding, Severity


@dataclass(frozen=True)
class Allowance:
    """Constructs a person accepted for one asset."""

    constructs: frozenset[str]
    allowed_by: str
    reason: str


@dataclass(frozen=True)
class ScanPolicy:
    """How one asset's findings are judged, and how far its containers are opened."""

    block: frozenset[Severity] = frozenset(Severity)
    allowance: Allowance | None = None
    limits: Limits = field(default_factory=Limits)
    engines: tuple[str, ...] = ()

    def accepts(self, finding: Finding) -> bool:
        """True when the asset's allowance covers this finding."""
        return (
            self.allowance is not None
            and finding.severity == Severity.UNKNOWN
            and finding.construct in self.allowance.constructs
        )

    def blocks(self, finding: Finding) -> bool:
        """True when this finding blocks trust in the version holding it."""
        return finding.severity in self.block and not self.accepts(finding)


def policy_for(settings: Settings, asset: str) -> ScanPolicy:
    """The scan policy of ``asset`` from ``[scanning]`` and ``[assets.NAME.scanning]``."""
    return _policy(settings.scanning, _asset_scanning(settings, asset))


def _asset_scanning(settings: Settings, asset: str) -> AssetScanning | None:
    options = settings.hooks.assets.get(asset)
    return options.scanning if options is not None else None


def _policy(scanning: ScanningSettings, asset: AssetScanning | None) -> ScanPolicy:
    allowance = (
        Allowance(frozenset(asset.allow), asset.allowed_by, asset.reason)
        if asset is not None and asset.allow
        else None
    )
    return ScanPolicy(
        block=frozenset(scanning.block),
        allowance=allowance,
        limits=Limits(
            max_depth=scanning.max_depth,
            max_members=scanning.max_members,
            max_expanded_bytes=scanning.max_expanded_bytes,
        ),
        engines=tuple(scanning.engines),
    )
