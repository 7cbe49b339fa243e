"""``rearguard incident resolve``: close an incident, and write its review when so configured."""

from __future__ import annotations

from typing import Annotated

import typer

from rearguard.flows.cli.context import ID_RANGE, JsonOption, emit_json, err, out, runtime
from rearguard.flows.cli.people import ByOption, person
from rearguard.models.audit.redaction import redact_text
from rearguard.models.errors import EXIT_FAILED, RearguardError


def resolve(
    ctx: typer.Context,
    incident_id: Annotated[int, typer.Argument(help="Incident id.", **ID_RANGE)],
    note: Annotated[
        str | None,
        typer.Option(help="How it was closed (required when it failed or ended contained)."),
    ] = None,
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Resolve a recovered incident (or, with --note, a failed one, or one its playbook ended
    contained, as model_theft does); exit 2 if it is still open or already resolved. With
    [exports] auto_review (the default) its Markdown and HTML review are written to [exports]
    review_dir (default <home>/reviews). With PagerDuty configured, its page is resolved."""
    from rearguard.models.incidents.resolution import resolve_incident  # lazy: CLI start-up
    from rearguard.notifications.notify import deliver_after_run  # lazy: CLI start-up
    from rearguard.notifications.outbox import enqueue  # lazy: CLI start-up

    rt = runtime(ctx)
    settings = rt.settings.exports
    actor = person(ctx, by)
    with rt.db.session() as session:
        incident = resolve_incident(
            session=session, incident_id=incident_id, actor=actor, note=note
        )
        # PagerDuty resolves the page (no other channel takes "resolved"), in the same
        # transaction as the resolution: a page is never left open by a crash in between.
        paged = enqueue(
            session,
            settings=rt.settings,
            incident=incident,
            event="resolved",
            actor=actor,
            extra={"by": actor},
        )
    if paged.rows:
        deliver_after_run(rt, incident_id=incident_id)
    written: list[str] = []
    review_error: str | None = None
    if settings.auto_review:
        from rearguard.flows.exports.export import write_reviews  # lazy: CLI start-up

        directory = settings.review_directory(rt.settings.home)
        try:
            paths = write_reviews(
                db=rt.db,
                incident_id=incident_id,
                directory=directory,
                alias=rt.settings.registry.alias,
            )
            written = [str(p) for p in paths]
        except (RearguardError, OSError) as exc:
            review_error = getattr(exc, "message", None) or str(exc)
    if json_output:
        emit_json(
            {
                "id": incident.id,
                "status": str(incident.status),
                "review": written,
                "review_error": review_error,
            }
        )
    else:
        out.print(f"incident {incident_id}: resolved", markup=False)
        if note and redact_text(note) != note:
            err.print("note: secrets in the note were redacted before it was recorded")
        for path in written:
            out.print(f"review: {path}", markup=False)
    if review_error:
        err.print(
            f"error: incident {incident_id} is resolved, but its review was not written: "
            f"{review_error}",
            markup=False,
        )
        err.print(f"hint: rearguard export {incident_id} --format html -o DIR", markup=False)
        raise typer.Exit(EXIT_FAILED)
