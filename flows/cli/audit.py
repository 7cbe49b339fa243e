"""``rearguard audit``: verify the tamper-evident timeline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rearguard.flows.cli.context import JsonOption, emit_json, err, out, runtime
from rearguard.models.errors import EXIT_INTEGRITY, UsageError

if TYPE_CHECKING:
    from sqlmodel import Session

    from rearguard.models.assets.evidence import Disagreement
    from rearguard.models.audit.chain import ChainReport
    from rearguard.models.db.engine import Database

app = typer.Typer(help="The audit chain: every action, hash-chained.")


@app.command("verify")
def verify(
    ctx: typer.Context,
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
    checkpoints: Annotated[
        str | None,
        typer.Option(
            "--checkpoints",
            help="Also check the chain against every checkpoint published to this sink (a "
            "file, file://PATH, an http(s) URL serving its JSON lines, or slack:CHANNEL); "
            "needs --public-key.",
            show_default=False,
        ),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="The Ed25519 public key (PEM) that signs checkpoints: with --checkpoints, or "
            "with --file to check the checkpoint an export carries.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Recompute every event's hash; exit 3 naming the first altered, deleted, reordered or
    inserted event, or every version, alias and denylist row the chain does not bear out."""
    from rearguard.models.audit.chain import verify_stored_chain  # lazy: CLI start-up

    if file is not None:
        if checkpoints is not None:
            raise UsageError("--checkpoints checks the database's chain: give it without --file")
        _verify_file(
            file,
            json_output,
            db=runtime(ctx).db if against_database else None,
            public_key=public_key,
        )
        return
    if against_database:
        raise UsageError("--against-database checks a file: give it with --file")
    if checkpoints is not None:
        if public_key is None:
            raise UsageError(
                "--checkpoints needs --public-key PEM",
                hint="export it from the signing key: openssl pkey -in KEY.pem -pubout",
            )
        _verify_checkpoints(ctx, checkpoints, public_key, json_output)
        return
    if public_key is not None:
        raise UsageError("--public-key goes with --checkpoints or --file")

    with runtime(ctx).db.read_session() as session:
        report = verify_stored_chain(session)
        rows = _disagreements(session, report)
    _show_chain(report, rows, json_output)


def _disagreements(session: Session, report: ChainReport) -> list[Disagreement]:
    """The rows the chain does not bear out; judged only on a chain that verifies."""
    from rearguard.models.assets.evidence import find_disagreements  # lazy: CLI start-up

    return find_disagreements(session) if report.ok else []


def _chain_json(report: ChainReport, rows: list[Disagreement]) -> dict[str, Any]:
    return {
        "ok": report.ok and not rows,
        "events": report.events,
        "last_seq": report.last_seq,
        "last_hash": report.last_hash,
        "first_bad": (
            {"seq": report.problem.seq, "reason": report.problem.reason} if report.problem else None
        ),
        "disagreements": [
            {
                "subject": row.subject,
                "reason": row.reason,
                "asset": row.asset,
                "version": row.version,
                "alias": row.alias,
                "digest": row.digest,
            }
            for row in rows
        ],
    }


def _show_chain(report: ChainReport, rows: list[Disagreement], json_output: bool) -> None:
    if json_output:
        emit_json(_chain_json(report, rows))
    elif report.ok:
        out.print(f"audit chain intact: {report.events} events, head {report.last_hash[:16]}…")
        for row in rows:
            err.print(f"not what the audit chain records: {row.describe()}", markup=False)
        if rows:
            err.print(
                f"[red]{len(rows)} row(s) of versions, aliases or the denylist disagree with "
                "the audit chain[/]: they were written outside rearguard"
            )
        else:
            out.print("every version, alias and denylist entry agrees with it")
    else:
        assert report.problem is not None
        err.print(
            f"[red]audit chain broken at {report.problem.describe()}[/]; "
            f"{report.events} events before it verify"
        )
    if not report.ok or rows:
        raise typer.Exit(EXIT_INTEGRITY)


def _verify_checkpoints(
    ctx: typer.Context, source: str, public_key: Path, json_output: bool
) -> None:
    from rearguard.models.audit.checkpoints import (  # lazy: CLI start-up
        check_against_checkpoints,
        load_public_key,
        parse_checkpoint_lines,
        read_checkpoint_lines,
    )

    public = load_public_key(public_key)
    text = read_checkpoint_lines(source, slack=runtime(ctx).settings.slack)
    found, problem = parse_checkpoint_lines(text, public)
    rows: list[Disagreement] = []
    if problem is None:
        with runtime(ctx).db.read_session() as session:
            report = check_against_checkpoints(session, found)
            rows = _disagreements(session, report.chain)
        problem = report.problem
        chain: ChainReport | None = report.chain
    else:
        chain = None
    if json_output:
        latest = found[-1][1] if found else None
        emit_json(
            {
                **(_chain_json(chain, rows) if chain else {}),
                "ok": problem is None and chain is not None and chain.ok and not rows,
                "checkpoints": len(found),
                "latest_checkpoint": (
                    {"number": latest.number, "seq": latest.seq, "time": latest.time}
                    if latest
                    else None
                ),
                "checkpoint_problem": (
                    {
                        "checkpoint": problem.number,
                        "line": problem.line,
                        "first_seq": problem.first_seq,
                        "reason": problem.reason,
                    }
                    if problem
                    else None
                ),
            }
        )
        if problem is not None or chain is None or not chain.ok or rows:
            raise typer.Exit(EXIT_INTEGRITY)
        return
    if problem is not None:
        first = f"; first event that disagrees: {problem.first_seq}" if problem.first_seq else ""
        err.print(f"audit checkpoints: {problem.reason}{first}", markup=False)
        raise typer.Exit(EXIT_INTEGRITY)
    assert chain is not None
    if chain.ok:
        latest = found[-1][1]
        out.print(
            f"audit chain agrees with {len(found)} signed checkpoint(s); the latest, "
            f"{latest.describe()}, vouches for events 1..{latest.seq}"
            + (
                f"; events {latest.seq + 1}..{chain.last_seq} came after it"
                if chain.last_seq > latest.seq
                else ""
            ),
            markup=False,
        )
    _show_chain(chain, rows, json_output=False)


@app.command("checkpoint")
def checkpoint(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Sign a checkpoint of the chain's head now and publish it (and any still pending) to
    every [audit] checkpoint_sinks; exit 1 when a sink could not be reached (it is kept and
    retried)."""
    from rearguard.models.audit.checkpoints import (  # lazy: CLI start-up
        make_checkpoint,
        publish_pending,
    )

    rt = runtime(ctx)
    made = make_checkpoint(
        db=rt.db, settings=rt.settings.audit, reason="rearguard audit checkpoint"
    )
    report = publish_pending(db=rt.db, settings=rt.settings)
    if json_output:
        emit_json(
            {
                "checkpoint": (
                    {"number": made.number, "seq": made.seq, "hash": made.hash, "time": made.time}
                    if made
                    else None
                ),
                "published": report.published,
                "failing": report.failing,
                "held": list(report.waiting),
            }
        )
    elif made is None:
        out.print("the audit chain is empty: nothing to vouch for")
    else:
        out.print(
            f"{made.describe()} signed: head {made.hash[:16]}…; {report.published} "
            "publication(s) made",
            markup=False,
        )
    for sink, error in report.failing.items():
        err.print(f"warning: sink {sink}: {error} (kept; retried next time)", markup=False)
    for sink in report.waiting:
        err.print(
            f"sink {sink}: another process claimed its next checkpoint and publishes it (a "
            "claim of a process that died lapses after [audit] publish_timeout_s + 60 s)",
            markup=False,
        )
    if report.failing:
        raise typer.Exit(1)


def _verify_file(
    path: Path, json_output: bool, *, db: Database | None, public_key: Path | None
) -> None:
    from rearguard.flows.exports.timeline_jsonl import verify_file  # lazy: CLI start-up
    from rearguard.models.audit.checkpoints import load_public_key  # lazy: CLI start-up

    report = verify_file(
        path,
        db=db,
        public_key=load_public_key(public_key) if public_key else None,
    )
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
                "checked_against_database": db is not None,
                "checkpoint": (
                    {
                        "number": report.checkpoint.number,
                        "seq": report.checkpoint.seq,
                        "time": report.checkpoint.time,
                        "covered_events": report.checkpoint.covered,
                        "uncovered_events": report.checkpoint.uncovered,
                    }
                    if report.checkpoint
                    else None
                ),
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
        if report.checkpoint is not None:
            cp = report.checkpoint
            out.print(
                f"signed checkpoint {cp.number} (event {cp.seq}, {cp.time}) vouches for "
                f"{cp.covered} of its events: none withheld, none inserted, each hash as signed"
                + (f"; {cp.uncovered} later event(s) are not covered" if cp.uncovered else ""),
                markup=False,
            )
        if db is not None:
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
