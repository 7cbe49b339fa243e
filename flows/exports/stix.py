"""The ``stix`` export: the incident as a STIX 2.1 bundle.

- an ``incident`` with the OASIS Incident Core extension (determination, investigation status,
  criticality from the severity, incident types, detection method, recoverability);
- an ``infrastructure`` for the affected AI asset, which the incident ``impacts``;
- an ``attack-pattern`` per MITRE ATLAS technique, its id in ``external_references``
  (``source_name: mitre-atlas``);
- a ``course-of-action`` per action taken (each playbook step run, the resolution), each
  referencing its timeline event by sequence number and SHA-256 hash, so a reader holding the
  verified ``jsonl`` export can tie the two; each ``mitigates`` the attack patterns;
- ``relationship`` objects linking them.

Deterministic: every id is a UUIDv5 of the incident's ``incident.opened`` event hash (unique
to this database's chain) and the object's role; every timestamp comes from the database; keys
are sorted and objects are in a fixed order.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

from rearguard.flows.exports.facts import IncidentFacts
from rearguard.flows.exports.references import ATLAS_URL, atlas_name
from rearguard.flows.exports.render import duration, outcome_sentence

INCIDENT_CORE_EXTENSION = "extension-definition--ef765651-680c-498d-9894-99799f2fa126"
# The namespace of rearguard's STIX ids (a fixed, arbitrary UUIDv5 of a URL).
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:rearguard:stix")

_CRITICALITY = {"sev1": 95, "sev2": 70, "sev3": 40, "sev4": 15}
_DETECTION = {
    "cli": "human-review",
    "slack": "human-review",
    "alert": "automated-tool",
    "sweep": "automated-tool",
    "drill": "automated-tool",
}
# Steps that tell people rather than act on the asset: actions taken, not mitigations.
_NOT_MITIGATING = frozenset({"notify"})
_ORDER = {
    "incident": 0,
    "infrastructure": 1,
    "attack-pattern": 2,
    "course-of-action": 3,
    "relationship": 4,
}


def stix_time(moment: datetime) -> str:
    """A STIX timestamp: UTC, millisecond precision, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Ids:
    def __init__(self, facts: IncidentFacts) -> None:
        incident = facts.incident
        self.base = facts.first_hash or f"incident-{incident.id}-{stix_time(incident.opened_at)}"

    def __call__(self, kind: str, role: str) -> str:
        return f"{kind}--{uuid.uuid5(NAMESPACE, f'{self.base}/{kind}/{role}')}"


def bundle(facts: IncidentFacts) -> dict[str, Any]:
    """The STIX 2.1 bundle of an incident, as a JSON-ready dict."""
    ids = _Ids(facts)
    incident = facts.incident
    created = stix_time(incident.opened_at)
    last = max(d for d in (incident.updated_at, facts.last_ts, incident.opened_at) if d)
    modified = stix_time(last)
    incident_id = ids("incident", "incident")
    objects: list[dict[str, Any]] = [_incident(facts, incident_id, created, modified)]
    relationships: list[tuple[str, str, str, str]] = []

    if incident.asset:
        infrastructure_id = ids("infrastructure", incident.asset)
        objects.append(
            {
                "type": "infrastructure",
                "spec_version": "2.1",
                "id": infrastructure_id,
                "created": created,
                "modified": created,
                "name": f"{incident.asset} ({facts.asset_kind or 'AI asset'})",
                "description": _asset_description(facts),
            }
        )
        relationships.append((incident_id, "impacts", infrastructure_id, created))

    patterns = []
    for technique in incident.atlas_ids:
        pattern_id = ids("attack-pattern", technique)
        patterns.append(pattern_id)
        objects.append(
            {
                "type": "attack-pattern",
                "spec_version": "2.1",
                "id": pattern_id,
                "created": created,
                "modified": created,
                "name": atlas_name(technique),
                "external_references": [
                    {
                        "source_name": "mitre-atlas",
                        "external_id": technique,
                        "url": ATLAS_URL.format(id=technique),
                    }
                ],
            }
        )
        relationships.append((incident_id, "related-to", pattern_id, created))

    for action in _actions(facts):
        action_id = ids("course-of-action", str(action["seq"]))
        objects.append(
            {
                "type": "course-of-action",
                "spec_version": "2.1",
                "id": action_id,
                "created": action["ts"],
                "modified": action["ts"],
                "name": action["name"],
                "description": action["description"],
                "external_references": [
                    {
                        "source_name": "rearguard-timeline",
                        "external_id": f"incident-{incident.id}/event-{action['seq']}",
                        "description": "the timeline event that records this action",
                        **({"hashes": {"SHA-256": action["hash"]}} if action["hash"] else {}),
                    }
                ],
            }
        )
        relationships.append((incident_id, "related-to", action_id, action["ts"]))
        if action["mitigates"]:
            for pattern_id in patterns:
                relationships.append((action_id, "mitigates", pattern_id, action["ts"]))

    for source, kind, target, moment in relationships:
        objects.append(
            {
                "type": "relationship",
                "spec_version": "2.1",
                "id": ids("relationship", f"{source}/{kind}/{target}"),
                "created": moment,
                "modified": moment,
                "relationship_type": kind,
                "source_ref": source,
                "target_ref": target,
            }
        )
    objects.sort(key=lambda o: (_ORDER[o["type"]], o["created"], o["id"]))
    return {"type": "bundle", "id": ids("bundle", "bundle"), "objects": objects}


def _incident(
    facts: IncidentFacts, incident_id: str, created: str, modified: str
) -> dict[str, Any]:
    incident, m = facts.incident, facts.milestones
    extension: dict[str, Any] = {
        "extension_type": "property-extension",
        "determination": "successful-attempt" if facts.alteration_found else "suspected",
        "investigation_status": _investigation_status(facts),
        "criticality": _CRITICALITY.get(incident.severity, 70),
        "incident_types": list(facts.profile.stix_incident_types),
        "detection_methods": [_DETECTION.get(incident.source, "automated-tool")],
        "impacted_entity_counts": {"system": 1} if incident.asset else {},
    }
    if m.recovered is not None:
        extension["recoverability"] = "regular"
    elif m.failed is not None:
        extension["recoverability"] = "supplemented" if m.resolved else "extended"
    if not extension["impacted_entity_counts"]:
        del extension["impacted_entity_counts"]
    description = "\n\n".join(
        part for part in (incident.summary, outcome_sentence(facts), incident.reason) if part
    )
    return {
        "type": "incident",
        "spec_version": "2.1",
        "id": incident_id,
        "created": created,
        "modified": modified,
        "name": f"Incident {incident.id}: {incident.type} on {incident.asset or '-'}",
        "description": description,
        "labels": [incident.type, incident.severity],
        "external_references": [
            {"source_name": "rearguard", "external_id": f"incident-{incident.id}"}
        ],
        "extensions": {INCIDENT_CORE_EXTENSION: extension},
    }


def _investigation_status(facts: IncidentFacts) -> str:
    if facts.milestones.resolved is not None:
        return "closed"
    if not facts.steps and facts.milestones.acknowledged is None:
        return "new"
    return "open"


def _asset_description(facts: IncidentFacts) -> str:
    lines = [f"AI asset {facts.incident.asset}; {facts.alias} now serves {facts.production_now}."]
    for version in facts.versions:
        roles = ", ".join(version.roles) or "involved"
        lines.append(
            f"{version.label}: {version.status}, manifest sha256 {version.digest} ({roles})"
        )
    return "\n".join(lines)


def _actions(facts: IncidentFacts) -> list[dict[str, Any]]:
    actions = []
    for step in facts.steps:
        if step.ended is not None:
            state = "done" if step.ok else "failed"
            took = duration((step.ended - step.started).total_seconds())
            description = f"{step.detail}. By {step.actor}; took {took}."
        else:
            state, description = "interrupted", f"Started by {step.actor}; no outcome recorded."
        actions.append(
            {
                "seq": step.outcome_seq or step.intent_seq,
                "ts": stix_time(step.ended or step.started),
                "hash": step.outcome_hash,
                "name": f"{step.name} ({state})",
                "description": description,
                "mitigates": step.ok is True and step.name not in _NOT_MITIGATING,
            }
        )
    if facts.resolution is not None:
        resolution = facts.resolution
        actions.append(
            {
                "seq": resolution.seq,
                "ts": stix_time(resolution.ts),
                "hash": resolution.hash,
                "name": "resolve",
                "description": f"Resolved by {resolution.actor}"
                + (f": {resolution.note}" if resolution.note else "."),
                "mitigates": False,
            }
        )
    return actions


def write(facts: IncidentFacts, out: TextIO) -> None:
    """Write an incident as a STIX 2.1 bundle (JSON, keys sorted)."""
    out.write(json.dumps(bundle(facts), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
