"""One human line per step result or timeline event, for progress output and timelines (no
Prefect import)."""

from __future__ import annotations

from typing import Any


def describe(name: str, result: dict[str, Any]) -> str:
    """One human line summarising a step's result."""
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    match name:
        case "quarantine":
            altered = result.get("altered_files") or []
            return f"{result['quarantined']} quarantined ({len(altered)} altered file(s) kept)"
        case "verify_integrity":
            total, failed = len(result["checks"]), result["failed"]
            return f"{total - len(failed)}/{total} versions intact" + (
                f"; suspect: {', '.join(failed)}" if failed else ""
            )
        case "select_known_good":
            return f"selected {result['selected']}" + (
                f" ({len(result['rejected'])} rejected)" if result["rejected"] else ""
            )
        case "await_approval":
            by = f" by {result['by']}" if result.get("by") else ""
            return f"{result['step']}: {result['decision']}{by}"
        case "rollback":
            return f"{result['alias']}: {result['from']} -> {result['to']}"
        case "validate":
            return f"{result['version']} {result['reason']}"
        case "record_diff":
            changed = ", ".join(f"{f['path']} {f['change']}" for f in result["files"])
            return f"{result['from']} (tampered) vs {result['to']} (restored): " + (
                changed or "no difference"
            )
        case "confirm_degradation":
            return f"{result['version']} fails its validation check ({result['reason']})"
        case "notify":
            return f"{result['event']} queued for {', '.join(result['receipts']) or 'no channel'}"
        case _:
            return ", ".join(f"{k}={v}" for k, v in result.items())


def event_summary(action: str, data: dict[str, Any]) -> str:
    """One line saying what a timeline event recorded (``incident show``, drill runs)."""
    if "error" in data:
        return f"failed: {data['error']}"
    if "result" in data:
        return describe(data.get("step", action), data["result"])
    if action.startswith("incident.") and "to" in data:
        return f"{data['from']} -> {data['to']}" + (f": {data['reason']}" if data["reason"] else "")
    if action.startswith("version.") or action == "alias.moved":
        return f"{data.get('from')} -> {data.get('to')}" + (
            f" ({data['reason']})" if data.get("reason") else ""
        )
    if action == "incident.opened":
        return f"{data['type']} {data['severity']}: {data.get('summary') or ''}".strip()
    if action.startswith("notify."):
        return ", ".join(data.get("receipts", {}))
    if action.startswith("approval."):
        waits = f"waits for {', '.join(data.get('approvers', []))}"
        detail = (
            data.get("message")
            or data.get("comment")
            or (waits if action == "approval.requested" else "")
        )
        return f"{data.get('step')} (round {data.get('round')})" + (f": {detail}" if detail else "")
    if action == "sweep.found":
        labels = ", ".join(v["version"] for v in data.get("versions", []))
        return f"{data.get('incident_type')}: failing {labels}"
    return ""
