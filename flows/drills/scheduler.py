"""The scheduler: APScheduler 3 running drills (and the asset sweep) on their cron schedules,
and keeping the audit checkpoints published.

Drill definitions live in the ``drill`` table; the scheduler keeps one APScheduler job per
drill in the ``apscheduler_jobs`` table of the application database, in sync with that table
at start and whenever it changes (polled every ``[scheduler] poll_s``). Runs are coalesced,
at most one run of a drill at a time, and one drill at a time per scheduler. Each job runs on
the runtime of the scheduler that loaded it (the job store hands it over), and each drill's
playbook on its sandbox's: incidents' playbooks run beside them on the application's.

Nothing is skipped silently. At start, every fire time since a drill's last run (or its
creation) that is past the misfire grace time is recorded as missed (``drill_run`` row,
``drill.missed`` event); one still within it runs now. While running, APScheduler's own
missed and max-instances events are recorded the same way. APScheduler folds missed runs into
one when it coalesces, so these are computed from the drill history, not left to it.

With ``[audit] signing_key`` set, it also looks every ``[scheduler] poll_s`` for checkpoints
that a sink could not take (retried once their back-off is over) and for a checkpoint due by
``[audit] checkpoint_every``.

Jobs are stored as JSON, not pickles: the job store's table is in the application database,
and loading a pickle from it would run whatever code someone with write access put there.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy.exc import IntegrityError

from rearguard.flows.drills.run import run_drill
from rearguard.flows.run_playbook import run_playbook
from rearguard.models.audit.checkpoints import checkpoint_due
from rearguard.models.drills.service import (
    fire_times,
    get_drill,
    last_accounted,
    list_drills,
    mark_interrupted,
    parse_cron,
    record_missed,
)
from rearguard.models.integrity.sweep import plan_sweep, run_sweep
from rearguard.models.runtime import Runtime
from rearguard.notifications.routing import Target

SLACK_TRIGGER = "slack"
"""The trigger of a drill run asked for with the Slack command."""
JOBS_TABLE = "apscheduler_jobs"
DRILL_JOB_PREFIX = "drill:"
SWEEP_JOB = "sweep"
CHECKPOINTS_JOB = "checkpoints"
RUNTIME_ARGUMENT = "runtime"
"""The keyword argument that gives a job its scheduler's runtime (never stored)."""

logger = logging.getLogger("rearguard.scheduler")


class JsonJobStore(SQLAlchemyJobStore):  # type: ignore[misc]  # APScheduler 3 is untyped
    """APScheduler's SQLAlchemy job store, with each job's state as JSON instead of a pickle.

    Only what rearguard schedules can be stored: a function by reference, JSON arguments and
    a cron trigger. A job's ``runtime`` argument is not stored: a job loaded from the store
    runs on the store's runtime.

    Args:
        runtime: the application's runtime; its database holds the jobs' table.
    """

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(engine=runtime.db.engine, tablename=JOBS_TABLE)
        self.runtime = runtime

    def add_job(self, job: Job) -> None:
        insert = self.jobs_t.insert().values(
            id=job.id,
            next_run_time=datetime_to_utc_timestamp(job.next_run_time),
            job_state=_dump(job),
        )
        with self.engine.begin() as connection:
            try:
                connection.execute(insert)
            except IntegrityError:
                raise ConflictingIdError(job.id) from None

    def update_job(self, job: Job) -> None:
        update = (
            self.jobs_t.update()
            .values(
                next_run_time=datetime_to_utc_timestamp(job.next_run_time), job_state=_dump(job)
            )
            .where(self.jobs_t.c.id == job.id)
        )
        with self.engine.begin() as connection:
            if connection.execute(update).rowcount == 0:
                raise JobLookupError(job.id)

    def _reconstitute_job(self, job_state: bytes) -> Job:
        state = json.loads(job_state)
        trigger = state["trigger"]
        moment = state["next_run_time"]
        state.update(
            trigger=CronTrigger(**trigger["fields"], timezone=trigger["timezone"]),
            args=tuple(state["args"]),
            kwargs={**state["kwargs"], RUNTIME_ARGUMENT: self.runtime},
            next_run_time=datetime.fromisoformat(moment) if moment else None,
            jobstore=self,
        )
        job = Job.__new__(Job)
        job.__setstate__(state)
        job._scheduler = self._scheduler
        job._jobstore_alias = self._alias
        return job


def _dump(job: Job) -> bytes:
    state = job.__getstate__()
    trigger = state["trigger"]
    if not isinstance(trigger, CronTrigger):
        raise TypeError(f"only cron triggers are stored, not {type(trigger).__name__}")
    moment = state["next_run_time"]
    state.update(
        trigger={
            "fields": {f.name: str(f) for f in trigger.fields if not f.is_default},
            "timezone": str(trigger.timezone),
        },
        args=list(state["args"]),
        kwargs={k: v for k, v in state["kwargs"].items() if k != RUNTIME_ARGUMENT},
        next_run_time=moment.isoformat() if moment else None,
    )
    return json.dumps(state, sort_keys=True).encode()


def run_scheduled_drill(
    name: str,
    *,
    runtime: Runtime,
    trigger: str = "schedule",
    notify_also: Sequence[Target] = (),
) -> None:
    """The job of a drill: run it now (called by APScheduler in the scheduler process, on its
    scheduler's runtime); ``trigger`` and ``notify_also`` as :func:`run_drill` takes them, for
    a run a person asked for (:meth:`DrillScheduler.run_now`)."""
    run = run_drill(runtime=runtime, name=name, trigger=trigger, notify_also=notify_also)
    logger.warning("drill %s run %s: %s %s", name, run.id, run.status, run.reason or "")


def run_scheduled_sweep(*, runtime: Runtime) -> None:
    """The job of the asset sweep: ``rearguard assets sweep --run``, as the scheduler."""
    report = run_sweep(
        runtime=runtime, plan=plan_sweep(runtime=runtime), open_incidents=True, actor="scheduler"
    )
    for finding in report.findings:
        if finding.runnable and finding.incident_id is not None:
            ended = run_playbook(runtime=runtime, incident_id=finding.incident_id)
            logger.warning("sweep: incident %s on %s %s", ended.id, finding.asset, ended.status)


class DrillScheduler:
    """APScheduler, in a background thread, running the drills of one application database.

    Args:
        runtime: the application's runtime.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings.scheduler
        self.grace_s = settings.misfire_grace_s
        self._known: dict[str, tuple[str, str]] = {}
        self._sync_lock = threading.Lock()
        self.scheduler = BackgroundScheduler(
            jobstores={
                "default": JsonJobStore(runtime),
                "memory": MemoryJobStore(),
            },
            executors={
                "default": ThreadPoolExecutor(2),
                # One drill at a time: each measures its recovery time against its objective,
                # and a second drill on the same cores would lengthen it.
                "drills": ThreadPoolExecutor(1),
            },
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(max(1, self.grace_s)),
            },
            timezone=UTC,
        )
        self.scheduler.add_listener(
            self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
        )

    def start(self) -> dict[str, Any]:
        """Start: fail runs left running, record missed runs, sync the jobs, begin firing.

        Returns:
            What start found: ``drills`` scheduled, ``missed`` rows written, ``interrupted``.

        Raises:
            UsageError: ``[scheduler] sweep_cron`` is not a valid cron.
        """
        sweep_cron = self.runtime.settings.scheduler.sweep_cron
        if sweep_cron:
            sweep_trigger = parse_cron(sweep_cron, self.runtime.settings.drills.timezone)
        with self.runtime.db.session() as session:
            interrupted = sum(
                mark_interrupted(session=session, trigger=trigger)
                for trigger in ("schedule", SLACK_TRIGGER)
            )
        self.scheduler.start(paused=True)
        missed = self.sync(startup=True)
        if sweep_cron:
            self.scheduler.add_job(
                run_scheduled_sweep,
                trigger=sweep_trigger,
                id=SWEEP_JOB,
                kwargs={RUNTIME_ARGUMENT: self.runtime},
                replace_existing=True,
            )
        poll_s = self.runtime.settings.scheduler.poll_s
        self.scheduler.add_job(
            self.sync, trigger=IntervalTrigger(seconds=poll_s), id="sync", jobstore="memory"
        )
        if self.runtime.settings.audit.signing_key is not None:
            self.scheduler.add_job(
                self.keep_checkpoints,
                trigger=IntervalTrigger(seconds=poll_s),
                id=CHECKPOINTS_JOB,
                jobstore="memory",
            )
        self.scheduler.resume()
        return {"drills": sorted(self._known), "missed": missed, "interrupted": interrupted}

    def run_now(self, name: str, *, notify_also: Sequence[Target] = ()) -> None:
        """Run a drill a person asked for from Slack, as soon as no other drill runs.

        It takes the drills' one worker, like a scheduled run, so it never runs beside another
        drill; the job is kept in memory only (a run asked for is not replayed after a restart:
        a run left ``running`` by a stop is marked interrupted at the next start).

        Args:
            name: the drill.
            notify_also: where its result goes besides the drill's destinations.
        """
        self.scheduler.add_job(
            run_scheduled_drill,
            trigger="date",
            args=[name],
            kwargs={
                RUNTIME_ARGUMENT: self.runtime,
                "trigger": SLACK_TRIGGER,
                "notify_also": list(notify_also),
            },
            id=f"asked:{name}:{uuid.uuid4().hex}",
            name=f"drill {name} (asked for)",
            jobstore="memory",
            executor="drills",
            misfire_grace_time=None,
        )

    def state(self) -> dict[str, Any]:
        """Whether it is firing, and how many drills it has scheduled."""
        return {"running": self.scheduler.running, "drills": len(self._known)}

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop firing; with ``wait``, let a drill that is running finish first."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)

    def sync(self, *, startup: bool = False) -> int:
        """Make the scheduler's drill jobs match the drill table; return missed rows written.

        At start every drill is rescheduled from its history (see the module docstring); later
        calls only add, replace or remove the jobs of drills that changed.
        """
        with self._sync_lock:
            with self.runtime.db.read_session() as session:
                drills = {d.name: d for d in list_drills(session=session)}
            wanted = {name: (d.cron, d.timezone) for name, d in drills.items()}
            if not startup and wanted == self._known:
                return 0
            missed = 0
            for job in self.scheduler.get_jobs(jobstore="default"):
                name = job.id.removeprefix(DRILL_JOB_PREFIX)
                if job.id.startswith(DRILL_JOB_PREFIX) and name not in wanted:
                    job.remove()
            for name, drill in drills.items():
                if startup or self._known.get(name) != wanted[name]:
                    missed += self._schedule(drill, startup=startup)
            self._known = wanted
            return missed

    def keep_checkpoints(self) -> None:
        """Every poll: retry the checkpoint sinks whose back-off is over, and sign a checkpoint
        when ``[audit] checkpoint_every`` events were appended since the last one; both in the
        runtime's background checkpointer, so the next poll never waits behind a sink."""
        runtime = self.runtime
        runtime.request_checkpoint(checkpoint_due(db=runtime.db, settings=runtime.settings))

    def _schedule(self, drill: Any, *, startup: bool) -> int:
        trigger = parse_cron(drill.cron, drill.timezone)
        now = datetime.now(UTC)
        next_run = trigger.get_next_fire_time(None, now)
        written = 0
        if startup:
            with self.runtime.db.session() as session:
                since = last_accounted(session=session, drill=drill)
                due, count = fire_times(trigger, after=since, until=now)
                late = [t for t in due if (now - t).total_seconds() <= self.grace_s]
                gone = [t for t in due if t not in late]
                if gone:
                    record_missed(
                        session=session,
                        drill=drill,
                        missed=gone,
                        count=count - len(late),
                        why="no scheduler was running",
                    )
                    written = 1
            next_run = late[-1] if late else next_run
        self.scheduler.add_job(
            run_scheduled_drill,
            trigger=trigger,
            args=[drill.name],
            kwargs={RUNTIME_ARGUMENT: self.runtime},
            id=DRILL_JOB_PREFIX + drill.name,
            name=f"drill {drill.name}",
            executor="drills",
            replace_existing=True,
            next_run_time=next_run,
        )
        return written

    def _on_event(self, event: JobExecutionEvent | JobSubmissionEvent) -> None:
        if not event.job_id.startswith(DRILL_JOB_PREFIX):
            return
        name = event.job_id.removeprefix(DRILL_JOB_PREFIX)
        if event.code == EVENT_JOB_ERROR:
            logger.error("drill %s: %r", name, getattr(event, "exception", None))
            return
        if event.code == EVENT_JOB_MISSED:
            times = [event.scheduled_run_time]
            why = f"it could not start within the misfire grace time of {self.grace_s:g} s"
        else:
            times = list(event.scheduled_run_times)
            why = "the previous run of the drill was still going"
        with self.runtime.db.session() as session:
            record_missed(
                session=session,
                drill=get_drill(session=session, name=name),
                missed=times,
                count=len(times),
                why=why,
            )
