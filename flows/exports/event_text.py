"""One human line per timeline event, for the review documents and the CSV (no Prefect import)."""

from __future__ import annotations

from typing import Any

from rearguard.flows.timeline_text import describe

_MAX = 300


def describe_event(kind: str, action: str, data: dict[str, Any]) -> str:
    """Say in one line what an event records, from its (already redacted) data."""
    text = _describe(kind, action, data)
    return text if len(text) <= _MAX else text[: _MAX - 1] + "…"


def _describe(kind: str, action: str, data: dict[str, Any]) -> str:
    if kind == "outcome" and data.get("ok") is False:
        return f"failed: {data.get('error', 'unknown error')}"
    if kind == "outcome" and isinstance(data.get("result"), dict):
        try:
            return describe(str(data.get("step", action)), data["result"])
        except (KeyError, TypeError, AttributeError):  # a result shape step_text does not know
            return _pairs(data["result"])
    if kind == "intent":
        arguments = data.get("arguments") or {}
        return "started" + (f" ({_pairs(arguments)})" if arguments else "")
    if action == "incident.opened":
        head = f"{data.get('type', '')} {data.get('severity', '')}".strip()
        return f"{head}: {data['summary']}" if data.get("summary") else head
    if action == "incident.resolve":
        return f"resolved: {data['note']}" if data.get("note") else "resolved"
    if "from" in data and "to" in data:
        change = f"{data['from']} -> {data['to']}"
        return change + (f" ({data['reason']})" if data.get("reason") else "")
    if action.startswith("notify."):
        receipts = data.get("receipts") or {}
        return f"{data.get('title', action)} (via {', '.join(sorted(receipts)) or 'no channel'})"
    return _pairs(data)


def _pairs(values: dict[str, Any]) -> str:
    # Data comes from canonical JSON, its keys already sorted.
    return ", ".join(f"{key}={value}" for key, value in values.items())
