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
    TIME_FORMAT,
    JsonOption,
    LocalOption,
    emit_json,
    err,
    hosted,
    invocation,
    label_column,
    one_line,
    out,
    reading,
    runtime,
    status_style,
    styled,
    table,
    text_column,
)
from rearguard.flows.cli.people import ByOption, person
from rearguard.flows.cli.resolve import resolve
from rearguard.models.enums import Severity
from rearguard.models.errors import EXIT_FAILED

if TYPE_CHECKING:
    from rich.status import Status

    from rearguard.models.db.tables import Incident, TimelineEvent
    from rearguard.models.runtime import Runtime

app = typer.Typer(help="Incidents: open one and run its playbook, list them, show a timeline.")


def run_with_progress(rt: Runtime, incident_id: int, *, quiet: bool = False) -> Incident:
    """Run an incident's playbook, printing one line per step as it ends.

    On a terminal, the step that is running shows on a transient line (with a spinner) that
    its result replaces; elsewhere (a pipe, a log) only the results are printed.
    """
    from rearguard.flows.prefect_infra.quiet import (  # lazy: CLI start-up
        TEMPORARY_SERVER_DEFAULTS,
        apply_defaults,
        debugging,
        prefect_off_the_terminal,
    )
    from rearguard.flows.run_playbook import (  # lazy: CLI start-up
        configure_prefect,
        run_playbook,
        run_playbook_until_it_ends,
        uses_temporary_server,
    )

    configure_prefect(
        home=rt.settings.home,
        background=rt.settings.prefect,
        announce=None if quiet else lambda line: err.print(f"[dim]{escape(line)}[/]"),
    )
    if uses_temporary_server():
        if not debugging():
            apply_defaults(TEMPORARY_SERVER_DEFAULTS)
        if not quiet:
            err.print(
                "[dim]no PREFECT_API_URL set: starting a temporary local Prefect server "
                "(10-30 s; `prefect server start` once and set PREFECT_API_URL to skip this)[/]"
            )
    if not hosted():  # serve's process is serve's: its own logging stays as it is
        prefect_off_the_terminal()
    progress = StepProgress()
    if not quiet:
        rt.reporters.append(progress.report)
    # In serve, the command ends with the playbook's work: serve's process outlives Prefect's
    # bookkeeping of the run, which the person waiting need not wait for. Not a drill's: its
    # sandbox is removed as soon as the run returns.
    run = run_playbook_until_it_ends if hosted() and not rt.drill else run_playbook
    try:
        return run(runtime=rt, incident_id=incident_id)
    finally:
        progress.stop()
        if not quiet:
            rt.reporters.remove(progress.report)


class StepProgress:
    """A playbook's progress on standard error: one line per step, written when it ends.

    It prints on the standard error of the command that made it, whichever thread the
    playbook reports from.
    """

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.running: Status | None = None
        self.console = err.current()

    def report(self, step: str, phase: str, message: str) -> None:
        """A runtime reporter: ``start``, ``wait``, ``done`` or ``fail`` of a step (the run's
        own report of its end is not a step's)."""
        if phase not in ("start", "wait", "done", "fail"):
            return
        if phase == "start":
            self.started[step] = time.perf_counter()
            if self.console.is_terminal:
                self.stop()
                self.running = self.console.status(f"{step}…", spinner="dots")
                self.running.start()
            return
        self.stop()
        if phase == "wait":
            self.console.print(f"  [yellow]⏸[/] {step:<18} {escape(message)}")
            return
        now = time.perf_counter()
        elapsed = now - self.started.pop(step, now)
        mark = "[green]✓[/]" if phase == "done" else "[red]✗[/]"
        self.console.print(f"  {mark} {step:<18} {escape(message)} [dim]({elapsed:.2f}s)[/]")

    def stop(self) -> None:
        """Take the running step's transient line off the terminal."""
        if self.running is not None:
            self.running.stop()
            self.running = None


def production_version(rt: Runtime, asset: str | None) -> tuple[str | None, str | None]:
    """The label and status of the version the production alias points at, per the database
    (none for an asset the registry does not know)."""
    if not asset:
        return None, None
    from rearguard.models.assets.versions import alias_version, get_asset  # lazy: CLI start-up
    from rearguard.models.errors import NotFoundError  # lazy: CLI start-up

    with rt.db.read_session() as session:
        try:
            found = get_asset(session=session, name=asset)
        except NotFoundError:
            return None, None
        current = alias_version(session=session, asset=found, alias=rt.settings.registry.alias)
    return (current.label, str(current.status)) if current else (None, None)


def print_outcome(
    rt: Runtime, incident: Incident, events: list[TimelineEvent] | None = None
) -> None:
    """Print how an incident ended, where production points for every asset it moved (and
    whether that version is trusted), and why: what was moved, quarantined, validated, and
    which known-good versions were rejected for the rollback.

    Args:
        rt: the command's runtime.
        incident: the incident.
        events: its timeline, when the caller has read it already.
    """
    from rearguard.models.recovery.effects import effects_of  # lazy: CLI start-up

    if events is None:
        from rearguard.models.audit.chain import events_for_incident  # lazy: CLI start-up

        with rt.db.read_session() as session:
            events = events_for_incident(session=session, incident_id=int(incident.id or 0))
    effects = effects_of(events)
    alias = rt.settings.registry.alias
    assets = list(dict.fromkeys([incident.asset_name or "", *(m.asset for m in effects.moves)]))
    pointers = []
    for asset in filter(None, assets):
        label, status = production_version(rt, asset)
        if label:
            trust = f" ({styled(status or '')})"
            pointers.append(f"{escape(asset)} {alias} -> [bold]{escape(label)}[/]{trust}")
    where = ", ".join(pointers) or f"no {alias} alias moved"
    out.print(f"incident {incident.id}: {styled(str(incident.status))}; {where}")

    def why(label: str, text: str) -> None:
        out.print(f"  [dim]{label:<13}[/] {escape(text)}")

    for move in effects.moves:
        why("moved", f"{move.asset} {alias}: {move.from_ or '(none)'} -> {move.to}")
    if effects.quarantined:
        why("quarantined", ", ".join(effects.quarantined))
    if effects.validated:
        why("validated", ", ".join(effects.validated))
    if unchecked := [
        f"{m.asset}@{m.to}" for m in effects.moves if not effects.was_validated(m.asset, m.to)
    ]:
        why("not validated", f"{', '.join(unchecked)} (no validation check ran)")
    for rejected in effects.rejected:
        why("rejected", f"{rejected.asset}@{rejected.version}: {rejected.reason}")
    if incident.reason:
        out.print(f"reason: {escape(incident.reason)}")


def print_timeline(events: list[TimelineEvent]) -> None:
    """Print a timeline as a table: one row per event, the step's result in words.

    At 80 columns the number, time, kind and action keep their width; the detail wraps.
    """
    from rearguard.flows.timeline_text import describe_event  # lazy: CLI start-up

    shown = table(
        label_column("#", justify="right"),
        label_column("time (UTC)"),
        label_column("kind"),
        label_column("action"),
        text_column("detail", wrap=True, min_width=20),
    )
    day = ""
    for event in events:
        if event.ts[:10] != day:  # the time column holds the time of day: mark each new day
            day = event.ts[:10]
            shown.add_row("", f"[dim]{day}[/]", "", "", "")
        data = json.loads(event.data)
        parts = [
            f"{event.version}:" if event.version else "",
            describe_event(event.kind, event.action, data),
            # A playbook's or the notifier's own events need no "by".
            "" if event.actor.startswith(("playbook:", "rearguard:")) else f"(by {event.actor})",
        ]
        shown.add_row(
            str(event.seq),
            event.ts[11:19],
            event.kind,
            event.action,
            escape(" ".join(p for p in parts if p)),
        )
    out.print(shown)


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
    local: LocalOption = False,
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
        file=invocation(ctx).path(file) if file else None,
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
    from rearguard.models.incidents.rows import list_incident_rows  # lazy: CLI start-up

    with reading(ctx) as reader:
        incidents = list_incident_rows(reader=reader, include_drills=drills)
    if json_output:
        from rearguard.models.schemas import IncidentRead  # lazy: CLI start-up

        emit_json([IncidentRead.of(i).json_value() for i in incidents])
        return
    if not incidents:
        err.print("no incidents")
        return
    shown = table(
        label_column("id", justify="right"),
        label_column("type"),
        label_column("sev"),
        label_column("status"),
        text_column("asset"),
        label_column("opened (UTC)"),
        text_column("reason"),
    )
    for i in incidents:
        shown.add_row(
            str(i.id),
            i.type,
            str(i.severity),
            styled(str(i.status)),
            one_line(i.asset_name or "-"),
            i.opened_at.strftime(TIME_FORMAT),
            one_line(i.reason or ""),
        )
    out.print(shown)


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
    print_outcome(rt, incident, events)


app.command("resolve")(resolve)
