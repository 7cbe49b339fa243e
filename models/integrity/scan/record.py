"""A version's scan record: which scanner and rules judged its files, and what they found.

Scanner bypasses are found every month: a version scanned clean last year may hold a gadget
today's rules catch. The record says what a verdict was reached with, so that ``rearguard
assets rescan`` re-scans exactly the versions whose verdict predates the current rules:

- :data:`SCANNER_VERSION`, rearguard's own scanner;
- the allow-list fingerprint: a digest of everything that decides whether a construct is let
  through for this asset (the built-in allow-lists, the asset's ``[assets.NAME.scanning]
  allow``, the severities ``[scanning] block`` names);
- each second-opinion engine's name and version (``[scanning] engines``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rearguard.models.integrity.scan.findings import Finding
from rearguard.models.integrity.scan.keras import KERAS_MODULES
from rearguard.models.integrity.scan.onnx import STANDARD_DOMAINS
from rearguard.models.integrity.scan.opinions import Opinion, Verdict, engine_versions
from rearguard.models.integrity.scan.pickle_globals import ALLOWED_GLOBALS
from rearguard.models.integrity.scan.policy import ScanPolicy

__all__ = [
    "SCANNER_VERSION",
    "EngineVerdict",
    "ScanRecord",
    "allow_fingerprint",
    "record_of",
]

SCANNER_VERSION = 1
"""The version of rearguard's scanner rules. Bump it with any change that could change a
verdict on some file: a deny-list entry, a format scanner, a container rule, a limit's meaning.
(A change to the built-in allow-lists changes every allow-list fingerprint by itself.)"""

ScanVerdict = Literal["clean", "blocked"]

# The verdict of an engine on a version, from its verdicts on the version's files: the worst.
_ENGINE_ORDER: tuple[Verdict, ...] = ("flagged", "error", "not installed", "clean")


@dataclass(frozen=True)
class EngineVerdict:
    """One second-opinion engine's verdict on a whole version."""

    engine: str
    version: str | None
    verdict: Verdict

    def as_dict(self) -> dict[str, str | None]:
        """A JSON-friendly form."""
        return {"engine": self.engine, "version": self.version, "verdict": self.verdict}


@dataclass(frozen=True)
class ScanRecord:
    """What scanned a version's files, under which rules, and what it found.

    Attributes:
        scanner_version: :data:`SCANNER_VERSION` at the scan.
        allow_fingerprint: :func:`allow_fingerprint` of the asset's policy at the scan.
        verdict: ``blocked`` when a finding blocks trust, else ``clean``.
        counts: the blocking findings, by severity.
        allowed: findings the asset's allowance accepted.
        engines: each second-opinion engine's verdict, in ``[scanning] engines`` order.
    """

    scanner_version: int
    allow_fingerprint: str
    verdict: ScanVerdict
    counts: Mapping[str, int] = field(default_factory=dict)
    allowed: int = 0
    engines: tuple[EngineVerdict, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly form (the timeline's, and the table's columns)."""
        return {
            "scanner_version": self.scanner_version,
            "allow_fingerprint": self.allow_fingerprint,
            "verdict": self.verdict,
            "counts": dict(sorted(self.counts.items())),
            "allowed": self.allowed,
            "engines": [engine.as_dict() for engine in self.engines],
        }

    def outdated(self, *, fingerprint: str, engines: Mapping[str, str | None]) -> str | None:
        """Why a scan now could reach another verdict than this record's; None when it could not.

        Args:
            fingerprint: the asset's allow-list fingerprint now.
            engines: the configured engines now, with their installed versions.
        """
        if self.scanner_version != SCANNER_VERSION:
            return f"scanner {self.scanner_version} -> {SCANNER_VERSION}"
        if self.allow_fingerprint != fingerprint:
            return "allow-list changed"
        recorded = {engine.engine: engine.version for engine in self.engines}
        if recorded != dict(engines):
            return f"engines {_engines_text(recorded)} -> {_engines_text(engines)}"
        return None


def _engines_text(engines: Mapping[str, str | None]) -> str:
    return ", ".join(f"{name} {found or '(not installed)'}" for name, found in engines.items()) or (
        "none"
    )


def allow_fingerprint(policy: ScanPolicy) -> str:
    """A digest of everything that lets a construct through for an asset.

    The built-in allow-lists (pickle globals, Keras modules, ONNX op domains), the asset's
    allowance and the severities that block: change any and the verdict may change.
    """
    allowed = sorted(policy.allowance.constructs) if policy.allowance else []
    text = json.dumps(
        {
            "pickle_globals": sorted(ALLOWED_GLOBALS),
            "keras_modules": list(KERAS_MODULES),
            "onnx_domains": sorted(STANDARD_DOMAINS),
            "asset_allow": allowed,
            "block": sorted(policy.block),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode()).hexdigest()


def record_of(
    *,
    findings: Iterable[Finding],
    allowed: Sequence[Finding],
    opinions: Sequence[Opinion],
    policy: ScanPolicy,
    fingerprint: str | None = None,
) -> ScanRecord:
    """The record of a scan whose blocking ``findings`` and accepted ``allowed`` are given.

    Args:
        findings: the findings that block trust.
        allowed: the findings the asset's allowance accepted.
        opinions: the second opinions on the version's files.
        policy: the policy the scan judged by.
        fingerprint: :func:`allow_fingerprint` of ``policy``, when the caller has it.
    """
    counts = Counter(str(finding.severity) for finding in findings)
    return ScanRecord(
        scanner_version=SCANNER_VERSION,
        allow_fingerprint=fingerprint or allow_fingerprint(policy),
        verdict="blocked" if counts else "clean",
        counts=dict(counts),
        allowed=len(allowed),
        engines=tuple(_engine_verdict(engine, opinions) for engine in policy.engines),
    )


def _engine_verdict(engine: str, opinions: Sequence[Opinion]) -> EngineVerdict:
    mine = [opinion for opinion in opinions if opinion.engine == engine]
    verdicts = {opinion.verdict for opinion in mine}
    clean: Verdict = "clean"
    worst = next((v for v in _ENGINE_ORDER if v in verdicts), clean)
    found = next((opinion.version for opinion in mine if opinion.version), None)
    if not mine:
        # A version without files: nothing was asked, so nothing was found.
        found = engine_versions([engine])[engine]
        worst = clean if found else "not installed"
    return EngineVerdict(engine, found, worst)
