"""One human line per step result, for progress output and timelines (no Prefect import)."""

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
