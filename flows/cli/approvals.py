"""``rearguard approve`` and ``rearguard approvals``: decide a waiting step, list requests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from rearguard.flows.cli.context import (
    ID_RANGE,
    TIME_FORMAT,
    IncidentFilterOption,
    JsonOption,
    LimitOption,
    LocalOption,
    emit_json,
    err,
    invocation,
    label_column,
    one_line,
    out,
    runtime,
    status_style,
    table,
    text_column,
)
from rearguard.flows.cli.people import ByOption, person
from rearguard.models.errors import UsageError

app = typer.Typer(help="Approval requests: which playbook steps wait for whom, and decisions.")


def approve(
    ctx: typer.Context,
    incident: Annotated[int, typer.Argument(help="The incident whose playbook waits.", **ID_RANGE)],
    by: ByOption = None,
    as_: Annotated[str | None, typer.Option("--as", hidden=True, help="Same as --by.")] = None,
    deny: Annotated[bool, typer.Option("--deny", help="Deny the step instead.")] = False,
    comment: Annotated[
        str, typer.Option("--comment", help="Why; kept in the timeline (required to deny).")
    ] = "",
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="Your Ed25519 private key (mode 600) to sign the decision with "
            "(default: [approvals] signing_key).",
        ),
    ] = None,
    code: Annotated[
        str | None,
        typer.Option("--code", help="Or the one-time code rearguard sent you (email, Slack)."),
    ] = None,
    json_output: JsonOption = False,
    local: LocalOption = False,
) -> None:
    """Approve (or deny, with a --comment saying why) the step an incident's playbook waits on.

    Your name must be one the approval policy lists, and you prove it is you: the decision is
    signed with your registered key (--key, or [approvals] signing_key), or carries the
    one-time code sent to you (--code).
    """
    from rearguard.flows.approvals.decide import answer  # lazy: CLI start-up
    from rearguard.models.schemas import ApprovalRequestRead  # lazy: CLI start-up

    if by is not None and as_ is not None and by != as_:
        raise UsageError("--by and --as name two people; give one of them")
    approver = person(ctx, by if by is not None else as_)
    if deny and not comment.strip():
        raise UsageError('a denial needs a reason: add --comment "why"')
    decided = answer(
        runtime=runtime(ctx),
        incident_id=incident,
        approver=approver,
        approve=not deny,
        comment=comment,
        key=invocation(ctx).path(key) if key else None,
        code=code,
    )
    if json_output:
        emit_json(ApprovalRequestRead.of(decided).json_value())
        return
    if decided.status == "pending":
        required = decided.policy.get("approvers_required")
        out.print(
            f"incident {incident}: {escape(decided.step)} approval by {escape(approver)} "
            f"recorded; it needs {required} distinct approvers"
        )
        return
    style = status_style("recovered" if decided.status == "approved" else "failed")
    out.print(
        f"incident {incident}: {escape(decided.step)} [{style}]{decided.status}[/] "
        f"by {escape(decided.decided_by or '')}"
    )


@app.command("statement")
def statement_(
    ctx: typer.Context,
    incident: Annotated[int, typer.Argument(help="The incident whose playbook waits.", **ID_RANGE)],
    by: ByOption = None,
    deny: Annotated[bool, typer.Option("--deny", help="The statement of a denial.")] = False,
    comment: Annotated[str, typer.Option("--comment", help="The comment you will give.")] = "",
) -> None:
    """Print the statement that signs your decision, to sign it elsewhere.

    For the Prefect UI's signature field: openssl pkeyutl -sign -inkey KEY -rawin -in FILE
    | base64 -w0. `rearguard approve --key` does all of this itself.
    """
    from rearguard.models.incidents.approval_proofs import statement  # lazy: CLI start-up
    from rearguard.models.incidents.approvals import waiting_request  # lazy: CLI start-up

    rt = runtime(ctx)
    with rt.db.read_session() as session:
        request = waiting_request(session=session, incident_id=incident)
    approver = person(ctx, by)
    sys.stdout.buffer.write(
        statement(request=request, approver=approver, approve=not deny, comment=comment)
    )
    sys.stdout.flush()


@app.command("list")
def list_(
    ctx: typer.Context,
    pending: Annotated[bool, typer.Option("--pending", help="Only those waiting.")] = False,
    incident: IncidentFilterOption = None,
    limit: LimitOption = 200,
    json_output: JsonOption = False,
) -> None:
    """List approval requests, newest first; a pending one past its deadline says overdue."""
    from rearguard.models.incidents.approvals import PENDING, list_requests  # lazy: CLI start-up
    from rearguard.models.schemas import ApprovalRequestRead  # lazy: CLI start-up

    rt = runtime(ctx)
    with rt.db.read_session() as session:
        rows = [
            ApprovalRequestRead.of(r)
            for r in list_requests(
                session=session,
                status=PENDING if pending else None,
                incident_id=incident,
                limit=limit,
            )
        ]
    if json_output:
        emit_json([r.json_value() for r in rows])
        return
    if not rows:
        err.print("no approval requests")
        return
    shown = table(
        label_column("id", justify="right"),
        label_column("incident", justify="right"),
        label_column("step"),
        label_column("round", justify="right"),
        label_column("status"),
        text_column("approvers"),
        label_column("deadline (UTC)"),
        text_column("detail"),
    )
    for row in rows:
        status = "overdue" if row.overdue else row.status
        style = {"approved": "green", "pending": "yellow"}.get(status, "red")
        detail = ""
        if row.decided_by:
            detail = f"by {row.decided_by}" + (f": {row.comment}" if row.comment else "")
        elif status in ("pending", "overdue"):
            detail = f"then {row.on_timeout}"
        shown.add_row(
            str(row.id),
            str(row.incident_id),
            escape(row.step),
            str(row.round),
            f"[{style}]{status}[/]",
            one_line(", ".join(row.approvers)),
            row.deadline.strftime(TIME_FORMAT),
            one_line(detail),
        )
    out.print(shown)
