"""The playbooks' Prefect deployments on a work pool, and the workers that run them.

One deployment per catalog playbook, named after its incident type, with a module-path
entrypoint: a worker needs rearguard (and any plug-in) installed, not a copy of the source.

Prefect is imported inside the functions: it reads its settings when imported, and ``rearguard
worker`` imports this module before it sets ``PREFECT_WORKER_QUERY_SECONDS`` and the rest
(``configure_prefect``). Imported first, a worker asked for work every 10 s, not every 1 s.
"""

from __future__ import annotations

import asyncio

from rearguard.flows.run_playbook import deployment_name
from rearguard.playbooks.catalog import all_playbooks, load_flow


def ensure_work_pool(pool: str) -> bool:
    """Create the ``process`` work pool named ``pool`` unless it exists.

    Returns:
        True when it was created.
    """
    from prefect.client.orchestration import get_client  # lazy: Prefect after configure_prefect
    from prefect.client.schemas.actions import (  # lazy: Prefect after configure_prefect
        WorkPoolCreate,
    )
    from prefect.exceptions import ObjectAlreadyExists  # lazy: Prefect after configure_prefect

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            return False
    return True


def deploy_playbooks(*, pool: str) -> list[str]:
    """Register (or update) one deployment per catalog playbook on a work pool.

    Args:
        pool: the work pool; created as a ``process`` pool if missing.

    Returns:
        The ``flow/deployment`` names, in catalog order.

    Raises:
        ConfigurationError: a playbook's flow cannot be imported.
    """
    from prefect.types.entrypoint import EntrypointType  # lazy: Prefect after configure_prefect

    ensure_work_pool(pool)
    playbooks, _problems = all_playbooks()
    names = []
    for spec in playbooks.values():
        deployment = load_flow(spec).to_deployment(
            name=spec.type,
            description=spec.title,
            tags=["rearguard"],
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deployment.apply(work_pool_name=pool)
        names.append(deployment_name(spec))
    return names


def run_worker(*, pool: str) -> None:
    """Run a Prefect process worker on the pool until interrupted.

    Its flow runs are child processes that inherit this environment (``REARGUARD_*``
    included), so the playbooks find the same database and registry as this process.
    """
    from prefect.workers.process import ProcessWorker  # lazy: Prefect after configure_prefect

    async def work() -> None:
        async with ProcessWorker(work_pool_name=pool) as worker:
            await worker.start()

    asyncio.run(work())
