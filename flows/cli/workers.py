"""``rearguard deploy`` and ``rearguard worker``: playbooks as Prefect deployments on a work pool,
and the workers that run them (``[intake] dispatch = "deployment"``)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from rearguard.flows.cli.context import JsonOption, emit_json, err, out, runtime
from rearguard.models.errors import ConfigurationError


def _require_prefect_server(ctx: typer.Context) -> None:
    from rearguard.flows.run_playbook import (  # lazy: CLI start-up
        configure_prefect,
        uses_temporary_server,
    )

    configure_prefect(home=runtime(ctx).settings.home)
    if uses_temporary_server():
        raise ConfigurationError(
            "deployments and workers need a Prefect server, and none is configured",
            hint="set PREFECT_API_URL (`rearguard serve` or `prefect server start` runs one)",
        )


PoolOption = Annotated[
    str | None,
    typer.Option("--pool", help="Prefect work pool (default: [intake] work_pool, rearguard)."),
]


def deploy(
    ctx: typer.Context,
    pool: PoolOption = None,
    json_output: JsonOption = False,
) -> None:
    """Register one Prefect deployment per playbook on a work pool (a process pool is created
    if missing)."""
    from rearguard.flows.prefect_infra.deployments import deploy_playbooks  # lazy: CLI start-up

    _require_prefect_server(ctx)
    pool = pool or runtime(ctx).settings.intake.work_pool
    names = deploy_playbooks(pool=pool)
    if json_output:
        emit_json({"work_pool": pool, "deployments": names})
        return
    for name in names:
        out.print(name)
    err.print(f"{len(names)} deployment(s) on work pool {pool!r}; `rearguard worker` runs them")


def worker(ctx: typer.Context, pool: PoolOption = None) -> None:
    """Run a Prefect process worker for the playbooks' work pool until SIGINT/SIGTERM."""
    from rearguard.flows.prefect_infra.deployments import run_worker  # lazy: CLI start-up

    # Prefect's default is to ask the pool for work every 10 s: an incident would wait 5 s on
    # average before its flow run starts. Set before Prefect reads its settings; the user's
    # own setting wins.
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")
    _require_prefect_server(ctx)
    rt = runtime(ctx)
    pool = pool or rt.settings.intake.work_pool
    # Flow runs inherit this environment: make the command line's --home and --database-url
    # theirs too.
    os.environ["REARGUARD_HOME"] = str(rt.settings.home)
    os.environ["REARGUARD_DATABASE_URL"] = rt.settings.database_url
    err.print(f"rearguard worker on work pool {pool!r}; Ctrl-C stops")
    run_worker(pool=pool)
