"""``rearguard playbook``: list the catalog, run (or resume) an incident's playbook."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from rearguard.flows.cli.context import (
    ID_RANGE,
    JsonOption,
    LocalOption,
    emit_json,
    err,
    out,
    runtime,
)
from rearguard.models.errors import UsageError

app = typer.Typer(help="Playbooks: one Prefect flow per incident type.")


@app.command("list")
def list_(
    json_output: JsonOption = False,
) -> None:
    """List playbooks with their ATLAS techniques, Code of Practice provisions and steps."""
    from rearguard.models.schemas import PlaybookRead  # lazy: CLI start-up
    from rearguard.playbooks.catalog import all_playbooks  # lazy: CLI start-up

    playbooks, problems = all_playbooks()
    for problem in problems:
        err.print(f"[yellow]warning:[/] {escape(problem.line())}")
    if json_output:
        emit_json([PlaybookRead.of(spec).json_value() for spec in playbooks.values()])
        return
    from rich.table import Table  # lazy: CLI start-up

    table = Table("type", "ATLAS", "Code of Practice", "steps", "assets")
    for spec in playbooks.values():
        table.add_row(
            f"[bold]{spec.type}[/]\n{escape(spec.title)}",
            "\n".join(spec.atlas_ids),
            ", ".join(spec.provisions),
            " → ".join(spec.steps),
            ", ".join(str(k) for k in spec.asset_kinds),
        )
    out.print(table)


@app.command("run")
def run(
    ctx: typer.Context,
    incident: Annotated[int, typer.Option("--incident", help="Incident id.", **ID_RANGE)],
    json_output: JsonOption = False,
    local: LocalOption = False,
) -> None:
    """Run, rerun or resume an incident's playbook; steps converge, nothing is applied twice."""
    from rearguard.flows.cli.incident import run_with_progress, show_end  # lazy: CLI start-up
    from rearguard.models.incidents.service import get_incident  # lazy: CLI start-up

    rt = runtime(ctx)
    with rt.db.read_session() as session:
        found = get_incident(session=session, incident_id=incident)
    if str(found.status) == "resolved":
        raise UsageError(f"incident {incident} is resolved; open a new incident instead")
    if not json_output:
        err.print(f"running the {found.type} playbook for incident {incident}")
    show_end(rt, run_with_progress(rt, incident, quiet=json_output), json_output)
