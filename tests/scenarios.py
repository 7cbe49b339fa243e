"""Building registry scenarios for tests: versions registered, approved, promoted, tampered;
the drill of such an asset and its runs.

Every test that needs "v1 and v2 known-good, v3 in production" builds it here, through the
real registry services, so that a change in how versions are registered reaches every test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from rearguard.models.assets.versions import (
    alias_version,
    approve_version,
    get_asset,
    promote_version,
    register_version,
)
from rearguard.models.audit.chain import (
    HASHED_FIELDS,
    append_event,
    canonical_json,
    event_hash,
    verify_stored_chain,
)
from rearguard.models.config.settings import load_settings
from rearguard.models.db.tables import ChainHead, Drill, DrillRun, TimelineEvent
from rearguard.models.drills.service import add_drill, finish_run, start_run
from rearguard.models.enums import AssetKind, EventKind
from rearguard.models.integrity.scan.policy import ScanPolicy
from rearguard.models.runtime import Runtime

ALIAS = "production"

# The steps a model_compromise run records: notify(opened), quarantine, notify(contained), ...,
# notify(recovered).
MODEL_COMPROMISE_STEPS = [
    "notify",
    "quarantine",
    "notify",
    "verify_integrity",
    "select_known_good",
    "await_approval",
    "rollback",
    "validate",
    "notify",
]


def tamper(path: Path, *, data: bytes = b"\x00tampered\x00") -> None:
    """Overwrite the start of a stored (read-only) file, as an attacker with disk access would."""
    path.chmod(0o644)
    with path.open("r+b") as handle:
        handle.write(data)
    path.chmod(0o444)


def write_source(root: Path, asset: str, label: str, files: dict[str, bytes]) -> Path:
    """Write a version's files into a fresh source directory and return it."""
    folder = root / "sources" / asset / label
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return folder


def default_files(kind: str, asset: str, label: str) -> dict[str, bytes]:
    """Distinct content per version (shared content would share one stored object)."""
    if kind == "prompt":
        return {"system.txt": f"You are a careful assistant ({asset} {label}).".encode()}
    if kind == "config":
        return {"serving.json": json.dumps({"asset": asset, "release": label}).encode()}
    return {"weights.bin": f"weights of {asset} {label}".encode() * 64}


def configure(runtime: Runtime, home: Path, toml: str) -> None:
    """Write rearguard.toml into the home and reload the runtime's settings from it."""
    (home / "rearguard.toml").write_text(toml)
    runtime.settings = load_settings(home=home, database_url=runtime.settings.database_url)


def add_version(
    runtime: Runtime,
    root: Path,
    asset: str,
    label: str,
    *,
    kind: str = "model",
    files: dict[str, bytes] | None = None,
    validate: str | None = None,
    actor: str = "test",
    trained_on: str | None = None,
    policy: ScanPolicy | None = None,
) -> None:
    """Register one version through the registry service (``trained_on``: DATASET@LABEL).

    ``policy``: how registration judges the scan (default: every finding makes it suspect).
    """
    register_version(
        db=runtime.db,
        registry=runtime.registry,
        name=asset,
        source=write_source(root, asset, label, files or default_files(kind, asset, label)),
        label=label,
        kind=AssetKind(kind),
        actor=actor,
        validate_command=validate,
        trained_on=trained_on,
        policy=policy,
    )


def approve(runtime: Runtime, asset: str, label: str, *, by: str = "alice") -> None:
    """Approve a version as known-good on a named person's word."""
    approve_version(db=runtime.db, registry=runtime.registry, name=asset, label=label, by=by)


def promote(runtime: Runtime, asset: str, label: str, *, actor: str = "bob") -> None:
    """Point production at a version."""
    promote_version(
        db=runtime.db, registry=runtime.registry, name=asset, label=label, alias=ALIAS, actor=actor
    )


def build_scenario(
    runtime: Runtime,
    root: Path,
    *,
    asset: str = "model-a",
    kind: str = "model",
    approved: tuple[str, ...] = ("v1", "v2"),
    production: str | None = "v3",
    tampered: bool = False,
    validate: str | None = None,
    validate_all: bool = False,
    files: dict[str, dict[str, bytes]] | None = None,
    promoted_by: str = "bob",
) -> None:
    """Register v1, v2 and v3, approve ``approved`` and promote ``production``.

    Args:
        runtime: the test's runtime.
        root: where the source directories are written.
        asset: the asset's name.
        kind: model, prompt or config.
        approved: the labels approved as known-good.
        production: the label promoted to production (None: no production alias).
        tampered: alter every stored file of the production version afterwards.
        validate: the asset's validation command, registered with v1 (or every version with
            ``validate_all``).
        validate_all: register ``validate`` with every version.
        files: per label, the files of that version instead of the default content.
        promoted_by: who moved production to ``production``.
    """
    for label in ("v1", "v2", "v3"):
        add_version(
            runtime,
            root,
            asset,
            label,
            kind=kind,
            files=(files or {}).get(label),
            validate=validate if (label == "v1" or validate_all) else None,
        )
    for label in approved:
        approve(runtime, asset, label)
    if production:
        promote(runtime, asset, production, actor=promoted_by)
        if tampered:
            tamper_version(runtime, asset, production)


def weekly_drill(session: Session, *, rto_s: float | None = 300, asset: str = "model-a") -> Drill:
    """The drill ``weekly`` of the model-compromise playbook on an asset, Mondays 09:00 UTC."""
    return add_drill(
        session=session,
        name="weekly",
        playbook="model_compromise",
        asset=asset,
        cron="0 9 * * MON",
        timezone="UTC",
        rto_s=rto_s,
        actor="alice",
    )


def ended_run(session: Session, drill: Drill, *, status: str, recovery_s: float) -> DrillRun:
    """A manual run of a drill, ended as ``status`` (pass, fail) after ``recovery_s``."""
    run = start_run(session=session, drill=drill, trigger="manual", incident_id=None)
    return finish_run(session=session, run=run, status=status, recovery_s=recovery_s)


def stored_file(runtime: Runtime, asset: str, label: str, relative: str) -> Path:
    """The stored (read-only) copy of one file of a version."""
    return runtime.registry.version_location(asset=asset, label=label) / relative


def tamper_version(runtime: Runtime, asset: str, label: str) -> None:
    """Alter every stored file of a version in place, as an attacker with disk access would."""
    for path in runtime.registry.version_files(asset=asset, label=label).values():
        tamper(path)


def production_in_db(runtime: Runtime, asset: str) -> str | None:
    """Where the production alias points according to the database."""
    with runtime.db.read_session() as session:
        found = get_asset(session=session, name=asset)
        current = alias_version(session=session, asset=found, alias=ALIAS)
    return current.label if current else None


def production_on_disk(runtime: Runtime, asset: str) -> str | None:
    """Where the production alias points according to the registry's symlink."""
    return runtime.registry.read_alias(asset=asset, alias=ALIAS)


def catalog_steps(runtime: Runtime, incident_id: int) -> list[str]:
    """The steps an incident's timeline recorded, named as the catalog lists them, in order of
    their first run (a playbook's loop over several assets repeats its steps)."""
    from rearguard.models.audit.chain import events_for_incident
    from rearguard.models.incidents.types import step_name

    with runtime.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=incident_id)
    steps: list[str] = []
    for event in events:
        if event.kind == "intent":
            name = step_name(event.action, json.loads(event.data).get("arguments") or {})
            if name not in steps:
                steps.append(name)
    return steps


def chain_secret_as_an_older_rearguard_did(
    runtime: Runtime, incident_id: int, *, action: str, data: dict[str, Any]
) -> None:
    """Append an event holding ``data`` as is, validly chained: what an older rearguard (which
    did not redact every event) left in the database."""
    with runtime.db.session() as session:
        appended = append_event(
            session,
            kind=EventKind.DECISION,
            action=action,
            actor="oncall",
            incident_id=incident_id,
            data={},
        )
        row = session.exec(select(TimelineEvent).where(TimelineEvent.seq == appended.seq)).one()
        fields = {name: getattr(row, name) for name in HASHED_FIELDS}
        digest = event_hash({**fields, "data": data})
        row.data, row.hash = canonical_json(data), digest
        session.add(row)
        head = session.get(ChainHead, 1)
        assert head is not None
        head.hash = digest
        session.add(head)
    with runtime.db.read_session() as session:
        assert verify_stored_chain(session).ok
