"""From request bodies to :class:`IncomingAlert`: the Alertmanager mapping rules and the
native event."""

from __future__ import annotations

from dataclasses import replace

from rearguard.flows.intake.schemas import AlertmanagerAlert, AlertmanagerWebhook, NativeEvent
from rearguard.models.config.intake import AlertRule
from rearguard.models.enums import Severity
from rearguard.models.errors import RearguardError
from rearguard.models.incidents.alerts import IncomingAlert
from rearguard.playbooks.catalog import Input, get_playbook

# Alertmanager severities as Prometheus rules usually spell them.
_SEVERITY_WORDS = {
    "critical": Severity.SEV1,
    "page": Severity.SEV1,
    "error": Severity.SEV2,
    "high": Severity.SEV2,
    "major": Severity.SEV2,
    "warning": Severity.SEV3,
    "medium": Severity.SEV3,
    "minor": Severity.SEV4,
    "low": Severity.SEV4,
    "info": Severity.SEV4,
}
_DEFAULT_RULE = AlertRule()


def parse_severity(value: str | None) -> Severity:
    """``sev1``..``sev4`` or a usual word (critical, warning, ...); anything else is sev2."""
    text = (value or "").strip().lower()
    if text in Severity._value2member_map_:
        return Severity(text)
    return _SEVERITY_WORDS.get(text, Severity.SEV2)


def from_native(event: NativeEvent) -> IncomingAlert:
    """A native event as an alert; an unknown type is a problem the caller reports as 422."""
    return _with_playbook(
        IncomingAlert(
            source=f"native:{event.source}",
            type=event.type,
            asset=event.asset,
            severity=event.severity,
            summary=event.summary,
            dedup_key=f"native:{event.dedup_key}" if event.dedup_key else None,
            since=event.since,  # in UTC already (the schema's Moment)
            labels=dict(event.labels),
        )
    )


def from_alertmanager(payload: AlertmanagerWebhook, rules: list[AlertRule]) -> list[IncomingAlert]:
    """Each alert of a webhook, mapped by the first rule whose ``match`` labels it has."""
    return [_map_alert(alert, payload, rules) for alert in payload.alerts]


def _map_alert(
    alert: AlertmanagerAlert, payload: AlertmanagerWebhook, rules: list[AlertRule]
) -> IncomingAlert:
    labels = {**payload.commonLabels, **alert.labels}
    rule = next(
        (r for r in rules if all(labels.get(k) == v for k, v in r.match.items())), _DEFAULT_RULE
    )
    incident_type = rule.type or labels.get(rule.type_label)
    asset = rule.asset or labels.get(rule.asset_label)
    annotations = {**payload.commonAnnotations, **alert.annotations}
    summary = annotations.get("summary") or annotations.get("description") or ""
    problem = None
    if not incident_type or not asset:
        missing = "an incident type" if not incident_type else "an asset"
        problem = (
            f"no mapping rule gives {missing} for alert {labels.get('alertname', '?')!r} "
            f"(labels {rule.type_label!r} and {rule.asset_label!r}, or [[intake.alertmanager]])"
        )
    mapped = IncomingAlert(
        source="alertmanager",
        status=alert.status,
        type=incident_type,
        asset=asset,
        severity=parse_severity(rule.severity or labels.get(rule.severity_label)),
        summary=summary[:10_000],
        dedup_key=f"alertmanager:{alert.fingerprint}" if alert.fingerprint else None,
        # No ``since`` from ``startsAt``: when an alert started firing is not when the
        # compromise started, and a ``since`` after a good version's registration would
        # exclude it from the rollback.
        labels=labels,
        problem=problem,
    )
    return mapped if problem else _with_playbook(mapped)


def _with_playbook(alert: IncomingAlert) -> IncomingAlert:
    try:
        spec = get_playbook(alert.type or "")
    except RearguardError as exc:
        return replace(alert, problem=f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
    if spec.inputs != (Input.ASSET,):
        # A digest or a dataset and its since are not in an alert: open those from the CLI.
        needs = " and ".join(spec.inputs)
        return replace(alert, problem=f"{spec.type} needs {needs}; open it with the CLI")
    return replace(alert, asset_kinds=spec.asset_kinds, atlas_ids=spec.atlas_ids)
