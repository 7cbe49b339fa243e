"""Opening an incident from a request (the CLI, a drill, the demo): its inputs checked against
its playbook's catalog entry, recorded, and announced as a Prefect event."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rearguard.models.enums import IncidentSource, Severity
from rearguard.models.runtime import Runtime


@dataclass(frozen=True)
class Opened:
    """What a request became: a new incident, or the unresolved one it attached to."""

    incident_id: int
    attached: bool
    status: str


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
    """Record a new incident, never attaching to one, and return its id.

    For callers that set up one incident each (drills, the demo, tests); the arguments are
    :func:`open_or_attach`'s.
    """
    return open_or_attach(
        runtime=runtime,
        type=type,
        asset=asset,
        severity=severity,
        since=since,
        summary=summary,
        actor=actor,
        source=source,
        digest=digest,
        file=file,
        dataset=dataset,
        new=True,
    ).incident_id


def open_or_attach(
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
    new: bool = False,
    announce: bool = True,
) -> Opened:
    """Validate the request and record the incident, or attach to the one already open.

    Each type takes the inputs its catalog entry names: an asset, a digest (or a file to
    hash), or a dataset and ``since``. An incident on an asset (or a dataset) claims its
    type + asset dedup key, the same claim the HTTP intake makes: while an unresolved incident
    of the type holds it, the request attaches to that one (recorded as ``incident.attached``)
    unless ``new``, so two responders at once get one incident. A new incident is announced
    as the Prefect event ``rearguard.incident.opened``.

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
        new: open a new incident even when one of the type is unresolved on the asset.
        announce: emit the Prefect event here; False when the process the incident is handed
            to emits it (the intake's playbook process), so that it is emitted once.

    Returns:
        The incident and whether it was already there.

    Raises:
        UsageError: the type's inputs are missing or do not fit.
        NotFoundError: unknown type or asset.
    """
    from rearguard.flows.prefect_infra.events import emit_incident_event
    from rearguard.models.assets.versions import get_asset
    from rearguard.models.errors import UsageError
    from rearguard.models.incidents.dedup import type_asset_key
    from rearguard.models.incidents.service import (
        attach_report,
        bind_keys,
        claim_incident_keys,
        get_incident,
        open_asset_incident,
        open_incident,
        parse_since,
    )
    from rearguard.playbooks.catalog import Input, get_playbook

    spec = get_playbook(type)
    moment = parse_since(since)
    state: dict[str, Any] = {}
    if spec.needs(Input.DIGEST):
        from rearguard.models.assets.denylist import digest_of_file, parse_digest

        if digest is not None and file is None:
            state["digest"] = parse_digest(digest)
        elif file is not None and digest is None:
            state["digest"] = digest_of_file(file)
        else:
            raise UsageError(f"{type} needs one of --digest SHA256 or --file PATH")
    elif spec.needs(Input.DATASET):
        if not dataset or (spec.needs(Input.SINCE) and moment is None):
            raise UsageError(f"{type} needs --dataset NAME and --since ISO8601")
    elif not asset:
        raise UsageError(f"{type} needs --asset NAME")
    # Only an unresolved incident takes the request: after a resolution a person asking again
    # means a new incident (the intake's window after resolution is for alert storms).
    window_s = 0.0
    with runtime.db.session() as session:
        holder_id: int | None = None
        if state or dataset:
            claimed: list[str] = []
            if dataset:
                target = get_asset(session=session, name=dataset)
                if str(target.kind) != "dataset":
                    raise UsageError(
                        f"{type} handles dataset assets; {dataset!r} is a {target.kind}"
                    )
                claimed, holder = claim_incident_keys(
                    session=session,
                    keys=[type_asset_key(type, dataset)],
                    window_s=window_s,
                    defer_to_holder=not new,
                )
                holder_id = holder.incident_id if holder else None
            if holder_id is None:
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
                bind_keys(session=session, keys=claimed, incident_id=int(incident.id or 0))
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
                defer_to_holder=not new,
                window_s=window_s,
            )
            holder_id = opening.holder.incident_id if opening.holder else None
            if opening.incident is not None:
                incident = opening.incident
        if holder_id is not None:
            incident = get_incident(session=session, incident_id=holder_id)
            attach_report(
                session=session,
                incident=incident,
                actor=actor,
                severity=severity,
                summary=summary,
                source=source,
            )
        opened = Opened(int(incident.id or 0), holder_id is not None, str(incident.status))
    if announce and not opened.attached:
        emit_incident_event("opened", incident)
    return opened
