"""The HTTP intake's routes, one router per domain, each documenting what it answers.

Every ``/v1/`` request first passes :class:`~rearguard.flows.intake.guard.IntakeGuard`, an ASGI
middleware, so the refusals it makes (400, 401, 403, 413) are documented here on the routes it
guards: the OpenAPI document then lists every status a client can get, with its body. The
bearer scheme is declared through FastAPI's :class:`~fastapi.security.HTTPBearer` with
``auto_error=False``: it documents the token and never refuses a request itself, so the guard
stays the one place that checks it (before the body is read).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, Security
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPBearer
from prometheus_client.exposition import choose_encoder
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.background import BackgroundTask

from rearguard.flows.intake.guard import METRICS_PATH, SLACK_INTERACTIONS_PATH, IntakeStats
from rearguard.flows.intake.handoff import HANDOFF_PATH
from rearguard.flows.intake.mapping import from_alertmanager, from_native
from rearguard.flows.intake.metrics import metrics_registry
from rearguard.flows.intake.playbook_process import PlaybookProcess
from rearguard.flows.intake.published import is_loopback
from rearguard.flows.intake.schemas import (
    Accepted,
    AlertmanagerWebhook,
    AlertResult,
    HandOffRequest,
    Health,
    NativeEvent,
    Problem,
    ValidationProblem,
)
from rearguard.models.config.intake import IntakeSettings
from rearguard.models.db.engine import Database
from rearguard.models.enums import IncidentStatus
from rearguard.models.errors import NotFoundError
from rearguard.models.incidents.alerts import AlertOutcome, IncomingAlert
from rearguard.models.incidents.service import incident_detail
from rearguard.models.incidents.service import list_incidents as listed
from rearguard.models.names import MAX_ROW_ID
from rearguard.models.runtime import Runtime
from rearguard.models.schemas import IncidentDetail, IncidentRead
from rearguard.notifications.slack_interactions import handle_slack_interaction, show_ended

Recorder = Callable[[list[IncomingAlert]], Awaitable[list[AlertOutcome] | None]]
"""Hands alerts to the writer; None when the database is unavailable."""

UNAVAILABLE = "the database is unavailable; retry"
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="one of the intake's tokens (REARGUARD_INTAKE_TOKENS)",
)
_PROBLEM: dict[str, Any] = {"model": Problem}


def _problem(description: str) -> dict[str, Any]:
    return {**_PROBLEM, "description": description}


def guarded(settings: IntakeSettings) -> dict[int | str, dict[str, Any]]:
    """What the guard answers on a ``/v1/`` route behind the token, per these settings."""
    answers: dict[int | str, dict[str, Any]] = {
        400: _problem("invalid Content-Length"),
        413: _problem("the body is over the limit ([intake] max_body_bytes)"),
    }
    if settings.auth == "required":
        answers[401] = _problem("no bearer token (``unauthorized``)")
        answers[403] = _problem("a token that is not one of the intake's (``forbidden``)")
    if settings.hmac_secret is not None:
        answers[401] = _problem(
            "no bearer token (``unauthorized``), or a POST without X-Rearguard-Signature"
        )
        answers[403] = _problem("a wrong token, or a wrong X-Rearguard-Signature (``forbidden``)")
    return answers


def _invalid(description: str) -> dict[str, Any]:
    return {"model": ValidationProblem, "description": description}


def alerts_router(settings: IntakeSettings, record: Recorder) -> APIRouter:
    """``POST /v1/incidents`` and ``POST /v1/alerts/alertmanager``: alerts in."""
    router = APIRouter(
        tags=["alerts"],
        dependencies=[Security(BEARER)] if settings.auth == "required" else [],
        responses={**guarded(settings), 503: _problem(UNAVAILABLE)},
    )

    @router.post(
        "/v1/incidents",
        status_code=202,
        response_model=Accepted,
        responses={
            422: _invalid(
                "a body that does not fit the schema, or an event that cannot open an incident "
                "(unknown type or asset, a type that needs more than an asset)"
            )
        },
    )
    async def post_incident(event: NativeEvent) -> Any:
        """Record a native event: open an incident and run its playbook, or attach to the
        incident already open for its dedup key (else its type and asset)."""
        outcomes = await record([from_native(event)])
        if outcomes is None:
            return JSONResponse({"detail": UNAVAILABLE}, status_code=503)
        outcome = outcomes[0]
        if outcome.action == "rejected":
            return JSONResponse({"detail": outcome.error}, status_code=422)
        return Accepted(incident_id=outcome.incident_id, action=outcome.action)

    @router.post(
        "/v1/alerts/alertmanager",
        status_code=202,
        response_model=Accepted,
        responses={422: _invalid("a body that is not an Alertmanager webhook (version 4)")},
    )
    async def post_alertmanager(payload: AlertmanagerWebhook) -> Any:
        """Record an Alertmanager webhook (version 4): each alert opens, attaches to, or (when
        resolved) is recorded on its incident. Unmappable alerts are recorded as rejected."""
        outcomes = await record(from_alertmanager(payload, settings.alertmanager))
        if outcomes is None:
            return JSONResponse({"detail": UNAVAILABLE}, status_code=503)
        return Accepted(
            results=[
                AlertResult(
                    action=o.action,
                    incident_id=o.incident_id,
                    fingerprint=a.fingerprint or None,
                    error=o.error,
                )
                for a, o in zip(payload.alerts, outcomes, strict=True)
            ]
        )

    return router


def incidents_router(runtime: Runtime, settings: IntakeSettings) -> APIRouter:
    """``GET /v1/incidents`` and ``GET /v1/incidents/{id}``: incidents out."""
    router = APIRouter(
        tags=["incidents"],
        dependencies=[Security(BEARER)] if settings.auth == "required" else [],
        responses={
            **guarded(settings),
            422: _invalid("a query or path parameter out of its range"),
        },
    )
    alias = runtime.settings.registry.alias

    @router.get("/v1/incidents", response_model=list[IncidentRead])
    async def list_incidents(
        status: IncidentStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        """Incidents, newest first."""

        def read() -> list[IncidentRead]:
            with runtime.db.read_session() as session:
                return [
                    IncidentRead.of(i) for i in listed(session=session, status=status, limit=limit)
                ]

        return await asyncio.to_thread(read)

    @router.get(
        "/v1/incidents/{incident_id}",
        response_model=IncidentDetail,
        responses={404: _problem("no incident has that id")},
    )
    async def show_incident(
        incident_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
    ) -> Any:
        """One incident, where its asset's production alias points now, and its timeline."""

        def read() -> IncidentDetail | None:
            with runtime.db.read_session() as session:
                try:
                    return incident_detail(session=session, incident_id=incident_id, alias=alias)
                except NotFoundError:
                    return None

        found = await asyncio.to_thread(read)
        if found is None:
            return JSONResponse({"detail": f"unknown incident {incident_id}"}, status_code=404)
        return found

    return router


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def slack_router(runtime: Runtime) -> APIRouter:
    """``POST /v1/slack/interactions``: Slack's Approve and Deny buttons."""
    router = APIRouter(tags=["slack"])

    @router.post(
        SLACK_INTERACTIONS_PATH,
        response_class=PlainTextResponse,
        responses={
            200: _text("the decision, in one line for the person who pressed the button"),
            400: {
                "description": "not a Slack button callback (text), or an invalid "
                "Content-Length (JSON, from the guard)",
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/json": {"schema": Problem.model_json_schema()},
                },
            },
            401: _text("a missing, stale or wrong Slack signature"),
            403: _text("the person is not an approver of that step (recorded)"),
            404: _text("no such approval request"),
            409: _text("a replayed callback, or a request already decided"),
            413: _problem("the body is over the limit ([intake] max_body_bytes)"),
            503: _text("no Slack signing secret is configured"),
        },
    )
    async def slack_interactions(request: Request) -> PlainTextResponse:
        """Slack's Approve and Deny buttons. Not behind the bearer token: Slack signs the
        request with the app's signing secret, checked over the raw body; the answer's text is
        what Slack shows the person who pressed the button."""
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

    return router


def health_router(stats: IntakeStats, *, instance: str) -> APIRouter:
    """``GET /healthz``: liveness, the serve's instance id, and counts (not behind the token)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Health)
    async def healthz(request: Request) -> Health:
        """Liveness, and the counts of accepted and refused requests and of alerts."""
        dispatcher = request.app.state.dispatcher
        scheduler = request.app.state.scheduler
        return Health.model_validate(
            {
                "status": "ok",
                "instance": instance,
                **stats.snapshot(),
                "playbooks": dict(dispatcher.counts) if dispatcher else None,
                "scheduler": scheduler.state() if scheduler else None,
            }
        )

    return router


def metrics_router(db: Database, settings: IntakeSettings) -> APIRouter:
    """``GET /metrics``: Prometheus metrics, from a registry of this app's own."""
    router = APIRouter(
        tags=["metrics"],
        dependencies=[]
        if settings.metrics_public or settings.auth != "required"
        else [Security(BEARER)],
        responses={} if settings.metrics_public else guarded(settings),
    )
    registry = metrics_registry(db)

    @router.get(
        METRICS_PATH,
        response_class=Response,
        responses={
            200: {
                "description": "the metrics, in the Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            503: _problem(UNAVAILABLE),
        },
    )
    async def metrics(request: Request) -> Response:
        """Incidents, recovery times, playbook steps, approvals, drills, the outbox, intake
        alerts and the audit chain, for Prometheus to scrape (a read token, unless
        ``[intake] metrics_public``). The text format 0.0.4, or OpenMetrics when the scraper
        asks for it."""
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        try:
            body = await asyncio.to_thread(encode, registry)
        except SQLAlchemyError:
            return JSONResponse({"detail": UNAVAILABLE}, status_code=503)
        return Response(body, headers={"Content-Type": content_type})

    return router


@dataclass(frozen=True)
class HandOff:
    """What serve needs to run CLI commands for the ``rearguard`` command (see
    :mod:`rearguard.flows.intake.handoff`)."""

    token: str
    """The hand-off token serve published in its home."""
    fingerprint: str
    """serve's settings fingerprint: it runs a command only when the client's is the same."""
    retire: Callable[[], None] | None = None
    """Called before a command with other settings is refused: a background host withdraws
    itself, so that the command starts one with its settings (see
    :mod:`rearguard.flows.cli.background`); None for a serve a person started."""


def handoff_router(handoff: HandOff) -> APIRouter:
    """``POST /v1/cli``: a command line from the ``rearguard`` command of this machine, run here,
    its output streamed back. Not part of the API (not in the OpenAPI document): the CLI and
    serve of one installation speak it, with serve's own token, from loopback only."""
    router = APIRouter()

    @router.post(HANDOFF_PATH, include_in_schema=False)
    async def hand_off(request: Request) -> Response:
        client = request.client
        if client is None or not is_loopback(client.host):
            return JSONResponse({"detail": "loopback clients only"}, status_code=403)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return JSONResponse({"detail": "unauthorized"}, status_code=401)
        if not hmac.compare_digest(token.strip().encode(), handoff.token.encode()):
            return JSONResponse({"detail": "forbidden"}, status_code=403)
        try:
            handed = HandOffRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"detail": str(exc.errors()[0]["msg"])}, status_code=422)
        if handed.fingerprint != handoff.fingerprint:
            if handoff.retire is not None:
                handoff.retire()
            return JSONResponse(
                {
                    "detail": "serve runs with other settings than this command "
                    "(another environment or rearguard.toml)"
                },
                status_code=409,
            )
        lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def sink(line: bytes, last: bool) -> None:
            # From the playbook process's reader thread; once serve's loop is closed (a client
            # gone, serve stopped), nobody reads the lines any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lines.put_nowait, line)
                if last:
                    loop.call_soon_threadsafe(lines.put_nowait, None)

        dispatcher: PlaybookProcess | None = request.app.state.dispatcher
        if dispatcher is None or not dispatcher.hand_off(handed, sink):
            return JSONResponse({"detail": "serve runs no playbooks now"}, status_code=503)

        async def stream() -> AsyncIterator[bytes]:
            while (line := await lines.get()) is not None:
                yield line

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    return router
