"""A drill's sandbox: a home of its own holding a copy of one asset's registry state.

The sandbox has its own SQLite database and registry under ``<home>/drills/run-<id>``.
The asset's rows (and those of the assets its versions are linked to by lineage) are copied
with their ids, statuses and aliases, and the sandbox's chain starts with what production's
chain records of them (a ``drill.copied`` event per asset: the evidence of each version's
registration and approval, see :mod:`rearguard.models.assets.evidence`). With the local
store, the sandbox has a store of its own whose files are hard-linked when it is on the same
filesystem as production's, else copied. Stored objects are read-only and shared through those
links, so anything that alters a file in the sandbox must replace it (a new inode, see
:func:`replace_file`), never write into it: production would see the write. With MLflow, the
sandbox is a set of drill-prefixed registered models (``rearguard-drill-run-<id>-<asset>``)
whose versions hold copies of the artifacts, uploaded into the sandbox's home; production's
models, aliases, tags and artifacts are read, never written.
"""

from __future__ import annotations

import shutil
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from sqlmodel import Session, col, or_, select

from rearguard.models.assets.evidence import (
    SANDBOX_ACTOR,
    SANDBOX_COPY,
    load_evidence,
    sandbox_copy,
)
from rearguard.models.assets.versions import get_asset
from rearguard.models.audit.chain import append_event
from rearguard.models.config.core import CoreSettings
from rearguard.models.config.database import DatabaseSettings
from rearguard.models.config.settings import Settings
from rearguard.models.db.engine import Database
from rearguard.models.db.tables import Alias, Asset, AssetVersion, VersionFile
from rearguard.models.enums import EventKind
from rearguard.models.errors import NotFoundError
from rearguard.models.registry.base import RegistryBackend
from rearguard.models.registry.local import remove_tree
from rearguard.models.runtime import Runtime

_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


@dataclass
class Sandbox:
    """A drill's sandbox and the runtime that works on it."""

    home: Path
    runtime: Runtime
    linked_files: int = 0
    copied_files: int = 0

    def close(self, *, remove: bool) -> None:
        """Release the sandbox's database, and delete the sandbox when ``remove``.

        Deleting it removes its home and what its registry holds elsewhere (MLflow's drill
        models).
        """
        self.runtime.db.dispose()
        if remove:
            try:
                self.runtime.registry.delete_sandbox()
            finally:
                remove_tree(self.home)


def sandbox_settings(settings: Settings, home: Path) -> Settings:
    """The application's settings, moved to a sandbox home with its own SQLite database.

    Notifications keep the application's file (a drill's messages say DRILL), so that
    people find them where they look. Audit checkpoints are off: the sandbox's chain is its own.
    """
    return replace(
        settings,
        core=CoreSettings(home=home, actor=settings.core.actor),
        database=DatabaseSettings(
            url=f"sqlite:///{home / 'rearguard.db'}",
            busy_timeout_s=settings.database.busy_timeout_s,
        ),
        notifications=settings.notifications.model_copy(
            update={"file": settings.notification_file}
        ),
        # The sandbox's chain is not the application's: signing its checkpoints into the
        # application's sinks would break the published sequence of checkpoints.
        audit=settings.audit.model_copy(update={"signing_key": None, "checkpoint_sinks": []}),
    )


def create_sandbox(*, runtime: Runtime, asset: str, name: str) -> Sandbox:
    """Build a sandbox holding ``asset``'s registry state as production has it now.

    Args:
        runtime: the application's runtime (read, never written).
        asset: the asset to copy (with the assets linked to it by lineage).
        name: the sandbox directory's name under ``<home>/drills``.

    Returns:
        The sandbox, its runtime in drill mode.
    """
    home = runtime.settings.home / "drills" / name
    registry = runtime.registry.for_sandbox(home=home, name=name)
    registry.delete_sandbox()  # what a crashed run of the same name left
    remove_tree(home)
    (home / "store").mkdir(parents=True)
    settings = sandbox_settings(runtime.settings, home)
    db = Database(settings.database_url, busy_timeout_s=settings.database.busy_timeout_s)
    db.upgrade()
    sandbox = Sandbox(
        home=home,
        runtime=Runtime(
            settings=settings,
            db=db,
            registry=registry,
            drill=True,
            hook_deployments=runtime.hook_deployments,
            secret_blocks=runtime.secret_blocks,
            console=runtime.console,
        ),
    )
    with runtime.db.read_session() as session:
        rows = _registry_rows(session, asset)
        # What production's chain records of each copied asset, not what its rows say: a
        # status set by hand in production is no more trusted in the sandbox than there.
        copies = {
            a.name: sandbox_copy(load_evidence(session, asset=a.name), asset=a.name)
            for a in rows[0]
        }
    with db.session() as session:
        for table_rows in rows:
            session.add_all(table_rows)
            session.flush()
        for name, copy in copies.items():
            append_event(
                session,
                kind=EventKind.STATE,
                action=SANDBOX_COPY,
                actor=SANDBOX_ACTOR,
                asset=name,
                data=copy,
            )
        append_event(
            session,
            kind=EventKind.STATE,
            action="drill.sandbox",
            actor="drill",
            asset=asset,
            data={
                "source": str(runtime.settings.home),
                "assets": [a.name for a in rows[0]],
                "versions": len(rows[1]),
            },
        )
    _copy_store(runtime.registry, sandbox, rows)
    return sandbox


def _registry_rows(session: Session, asset_name: str) -> list[list[Any]]:
    """Copies of the rows of an asset and of the assets one lineage link away, in FK order."""
    asset = get_asset(session=session, name=asset_name)
    own = list(session.exec(select(AssetVersion).where(AssetVersion.asset_id == asset.id)))
    own_ids = [v.id for v in own]
    upstream = {v.trained_on_id for v in own if v.trained_on_id}
    linked = session.exec(
        select(AssetVersion.asset_id).where(
            or_(col(AssetVersion.id).in_(upstream), col(AssetVersion.trained_on_id).in_(own_ids))
        )
    ).all()
    asset_ids = {asset.id, *linked}
    assets = list(session.exec(select(Asset).where(col(Asset.id).in_(asset_ids))))
    versions = list(
        session.exec(
            select(AssetVersion)
            .where(col(AssetVersion.asset_id).in_(asset_ids))
            .order_by(col(AssetVersion.id))
        )
    )
    version_ids = {v.id for v in versions}
    files = session.exec(select(VersionFile).where(col(VersionFile.version_id).in_(version_ids)))
    aliases = session.exec(select(Alias).where(col(Alias.asset_id).in_(asset_ids)))

    def copy(row: Any, **changes: Any) -> Any:
        columns = {c.name: getattr(row, c.name) for c in type(row).__table__.columns}
        return type(row)(**{**columns, **changes})

    return [
        [copy(a) for a in assets],
        # Lineage to a version outside the copy cannot be followed in the sandbox.
        [
            copy(v, trained_on_id=v.trained_on_id if v.trained_on_id in version_ids else None)
            for v in versions
        ],
        [copy(f) for f in files],
        [copy(a) for a in aliases],
    ]


def _copy_store(source: RegistryBackend, sandbox: Sandbox, rows: list[list[Any]]) -> None:
    kinds = {a.id: str(a.kind) for a in rows[0]}
    assets_by_id = {a.id: a.name for a in rows[0]}
    labels_by_id = {v.id: v.label for v in rows[1]}
    target = sandbox.runtime.registry
    for version in rows[1]:
        asset = assets_by_id[version.asset_id]
        try:
            files = source.version_files(asset=asset, label=version.label)
        except NotFoundError:
            continue  # its content is gone; the playbook finds that out in the sandbox
        linked = target.copy_version(
            asset=asset, label=version.label, kind=kinds[version.asset_id], files=files
        )
        target.mirror_status(asset=asset, label=version.label, status=str(version.status))
        sandbox.linked_files += linked
        sandbox.copied_files += len(files) - linked
    for alias in rows[3]:
        target.move_alias(
            asset=assets_by_id[alias.asset_id],
            alias=alias.name,
            label=labels_by_id[alias.version_id],
        )


def replace_file(path: Path, edit: Callable[[BinaryIO], None]) -> None:
    """Replace a sandbox file with an edited copy: a new inode, the old one untouched.

    The file may be a hard link to a production object; writing into it would alter
    production. It is copied (by the kernel, where it can), ``edit`` gets the copy open for
    reading and writing at offset 0, and the copy is renamed over ``path``.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.drill")
    shutil.copyfile(path, tmp)
    with tmp.open("r+b") as handle:
        edit(handle)
    tmp.chmod(_READ_ONLY_FILE)
    tmp.replace(path)
