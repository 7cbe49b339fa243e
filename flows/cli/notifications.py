"""``rearguard notifications``: the outbox: list, retry, dispatch."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape

from rearguard.flows.cli.context import (
    IncidentFilterOption,
    JsonOption,
    LimitOption,
    emit_json,
    err,
    label_column,
    one_line,
    out,
    runtime,
    table,
    text_column,
)
from rearguard.flows.cli.people import ByOption, person
from rearguard.models.errors import EXIT_FAILED, UsageError

app = typer.Typer(help="The notification outbox: what was delivered, what waits, what failed.")


@app.command("list")
def list_(
    ctx: typer.Context,
    pending: Annotated[bool, typer.Option("--pending", help="Only those waiting.")] = False,
    failed: Annotated[bool, typer.Option("--failed", help="Only those that failed.")] = False,
    incident: IncidentFilterOption = None,
    limit: LimitOption = 200,
    json_output: JsonOption = False,
) -> None:
    """List notifications, newest first."""
    from rearguard.notifications.outbox import (  # lazy: CLI start-up
        FAILED,
        PENDING,
        list_notifications,
    )

    if pending and failed:
        raise UsageError("--pending and --failed exclude each other")
    status = PENDING if pending else FAILED if failed else None
    rt = runtime(ctx)
    with rt.db.read_session() as session:
        rows = list_notifications(session, status=status, incident_id=incident, limit=limit)
        if pending:
            # A row being sent (or left "sending" by a dispatcher that died) is waiting too.
            rows = sorted(
                rows + list_notifications(session, status="sending", incident_id=incident),
                key=lambda r: -(r.id or 0),
            )
    if json_output:
        from rearguard.models.schemas import NotificationRead  # lazy: CLI start-up

        emit_json([NotificationRead.of(r).json_value() for r in rows])
        return
    if not rows:
        err.print("no notifications")
        return
    shown = table(
        label_column("id", justify="right"),
        label_column("incident", justify="right"),
        label_column("event"),
        label_column("channel"),
        text_column("destination"),
        label_column("status"),
        label_column("tries", justify="right"),
        text_column("detail"),
    )
    for row in rows:
        style = {"delivered": "green", "failed": "red"}.get(row.status, "yellow")
        detail = row.last_error or ""
        if row.status == "delivered" and row.receipt:
            detail = row.receipt
        shown.add_row(
            str(row.id),
            str(row.incident_id or "-"),
            row.event,
            row.channel,
            one_line(row.destination),
            f"[{style}]{row.status}[/]" + (" (in doubt)" if row.in_doubt else ""),
            str(row.attempts),
            one_line(detail),
        )
    out.print(shown)


def _dispatch(ctx: typer.Context, *, wait_s: float, outbox_ids: list[int] | None = None) -> Any:
    from rearguard.notifications.dispatcher import Dispatcher  # lazy: CLI start-up

    rt = runtime(ctx)
    with Dispatcher(settings=rt.settings, db=rt.db, secret_blocks=rt.secret_blocks) as dispatcher:
        return dispatcher.drain(wait_s=wait_s, outbox_ids=outbox_ids)


def _report(report: Any, json_output: bool) -> None:
    if json_output:
        emit_json(
            {
                "delivered": report.delivered,
                "failed": report.failed,
                "pending": report.pending,
                "errors": report.errors,
            }
        )
    else:
        style = "green" if not (report.failed or report.pending) else "yellow"
        out.print(f"notifications: [{style}]{escape(report.describe())}[/]")


@app.command("retry")
def retry(
    ctx: typer.Context,
    ids: Annotated[list[int], typer.Argument(help="Notification ids (see `list --failed`).")],
    wait: Annotated[
        float | None, typer.Option(help="Seconds to wait for delivery (default: settings).")
    ] = None,
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Send failed or waiting notifications again now; exit 1 unless all are delivered."""
    from rearguard.notifications.outbox import retry as retry_rows  # lazy: CLI start-up

    rt = runtime(ctx)
    with rt.db.transaction() as connection:
        retry_rows(connection, outbox_ids=ids, actor=person(ctx, by))
    wait_s = rt.settings.notifications.dispatch_wait_s if wait is None else wait
    report = _dispatch(ctx, wait_s=wait_s, outbox_ids=ids)
    _report(report, json_output)
    if report.failed or report.pending:
        raise typer.Exit(EXIT_FAILED)


@app.command("dispatch")
def dispatch(
    ctx: typer.Context,
    wait: Annotated[
        float | None,
        typer.Option(help="Seconds to keep retrying what waits (default: settings)."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep running: deliver as notifications arrive.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Deliver every waiting notification now; exit 1 if some still wait when time is up.

    With ``--follow`` it keeps running as the deployment's dispatcher, until interrupted.
    """
    rt = runtime(ctx)
    if follow:
        _follow(rt)
        return
    wait_s = rt.settings.notifications.dispatch_wait_s if wait is None else wait
    report = _dispatch(ctx, wait_s=wait_s)
    _report(report, json_output)
    if report.pending:
        raise typer.Exit(EXIT_FAILED)


def _follow(rt: Any) -> None:
    """Deliver as notifications are queued, until interrupted (a long-running dispatcher)."""
    from rearguard.notifications.dispatcher import Dispatcher  # lazy: CLI start-up

    err.print("delivering notifications as they are queued; Ctrl-C to stop")
    with Dispatcher(settings=rt.settings, db=rt.db, secret_blocks=rt.secret_blocks) as dispatcher:
        try:
            while True:
                done = dispatcher.run_once()
                if done.delivered or done.failed:
                    err.print(f"{done.delivered} delivered, {done.failed} failed")
                if not done.claimed:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            err.print("stopped")
