"""Drill definitions, drill runs, and the history built from them.

A drill is a playbook run against a sandbox of an asset, on a cron schedule, with an optional
recovery-time objective (RTO). Each run, and each run that should have happened while nothing
was running, is a ``drill_run`` row and a ``drill.*`` event of the application's audit chain.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from sqlmodel import Session, col, select

from rearguard.models.assets.versions import get_asset
from rearguard.models.audit.chain import append_event
from rearguard.models.db.tables import Drill, DrillRun, utcnow
from rearguard.models.enums import EventKind
from rearguard.models.errors import ConflictError, NotFoundError, UsageError
from rearguard.models.incidents.types import get_incident_type
from rearguard.models.names import check_name
from rearguard.models.schemas import DrillRead, DrillSummary, RecoveryTimes

PASS, FAIL, MISSED, RUNNING = "pass", "fail", "missed", "running"
# Beyond this many missed fire times, a missed row counts them instead of listing them.
_MAX_LISTED_MISSES = 20
_MAX_SCANNED_FIRE_TIMES = 100_000
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Parse ``90s``, ``5m``, ``1h30m`` or a plain number of seconds into seconds.

    Raises:
        UsageError: the text is not such a duration, or is not positive.
    """
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        parts = _DURATION_PART.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise UsageError(
                f"invalid duration {text!r}", hint="write e.g. 90s, 5m, 1h30m"
            ) from None
        seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"invalid duration {text!r}: it must be positive")
    return seconds


def check_timezone(name: str) -> str:
    """Return ``name`` if it is an IANA timezone (``Europe/London``, ``UTC``).

    Raises:
        UsageError: unknown timezone.
    """
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown timezone {name!r}", hint="use an IANA name, e.g. Europe/London or UTC"
        ) from None
    return name


def parse_cron(expression: str, timezone: str) -> Any:
    """Build the APScheduler trigger of a cron expression in a timezone.

    Five fields are standard crontab (minute hour day month day-of-week); six fields put a
    seconds field first.

    Returns:
        An ``apscheduler.triggers.cron.CronTrigger``.

    Raises:
        UsageError: the expression or the timezone is invalid.
    """
    check_timezone(timezone)
    fields = expression.split()
    try:
        if len(fields) == 5:
            return CronTrigger.from_crontab(expression, timezone=timezone)
        if len(fields) == 6:
            names = ("second", "minute", "hour", "day", "month", "day_of_week")
            return CronTrigger(**dict(zip(names, fields, strict=True)), timezone=timezone)
    except ValueError as exc:
        raise UsageError(
            f"invalid cron {expression!r}: {exc}",
            hint='e.g. "0 9 * * MON" (minute hour day month weekday)',
        ) from exc
    raise UsageError(
        f"invalid cron {expression!r}: expected 5 fields (or 6 with seconds first)",
        hint='e.g. "0 9 * * MON"',
    )


def fire_times(trigger: Any, *, after: datetime, until: datetime) -> tuple[list[datetime], int]:
    """The trigger's fire times in ``(after, until]``: the last ones, and how many in all."""
    found: list[datetime] = []
    count = 0
    moment = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    while moment is not None and moment <= until and count < _MAX_SCANNED_FIRE_TIMES:
        count += 1
        found.append(moment)
        del found[:-_MAX_LISTED_MISSES]
        moment = trigger.get_next_fire_time(moment, moment)
    return found, count


def _event(
    session: Session,
    action: str,
    subject: Drill | DrillRun,
    data: dict[str, Any],
    incident_id: int | None,
) -> None:
    # A run is recorded by its own copy of the drill's name: the drill may be gone by then.
    name = subject.name if isinstance(subject, Drill) else subject.drill_name
    append_event(
        session,
        kind=EventKind.STATE,
        action=action,
        actor=f"drill:{name}",
        incident_id=incident_id,
        asset=subject.asset_name,
        data={"drill": name, "playbook": subject.playbook, **data},
    )


def add_drill(
    *,
    session: Session,
    name: str,
    playbook: str,
    asset: str,
    cron: str,
    timezone: str,
    rto_s: float | None,
    actor: str,
) -> Drill:
    """Record a new drill after checking every part of it.

    Raises:
        UsageError: invalid name, cron or timezone; the playbook cannot drill this asset
            (e.g. a degradation drill of an asset without a validation command).
        NotFoundError: unknown playbook or asset.
        ConflictError: a drill of that name exists.
    """
    check_name(name, what="drill name")
    parse_cron(cron, timezone)
    spec = get_incident_type(playbook)
    rule = spec.drill_rule()
    target = get_asset(session=session, name=asset)
    if target.kind not in spec.asset_kinds:
        kinds = ", ".join(str(k) for k in spec.asset_kinds)
        raise UsageError(f"{playbook} handles {kinds} assets; {asset!r} is a {target.kind}")
    rule.check(playbook=playbook, asset=target)
    if session.exec(select(Drill.id).where(Drill.name == name)).first():
        raise ConflictError(f"a drill named {name!r} exists", hint="remove it first")
    drill = Drill(
        name=name,
        playbook=playbook,
        asset_name=asset,
        cron=cron,
        timezone=timezone,
        rto_s=rto_s,
        created_by=actor,
    )
    session.add(drill)
    session.flush()
    _event(
        session, "drill.added", drill, {"cron": cron, "timezone": timezone, "rto_s": rto_s}, None
    )
    return drill


def describe_drill(drill: Drill, *, now: datetime | None = None) -> DrillRead:
    """The read form of a drill, with its next fire time after ``now`` (default: now)."""
    trigger = parse_cron(drill.cron, drill.timezone)
    return DrillRead.of(drill, next_run=trigger.get_next_fire_time(None, now or datetime.now(UTC)))


def get_drill(*, session: Session, name: str) -> Drill:
    """Return a drill by name.

    Raises:
        NotFoundError: there is no such drill.
    """
    drill = session.exec(select(Drill).where(Drill.name == name)).first()
    if drill is None:
        raise NotFoundError(f"unknown drill {name!r}", hint="see `rearguard drills list`")
    return drill


def list_drills(*, session: Session) -> list[Drill]:
    """Every drill, by name."""
    return list(session.exec(select(Drill).order_by(col(Drill.name))))


def remove_drill(*, session: Session, name: str, actor: str) -> None:
    """Delete a drill; its run history stays.

    Raises:
        NotFoundError: there is no such drill.
    """
    drill = get_drill(session=session, name=name)
    session.delete(drill)
    _event(session, "drill.removed", drill, {"by": actor}, None)


def start_run(
    *,
    session: Session,
    drill: Drill,
    trigger: str,
    incident_id: int | None,
    scheduled_for: datetime | None = None,
) -> DrillRun:
    """Record that a drill run starts (status ``running``) and its ``drill.started`` event."""
    run = DrillRun(
        drill_name=drill.name,
        playbook=drill.playbook,
        asset_name=drill.asset_name,
        trigger=trigger,
        status=RUNNING,
        scheduled_for=scheduled_for,
        rto_s=drill.rto_s,
        incident_id=incident_id,
    )
    session.add(run)
    session.flush()
    _event(session, "drill.started", drill, {"run": run.id, "trigger": trigger}, incident_id)
    return run


def finish_run(*, session: Session, run: DrillRun, **result: Any) -> DrillRun:
    """Record a run's result (``status``, ``reason``, ``steps``, ...) and ``drill.finished``."""
    for key, value in result.items():
        setattr(run, key, value)
    run.finished_at = utcnow()
    session.add(run)
    _event(
        session,
        "drill.finished",
        run,
        {
            "run": run.id,
            "status": run.status,
            "reason": run.reason,
            "recovery_s": run.recovery_s,
            "rto_s": run.rto_s,
            "steps": [{"step": s["step"], "ok": s["ok"]} for s in run.steps],
            "sandbox_incident_id": run.sandbox_incident_id,
            "timeline_digest": run.timeline_digest,
        },
        run.incident_id,
    )
    return run


def record_missed(
    *, session: Session, drill: Drill, missed: list[datetime], count: int, why: str
) -> DrillRun:
    """Record scheduled runs that did not happen: one ``missed`` row and ``drill.missed``.

    Args:
        session: an open write session.
        drill: the drill.
        missed: the last missed fire times (at most a few dozen).
        count: how many fire times were missed in all.
        why: why they were missed.
    """
    first, last = missed[0], missed[-1]
    reason = f"missed {count} scheduled run(s)" + (
        f" between {first.isoformat()} and {last.isoformat()}"
        if count > 1
        else f" at {last.isoformat()}"
    )
    run = DrillRun(
        drill_name=drill.name,
        playbook=drill.playbook,
        asset_name=drill.asset_name,
        trigger=MISSED,
        status=MISSED,
        scheduled_for=last,
        started_at=utcnow(),
        finished_at=utcnow(),
        rto_s=drill.rto_s,
        reason=f"{reason}: {why}",
    )
    session.add(run)
    session.flush()
    _event(
        session,
        "drill.missed",
        drill,
        {"run": run.id, "count": count, "fire_times": [m.isoformat() for m in missed], "why": why},
        None,
    )
    return run


def last_accounted(*, session: Session, drill: Drill) -> datetime:
    """The moment up to which the drill's schedule is accounted for by a run or a missed row."""
    ran = session.exec(
        select(DrillRun)
        .where(DrillRun.drill_name == drill.name, DrillRun.trigger != MISSED)
        .order_by(col(DrillRun.started_at).desc())
        .limit(1)
    ).first()
    missed = session.exec(
        select(DrillRun)
        .where(DrillRun.drill_name == drill.name, DrillRun.trigger == MISSED)
        .order_by(col(DrillRun.scheduled_for).desc())
        .limit(1)
    ).first()
    moments = [drill.created_at]
    moments += [ran.started_at] if ran else []
    moments += [missed.scheduled_for] if missed and missed.scheduled_for else []
    return max(moments)


def list_runs(*, session: Session, name: str | None = None, limit: int = 1000) -> list[DrillRun]:
    """Drill runs, newest first, of one drill or all."""
    statement = select(DrillRun).order_by(col(DrillRun.id).desc()).limit(limit)
    if name is not None:
        statement = statement.where(DrillRun.drill_name == name)
    return list(session.exec(statement))


def mark_interrupted(*, session: Session, trigger: str) -> int:
    """Fail runs of ``trigger`` still ``running`` (their process stopped); return how many."""
    runs = session.exec(
        select(DrillRun).where(DrillRun.status == RUNNING, DrillRun.trigger == trigger)
    ).all()
    for run in runs:
        run.status, run.finished_at = FAIL, utcnow()
        run.reason = "interrupted: the process running the drill stopped before it finished"
        session.add(run)
    return len(runs)


def summarise(runs: Iterable[DrillRun]) -> list[DrillSummary]:
    """Success rate and recovery times per playbook and asset.

    Missed runs count against the success rate: a drill that did not run did not pass.
    """
    groups: dict[tuple[str, str], list[DrillRun]] = {}
    for run in runs:
        if run.status != RUNNING:
            groups.setdefault((run.playbook, run.asset_name), []).append(run)
    summary = []
    for (playbook, asset), members in sorted(groups.items()):
        passed = sum(r.status == PASS for r in members)
        times = [r.recovery_s for r in members if r.recovery_s is not None]
        summary.append(
            DrillSummary(
                playbook=playbook,
                asset=asset,
                runs=len(members),
                passed=passed,
                failed=sum(r.status == FAIL for r in members),
                missed=sum(r.status == MISSED for r in members),
                success_rate=round(passed / len(members), 3),
                recovery_s=RecoveryTimes(
                    min=round(min(times), 3),
                    median=round(statistics.median(times), 3),
                    max=round(max(times), 3),
                )
                if times
                else None,
            )
        )
    return summary
