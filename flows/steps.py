"""Playbook steps as Prefect tasks.

Every step writes an intent event before its body runs and an outcome event after, both
through the audit chain, so a crash between them shows in the timeline as an intent without an
outcome. The bodies live in ``rearguard.models.recovery`` and are plain Python; ``run_step``
is the one place that adds the events, the progress reports and the failpoints, and it is what
both the Prefect tasks and the plain-Python benchmark call. A step's typed result
(``rearguard.models.recovery.results``) is what the task returns and, in its recorded form,
what the outcome event holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from rearguard.flows.approvals import gate as approval_gate
from rearguard.flows.prefect_infra.events import emit_incident_event
from rearguard.flows.timeline_text import describe_result
from rearguard.models.audit.chain import append_event
from rearguard.models.db.tables import Incident
from rearguard.models.enums import EventKind, IncidentStatus
from rearguard.models.errors import RearguardError
from rearguard.models.failpoints import failpoint
from rearguard.models.incidents.service import get_incident
from rearguard.models.metrics.counters import count_step
from rearguard.models.recovery import (
    containment,
    degradation,
    hooks,
    selection,
    taint,
    tamper_diff,
)
from rearguard.models.recovery import rollback as rollback_bodies
from rearguard.models.recovery.results import StepResult
from rearguard.models.recovery.rollback import Concluded
from rearguard.models.runtime import Runtime, current_runtime
from rearguard.notifications.notify import notify as notify_body
from rearguard.notifications.notify import notify_legal as notify_legal_body

R = TypeVar("R", bound=StepResult)


def _record(
    runtime: Runtime, *, incident: Incident, kind: EventKind, action: str, data: dict[str, Any]
) -> None:
    """Append a step's intent or outcome event; an outcome is counted too (its duration, and
    whether it failed), in the same transaction."""
    with runtime.db.transaction() as connection:
        append_event(
            connection,
            kind=kind,
            action=action,
            actor=f"playbook:{incident.type}",
            incident_id=incident.id,
            # A multi-asset playbook names the asset a step acts on in its arguments.
            asset=data.get("asset") or incident.asset_name,
            version=data.get("version") if isinstance(data.get("version"), str) else None,
            data=data,
        )
        if kind == EventKind.OUTCOME:
            count_step(
                connection,
                incident_type=incident.type,
                step=action,
                seconds=float(data["seconds"]),
                ok=bool(data["ok"]),
            )


def run_step(
    name: str, body: Callable[..., R], *, runtime: Runtime, incident_id: int, **arguments: Any
) -> R:
    """Run one step body between its intent and outcome events.

    Args:
        name: the step's name, as recorded.
        body: the plain-Python step body.
        runtime: the process runtime.
        incident_id: the incident the step acts for.
        **arguments: further keyword arguments of the body (JSON-friendly; recorded).

    Returns:
        The body's result, recorded in the outcome event in its recorded form.

    Raises:
        RearguardError: the body failed; the outcome event records why.
    """
    runtime.report(name, "start", "")
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
    _record(
        runtime,
        incident=incident,
        kind=EventKind.INTENT,
        action=name,
        data={"step": name, "arguments": _recordable(arguments), **_asset_of(arguments)},
    )
    failpoint(f"{name}.after_intent")
    started = time.perf_counter()
    try:
        result = body(runtime=runtime, incident_id=incident_id, **arguments)
    except RearguardError as exc:
        elapsed = round(time.perf_counter() - started, 4)
        _record(
            runtime,
            incident=incident,
            kind=EventKind.OUTCOME,
            action=name,
            data={
                "step": name,
                "ok": False,
                "error": exc.message,
                "seconds": elapsed,
                **_asset_of(arguments),
            },
        )
        runtime.report(name, "fail", exc.message)
        raise
    elapsed = round(time.perf_counter() - started, 4)
    failpoint(f"{name}.before_outcome")
    _record(
        runtime,
        incident=incident,
        kind=EventKind.OUTCOME,
        action=name,
        data={
            "step": name,
            "ok": True,
            "seconds": elapsed,
            "result": result.recorded(),
            **_asset_of(arguments),
        },
    )
    runtime.report(name, "done", describe_result(result))
    _announce_status_change(runtime, incident)
    return result


def _asset_of(arguments: dict[str, Any]) -> dict[str, Any]:
    asset = arguments.get("asset")
    return {"asset": asset} if asset else {}


def _announce_status_change(runtime: Runtime, before: Incident) -> None:
    """Emit the Prefect event of a status a step moved the incident to (e.g. ``contained``)."""
    with runtime.db.read_session() as session:
        after = get_incident(session=session, incident_id=int(before.id or 0))
    if after.status != before.status:
        emit_incident_event(str(after.status), after)


def _recordable(arguments: dict[str, Any]) -> dict[str, Any]:
    # Verification results are already in the previous outcome; record only their labels.
    return {
        key: (sorted(value) if key == "checks" and isinstance(value, dict) else value)
        for key, value in arguments.items()
    }


def _task(name: str, body: Callable[..., R]) -> Task[..., Coroutine[Any, Any, R]]:
    async def step(incident_id: int, **arguments: Any) -> R:
        runtime = current_runtime()
        return await asyncio.to_thread(
            partial(run_step, name, body, runtime=runtime, incident_id=incident_id, **arguments)
        )

    step.__name__ = name
    step.__qualname__ = name
    step.__doc__ = body.__doc__
    return task(name=name, cache_policy=NO_CACHE, persist_result=False)(step)


quarantine = _task("quarantine", containment.quarantine)
verify_integrity = _task("verify_integrity", selection.verify_integrity)
select_known_good = _task("select_known_good", selection.select_known_good)
await_approval = _task("await_approval", approval_gate.await_approval)
rollback = _task("rollback", rollback_bodies.rollback)
validate = _task("validate", rollback_bodies.validate)
notify = _task("notify", notify_body)
record_diff = _task("record_diff", tamper_diff.record_diff)
confirm_degradation = _task("confirm_degradation", degradation.confirm_degradation)
verify_production = _task("verify_production", containment.verify_production)
run_hook = _task("run_hook", hooks.run_hook)
notify_legal = _task("notify_legal", notify_legal_body)
denylist_digest = _task("denylist_digest", taint.denylist_digest)
find_digest_versions = _task("find_digest_versions", taint.find_digest_versions)
mark_dataset_suspect = _task("mark_dataset_suspect", taint.mark_dataset_suspect)
trace_lineage = _task("trace_lineage", taint.trace_lineage)


async def conclude(
    incident_id: int, status: IncidentStatus, reason: str | None = None
) -> Concluded:
    """Record the incident's end state (a state change, not a step: no intent/outcome pair)."""
    runtime = current_runtime()
    ended = await asyncio.to_thread(
        rollback_bodies.conclude,
        runtime=runtime,
        incident_id=incident_id,
        status=status,
        reason=reason,
    )
    if ended.changed:
        with runtime.db.read_session() as session:
            emit_incident_event(str(status), get_incident(session=session, incident_id=incident_id))
    return ended
