"""Running an incident's playbook: in this process, under Prefect, or as a flow run of its
deployment on a work pool's workers (``[intake] dispatch``)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from rearguard.flows.prefect_infra.api_url import configured_api_url
from rearguard.flows.prefect_infra.quiet import PrefectRecordsOff, apply_defaults, debugging
from rearguard.flows.prefect_infra.server import (
    published_client_env,
    shared_prefect_server,
    use_client_env,
    wait_for_api,
)
from rearguard.models.config.prefect import PrefectSettings
from rearguard.models.db.tables import Incident
from rearguard.models.errors import ConfigurationError, RearguardError
from rearguard.models.incidents.service import get_incident
from rearguard.models.runtime import PLAYBOOK_ENDED, Runtime, bound_runtime
from rearguard.playbooks.catalog import CATALOG, PlaybookSpec, get_playbook, load_flow

logger = logging.getLogger(__name__)


def configure_prefect(
    *,
    home: Path | None = None,
    background: PrefectSettings | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Apply rearguard's defaults for Prefect settings the user has not set.

    Call it before Prefect is imported: Prefect reads its settings once, on import.

    Args:
        home: a rearguard home: when no Prefect API is configured and a local Prefect server
            published in this home answers (``rearguard serve``'s, or one started in the
            background), use that server (rather than starting a temporary one).
        background: the ``[prefect]`` settings of a command that runs a playbook: when no
            server answers, start one in the background for this and later commands (unless
            its ``idle_stop_s`` is 0).
        announce: told one line before a background server is started.

    Raises:
        ConfigurationError: a background server could not be started.
    """
    apply_defaults()
    if home is None:
        return
    if configured_api_url():
        return
    if background is None:
        local = published_client_env(home)
    else:
        local = shared_prefect_server(
            home=home, idle_stop_s=background.idle_stop_s, announce=announce
        )
    if local:
        use_client_env(local)


def uses_temporary_server() -> bool:
    """True when no Prefect API is configured, so Prefect will start a temporary server."""
    if os.environ.get("PREFECT_API_URL"):
        return False
    from prefect.settings import get_current_settings  # lazy: Prefect after configure_prefect

    return not get_current_settings().api.url


def warm_up(*, wait_for_server: bool = False) -> None:
    """Do ahead of the first incident what a process's first playbook run would otherwise do on
    its alert's time: import the built-in playbooks and, when a Prefect API is configured, run
    one no-op flow (``rearguard-warm-up``, one task) on it.

    The first flow run of a process, and the first one a Prefect server orchestrates, each pay
    for imports and first-request set-up: ``rearguard serve``'s first alert reached its
    playbook's first step 1.3-1.7 s after it was opened, the next ones 0.1-0.2 s. Importing
    the playbooks and opening a Prefect client (tried, not kept) brought it to 0.75-0.96 s;
    the no-op flow run, which also does both, to 0.14-0.35 s, like the next ones. serve
    answers up to 2-3 s later (bench/README.md "Intake, 2026-12-05").

    Args:
        wait_for_server: the Prefect API is a local server started beside this process (by
            serve): wait until it answers before the flow run.
    """
    from prefect import flow, task  # lazy: Prefect after configure_prefect

    for spec in CATALOG.values():
        load_flow(spec)
    if uses_temporary_server():
        return  # a temporary server would be started, and stopped, for nothing
    from prefect.settings import get_current_settings  # lazy: Prefect after configure_prefect

    api_url = get_current_settings().api.url
    if wait_for_server and api_url and not wait_for_api(api_url):
        return  # serve says what is wrong with its server; the playbooks would, one by one

    @task(name="warm-up-step", persist_result=False)
    async def step() -> None:
        return None

    @flow(name="rearguard-warm-up", persist_result=False)
    async def warm() -> None:
        await step()

    asyncio.run(warm())


@contextlib.contextmanager
def run_records_off_the_terminal() -> Iterator[None]:
    """Keep Prefect's flow- and task-run log records off this process's console while the
    block runs; Prefect's API (and its UI) still gets them. With ``REARGUARD_DEBUG`` set,
    they stay.

    rearguard says itself how each step and each playbook ended; Prefect's console copies
    repeat it and, for an expected failure such as "no known-good version", add three
    tracebacks.
    """
    # lazy: Prefect after configure_prefect
    import prefect.main  # noqa: F401  (sets up Prefect's console handlers, filtered here)

    off_terminal = PrefectRecordsOff("prefect.flow_runs", "prefect.task_runs")
    handlers = [] if debugging() else list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(off_terminal)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(off_terminal)


def run_playbook(*, runtime: Runtime, incident_id: int) -> Incident:
    """Run (or rerun) an incident's playbook to its end and return the incident as it ends.

    A playbook that fails records ``failed`` and the reason on the incident; that is a result,
    not an exception. Steps converge on a rerun, so this also resumes an interrupted run.
    ``runtime`` is bound to the run (and only to it): other playbooks may run at the same time
    in other threads of this process, each on its own runtime (a drill's sandbox beside the
    application's).

    Raises:
        NotFoundError: unknown incident or incident type.
    """
    configure_prefect()
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
    playbook = load_flow(get_playbook(incident.type))
    # A drill's incident ids are its sandbox's; its flow runs say so in Prefect's UI.
    prefix = f"drill-{runtime.settings.home.name}-" if runtime.drill else ""
    named = playbook.with_options(flow_run_name=f"{prefix}incident-{incident_id}")
    # A playbook failure is recorded on the incident by the playbook guard, which also
    # delivers the notifications the run queued.
    with contextlib.suppress(RearguardError), bound_runtime(runtime):
        # asyncio.run's task starts with a copy of this context, so the flow sees the binding.
        asyncio.run(named(incident_id=incident_id))
    with runtime.db.read_session() as session:
        return get_incident(session=session, incident_id=incident_id)


def run_playbook_until_it_ends(*, runtime: Runtime, incident_id: int) -> Incident:
    """:func:`run_playbook`, returning as soon as the run's work is over (the playbook guard
    reports :data:`~rearguard.models.runtime.PLAYBOOK_ENDED`: every step done, notifications
    delivered) rather than once Prefect has recorded the flow run's end (tens of milliseconds
    more); that goes on in a thread of this process, which must outlive it (``rearguard serve``,
    for a command someone waits on). An error before the run's work is over is raised here;
    one after it, in Prefect's bookkeeping, is logged.

    Raises:
        NotFoundError: unknown incident or incident type.
    """
    ended = threading.Event()
    failed: list[BaseException] = []

    def watch(step: str, phase: str, _status: str) -> None:
        if (step, phase) == PLAYBOOK_ENDED:
            ended.set()

    def run() -> None:
        try:
            run_playbook(runtime=runtime, incident_id=incident_id)
        except BaseException as exc:  # handed over to the caller, or logged once it has gone
            if ended.is_set():
                logger.error("incident %s: Prefect's end of its run failed: %s", incident_id, exc)
            else:
                failed.append(exc)
        finally:
            runtime.reporters.remove(watch)
            ended.set()

    runtime.reporters.append(watch)
    # The thread sees this context (the runtime's binding, the command's terminal).
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(run,), name=f"rearguard-run-{incident_id}").start()
    ended.wait()
    if failed:
        raise failed[0]
    with runtime.db.read_session() as session:
        return get_incident(session=session, incident_id=incident_id)


def deployment_name(spec: PlaybookSpec) -> str:
    """The ``flow/deployment`` name of a playbook's deployment: its flow's name, then its
    incident type (``model_compromise/model_compromise`` for the built-in ones).

    Raises:
        ConfigurationError: the playbook's flow cannot be imported.
    """
    return f"{load_flow(spec).name}/{spec.type}"


def queue_playbook_run(*, runtime: Runtime, incident_id: int) -> str:
    """Create the flow run of an incident's playbook on its deployment, and return at once.

    The incident (its id and when it was opened) is the idempotency key: however many times,
    and from however many intake processes, an incident is dispatched, its playbook has one
    flow run; another database's incident of the same id (a drill's sandbox, a fresh install
    on the same Prefect server) gets its own.

    Returns:
        The flow run's id.

    Raises:
        NotFoundError: unknown incident or incident type.
        ConfigurationError: the playbook has no deployment (``rearguard deploy`` makes them).
    """
    configure_prefect()
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
    name = deployment_name(get_playbook(incident.type))
    from prefect.client.schemas.objects import FlowRun  # lazy: Prefect after configure_prefect
    from prefect.deployments import run_deployment  # lazy: Prefect after configure_prefect
    from prefect.exceptions import ObjectNotFound  # lazy: Prefect after configure_prefect

    try:
        flow_run = run_deployment(
            name=name,
            parameters={"incident_id": incident_id},
            flow_run_name=f"incident-{incident_id}",
            timeout=0,
            idempotency_key=f"incident-{incident_id}-{incident.opened_at:%Y%m%dT%H%M%S.%f}",
            as_subflow=False,
        )
    except ObjectNotFound as exc:
        raise ConfigurationError(
            f"no Prefect deployment {name!r} for incident {incident_id}",
            hint="run `rearguard deploy` against this Prefect server",
        ) from exc
    # Called from synchronous code, run_deployment runs synchronously: a flow run, no coroutine.
    if not isinstance(flow_run, FlowRun):
        raise TypeError(f"run_deployment answered {type(flow_run).__name__}, not a flow run")
    return str(flow_run.id)


def dispatch_playbook(*, runtime: Runtime, incident_id: int) -> str:
    """Start an incident's playbook the way ``[intake] dispatch`` says.

    ``inline`` runs it here to its end (:func:`run_playbook`); ``deployment`` queues one flow
    run of its deployment for the work pool's workers (:func:`queue_playbook_run`).

    Returns:
        What happened, for the log: the incident's type, asset, status and reason, or the
        queued flow run.

    Raises:
        NotFoundError: unknown incident or incident type.
        ConfigurationError: ``deployment`` and the playbook has no deployment.
    """
    if runtime.settings.intake.dispatch == "deployment":
        return f"flow run {queue_playbook_run(runtime=runtime, incident_id=incident_id)} queued"
    ended = run_playbook(runtime=runtime, incident_id=incident_id)
    return f"{ended.type} on {ended.asset_name}: {ended.status}" + (
        f" ({ended.reason})" if ended.reason else ""
    )
