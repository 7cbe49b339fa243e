"""The ``report`` export: an incident report for regulators, as JSON.

Its fields follow the OECD's common reporting framework for AI incidents (2025): title,
description, dates, the AI system and its version, severity, harm type, actions taken and the
submitter; with the MITRE ATLAS techniques, the Code of Practice provisions the record gives
evidence for, the response metrics, and an anchor into the verifiable timeline (first and
last sequence numbers and the last hash).

What rearguard cannot know is said so rather than guessed: whether harm materialised is left
for the submitter to assess from the exposure window; the harm types are those typical of the
incident type.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TextIO

from rearguard.flows.exports.facts import IncidentFacts, VersionFacts, iso
from rearguard.flows.exports.references import (
    ATLAS_URL,
    CODE_OF_PRACTICE,
    atlas_name,
    provision,
)
from rearguard.flows.exports.render import duration, outcome_sentence

REPORT_FORMAT = "rearguard-incident-report"
FRAMEWORK = "OECD, Towards a common reporting framework for AI incidents (2025)"
_SEVERITY = {"sev1": "critical", "sev2": "high", "sev3": "moderate", "sev4": "low"}


def _version(version: VersionFacts | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {
        "label": version.label,
        "status": version.status,
        "manifest_sha256": version.digest,
        "files": version.file_count,
        "bytes": version.total_size,
        "registered_at": iso(version.registered_at),
        "registered_by": version.registered_by,
        "approved_by": version.approved_by,
        "approved_at": iso(version.approved_at),
        "role_in_incident": list(version.roles),
    }


def _seconds(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def report(facts: IncidentFacts) -> dict[str, Any]:
    """The report of an incident, as a JSON-ready dict."""
    incident, m, exposure = facts.incident, facts.milestones, facts.exposure
    profile = facts.profile
    versions = {v.label: v for v in facts.versions}
    submitter = (
        {"name": facts.resolution.actor, "role": "resolved the incident"}
        if facts.resolution
        else {"name": incident.opened_by, "role": "opened the incident"}
    )
    first_occurrence: datetime | None = incident.since or (exposure.start if exposure else None)
    return {
        "report_format": REPORT_FORMAT,
        "report_version": 1,
        "framework": FRAMEWORK,
        "incident_id": incident.id,
        "title": (
            f"{facts.playbook_title or incident.type}: {incident.asset or 'unknown asset'} "
            f"(incident {incident.id})"
        ),
        "description": "\n\n".join(
            part for part in (incident.summary, outcome_sentence(facts)) if part
        ),
        "status": incident.status,
        "dates": {
            "first_occurrence": iso(first_occurrence),
            "first_occurrence_basis": (
                "suspected start given when the incident was opened"
                if incident.since
                else "the compromised version was put in production"
                if first_occurrence
                else None
            ),
            "detected": iso(m.opened or incident.opened_at),
            "acknowledged": iso(m.acknowledged),
            "contained": iso(m.contained),
            "recovered": iso(m.recovered),
            "failed": iso(m.failed),
            "resolved": iso(m.resolved),
            "last_recorded": iso(facts.last_ts),
        },
        "ai_system": {
            "name": incident.asset,
            "component_kind": facts.asset_kind,
            "affected_version": _version(versions.get(incident.compromised or "")),
            "restored_version": _version(versions.get(incident.selected or "")),
            "production_version_now": facts.production_now,
            "production_alias": facts.alias,
            "versions_involved": [_version(v) for v in facts.versions],
        },
        "severity": {
            "level": incident.severity,
            "description": _SEVERITY.get(incident.severity, incident.severity),
            "scale": "sev1 (worst) to sev4",
        },
        "harm_type": list(profile.oecd_harm_types),
        "harm": {
            "types": list(profile.oecd_harm_types),
            "types_basis": f"typical of a {incident.type} incident; confirm before submitting",
            "description": profile.harm_description,
            "exposure_seconds": _seconds(exposure.seconds) if exposure else None,
            "exposure": (
                f"{exposure.label} served {facts.alias} for {duration(exposure.seconds)}"
                if exposure and exposure.seconds is not None
                else None
            ),
            "materialised": "not assessed by rearguard: assess from the exposure window",
        },
        "actions_taken": _actions(facts),
        "submitter": submitter,
        "metrics_seconds": {metric.key: _seconds(metric.seconds) for metric in facts.metrics}
        | {"compromised_version_in_production": _seconds(exposure.seconds) if exposure else None},
        "mitre_atlas": [
            {"id": t, "name": atlas_name(t), "url": ATLAS_URL.format(id=t)}
            for t in incident.atlas_ids
        ],
        "code_of_practice": {
            "document": CODE_OF_PRACTICE,
            "provisions": [
                {"provision": n, "summary": provision(n)[0], "evidence": provision(n)[1]}
                for n in facts.provisions
            ],
        },
        "evidence": {
            "forensic_copy": facts.evidence,
            "timeline_events": facts.event_count,
            "timeline_first_seq": facts.first_seq,
            "timeline_last_seq": facts.last_seq,
            "timeline_last_hash": facts.last_hash,
            "redacted_events": facts.count_redacted(),
            "verify": (
                f"rearguard export {incident.id} --format jsonl -o timeline.jsonl && "
                "rearguard audit verify --file timeline.jsonl"
            ),
        },
    }


def _actions(facts: IncidentFacts) -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = []
    for step in facts.steps:
        actions.append(
            {
                "time": iso(step.ended or step.started),
                "actor": step.actor,
                "action": step.name,
                "outcome": {True: "done", False: "failed", None: "interrupted"}[step.ok],
                "result": step.detail,
                "timeline_seq": step.outcome_seq or step.intent_seq,
            }
        )
    if facts.resolution is not None:
        actions.append(
            {
                "time": iso(facts.resolution.ts),
                "actor": facts.resolution.actor,
                "action": "resolve",
                "outcome": "done",
                "result": facts.resolution.note or "resolved",
                "timeline_seq": facts.resolution.seq,
            }
        )
    return actions


def write(facts: IncidentFacts, out: TextIO) -> None:
    """Write an incident's report as JSON (keys sorted)."""
    out.write(json.dumps(report(facts), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
