"""Hooks that are Prefect deployments: a flow run of the deployment, waited for, its final
state standing for the exit code (see :mod:`rearguard.models.recovery.hooks`)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from rearguard.models.commands import CommandRun


def run_hook_deployment(name: str, *, env: Mapping[str, str], timeout_s: float) -> CommandRun:
    """Create a flow run of deployment ``name`` and wait for it to end, at most ``timeout_s``.

    The hook's environment goes to the flow run as the job variable ``env`` (a process
    worker's flow run gets it as its environment). A flow run still going at the timeout is
    cancelled.

    Args:
        name: the deployment, ``flow/deployment``.
        env: the hook's environment (``REARGUARD_INCIDENT_ID`` and the rest).
        timeout_s: how long to wait for the flow run to end.

    Returns:
        How it ended: ok when the flow run completed; the output tail is its final state's
        name and message.
    """
    from prefect.client.orchestration import get_client  # lazy: CLI start-up (Prefect, ~1 s)
    from prefect.client.schemas.objects import FlowRun  # lazy: CLI start-up (Prefect, ~1 s)
    from prefect.deployments import run_deployment  # lazy: CLI start-up (Prefect, ~1 s)
    from prefect.exceptions import ObjectNotFound  # lazy: CLI start-up (Prefect, ~1 s)
    from prefect.states import Cancelling  # lazy: CLI start-up (Prefect, ~1 s)

    started = time.monotonic()
    try:
        flow_run = run_deployment(
            name=name,
            job_variables={"env": dict(env)},
            timeout=timeout_s,
            as_subflow=False,
            tags=["rearguard-hook"],
            # A step's thread inherits the flow's context, which reads as async: force the
            # synchronous call. Prefect's dispatcher takes _sync, but its signature omits it.
            _sync=True,  # type: ignore[call-arg]  # accepted by Prefect's async_dispatch
        )
    except ObjectNotFound:
        return CommandRun(False, None, 0.0, "", f"found no Prefect deployment {name!r}")
    if not isinstance(flow_run, FlowRun):
        raise TypeError(f"run_deployment answered {type(flow_run).__name__}, not a flow run")
    duration = time.monotonic() - started
    state = flow_run.state
    if state is None or not state.is_final():
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run.id, Cancelling(), force=True)
        return CommandRun(
            False, None, duration, "", f"timed out after {timeout_s:g}s (flow run {flow_run.id})"
        )
    state_name = state.name or state.type.value
    tail = f"{state_name}: {state.message}" if state.message else state_name
    if state.is_completed():
        return CommandRun(True, 0, duration, tail, f"flow run {flow_run.id} completed")
    return CommandRun(False, 1, duration, tail, f"flow run {flow_run.id} ended {state_name}")
