"""Step bodies that find what an incident taints across assets: supply chain and poisoning.

Each records its decision in the incident's state the first time it runs (which versions are
affected, which production versions were tainted), so that a rerun after a crash, or after
the playbook finished, acts on the same decision instead of on a world it already changed.
"""

from __future__ import annotations

from rearguard.models.assets.denylist import deny_digest, versions_with_digest
from rearguard.models.assets.lineage import (
    last_clean_dataset_version,
    suspect_dataset_versions,
    tainted_versions,
)
from rearguard.models.assets.versions import alias_version, get_asset, set_status
from rearguard.models.enums import AssetKind, VersionStatus
from rearguard.models.errors import OperationFailed
from rearguard.models.incidents.service import get_incident, update_state
from rearguard.models.recovery.results import (
    DatasetSuspects,
    Denylisted,
    DigestHits,
    Lineage,
    TaintedVersion,
    VersionHit,
)
from rearguard.models.runtime import Runtime

_UNTRUSTED = (VersionStatus.QUARANTINED, VersionStatus.RETIRED)


def _actor(incident_type: str) -> str:
    return f"playbook:{incident_type}"


def denylist_digest(*, runtime: Runtime, incident_id: int) -> Denylisted:
    """Add the incident's digest to the denylist (a no-op when it is already there)."""
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        digest = incident.state.get("digest")
        if not digest:
            raise OperationFailed(f"incident {incident_id} records no digest")
        entry = deny_digest(
            session=session,
            digest=digest,
            reason=f"incident {incident_id} ({incident.type})",
            actor=_actor(incident.type),
            incident_id=incident_id,
        )
    return Denylisted(digest=digest, denylisted_by_incident=entry.incident_id)


def find_digest_versions(*, runtime: Runtime, incident_id: int) -> DigestHits:
    """Find every stored version of every asset holding a file with the incident's digest.

    The first run records the affected versions and which assets' production served one of
    them; later runs return that record.

    Returns:
        The versions holding the digest, and which asset's production served one.

    Raises:
        OperationFailed: no stored file has the digest (it stays denylisted).
    """
    alias = runtime.settings.registry.alias
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        digest = incident.state["digest"]
        if "affected" in incident.state:
            return DigestHits.model_validate(
                {
                    "digest": digest,
                    "affected": incident.state["affected"],
                    "production": incident.state["production_tainted"],
                    "recorded": True,
                }
            )
        hits = versions_with_digest(session=session, digest=digest)
        if not hits:
            raise OperationFailed(
                f"no stored file has digest {digest}; it is denylisted, so no version holding "
                "it can be registered or promoted from now on"
            )
        affected: dict[tuple[str, str], list[str]] = {}
        for hit in hits:
            affected.setdefault((hit.asset, hit.label), []).append(hit.path)
        production: dict[str, str] = {}
        for name in sorted({a for a, _ in affected}):
            current = alias_version(
                session=session, asset=get_asset(session=session, name=name), alias=alias
            )
            if current is not None and (name, current.label) in affected:
                production[name] = current.label
        found = DigestHits(
            digest=digest,
            affected=tuple(
                VersionHit(asset=a, label=v, paths=tuple(p)) for (a, v), p in affected.items()
            ),
            production=production,
        )
        update_state(
            session=session,
            incident=incident,
            affected=[hit.recorded() for hit in found.affected],
            production_tainted=production,
        )
    return found


def mark_dataset_suspect(*, runtime: Runtime, incident_id: int) -> DatasetSuspects:
    """Mark the versions of the incident's dataset registered at or after ``since`` suspect.

    Returns:
        The suspect labels and the last clean one (None when there is none).

    Raises:
        OperationFailed: no version of the dataset was registered at or after ``since``.
    """
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        dataset = get_asset(session=session, name=incident.asset_name or "")
        if dataset.kind != AssetKind.DATASET or incident.since is None:
            raise OperationFailed(f"incident {incident_id} names no dataset and --since")
        suspect = suspect_dataset_versions(session=session, dataset=dataset, since=incident.since)
        if not suspect:
            raise OperationFailed(
                f"no version of dataset {dataset.name} was registered at or after "
                f"{incident.since.isoformat()}; nothing is suspect"
            )
        for version in suspect:
            if version.status not in _UNTRUSTED:
                set_status(
                    session=session,
                    registry=runtime.registry,
                    asset=dataset,
                    version=version,
                    status=VersionStatus.SUSPECT,
                    actor=_actor(incident.type),
                    reason=f"incident {incident_id}: registered at or after the poisoning began",
                    incident_id=incident_id,
                )
        clean = last_clean_dataset_version(session=session, dataset=dataset, since=incident.since)
        labels = [v.label for v in suspect]
        update_state(
            session=session,
            incident=incident,
            suspect_datasets=labels,
            clean_dataset=clean.label if clean else None,
        )
    return DatasetSuspects(
        dataset=dataset.name, suspect=tuple(labels), clean=clean.label if clean else None
    )


def trace_lineage(*, runtime: Runtime, incident_id: int) -> Lineage:
    """Find every model version, of any asset, trained on a suspect version of the dataset.

    The first run records the tainted versions and which assets' production served one; later
    runs return that record.

    Returns:
        The tainted model versions, and which asset's production served one.

    Raises:
        OperationFailed: no version records lineage to a suspect dataset version.
    """
    alias = runtime.settings.registry.alias
    with runtime.db.session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        if "tainted" in incident.state:
            return Lineage.model_validate(
                {
                    "tainted": incident.state["tainted"],
                    "production": incident.state["production_tainted"],
                    "recorded": True,
                }
            )
        dataset = get_asset(session=session, name=incident.asset_name or "")
        assert incident.since is not None
        found = tainted_versions(
            session=session, dataset=dataset, since=incident.since, alias=alias
        )
        if not found:
            suspect = ", ".join(incident.state.get("suspect_datasets", []))
            raise OperationFailed(
                f"no model version records lineage to a suspect version of {dataset.name} "
                f"({suspect}); nothing to quarantine or roll back",
                hint="register models with --trained-on DATASET@LABEL to record lineage",
            )
        lineage = Lineage(
            tainted=tuple(
                TaintedVersion(asset=t.asset, label=t.label, dataset_version=t.dataset_label)
                for t in found
            ),
            production={t.asset: t.label for t in found if t.in_production},
        )
        update_state(
            session=session,
            incident=incident,
            tainted=[version.recorded() for version in lineage.tainted],
            production_tainted=lineage.production,
        )
    return lineage
