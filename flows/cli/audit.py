"""``rearguard audit``: verify the tamper-evident timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rearguard.flows.cli.context import JsonOption, emit_json, err, out, runtime
from rearguard.models.errors import EXIT_INTEGRITY, UsageError

app = typer.Typer(help="The audit chain: every action, hash-chained.")


@app.command("verify")
def verify(
    json_output: JsonOption = False,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Verify an exported timeline (rearguard export ID --format jsonl) offline, "
            "without the database.",
            show_default=False,
        ),
    ] = None,
    against_database: Annotated[
        bool,
        typer.Option(
            "--against-database",
            help="With --file: also check every record against this database (a gap must "
            "withhold exactly the other incidents' events it names, a redacted record must be "
            "its stored event with only secrets replaced).",
        ),
    ] = False,
) -> None:
    """Recompute every event's hash; exit 3 naming the first altered, deleted, reordered or
    inserted event."""
    from rearguard.models.audit.chain import verify_stored_chain

    if file is not None:
        _verify_file(file, json_output, against_database=against_database)
        return
    if against_database:
        raise UsageError("--against-database checks a file: give it with --file")

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


def _verify_file(path: Path, json_output: bool, *, against_database: bool) -> None:
    from rearguard.flows.exports.timeline_jsonl import verify_file

    report = verify_file(path, db=runtime().db if against_database else None)
    problem = report.problem
    if json_output:
        emit_json(
            {
                "ok": report.ok,
                "file": str(path),
                "incident_id": report.incident_id,
                "events": report.events,
                "redacted": report.redacted,
                "redacted_seqs": list(report.redacted_seqs),
                "gaps": report.gaps,
                "last_seq": report.last_seq,
                "last_hash": report.last_hash,
                "checked_against_database": against_database,
                "first_bad": (
                    {"seq": problem.seq, "line": problem.line, "reason": problem.reason}
                    if problem
                    else None
                ),
            }
        )
    elif problem is None:
        out.print(
            f"timeline of incident {report.incident_id} intact: {report.events} events, "
            f"last event {report.last_seq} hash {report.last_hash}",
            markup=False,
        )
        if report.redacted:
            listed = ", ".join(str(seq) for seq in report.redacted_seqs[:20])
            more = "…" if report.redacted > 20 else ""
            out.print(
                f"{report.redacted} event(s) were redacted at export ({listed}{more}): their "
                "place in the chain verifies, their content cannot; compare them with the "
                "database",
                markup=False,
            )
        if against_database:
            out.print(
                "every event, gap and redacted record agrees with this database "
                "(run `rearguard audit verify` to check the database's own chain)",
                markup=False,
            )
        else:
            out.print(
                "gaps and redacted records are the exporter's word: check them with "
                "--against-database, or anchor the file: this hash must be the live "
                f"database's (rearguard incident show {report.incident_id} --json)",
                markup=False,
            )
    else:
        line = f"line {problem.line}" if problem.line else "end of file"
        seq = f"event {problem.seq}" if problem.seq >= 0 else "a record"
        err.print(
            f"timeline file broken at {line}, {seq}: {problem.reason}; "
            f"{report.events} events before it verify",
            markup=False,
        )
    if not report.ok:
        raise typer.Exit(EXIT_INTEGRITY)
