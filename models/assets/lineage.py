"""Lineage queries: which dataset versions a poisoning taints, and which models they reach.

A model version records the dataset version it was trained on (``asset_version.
trained_on_id``, set by ``assets register --trained-on DATASET@LABEL``). These are the set
queries the ``data_poisoning`` playbook decides from: each is one SQL statement, however many
versions there are (bench/bench_selection.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select as core_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from rearguard.models.db.tables import Alias, Asset, AssetVersion
from rearguard.models.enums import VersionStatus


def suspect_dataset_versions(
    *, session: Session, dataset: Asset, since: datetime
) -> list[AssetVersion]:
    """The dataset's versions registered at or after ``since``, oldest first."""
    statement = (
        select(AssetVersion)
        .where(AssetVersion.asset_id == dataset.id, col(AssetVersion.registered_at) >= since)
        .order_by(col(AssetVersion.registered_at), col(AssetVersion.id))
    )
    return list(session.exec(statement))


def last_clean_dataset_version(
    *, session: Session, dataset: Asset, since: datetime
) -> AssetVersion | None:
    """The newest version registered before ``since`` not suspect, quarantined or retired."""
    statement = (
        select(AssetVersion)
        .where(
            AssetVersion.asset_id == dataset.id,
            col(AssetVersion.registered_at) < since,
            col(AssetVersion.status).not_in(
                (VersionStatus.SUSPECT, VersionStatus.QUARANTINED, VersionStatus.RETIRED)
            ),
        )
        .order_by(col(AssetVersion.registered_at).desc(), col(AssetVersion.id).desc())
        .limit(1)
    )
    return session.exec(statement).first()


@dataclass(frozen=True)
class Tainted:
    """One model version trained on a suspect dataset version."""

    asset: str
    label: str
    status: str
    dataset_label: str
    in_production: bool


def tainted_versions(
    *, session: Session, dataset: Asset, since: datetime, alias: str
) -> list[Tainted]:
    """Every version of any asset trained on a ``dataset`` version registered at/after ``since``.

    One query: the versions, joined to the dataset version they were trained on and to the
    alias row that points at them, if any.
    """
    trained = aliased(AssetVersion)
    source = aliased(AssetVersion)
    statement = (
        # SQLAlchemy's select: SQLModel's types a select of at most four columns.
        core_select(
            col(Asset.name),
            col(trained.label),
            col(trained.status),
            col(source.label),
            col(Alias.version_id),
        )
        .join(source, col(source.id) == col(trained.trained_on_id))
        .join(Asset, col(Asset.id) == col(trained.asset_id))
        .outerjoin(
            Alias,
            (col(Alias.asset_id) == col(trained.asset_id))
            & (col(Alias.version_id) == col(trained.id))
            & (col(Alias.name) == alias),
        )
        .where(col(source.asset_id) == dataset.id, col(source.registered_at) >= since)
        .order_by(col(Asset.name), col(trained.id))
    )
    rows = session.connection().execute(statement)
    return [
        Tainted(name, label, str(status), dataset_label, aliased_to is not None)
        for name, label, status, dataset_label, aliased_to in rows
    ]
