"""Who a command records as the person acting: the one ``--by`` option every command shares."""

from __future__ import annotations

from typing import Annotated

import typer

from rearguard.flows.cli.context import runtime

ByOption = Annotated[
    str | None,
    typer.Option(
        "--by",
        help="Your name, as recorded (default: $REARGUARD_USER, actor in rearguard.toml, $USER).",
    ),
]


def person(ctx: typer.Context, by: str | None = None) -> str:
    """The name to record for this command's person: ``--by``, else the configured one.

    Raises:
        UsageError: no name is at hand (exit 2, one line saying how to give one).
    """
    return runtime(ctx).settings.core.person(by)
