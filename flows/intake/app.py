"""The HTTP intake: Alertmanager webhooks and native events in, incidents out.

``create_app`` builds the FastAPI app; its lifespan starts the alert writer, unless told not to
the playbook process (which runs or queues opened incidents' playbooks) and, when asked, the
drill scheduler; it stops them (recording what is queued, letting running playbooks and a
running drill finish) on shutdown.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rearguard.flows.drills.scheduler import DrillScheduler
from rearguard.flows.intake.guard import IntakeGuard, IntakeStats
from rearguard.flows.intake.playbook_process import PlaybookProcess
from rearguard.flows.intake.published import new_instance_id
from rearguard.flows.intake.routes import (
    HandOff,
    alerts_router,
    handoff_router,
    health_router,
    incidents_router,
    metrics_router,
    slack_router,
)
from rearguard.flows.intake.slack_commands import slack_commands_router
from rearguard.flows.intake.writer import AlertWriter
from rearguard.models.config.intake import IntakeSettings
from rearguard.models.incidents.alerts import AlertOutcome, IncomingAlert
from rearguard.models.runtime import Runtime

logger = logging.getLogger(__name__)
_READY_TIMEOUT_S = 60


def create_app(
    runtime: Runtime,
    *,
    intake: IntakeSettings | None = None,
    run_playbooks: bool = True,
    schedule_drills: bool = False,
    instance: str | None = None,
    handoff: HandOff | None = None,
    intake_routes: bool = True,
    playbooks: PlaybookProcess | None = None,
) -> FastAPI:
    """Build the intake app on a runtime.

    Args:
        runtime: the process runtime (settings, database, registry).
        intake: the intake settings, when the command line overrides the runtime's.
        run_playbooks: run (``dispatch = inline``) or queue (``deployment``) opened incidents'
            playbooks from a child process of this one; False only records incidents.
        schedule_drills: run the drill scheduler in this process while the app serves.
        instance: the serve's instance id, which ``/healthz`` answers with (see
            :mod:`rearguard.flows.intake.published`); a new one when not given.
        handoff: take CLI commands from the ``rearguard`` command (run by the command host
            of ``playbooks``; see :mod:`rearguard.flows.intake.handoff`); None: take none.
        intake_routes: serve alerts, incidents, Slack and metrics; False: only ``/healthz``
            and the hand-off (a background host's app).
        playbooks: the playbook process, when the caller has started it (serve starts it
            beside its Prefect server); None: the lifespan starts one if ``run_playbooks``.
            Either way the lifespan stops it.

    Returns:
        The ASGI app, guarded by token, body limit and signature checks.
    """
    settings = intake or runtime.settings.intake
    stats = IntakeStats()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dispatcher = playbooks or (
            PlaybookProcess(
                dataclasses.replace(runtime.settings, intake=settings),
                workers=settings.playbook_workers,
            )
            if run_playbooks
            else None
        )
        if dispatcher:
            # The alerts' writer goes first: its requests wait on it, the playbooks do not.
            runtime.db.share_write_lock(dispatcher.write_flag, favoured=True)
            if not await asyncio.to_thread(dispatcher.wait_ready, _READY_TIMEOUT_S):
                logger.warning(
                    "the playbook process is not ready after %d s; incidents wait for it",
                    _READY_TIMEOUT_S,
                )
        writer = AlertWriter(
            runtime,
            window_s=settings.dedup_window_s,
            on_opened=dispatcher.submit if dispatcher else (lambda _incident_id: None),
        )
        app.state.writer, app.state.dispatcher = writer, dispatcher
        scheduler = None
        try:
            if schedule_drills:
                scheduler = DrillScheduler(runtime)
                await asyncio.to_thread(scheduler.start)
            app.state.scheduler = scheduler
            # Everything loaded so far lives as long as the server: keep it out of the
            # collector's full passes, which otherwise stall every request in flight (p99).
            gc.collect()
            gc.freeze()
            yield
        finally:
            if scheduler:
                await asyncio.to_thread(scheduler.shutdown, wait=True)
            writer.stop()
            if dispatcher:
                await asyncio.to_thread(dispatcher.stop)

    app = FastAPI(
        title="rearguard intake",
        summary="Alerts in, incidents out: Alertmanager webhooks and native incident events.",
        version="1",
        lifespan=lifespan,
    )
    app.state.stats = stats
    app.state.scheduler = None

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The first problem, precisely, without echoing the input (it may hold a secret).
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        detail = f"{'.'.join(first['loc'])}: {first['msg']}" if first["loc"] else first["msg"]
        return JSONResponse({"detail": detail, "errors": errors[:20]}, status_code=422)

    async def record(alerts: list[IncomingAlert]) -> list[AlertOutcome] | None:
        try:
            writer: AlertWriter = app.state.writer  # set by the lifespan
            outcomes = await asyncio.wrap_future(writer.submit(alerts))
        except Exception:
            return None
        for outcome in outcomes:
            stats.alert(outcome.action)
        return outcomes

    if intake_routes:
        app.include_router(alerts_router(settings, record))
        app.include_router(incidents_router(runtime, settings))
        app.include_router(slack_router(runtime))
        app.include_router(slack_commands_router(runtime))
        app.include_router(metrics_router(runtime.db, settings))
    app.include_router(health_router(stats, instance=instance or new_instance_id()))
    if handoff is not None:
        app.include_router(handoff_router(handoff))
    app.add_middleware(IntakeGuard, settings=settings, stats=stats)
    return app
