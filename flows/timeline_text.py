"""The one describer: a step's result or a recorded timeline event, in one human line.

The CLI's progress (as a step ends), ``incident show``, the exports, the drills' records and
anything else that says what happened all ask here, so a step's line reads the same live as it
does later from the audit chain. A step's line is its typed result's own
:meth:`~rearguard.models.recovery.results.StepResult.describe`; other events are described by
their action. No Prefect import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from rearguard.models.recovery.results import (
    HookRunRecord,
    StepResult,
    UnreadResult,
    outcome_result,
)

MAX_CHARS = 300
"""A line longer than this is cut, with an ellipsis (a long diff summary, a long error)."""


def describe_result(result: StepResult) -> str:
    """One human line summarising a step's result (as the step's progress prints it)."""
    return _bounded(_result_line(result))


def _result_line(result: StepResult) -> str:
    # A result of a shape this version does not know holds its values as recorded.
    return _pairs(result.values) if isinstance(result, UnreadResult) else result.describe()


def describe_event(kind: str, action: str, data: Mapping[str, Any]) -> str:
    """One human line saying what a recorded timeline event records.

    Args:
        kind: the event's kind (``intent``, ``outcome``, ``decision``...).
        action: the event's action (a step's name, ``incident.opened``, ``notify.recovered``...).
        data: the event's data, as recorded (redacted first where it is exported).
    """
    return _bounded(_describe(kind, action, data))


def _describe(kind: str, action: str, data: Mapping[str, Any]) -> str:
    if kind == "outcome" and action.startswith("hook."):
        try:
            return HookRunRecord.model_validate(data).describe()
        except ValidationError:
            return _pairs(data)
    if action.startswith("notification."):
        return _notification(action.removeprefix("notification."), data)
    if "error" in data or (kind == "outcome" and data.get("ok") is False):
        return f"failed: {data.get('error') or 'unknown error'}"
    if kind == "outcome" and (result := outcome_result(action, data)) is not None:
        return _result_line(result)
    if kind == "intent":
        arguments = data.get("arguments") or {}
        given = _pairs(arguments)
        return "started" + (f" ({given})" if given else "")
    if action == "incident.opened":
        head = f"{data.get('type', '')} {data.get('severity', '')}".strip()
        return f"{head}: {data['summary']}" if data.get("summary") else head
    if action == "incident.attached":
        again = f"reported again ({data.get('source', '')}, {data.get('severity', '')})"
        return f"{again}: {data['summary']}" if data.get("summary") else again
    if action == "incident.resolve":
        return f"resolved: {data['note']}" if data.get("note") else "resolved"
    if action.startswith("approval."):
        return _approval(action, data)
    if action == "sweep.found":
        labels = ", ".join(str(v.get("version")) for v in data.get("versions", []))
        return f"{data.get('incident_type')}: failing {labels}"
    if action.startswith("notify."):
        receipts = data.get("receipts") or {}
        return f"{data.get('title', action)} (via {', '.join(sorted(receipts)) or 'no channel'})"
    if "from" in data and "to" in data:
        change = f"{data['from']} -> {data['to']}"
        return change + (f" ({data['reason']})" if data.get("reason") else "")
    return _pairs(data)


def _notification(outcome: str, data: Mapping[str, Any]) -> str:
    """The dispatcher's delivery of one outbox row (delivered, pending, failed), a person's
    retry of one, or a test message."""
    event, channel = data.get("event") or outcome, data.get("channel", "?")
    if outcome == "retry":
        return f"{event} via {channel} queued again (it was {data.get('was')})"
    attempts = f" (attempt {data['attempts']})" if "attempts" in data else ""
    if data.get("error"):
        return f"{event} via {channel} {outcome}{attempts}: {data['error']}"
    return f"{event} delivered via {channel}{attempts}"


# How each proof of an approver's identity reads (the review shows it beside the decision).
_PROOFS = {
    "signature": "signed with key {key}",
    "code": "one-time code by {channel}",
    "slack": "Slack-signed",
    "self-asserted": "self-asserted",
}


def _approval(action: str, data: Mapping[str, Any]) -> str:
    head = f"{data.get('step')} (round {data.get('round')})"
    proof = _PROOFS.get(str(data.get("proof")))
    if proof:
        key, channel = data.get("key") or "?", data.get("channel") or "their contact"
        head += ", " + proof.format(key=key, channel=channel)
    if action == "approval.given":
        head += f", approval {data.get('approvals')} of {data.get('required')}"
    waits = f"waits for {', '.join(data.get('approvers', []))}"
    detail = (
        data.get("message")
        or data.get("reason")
        or data.get("comment")
        or (waits if action == "approval.requested" else "")
    )
    return head + (f": {detail}" if detail else "")


def _pairs(values: Mapping[str, Any]) -> str:
    """``key=value, ...`` in words: lists joined, nested mappings as ``key=value``, and None
    (an argument left to its default) left out; never a Python repr."""
    # Data comes from canonical JSON, its keys already sorted.
    return ", ".join(f"{key}={_text(value)}" for key, value in values.items() if value is not None)


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return " ".join(f"{key}={_text(item)}" for key, item in value.items() if item is not None)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_text(item) for item in value) + "]"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"
