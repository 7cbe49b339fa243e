"""``rearguard export``: an incident as a review, a verifiable timeline, STIX or a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rearguard.flows.cli.context import ID_RANGE, err, out, runtime
from rearguard.flows.exports.formats import ExportFormat, file_name
from rearguard.models.errors import UsageError


def export(
    ctx: typer.Context,
    incident_id: Annotated[
        int | None,
        typer.Argument(help="The incident to export (or --all).", show_default=False, **ID_RANGE),
    ] = None,
    export_format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            case_sensitive=False,
            help=(
                "md or html: the post-incident review; jsonl: the timeline, verifiable offline; "
                "csv: the timeline for spreadsheets; stix: a STIX 2.1 bundle; report: an "
                "OECD-style incident report (JSON)."
            ),
        ),
    ] = ExportFormat.MD,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help=(
                "Regular file to write, replaced atomically (an existing directory: "
                "incident-ID.EXT inside it); standard output when omitted, - or /dev/stdout. "
                "With --all, the directory to write into (created if missing, its "
                "parent must exist)."
            ),
            show_default=False,
        ),
    ] = None,
    all_incidents: Annotated[
        bool, typer.Option("--all", help="Export every incident (see --since) into -o DIR.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(help="With --all: only incidents opened at or after this time (ISO 8601)."),
    ] = None,
) -> None:
    """Export an incident: built from the database alone, secrets redacted, the same bytes for
    the same records."""
    if all_incidents:
        if incident_id is not None:
            raise UsageError("give an incident id or --all, not both")
        if output is None:
            raise UsageError("--all needs -o DIR", hint="e.g. rearguard export --all -o reviews/")
        _export_all(ctx, export_format, output, since)
        return
    if incident_id is None:
        raise UsageError("which incident?", hint="rearguard export ID, or --all -o DIR")
    if since is not None:
        raise UsageError("--since applies to --all only")
    _export_one(ctx, incident_id, export_format, output)


def _export_one(
    ctx: typer.Context, incident_id: int, export_format: ExportFormat, output: str | None
) -> None:
    from rearguard.flows.exports.export import export_to_file, write_export  # lazy: CLI start-up
    from rearguard.flows.exports.output import (  # lazy: CLI start-up
        is_standard_output,
        standard_output,
        target_file,
    )

    rt = runtime(ctx)
    alias = rt.settings.registry.alias
    if output is None or is_standard_output(output):
        with standard_output() as stream:
            write_export(
                db=rt.db,
                incident_id=incident_id,
                export_format=export_format,
                out=stream,
                alias=alias,
            )
        return
    path = target_file(output, file_name(incident_id, export_format))
    export_to_file(
        db=rt.db, incident_id=incident_id, export_format=export_format, path=path, alias=alias
    )
    err.print(f"wrote {path}", markup=False)


def _export_all(
    ctx: typer.Context, export_format: ExportFormat, output: str, since: str | None
) -> None:
    from rearguard.flows.exports.export import export_to_file, incident_ids  # lazy: CLI start-up
    from rearguard.flows.exports.output import output_directory  # lazy: CLI start-up
    from rearguard.models.incidents.service import parse_since  # lazy: CLI start-up

    moment = parse_since(since)
    rt = runtime(ctx)
    ids = incident_ids(rt.db, since=moment)
    if not ids:
        err.print("no incidents" + (f" opened since {since}" if since else ""), markup=False)
        return
    directory = output_directory(Path(output))
    for incident_id in ids:
        path = export_to_file(
            db=rt.db,
            incident_id=incident_id,
            export_format=export_format,
            path=directory / file_name(incident_id, export_format),
            alias=rt.settings.registry.alias,
        )
        out.print(str(path), markup=False)
