"""``rearguard drills``: recovery drills (add, list, remove, run now, history)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from rearguard.flows.cli.context import (
    TIME_FORMAT,
    JsonOption,
    LocalOption,
    emit_json,
    err,
    label_column,
    one_line,
    out,
    runtime,
    status_style,
    table,
    text_column,
)
from rearguard.flows.cli.people import ByOption, person
from rearguard.models.errors import EXIT_FAILED

if TYPE_CHECKING:
    from rearguard.models.db.tables import DrillRun

app = typer.Typer(help="Recovery drills: the real playbooks, on a sandbox, on a schedule.")


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the drill.")],
    playbook: Annotated[str, typer.Option(help="The playbook (incident type) to drill.")],
    asset: Annotated[str, typer.Option(help="The asset whose recovery is drilled.")],
    cron: Annotated[str, typer.Option(help='When: a crontab line, e.g. "0 9 * * MON".')],
    rto: Annotated[
        str | None, typer.Option(help="Recovery-time objective, e.g. 90s, 5m, 1h.")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="Timezone of the cron (default: [drills] timezone).")
    ] = None,
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Schedule a drill of a playbook on an asset."""
    from rearguard.models.drills.service import (  # lazy: CLI start-up
        add_drill,
        describe_drill,
        parse_duration,
    )

    rt = runtime(ctx)
    rto_s = parse_duration(rto) if rto is not None else None
    with rt.db.session() as session:
        drill = add_drill(
            session=session,
            name=name,
            playbook=playbook,
            asset=asset,
            cron=cron,
            timezone=timezone or rt.settings.drills.timezone,
            rto_s=rto_s,
            actor=person(ctx, by),
        )
        shown = describe_drill(drill)
    if json_output:
        emit_json(shown.json_value())
        return
    next_run = shown.next_run.isoformat() if shown.next_run else None
    out.print(
        f"drill {escape(name)}: {playbook} on {escape(asset)}, {escape(cron)} "
        f"({shown.timezone}); next run {next_run}"
    )


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List drills and when each runs next."""
    from rearguard.models.drills.service import describe_drill, list_drills  # lazy: CLI start-up

    rt = runtime(ctx)
    with rt.db.read_session() as session:
        drills = [describe_drill(d) for d in list_drills(session=session)]
    if json_output:
        emit_json([d.json_value() for d in drills])
        return
    if not drills:
        err.print("no drills; add one with `rearguard drills add`")
        return
    shown = table(
        text_column("name"),
        label_column("playbook"),
        text_column("asset"),
        label_column("cron"),
        text_column("timezone"),
        label_column("RTO", justify="right"),
        label_column("next run (UTC)"),
    )
    for d in drills:
        shown.add_row(
            one_line(d.name),
            d.playbook,
            one_line(d.asset),
            escape(d.cron),
            one_line(d.timezone),
            f"{d.rto_s:g}s" if d.rto_s else "-",
            d.next_run.strftime(TIME_FORMAT) if d.next_run else "-",
        )
    out.print(shown)


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The drill.")],
    by: ByOption = None,
) -> None:
    """Remove a drill (its history stays)."""
    from rearguard.models.drills.service import remove_drill  # lazy: CLI start-up

    rt = runtime(ctx)
    with rt.db.session() as session:
        remove_drill(session=session, name=name, actor=person(ctx, by))
    out.print(f"drill {escape(name)} removed")


@app.command("run")
def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The drill.")],
    json_output: JsonOption = False,
    local: LocalOption = False,
) -> None:
    """Run a drill now; exit 0 when it passed, 1 when it failed."""
    from rearguard.flows.cli.incident import run_with_progress  # lazy: CLI start-up
    from rearguard.flows.drills.run import run_drill  # lazy: CLI start-up
    from rearguard.flows.run_playbook import configure_prefect  # lazy: CLI start-up
    from rearguard.models.schemas import DrillRunRead  # lazy: CLI start-up

    rt = runtime(ctx)
    # The sandbox has a home of its own: a serve's Prefect server is found from this one.
    configure_prefect(
        home=rt.settings.home,
        background=rt.settings.prefect,
        announce=None if json_output else lambda line: err.print(f"[dim]{escape(line)}[/]"),
    )
    if not json_output:
        err.print(f"drill {escape(name)}: building the sandbox and running the playbook on it")
    record = run_drill(
        runtime=rt,
        name=name,
        run=lambda sandbox, incident_id: run_with_progress(sandbox, incident_id, quiet=json_output),
    )
    if json_output:
        emit_json(DrillRunRead.of(record).json_value())
    else:
        print_run(record)
    if record.status != "pass":
        raise typer.Exit(EXIT_FAILED)


def print_run(run: DrillRun) -> None:
    """Print a drill run's result: status, recovery time against the RTO, why it failed."""
    timing = f"recovered in {run.recovery_s:g}s" if run.recovery_s is not None else "no recovery"
    if run.rto_s is not None:
        timing += f" (RTO {run.rto_s:g}s)"
    out.print(
        f"drill {escape(run.drill_name)} run {run.id}: "
        f"[{'green' if run.status == 'pass' else 'red'}]{run.status}[/]; {timing}"
    )
    for step in run.steps:
        mark = "[green]✓[/]" if step["ok"] else "[red]✗[/]"
        out.print(
            f"  {mark} {step['step']:<18} {escape(step.get('detail') or step.get('error', ''))}"
        )
    if run.reason:
        out.print(f"reason: {escape(run.reason)}")
    if run.sandbox:
        out.print(f"[dim]sandbox kept: {escape(run.sandbox)}[/]")


@app.command("history")
def history(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="One drill (default: all).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Drill runs, newest first, with the success rate and recovery times per playbook."""
    from rearguard.models.drills.service import list_runs, summarise  # lazy: CLI start-up
    from rearguard.models.schemas import DrillHistory, DrillRunRead  # lazy: CLI start-up

    rt = runtime(ctx)
    with rt.db.read_session() as session:
        runs = list_runs(session=session, name=name)
    summary = summarise(runs)
    if json_output:
        shown = DrillHistory(summary=summary, runs=[DrillRunRead.of(r) for r in runs])
        emit_json(shown.json_value())
        return
    if not runs:
        err.print("no drill runs yet")
        return
    listed = table(
        label_column("run", justify="right"),
        text_column("drill"),
        label_column("trigger"),
        label_column("started (UTC)"),
        label_column("status"),
        label_column("recovery", justify="right"),
        label_column("RTO", justify="right"),
        text_column("reason"),
    )
    for r in runs:
        listed.add_row(
            str(r.id),
            one_line(r.drill_name),
            r.trigger,
            r.started_at.strftime(TIME_FORMAT),
            f"[{status_style('recovered' if r.status == 'pass' else 'failed')}]{r.status}[/]",
            f"{r.recovery_s:g}s" if r.recovery_s is not None else "-",
            f"{r.rto_s:g}s" if r.rto_s is not None else "-",
            one_line(r.reason or ""),
        )
    out.print(listed)
    for s in summary:
        times = s.recovery_s
        spread = (
            f"recovery min/median/max {times.min}/{times.median}/{times.max} s"
            if times
            else "no recovery yet"
        )
        out.print(
            f"{s.playbook} on {escape(s.asset)}: {s.passed}/{s.runs} passed "
            f"({s.success_rate:.0%}; {s.missed} missed); {spread}"
        )
