"""``rearguard notify test``: send a test message through one channel and say how it went."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from rearguard.flows.cli.context import JsonOption, emit_json, err, out, runtime
from rearguard.flows.cli.people import ByOption, person
from rearguard.models.errors import EXIT_FAILED, UsageError

app = typer.Typer(help="Notifications: send a test message through a channel.")

CHANNELS = ("slack", "email", "webhook", "console", "file")


@app.command("test")
def test(
    ctx: typer.Context,
    channel: Annotated[
        str, typer.Option("--channel", help="slack, email, webhook, console or file.")
    ],
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="Destination: a Slack channel or an email address (default: configured)."
        ),
    ] = None,
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Send a test message now (not through the outbox) and report the receipt or the error.

    Exit 0 when delivered, 1 when the channel refused or could not be reached, 2 when it is
    not configured.
    """
    if channel not in CHANNELS:
        raise UsageError(f"unknown channel {channel!r}", hint=f"one of: {', '.join(CHANNELS)}")
    from rearguard.notifications.probe import send_test  # lazy: CLI start-up

    rt = runtime(ctx)
    result = send_test(rt, channel=channel, destination=to, actor=person(ctx, by))
    if json_output:
        emit_json(result)
    else:
        _print(result)
    if not result["ok"]:
        raise typer.Exit(EXIT_FAILED)


def _print(result: dict[str, Any]) -> None:
    where = f"{result['channel']} ({result['destination']})"
    if result["ok"]:
        details = ", ".join(f"{k}={v}" for k, v in result["receipt"].items())
        out.print(f"[green]delivered[/] to {escape(where)}: {escape(details)}")
    else:
        kind = "permanent" if result.get("permanent") else "temporary"
        err.print(f"[red]not delivered[/] to {escape(where)} ({kind}): {escape(result['error'])}")
