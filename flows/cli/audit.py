"""``rearguard audit``: verify the tamper-evident timeline."""

from __future__ import annotations

from typing import Annotated

import typer

from rearguard.flows.cli.context import emit_json, err, out, runtime
from rearguard.models.errors import EXIT_INTEGRITY

app = typer.Typer(help="The audit chain: every action, hash-chained.")


@app.command("verify")
def verify(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Recompute every event's hash; exit 3 naming the first altered, deleted, reordered or
    inserted event."""
    from rearguard.models.audit import verify_stored_chain

    rt = runtime()
    with rt.db.read_session() as session:
        report = verify_stored_chain(session)
    if json_output:
        emit_json(
            {
                "ok": report.ok,
                "events": report.events,
                "last_seq": report.last_seq,
                "last_hash": report.last_hash,
                "first_bad": (
                    {
                        "seq": report.problem.seq,
                        "reason": report.problem.reason,
                    }
                    if report.problem
                    else None
                ),
            }
        )
    elif report.ok:
        out.print(f"audit chain intact: {report.events} events, head {report.last_hash[:16]}…")
    else:
        assert report.problem is not None
        err.print(
            f"[red]audit chain broken at {report.problem.describe()}[/]; "
            f"{report.events} events before it verify"
        )
    if not report.ok:
        raise typer.Exit(EXIT_INTEGRITY)
