"""``rearguard denylist``: the digests refused as malicious, and lifting one."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from rearguard.flows.cli.context import JsonOption, emit_json, err, out, runtime
from rearguard.flows.cli.people import ByOption, person

app = typer.Typer(help="The digest denylist: list entries, lift one on a person's word.")


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List denylisted digests, newest first, with why and by whom."""
    from rearguard.models.assets.denylist import list_denied  # lazy: CLI start-up

    rt = runtime(ctx)
    with rt.db.read_session() as session:
        entries = list_denied(session=session)
    if json_output:
        emit_json([e.json_value() for e in entries])
        return
    if not entries:
        err.print("the denylist is empty")
        return
    for e in entries:
        source = f", incident {e.incident_id}" if e.incident_id else ""
        out.print(
            f"{e.sha256}  {e.added_at.isoformat()[:19]} by {escape(e.added_by)}{source}: "
            f"{escape(e.reason)}"
        )


@app.command("remove")
def remove(
    ctx: typer.Context,
    digest: Annotated[str, typer.Argument(help="The SHA-256 to lift (64 hex characters).")],
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the timeline.")],
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Lift a digest from the denylist. Versions quarantined for it stay quarantined until
    `assets release`."""
    from rearguard.models.assets.denylist import lift_digest, parse_digest  # lazy: CLI start-up
    from rearguard.models.assets.lifecycle import check_reason  # lazy: CLI start-up

    rt = runtime(ctx)
    sha256 = parse_digest(digest)
    who = person(ctx, by)
    why = check_reason(reason)
    with rt.db.session() as session:
        lift_digest(session=session, digest=sha256, actor=who, reason=why)
    if json_output:
        emit_json({"sha256": sha256, "removed": True, "by": who})
        return
    out.print(f"{sha256} removed from the denylist (by {escape(who)})")
