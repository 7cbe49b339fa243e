"""Opening an incident from a request (the CLI, a drill, the demo): its inputs checked against
its playbook's catalog entry, recorded, and announced as a Prefect event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rearguard.models.enums import IncidentSource, Severity
from rearguard.models.runtime import Runtime


def open_and_record(
    *,
    runtime: Runtime,
    type: str,
    asset: str | None,
    severity: Severity,
    since: str | None,
    summary: str,
    actor: str,
    source: IncidentSource = IncidentSource.CLI,
    digest: str | None = None,
    file: Path | None = None,
    dataset: str | None = None,
) -> int:
    """Validate the request and record the incident; return its id (nothing runs yet).

    Each type takes the inputs its catalog entry names: an asset, a digest (or a file to
    hash), or a dataset and ``since``. An incident on one asset claims its type + asset
    dedup key, the same path the HTTP intake takes, so later alerts attach to it. Then the
    Prefect event ``rearguard.incident.opened`` is emitted.

    Args:
        runtime: the process runtime.
        type: the incident type (a playbook of the catalog).
        asset: the asset, for the types that act on one.
        severity: the incident's severity.
        since: when the compromise may have begun (ISO 8601), if known.
        summary: what was reported.
        actor: who opens it.
        source: where the request came from.
        digest: the malicious file's SHA-256 (``supply_chain``).
        file: or the malicious file itself, hashed here.
        dataset: the poisoned dataset (``data_poisoning``).

    Returns:
        The incident's id.

    Raises:
        UsageError: the type's inputs are missing or do not fit.
        NotFoundError: unknown type or asset.
    """
    from rearguard.flows.prefect_infra.events import emit_incident_event
    from rearguard.models.assets.versions import get_asset
    from rearguard.models.errors import UsageError
    from rearguard.models.incidents.service import open_asset_incident, open_incident, parse_since
    from rearguard.playbooks.catalog import Input, get_playbook

    spec = get_playbook(type)
    moment = parse_since(since)
    state: dict[str, Any] = {}
    if spec.needs(Input.DIGEST):
        from rearguard.models.assets.denylist import digest_of_file, parse_digest

        if (digest is None) == (file is None):
            raise UsageError(f"{type} needs one of --digest SHA256 or --file PATH")
        state["digest"] = parse_digest(digest) if digest is not None else digest_of_file(file)  # type: ignore[arg-type]
    elif spec.needs(Input.DATASET):
        if not dataset or (spec.needs(Input.SINCE) and moment is None):
            raise UsageError(f"{type} needs --dataset NAME and --since ISO8601")
    elif not asset:
        raise UsageError(f"{type} needs --asset NAME")
    with runtime.db.session() as session:
        if state or dataset:
            if dataset:
                target = get_asset(session=session, name=dataset)
                if str(target.kind) != "dataset":
                    raise UsageError(
                        f"{type} handles dataset assets; {dataset!r} is a {target.kind}"
                    )
            incident = open_incident(
                session=session,
                type=type,
                actor=actor,
                asset_name=dataset,
                severity=severity,
                since=moment,
                summary=summary,
                source=source,
                atlas_ids=list(spec.atlas_ids),
                state=state,
            )
        else:
            opening = open_asset_incident(
                session=session,
                type=type,
                asset=str(asset),
                asset_kinds=spec.asset_kinds,
                atlas_ids=spec.atlas_ids,
                alias=runtime.settings.registry.alias,
                actor=actor,
                severity=severity,
                since=moment,
                summary=summary,
                source=source,
                window_s=runtime.settings.intake.dedup_window_s,
            )
            incident = opening.incident
            assert incident is not None  # the CLI never defers to an open incident
        incident_id = int(incident.id or 0)
    emit_incident_event("opened", incident)
    return incident_id
