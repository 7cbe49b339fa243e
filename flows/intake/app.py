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
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.background import BackgroundTask

from rearguard.flows.intake.guard import SLACK_INTERACTIONS_PATH, IntakeGuard, IntakeStats
from rearguard.flows.intake.mapping import from_alertmanager, from_native
from rearguard.flows.intake.playbook_process import PlaybookProcess
from rearguard.flows.intake.schemas import (
    Accepted,
    AlertmanagerWebhook,
    AlertResult,
    NativeEvent,
)
from rearguard.flows.intake.writer import AlertWriter
from rearguard.models.config.intake import IntakeSettings
from rearguard.models.enums import IncidentStatus
from rearguard.models.errors import NotFoundError
from rearguard.models.incidents.alerts import AlertOutcome, IncomingAlert
from rearguard.models.names import MAX_ROW_ID
from rearguard.models.runtime import Runtime

logger = logging.getLogger(__name__)
_READY_TIMEOUT_S = 60
_UNAVAILABLE = JSONResponse({"detail": "the database is unavailable; retry"}, status_code=503)


def create_app(
    runtime: Runtime,
    *,
    intake: IntakeSettings | None = None,
    run_playbooks: bool = True,
    schedule_drills: bool = False,
) -> FastAPI:
    """Build the intake app on a runtime.

    Args:
        runtime: the process runtime (settings, database, registry).
        intake: the intake settings, when the command line overrides the runtime's.
        run_playbooks: run (``dispatch = inline``) or queue (``deployment``) opened incidents'
            playbooks from a child process of this one; False only records incidents.
        schedule_drills: run the drill scheduler in this process while the app serves.

    Returns:
        The ASGI app, guarded by token, body limit and signature checks.
    """
    settings = intake or runtime.settings.intake
    stats = IntakeStats()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dispatcher = (
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
                from rearguard.flows.drills.scheduler import DrillScheduler

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
            outcomes = await asyncio.wrap_future(app.state.writer.submit(alerts))
        except Exception:
            return None
        for outcome in outcomes:
            stats.alert(outcome.action)
        return outcomes

    @app.post("/v1/incidents", status_code=202, response_model=Accepted)
    async def post_incident(event: NativeEvent) -> Any:
        """Record a native event: open an incident and run its playbook, or attach to the
        incident already open for its dedup key (else its type and asset)."""
        outcomes = await record([from_native(event)])
        if outcomes is None:
            return _UNAVAILABLE
        outcome = outcomes[0]
        if outcome.action == "rejected":
            return JSONResponse({"detail": outcome.error}, status_code=422)
        return Accepted(incident_id=outcome.incident_id, action=outcome.action)

    @app.post("/v1/alerts/alertmanager", status_code=202, response_model=Accepted)
    async def post_alertmanager(payload: AlertmanagerWebhook) -> Any:
        """Record an Alertmanager webhook (version 4): each alert opens, attaches to, or (when
        resolved) is recorded on its incident. Unmappable alerts are recorded as rejected."""
        outcomes = await record(from_alertmanager(payload, settings.alertmanager))
        if outcomes is None:
            return _UNAVAILABLE
        return Accepted(
            results=[
                AlertResult(
                    action=o.action,  # type: ignore[arg-type]
                    incident_id=o.incident_id,
                    fingerprint=a.fingerprint or None,
                    error=o.error,
                )
                for a, o in zip(payload.alerts, outcomes, strict=True)
            ]
        )

    @app.get("/v1/incidents")
    async def list_incidents(
        status: IncidentStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Incidents, newest first."""
        from rearguard.flows.cli.incident import incident_dict
        from rearguard.models.incidents.service import list_incidents as listed

        def read() -> list[dict[str, Any]]:
            with runtime.db.read_session() as session:
                return [
                    incident_dict(i) for i in listed(session=session, status=status, limit=limit)
                ]

        return await asyncio.to_thread(read)

    @app.get("/v1/incidents/{incident_id}")
    async def show_incident(
        incident_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
    ) -> Any:
        """One incident and its timeline."""
        from rearguard.flows.cli.incident import event_dict, incident_dict
        from rearguard.models.audit.chain import events_for_incident
        from rearguard.models.incidents.service import get_incident

        def read() -> dict[str, Any] | None:
            with runtime.db.read_session() as session:
                try:
                    incident = get_incident(session=session, incident_id=incident_id)
                except NotFoundError:
                    return None
                events = events_for_incident(session=session, incident_id=incident_id)
                return {**incident_dict(incident), "timeline": [event_dict(e) for e in events]}

        found = await asyncio.to_thread(read)
        if found is None:
            return JSONResponse({"detail": f"unknown incident {incident_id}"}, status_code=404)
        return found

    @app.post(SLACK_INTERACTIONS_PATH, response_class=PlainTextResponse)
    async def slack_interactions(request: Request) -> PlainTextResponse:
        """Slack's Approve and Deny buttons. Not behind the bearer token: Slack signs the
        request with the app's signing secret, checked over the raw body; the answer's text is
        what Slack shows the person who pressed the button."""
        from rearguard.notifications.slack_interactions import handle_slack_interaction, show_ended

        body = await request.body()
        answer = await asyncio.to_thread(
            handle_slack_interaction, runtime=runtime, headers=dict(request.headers), body=body
        )
        # The message's update waits for the answer: Slack wants one within 3 seconds.
        after = (
            BackgroundTask(
                show_ended,
                settings=runtime.settings,
                ended=answer.ended,
                secret_blocks=runtime.secret_blocks,
            )
            if answer.ended
            else None
        )
        return PlainTextResponse(answer.message, status_code=answer.status, background=after)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness, and the counts of accepted and refused requests and of alerts."""
        dispatcher = app.state.dispatcher
        return {
            "status": "ok",
            **stats.snapshot(),
            "playbooks": dict(dispatcher.counts) if dispatcher else None,
            "scheduler": scheduler.state() if (scheduler := app.state.scheduler) else None,
        }

    app.add_middleware(IntakeGuard, settings=settings, stats=stats)
    return app
