"""What Prefect lends a runtime: hooks that are deployments, and Secret blocks.

``models`` and ``notifications`` never import Prefect; a runtime built here carries the two
functions that need it (``Runtime.hook_deployments``, ``Runtime.secret_blocks``), and they
import Prefect only when called.
"""

from __future__ import annotations

import dataclasses

from rearguard.flows.prefect_infra.hook_deployments import run_hook_deployment
from rearguard.models.runtime import Runtime


def read_secret_block(name: str) -> str:
    """The value of the Prefect Secret block ``name``."""
    from prefect.blocks.system import Secret  # lazy: CLI start-up (Prefect, ~1 s)

    secret = Secret.load(name)  # synchronous here: called from synchronous code
    if not isinstance(secret, Secret):
        raise TypeError(f"Secret.load answered {type(secret).__name__}, not a block")
    return str(secret.get())


def with_prefect(runtime: Runtime) -> Runtime:
    """``runtime`` with what Prefect lends it: itself when it has both already, else a copy
    sharing its settings, database, registry and reporters."""
    if runtime.hook_deployments is not None and runtime.secret_blocks is not None:
        return runtime
    return dataclasses.replace(
        runtime,
        hook_deployments=runtime.hook_deployments or run_hook_deployment,
        secret_blocks=runtime.secret_blocks or read_secret_block,
    )
