"""Running a recovery drill: the real playbook against a sandbox, with its result recorded.

A run builds a sandbox of the drilled asset (``rearguard.models.drills.sandbox``), plants the
compromise that fits the playbook (``rearguard.models.drills.injectors``), opens an incident
of source ``drill`` there and runs the real playbook on it: every step, hook and notification
happens in the sandbox, in drill mode. Production is read, never written. The application
database gets the run (``drill_run``), a drill incident (hidden from ``incident list``), the
``drill.started`` / ``drill.finished`` events, and a ``drill_result`` notification, which goes
to the asset owner too when the drill failed or missed its recovery-time objective.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from rearguard.models.db.tables import DrillRun, Incident, TimelineEvent
from rearguard.models.enums import EventKind, IncidentSource, IncidentStatus, Severity
from rearguard.models.errors import RearguardError
from rearguard.models.runtime import Runtime
from rearguard.notifications.routing import Target
from rearguard.playbooks.catalog import get_playbook

PlaybookRunner = Callable[[Runtime, int], Incident]
"""Runs an incident's playbook to its end on a runtime (the CLI's prints its progress)."""

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _run_playbook(runtime: Runtime, incident_id: int) -> Incident:
    from rearguard.flows.run_playbook import run_playbook

    return run_playbook(runtime=runtime, incident_id=incident_id)


def run_drill(
    *,
    runtime: Runtime,
    name: str,
    trigger: str = "manual",
    run: PlaybookRunner = _run_playbook,
    notify_also: Sequence[Target] = (),
) -> DrillRun:
    """Run one drill now and record its result.

    The playbook runs on the sandbox's runtime, bound to that run alone: incidents' playbooks
    may run at the same time in this process, on the application's runtime.

    Args:
        runtime: the application's runtime.
        name: the drill.
        trigger: ``manual``, ``schedule`` or ``slack``.
        run: how the playbook is run on the sandbox's runtime.
        notify_also: where the result goes besides the drill's destinations (the
            response_url of the Slack command that asked for the run).

    Returns:
        The finished drill run (``pass`` or ``fail``, with the reason).

    Raises:
        NotFoundError: unknown drill.
    """
    from rearguard.models.drills.service import get_drill, start_run

    with runtime.db.session() as session:
        drill = get_drill(session=session, name=name)
        incident = _open_drill_incident(session, drill.playbook, drill.asset_name, name)
        record = start_run(session=session, drill=drill, trigger=trigger, incident_id=incident.id)
    try:
        result = _exercise(runtime, drill.playbook, drill.asset_name, record, run)
    except Exception as exc:
        # Record the run as failed before the error goes on: it must not stay "running".
        failed = {"status": "fail", "reason": f"internal error: {exc!r}"}
        _finish(runtime, name, record, failed, notify_also)
        raise
    return _finish(runtime, name, record, result, notify_also)


def _open_drill_incident(session: Session, playbook: str, asset: str, name: str) -> Incident:
    """The application's record of the drill: an incident of source ``drill``."""
    from rearguard.models.incidents.service import open_incident

    return open_incident(
        session=session,
        type=playbook,
        actor=f"drill:{name}",
        asset_name=asset,
        severity=Severity.SEV4,
        summary=f"recovery drill {name}: the playbook runs on a sandbox; production is untouched",
        source=IncidentSource.DRILL,
        atlas_ids=list(get_playbook(playbook).atlas_ids),
        state={"drill": name},
    )


def _exercise(
    runtime: Runtime, playbook: str, asset: str, record: DrillRun, run: PlaybookRunner
) -> dict[str, Any]:
    """Build the sandbox, inject, run the playbook; return the fields of the run's result."""
    from rearguard.flows.opening import open_and_record
    from rearguard.models.drills.sandbox import create_sandbox

    result: dict[str, Any] = {"status": "fail"}
    sandbox = None
    try:
        rule = get_playbook(playbook).drill_rule()
        sandbox = create_sandbox(runtime=runtime, asset=asset, name=f"run-{record.id}")
        result["sandbox"] = str(sandbox.home)
        injected = rule.inject(playbook=playbook, runtime=sandbox.runtime, asset=asset)
        result["injected"] = injected
        inputs = {"asset": asset, "since": None, **injected.get("incident", {})}
        incident_id = open_and_record(
            runtime=sandbox.runtime,
            type=playbook,
            severity=Severity.SEV2,
            summary=f"drill {record.drill_name} run {record.id}: simulated "
            f"{injected.get('compromise', 'compromise')}",
            actor=f"drill:{record.drill_name}",
            source=IncidentSource.DRILL,
            **inputs,
        )
        result["sandbox_incident_id"] = incident_id
        ended = run(sandbox.runtime, incident_id)
        result.update(_read_sandbox(sandbox.runtime, incident_id, rule.aims_for))
        if ended.status == rule.aims_for:
            result["status"] = "pass"
        else:
            result["reason"] = (
                ended.reason or f"the playbook ended {ended.status}, not {rule.aims_for}"
            )
    except RearguardError as exc:
        result["reason"] = f"the drill could not run: {exc.message}"
    finally:
        if sandbox is not None:
            keep = runtime.settings.drills.keep_sandboxes
            remove = keep == "none" or (keep == "failed" and result["status"] == "pass")
            sandbox.close(remove=remove)
            if remove:
                result.pop("sandbox", None)
    return result


def _read_sandbox(runtime: Runtime, incident_id: int, aims_for: IncidentStatus) -> dict[str, Any]:
    """Per-step results, recovery time and the compact timeline of the sandbox's incident.

    The recovery time runs from the incident's opening to the status its playbook aims for.
    """
    from rearguard.flows.timeline_text import describe_event
    from rearguard.models.audit.chain import events_for_incident

    with runtime.db.read_session() as session:
        events = events_for_incident(session=session, incident_id=incident_id)
    steps: list[dict[str, Any]] = []
    waiting: dict[str, int] = {}  # step -> its place in steps, between intent and outcome
    opened = recovered = None
    timeline = []
    for event in events:
        data = json.loads(event.data)
        timeline.append(
            {
                "seq": event.seq,
                "ts": event.ts,
                "kind": event.kind,
                "action": event.action,
                "detail": describe_event(event.kind, event.action, data),
            }
        )
        if event.kind == EventKind.INTENT:
            waiting[event.action] = len(steps)
            steps.append({"step": event.action, "ok": False, "error": "no outcome recorded"})
        elif event.kind == EventKind.OUTCOME and event.action in waiting:
            steps[waiting.pop(event.action)] = {
                "step": event.action,
                "ok": bool(data.get("ok")),
                "seconds": data.get("seconds"),
                "detail": describe_event(event.kind, event.action, data),
            }
        elif event.action == "incident.opened":
            opened = _moment(event)
        elif event.action == f"incident.{aims_for}":
            recovered = _moment(event)
    return {
        "steps": steps,
        "timeline": timeline,
        "timeline_digest": events[-1].hash if events else None,
        "recovery_s": round((recovered - opened).total_seconds(), 3)
        if opened and recovered
        else None,
    }


def _moment(event: TimelineEvent) -> datetime:
    return datetime.strptime(event.ts, _TS_FORMAT).replace(tzinfo=UTC)


def _finish(
    runtime: Runtime,
    name: str,
    record: DrillRun,
    result: dict[str, Any],
    notify_also: Sequence[Target],
) -> DrillRun:
    """Judge the result against the RTO, record it, and tell people."""
    from rearguard.models.drills.service import finish_run
    from rearguard.models.incidents.service import get_incident, set_incident_status
    from rearguard.notifications.notify import deliver_after_run
    from rearguard.notifications.outbox import enqueue

    over = (
        record.rto_s is not None
        and result.get("recovery_s") is not None
        and result["recovery_s"] > record.rto_s
    )
    if result["status"] == "pass" and over:
        result["status"] = "fail"
        result["reason"] = (
            f"recovered in {result['recovery_s']} s, over the RTO of {record.rto_s:g} s"
        )
    passed = result["status"] == "pass"
    # A pass means the playbook reached its aim, so the drill incident ends there too.
    ends = get_playbook(record.playbook).drill_rule().aims_for if passed else IncidentStatus.FAILED
    with runtime.db.session() as session:
        record = session.merge(record)
        finish_run(session=session, run=record, **result)
        incident = get_incident(session=session, incident_id=record.incident_id or 0)
        set_incident_status(
            session=session,
            incident=incident,
            status=ends,
            actor=f"drill:{name}",
            reason=result.get("reason"),
        )
        session.flush()
        enqueue(
            session,
            settings=runtime.settings,
            incident=incident,
            event="drill_result",
            actor=f"drill:{name}",
            extra={
                "passed": passed,
                "drill": name,
                "run": record.id,
                "seconds": result.get("recovery_s"),
                "objective_s": record.rto_s,
            },
            roles=() if passed else ("asset_owner",),
            also=notify_also,
        )
    deliver_after_run(runtime, incident_id=record.incident_id or 0)
    return record
