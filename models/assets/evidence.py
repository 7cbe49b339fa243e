"""Trust from evidence: what the audit chain records of versions, aliases and the denylist.

A version is known-good because the chain holds its registration, with the digest of the
manifest it was registered with, and a person's approval after it (a ``version.known_good``
event whose actor is not a playbook or another machine), and no later event took that away
(``version.suspect``, ``version.quarantined``, ``version.retired``, ``version.candidate``).
The ``status`` column is a cache of that history. A row the chain does not bear out (a status,
digest, manifest or approver written by something other than rearguard) is a disagreement:
``rearguard audit verify`` reports it (exit 3), and approve, promote, rollback and known-good
selection refuse to trust the version.

The same holds for the production alias (its row must point where the last ``alias.moved``
event of it moved it) and the denylist (each entry must be one a ``denylist.added`` event
added and no ``denylist.removed`` event lifted since, and every digest the chain still denies
must have its entry).

A drill's sandbox starts with a copy of production's rows and a chain of its own: its
``drill.copied`` event per asset carries what production's chain says of each version and
alias (never what production's columns say), and counts as their registration and approval in
the sandbox.

Reading it is cheap: the evidence of one asset is one query on ``timeline_event`` by its
``asset`` column (indexed with ``seq``), and each event it returns is verified on its own
(:func:`~rearguard.models.audit.chain.verify_picked_events`: its hash, and the link of the next
event to it). What that proves, and what only ``audit verify`` and signed checkpoints prove, is
in the README's "Trust from evidence".
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, literal
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from rearguard.models.audit.chain import STORED_COLUMNS, ChainProblem, verify_picked_events
from rearguard.models.db.tables import (
    Alias,
    Asset,
    AssetVersion,
    ChainHead,
    DeniedDigest,
    TimelineEvent,
    VersionFile,
    table_of,
)
from rearguard.models.enums import VersionStatus
from rearguard.models.errors import IntegrityViolation
from rearguard.models.registry.base import ManifestEntry, manifest_digest

_REGISTERED = ("asset.registered", "asset.imported")
_STATUS_SET = {f"version.{status}": VersionStatus(status) for status in VersionStatus}
_STATUS_VALUES = frozenset(status.value for status in VersionStatus)
_ALIAS_MOVED = "alias.moved"
SANDBOX_COPY = "drill.copied"
_DENY_ADDED = "denylist.added"
_DENY_LIFTED = "denylist.removed"
SANDBOX_ACTOR = "drill"
_ASSET_ACTIONS = (*_REGISTERED, *_STATUS_SET, _ALIAS_MOVED, SANDBOX_COPY)
_DENY_ACTIONS = (_DENY_ADDED, _DENY_LIFTED)
# Actors that are not people: their version.known_good is no approval.
_MACHINES = frozenset({SANDBOX_ACTOR, "scheduler", "cli"})
_HINT = (
    "`rearguard audit verify` lists every row the audit chain does not bear out; find who "
    "wrote the database, and restore the row from the chain"
)

_EVENTS = table_of(TimelineEvent)
_FOLLOWING = _EVENTS.alias("following")
_HEAD = table_of(ChainHead)
# Where a row of load_evidence's query holds the recorded head: after the stored columns and
# the next event's prev_hash.
_HEAD_SEQ = len(STORED_COLUMNS) + 1


def is_person(actor: str) -> bool:
    """Whether an event's actor can approve: anyone but a playbook, a drill or the scheduler."""
    return not actor.startswith("playbook:") and actor not in _MACHINES


@dataclass
class VersionEvidence:
    """What the chain records of one version.

    ``registration`` is its registration event's data (or a sandbox's copy of production's
    evidence), parsed only when its digest or first status is asked for: selection judges only
    the versions it reaches.
    """

    label: str
    registered_seq: int | None = None
    registration: str | Mapping[str, Any] | None = None
    changed_to: VersionStatus | None = None
    approved_by: str | None = None

    @cached_property
    def recorded(self) -> Mapping[str, Any]:
        """The registration's data."""
        found = self.registration
        return _fields(found) if isinstance(found, str) else (found or {})

    @property
    def digest(self) -> str | None:
        """The manifest digest it was registered with."""
        return _text(self.recorded.get("digest"))

    @property
    def status(self) -> VersionStatus | None:
        """Its status by the chain: the last status event's, else the registration's."""
        if self.changed_to is not None or self.registered_seq is None:
            return self.changed_to
        return _registered(self.recorded)

    @property
    def approved(self) -> bool:
        """Known-good on a person's word recorded after its registration, not taken back."""
        return self.status == VersionStatus.KNOWN_GOOD and self.approved_by is not None

    def copied(self) -> dict[str, str | None]:
        """What a sandbox's ``drill.copied`` event carries of it."""
        return {
            "digest": self.digest,
            "status": str(self.status) if self.status else None,
            "approved_by": self.approved_by if self.approved else None,
        }


@dataclass
class AssetEvidence:
    """What the chain records of one asset: its versions and where its aliases point."""

    versions: dict[str, VersionEvidence] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass
class ChainEvidence:
    """What the chain records of assets (and of the denylist, when read for every asset).

    ``problem`` is the first evidence event that does not verify: then nothing it would
    vouch for is trusted.
    """

    assets: dict[str, AssetEvidence] = field(default_factory=dict)
    denied: dict[str, int] = field(default_factory=dict)
    lifted: dict[str, int] = field(default_factory=dict)
    problem: ChainProblem | None = None

    def of(self, asset: str) -> AssetEvidence:
        """One asset's evidence (empty when the chain records nothing of it)."""
        return self.assets.get(asset) or AssetEvidence()

    def doubt(
        self, *, asset: str, version: AssetVersion, manifest: Sequence[ManifestEntry]
    ) -> str | None:
        """Why a version's row is not what the chain records of it, or None when it is.

        Args:
            asset: the asset's name.
            version: the version's row (status, digest, approver).
            manifest: its recorded manifest (``version_file`` rows).
        """
        if self.problem is not None:
            return f"its audit chain evidence does not verify: {self.problem.describe()}"
        found = self.of(asset).versions.get(version.label)
        if found is None or found.registered_seq is None:
            return "the audit chain holds no registration of it"
        registered = found.digest or "none"
        if version.digest != registered:
            return f"its digest {version.digest} is not the one registered ({registered})"
        if manifest_digest(manifest) != registered:
            return f"its manifest is not the one registered (digest {registered})"
        if version.status == VersionStatus.KNOWN_GOOD and not found.approved:
            return (
                "its row says known_good, but the audit chain holds no person's approval of it "
                f"after its registration (the chain says {found.status})"
            )
        if version.status != found.status:
            return f"its row says {version.status}, but the audit chain says {found.status}"
        if version.status != VersionStatus.KNOWN_GOOD:
            return None
        if version.approved_by != found.approved_by:
            return (
                f"its approval is by {version.approved_by} but the audit chain records "
                f"{found.approved_by}"
            )
        return None

    def refuse_doubted(
        self, *, asset: str, version: AssetVersion, manifest: Sequence[ManifestEntry]
    ) -> None:
        """Raise when a version's row is not what the chain records of it.

        Raises:
            IntegrityViolation: the row and the chain disagree (exit 3).
        """
        doubt = self.doubt(asset=asset, version=version, manifest=manifest)
        if doubt is not None:
            raise IntegrityViolation(
                f"{asset}@{version.label} is not what the audit chain records: {doubt}",
                hint=_HINT,
            )


def load_evidence(target: Session | Connection, *, asset: str | None = None) -> ChainEvidence:
    """Read and verify what the chain records of one asset, or of every asset and the denylist.

    One query: the evidence events (by the indexed ``asset`` column when one is named), each
    with the ``prev_hash`` of the event after it and the recorded chain head, read in one
    statement so that events appended meanwhile cannot make it disagree with itself. Any of
    them that does not verify makes the whole asset's evidence void: an edited event may have
    been moved from one version to another.

    Args:
        target: an open session or connection.
        asset: one asset's name; None for every asset and the denylist.
    """
    connection = target.connection() if isinstance(target, Session) else target
    events = _EVENTS.c
    statement = (
        core_select(
            *(events[name] for name in STORED_COLUMNS),
            _FOLLOWING.c.prev_hash,
            _HEAD.c.seq,
            _HEAD.c.hash,
        )
        .select_from(
            _EVENTS.outerjoin(_FOLLOWING, _FOLLOWING.c.seq == events.seq + 1).outerjoin(
                _HEAD, _HEAD.c.id == literal(1)
            )
        )
        .order_by(events.seq)
    )
    if asset is None:
        statement = statement.where(events.action.in_((*_ASSET_ACTIONS, *_DENY_ACTIONS)))
    else:
        statement = statement.where(events.asset == asset, events.action.in_(_ASSET_ACTIONS))
    rows = connection.execute(statement).all()
    evidence = ChainEvidence()
    if not rows:
        return evidence
    head = (rows[0][_HEAD_SEQ], rows[0][_HEAD_SEQ + 1])
    evidence.problem = verify_picked_events(rows, head=head)
    if evidence.problem is None:
        for row in rows:
            _replay(evidence, row)
    return evidence


def _replay(evidence: ChainEvidence, row: Sequence[Any]) -> None:
    """Apply one verified event, in chain order."""
    seq, action, actor, asset, label, text = row[0], row[4], row[5], row[6], row[7], row[8]
    if action == _DENY_ADDED:
        digest = str(_fields(text).get("sha256"))
        evidence.denied[digest] = seq
        evidence.lifted.pop(digest, None)
        return
    if action == _DENY_LIFTED:
        digest = str(_fields(text).get("sha256"))
        evidence.lifted[digest] = seq
        evidence.denied.pop(digest, None)
        return
    if asset is None:
        return
    found = evidence.assets.get(asset) or evidence.assets.setdefault(asset, AssetEvidence())
    if action == SANDBOX_COPY:
        if actor == SANDBOX_ACTOR:
            _replay_copy(evidence, found, seq, _fields(text))
        return
    if action == _ALIAS_MOVED:
        data = _fields(text)
        found.aliases[str(data.get("alias"))] = str(data.get("to"))
        return
    if label is None:
        return
    if action in _REGISTERED:
        found.versions[label] = VersionEvidence(label, registered_seq=seq, registration=text)
        return
    version = found.versions.get(label) or found.versions.setdefault(label, VersionEvidence(label))
    version.changed_to = _STATUS_SET[action]
    by_person = (
        version.changed_to == VersionStatus.KNOWN_GOOD
        and version.registered_seq is not None
        and is_person(actor)
    )
    version.approved_by = actor if by_person else None


def _replay_copy(
    evidence: ChainEvidence, found: AssetEvidence, seq: int, data: dict[str, Any]
) -> None:
    """A sandbox's copy of what production's chain records of an asset (its versions and
    aliases, or that it did not verify)."""
    versions = data.get("versions")
    for label, copied in (versions if isinstance(versions, dict) else {}).items():
        if not isinstance(copied, dict):
            continue
        known_good = copied.get("status") == VersionStatus.KNOWN_GOOD
        found.versions[label] = VersionEvidence(
            label,
            registered_seq=seq,
            registration=copied,
            approved_by=_text(copied.get("approved_by")) if known_good else None,
        )
    aliases = data.get("aliases")
    for name, target in (aliases if isinstance(aliases, dict) else {}).items():
        found.aliases[str(name)] = str(target)
    if data.get("unverified"):
        reason = f"production's evidence did not verify: {data['unverified']}"
        evidence.problem = evidence.problem or ChainProblem(seq, None, reason)


def _registered(data: Mapping[str, Any]) -> VersionStatus:
    """The status a registration recorded (an import records its scan, not a status)."""
    status = data.get("status")
    if status in _STATUS_VALUES:
        return VersionStatus(status)
    scan = data.get("scan")
    blocked = isinstance(scan, dict) and scan.get("blocked") is True
    return VersionStatus.SUSPECT if blocked else VersionStatus.CANDIDATE


def _fields(text: str) -> dict[str, Any]:
    """An event's data (verified, so canonical JSON); {} when it is not an object."""
    data = json.loads(text)
    return data if isinstance(data, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def sandbox_copy(evidence: ChainEvidence, *, asset: str) -> dict[str, Any]:
    """The data of a sandbox's ``drill.copied`` event: production's evidence of an asset.

    Production's evidence that does not verify is carried as such: the sandbox then trusts
    none of the asset's versions, as production does not.
    """
    if evidence.problem is not None:
        return {"versions": {}, "aliases": {}, "unverified": evidence.problem.describe()}
    found = evidence.of(asset)
    return {
        "versions": {
            label: version.copied()
            for label, version in found.versions.items()
            if version.registered_seq is not None
        },
        "aliases": dict(found.aliases),
        "unverified": None,
    }


@dataclass(frozen=True)
class Disagreement:
    """A row the audit chain does not bear out."""

    subject: str
    reason: str
    asset: str | None = None
    version: str | None = None
    alias: str | None = None
    digest: str | None = None

    def describe(self) -> str:
        """One line for the user."""
        return f"{self.subject}: {self.reason}"


def find_disagreements(session: Session, *, asset: str | None = None) -> list[Disagreement]:
    """Every version, alias and denylist row the audit chain does not bear out.

    Args:
        session: an open session.
        asset: only this asset's versions and aliases (no denylist); default every asset and
            the denylist.

    Returns:
        The disagreements, by asset and version, then aliases, then the denylist.
    """
    evidence = load_evidence(session, asset=asset)
    connection = session.connection()
    chosen = select(Asset) if asset is None else select(Asset).where(Asset.name == asset)
    assets: dict[int | None, str] = {row.id: row.name for row in session.exec(chosen)}
    statement = select(AssetVersion).order_by(col(AssetVersion.asset_id), col(AssetVersion.id))
    if asset is not None:
        statement = statement.where(col(AssetVersion.asset_id).in_(assets))
    versions = list(session.exec(statement))
    manifests = _manifests(connection, None if asset is None else list(assets))
    found: list[Disagreement] = []
    if evidence.problem is not None:
        found.append(
            Disagreement(
                "audit chain evidence",
                f"does not verify ({evidence.problem.describe()}); `rearguard audit verify` "
                "names the first broken event",
            )
        )
    labels: dict[int | None, str] = {}
    for version in versions:
        name = assets[version.asset_id]
        labels[version.id] = version.label
        doubt = evidence.doubt(
            asset=name, version=version, manifest=manifests.get(version.id or 0, [])
        )
        if doubt is not None and evidence.problem is None:
            found.append(Disagreement(f"{name}@{version.label}", doubt, name, version.label))
    rows = {(assets[v.asset_id], v.label) for v in versions}
    for name, recorded in sorted(evidence.assets.items()):
        for label, chained in recorded.versions.items():
            if (name, label) not in rows and chained.registered_seq is not None:
                found.append(
                    Disagreement(
                        f"{name}@{label}",
                        f"registered by audit event {chained.registered_seq} but its row is "
                        "gone (deleted)",
                        name,
                        label,
                    )
                )
    found.extend(_alias_disagreements(connection, evidence, assets, labels))
    if asset is None:
        found.extend(_denylist_disagreements(connection, evidence))
    return found


def _manifests(
    connection: Connection, asset_ids: list[int | None] | None
) -> dict[int, list[ManifestEntry]]:
    """The recorded manifests of the listed assets' versions (None: every asset's), by version
    id, in one query."""
    files, versions = table_of(VersionFile), table_of(AssetVersion)
    statement = core_select(files.c.version_id, files.c.path, files.c.sha256, files.c.size)
    if asset_ids is not None:
        statement = statement.join(versions, versions.c.id == files.c.version_id).where(
            versions.c.asset_id.in_(asset_ids)
        )
    manifests: dict[int, list[ManifestEntry]] = defaultdict(list)
    for version_id, path, sha256, size in connection.execute(statement):
        manifests[version_id].append(ManifestEntry(path, sha256, size))
    return manifests


def _alias_disagreements(
    connection: Connection,
    evidence: ChainEvidence,
    assets: dict[int | None, str],
    labels: dict[int | None, str],
) -> list[Disagreement]:
    aliases = table_of(Alias)
    stored: dict[tuple[str, str], str] = {
        (assets[row.asset_id], row.name): labels.get(row.version_id, f"version id {row.version_id}")
        for row in connection.execute(core_select(aliases))
        if row.asset_id in assets
    }
    moved = {
        (name, alias): label
        for name in assets.values()
        for alias, label in evidence.of(name).aliases.items()
    }
    found = []
    for name, alias in sorted({*moved, *stored}):
        row, chain = stored.get((name, alias)), moved.get((name, alias))
        if row == chain:
            continue
        if chain is None:
            reason = f"points at {row}, but no audit event moved it"
        elif row is None:
            reason = f"the audit chain last moved it to {chain}, but its row is gone (deleted)"
        else:
            reason = f"points at {row}, but the audit chain last moved it to {chain}"
        found.append(Disagreement(f"{name} alias {alias}", reason, name, alias=alias))
    return found


def _denylist_disagreements(connection: Connection, evidence: ChainEvidence) -> list[Disagreement]:
    denied = table_of(DeniedDigest)
    stored = {row[0] for row in connection.execute(core_select(denied.c.sha256))}
    found = []
    for digest in sorted(stored | set(evidence.denied)):
        if digest in stored and digest in evidence.denied:
            continue
        if digest in stored:
            lifted = evidence.lifted.get(digest)
            reason = (
                f"is on the denylist, but audit event {lifted} lifted it"
                if lifted
                else "is on the denylist, but no audit event added it"
            )
        else:
            reason = (
                f"was denied by audit event {evidence.denied[digest]} and never lifted, but its "
                "denylist entry is gone (deleted)"
            )
        found.append(Disagreement(f"denylist {digest}", reason, digest=digest))
    return found
