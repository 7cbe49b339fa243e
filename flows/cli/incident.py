"""``rearguard incident``: open an incident (and run its playbook), list, show."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from rearguard.flows.cli.context import (
    ID_RANGE,
    JsonOption,
    emit_json,
    err,
    out,
    runtime,
    status_style,
)
from rearguard.flows.cli.people import ByOption, person
from rearguard.flows.cli.resolve import resolve
from rearguard.models.enums import Severity
from rearguard.models.errors import EXIT_FAILED

if TYPE_CHECKING:
    from rearguard.models.db.tables import Incident, TimelineEvent
    from rearguard.models.runtime import Runtime

app = typer.Typer(help="Incidents: open one and run its playbook, list them, show a timeline.")


def run_with_progress(rt: Runtime, incident_id: int, *, quiet: bool = False) -> Incident:
    """Run an incident's playbook, printing each step as it starts and ends."""
    from rearguard.flows.run_playbook import (  # lazy: CLI start-up
        configure_prefect,
        run_playbook,
        run_records_off_the_terminal,
        uses_temporary_server,
    )

    configure_prefect(
        home=rt.settings.home,
        background=rt.settings.prefect,
        announce=None if quiet else lambda line: err.print(f"[dim]{escape(line)}[/]"),
    )
    started: dict[str, float] = {}

    def report(step: str, phase: str, message: str) -> None:
        if quiet:
            return
        if phase == "start":
            started[step] = time.perf_counter()
            err.print(f"  [dim]…[/] {step}")
            return
        if phase == "wait":
            err.print(f"  [yellow]⏸[/] {step:<18} {escape(message)}")
            return
        now = time.perf_counter()
        elapsed = now - started.get(step, now)
        mark = "[green]✓[/]" if phase == "done" else "[red]✗[/]"
        err.print(f"  {mark} {step:<18} {escape(message)} [dim]({elapsed:.2f}s)[/]")

    if not quiet and uses_temporary_server():
        err.print(
            "[dim]no PREFECT_API_URL set: starting a temporary local Prefect server "
            "(10-30 s; `prefect server start` once and set PREFECT_API_URL to skip this)[/]"
        )
    rt.reporters.append(report)
    try:
        with run_records_off_the_terminal():
            return run_playbook(runtime=rt, incident_id=incident_id)
    finally:
        rt.reporters.remove(report)


def production_version(rt: Runtime, asset: str | None) -> tuple[str | None, str | None]:
    """The label and status of the version the production alias points at, per the database."""
    if not asset:
        return None, None
    from rearguard.models.assets.versions import alias_version, get_asset  # lazy: CLI start-up

    with rt.db.read_session() as session:
        current = alias_version(
            session=session,
            asset=get_asset(session=session, name=asset),
            alias=rt.settings.registry.alias,
        )
    return (current.label, str(current.status)) if current else (None, None)


def print_outcome(rt: Runtime, incident: Incident) -> None:
    """Print how an incident ended and where production points (and whether it is trusted)."""
    label, status = production_version(rt, incident.asset_name)
    style = status_style(str(incident.status))
    trust = f" [{status_style(status or '')}]({status})[/]" if status else ""
    out.print(
        f"incident {incident.id}: [{style}]{incident.status}[/]; "
        f"{escape(incident.asset_name or '-')} {rt.settings.registry.alias} -> "
        f"[bold]{escape(label or '(none)')}[/]{trust}"
    )
    if incident.reason:
        out.print(f"reason: {escape(incident.reason)}")


def print_timeline(events: list[TimelineEvent]) -> None:
    """Print a timeline as a table: one row per event, the step's result in words."""
    from rich import box  # lazy: CLI start-up
    from rich.table import Table  # lazy: CLI start-up

    from rearguard.flows.timeline_text import describe_event  # lazy: CLI start-up

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("#", "time (UTC)", "kind", "action"):
        table.add_column(header, no_wrap=True)
    table.add_column("detail", ratio=1)
    for event in events:
        data = json.loads(event.data)
        parts = [
            f"{event.version}:" if event.version else "",
            describe_event(event.kind, event.action, data),
            "" if event.actor.startswith("playbook:") else f"(by {event.actor})",
        ]
        table.add_row(
            str(event.seq),
            event.ts[11:23],
            event.kind,
            event.action,
            escape(" ".join(p for p in parts if p)),
        )
    out.print(table)


def print_diffs(events: list[TimelineEvent]) -> None:
    """Print the diffs the tampering playbooks recorded (already redacted and bounded)."""
    from rearguard.models.recovery.results import TamperDiff, outcome_result  # lazy: CLI start-up

    for event in events:
        if event.kind != "outcome":
            continue
        result = outcome_result(event.action, json.loads(event.data))
        if isinstance(result, TamperDiff) and result.diff:
            out.print(
                f"[bold]what the tampering changed[/] ({escape(result.to)} restored, "
                f"{escape(result.from_)} as found):"
            )
            out.print(result.diff, markup=False, end="")


@app.command("open")
def open_(
    ctx: typer.Context,
    type: Annotated[str, typer.Option("--type", help="Incident type (see `playbook list`).")],
    asset: Annotated[str | None, typer.Option(help="The affected asset.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Suspected start of the compromise, ISO 8601.")
    ] = None,
    severity: Annotated[Severity, typer.Option(help="sev1 (worst) to sev4.")] = Severity.SEV2,
    summary: Annotated[str, typer.Option(help="What was seen.")] = "",
    no_run: Annotated[bool, typer.Option("--no-run", help="Record it; do not run.")] = False,
    digest: Annotated[
        str | None, typer.Option(help="supply_chain: SHA-256 of the malicious file.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option(help="supply_chain: the malicious file (hashed here).")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="data_poisoning: the dataset.")] = None,
    new: Annotated[
        bool,
        typer.Option(
            "--new", help="Open a new incident even if one of this type is open on the asset."
        ),
    ] = False,
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Open an incident and run its playbook; exit 0 when recovered, 1 when it failed.

    When an incident of the type is already unresolved on the asset, attach to it instead
    (say which, and exit 0) unless --new: its playbook is not run twice.
    """
    from rearguard.flows.opening import open_or_attach  # lazy: CLI start-up

    rt = runtime(ctx)
    opened = open_or_attach(
        runtime=rt,
        type=type,
        asset=asset,
        severity=severity,
        since=since,
        summary=summary,
        actor=person(ctx, by),
        digest=digest,
        file=file,
        dataset=dataset,
        new=new,
    )
    incident_id = opened.incident_id
    if opened.attached:
        if json_output:
            emit_json({"id": incident_id, "status": opened.status, "attached": True})
        else:
            out.print(
                f"incident {incident_id} ({type} on {escape(asset or dataset or '-')}) is "
                f"already [{status_style(opened.status)}]{opened.status}[/]: attached to it, "
                f"its playbook is not run again; see `rearguard incident show {incident_id}` "
                "(--new opens another)"
            )
            if opened.status == "failed":
                out.print(
                    f"to run its playbook again: rearguard playbook run --incident {incident_id}"
                )
        return
    if no_run:
        if json_output:
            emit_json({"id": incident_id, "status": "open", "attached": False})
        else:
            out.print(
                f"incident {incident_id} opened; run it with `rearguard playbook run "
                f"--incident {incident_id}`"
            )
        return
    if not json_output:
        err.print(f"incident {incident_id} opened ({type}, {severity}); running its playbook")
    incident = run_with_progress(rt, incident_id, quiet=json_output)
    show_end(rt, incident, json_output)


def show_end(rt: Runtime, incident: Incident, json_output: bool) -> None:
    """Print how a playbook run ended (or its incident as JSON); exit 1 unless it succeeded."""
    if json_output:
        from rearguard.models.incidents.service import incident_now  # lazy: CLI start-up

        with rt.db.read_session() as session:
            shown = incident_now(
                session=session, incident=incident, alias=rt.settings.registry.alias
            )
        emit_json(shown.json_value())
    else:
        print_outcome(rt, incident)
    # model_theft ends contained: nothing is restored, the credentials are rotated.
    if str(incident.status) == "contained" and incident.state.get("concluded") == "contained":
        err.print(
            f"when the response is over: rearguard incident resolve {incident.id} "
            '--note "how it was closed"'
        )
    if str(incident.status) not in ("recovered", "resolved", "contained"):
        raise typer.Exit(EXIT_FAILED)


@app.command("list")
def list_(
    ctx: typer.Context,
    drills: Annotated[
        bool, typer.Option("--drills", help="Include the incidents of recovery drills.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """List incidents, newest first (drills' only with --drills)."""
    from rearguard.models.incidents.service import list_incidents  # lazy: CLI start-up

    rt = runtime(ctx)
    with rt.db.read_session() as session:
        incidents = list_incidents(session=session, include_drills=drills)
    if json_output:
        from rearguard.models.schemas import IncidentRead  # lazy: CLI start-up

        emit_json([IncidentRead.of(i).json_value() for i in incidents])
        return
    if not incidents:
        err.print("no incidents")
        return
    from rich.table import Table  # lazy: CLI start-up

    table = Table("id", "type", "severity", "status", "asset", "opened (UTC)", "reason")
    for i in incidents:
        table.add_row(
            str(i.id),
            i.type,
            str(i.severity),
            f"[{status_style(str(i.status))}]{i.status}[/]",
            escape(i.asset_name or "-"),
            i.opened_at.isoformat()[:19],
            escape((i.reason or "")[:60]),
        )
    out.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    incident_id: Annotated[int, typer.Argument(help="Incident id.", **ID_RANGE)],
    json_output: JsonOption = False,
) -> None:
    """Show an incident and its timeline."""
    from rearguard.models.audit.chain import events_for_incident  # lazy: CLI start-up
    from rearguard.models.incidents.service import (  # lazy: CLI start-up
        get_incident,
        incident_detail,
    )

    rt = runtime(ctx)
    if json_output:
        with rt.db.read_session() as session:
            detail = incident_detail(
                session=session, incident_id=incident_id, alias=rt.settings.registry.alias
            )
        emit_json(detail.json_value())
        return
    with rt.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        events = events_for_incident(session=session, incident_id=incident_id)
    out.print(
        f"[bold]incident {incident.id}[/] {incident.type} {incident.severity} "
        f"[{status_style(str(incident.status))}]{incident.status}[/] on "
        f"{escape(incident.asset_name or '-')}"
    )
    if incident.summary:
        out.print(f"summary: {escape(incident.summary)}")
    print_timeline(events)
    print_diffs(events)
    print_outcome(rt, incident)


app.command("resolve")(resolve)
