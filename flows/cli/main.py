"""The ``rearguard`` command: the root app, its options, and one-line error handling.

Each command group lives in its own module. Heavy imports (SQLAlchemy, Prefect) happen inside
commands, so ``rearguard --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from rearguard.flows.cli import (
    approvals,
    assets,
    audit,
    db,
    demo,
    drills,
    export,
    incident,
    notifications,
    notify,
    playbook,
    resolve,
    scheduler,
    serve,
    status,
    workers,
)
from rearguard.flows.cli.context import err, options
from rearguard.models.errors import EXIT_FAILED, RearguardError

app = typer.Typer(
    name="rearguard",
    help=(
        "Incident response and recovery for AI systems: contain a compromised model, prompt, "
        "config or dataset, roll production back to a verified known-good version, and keep a "
        "tamper-evident record of every action."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich help imports rich.markdown and markdown-it, which alone
    # would take `rearguard --help` past its 0.4 s budget.
    rich_markup_mode=None,
)
app.add_typer(assets.app, name="assets")
app.add_typer(incident.app, name="incident")
app.add_typer(playbook.app, name="playbook")
app.add_typer(audit.app, name="audit")
app.add_typer(db.app, name="db")
app.add_typer(notify.app, name="notify")
app.add_typer(notifications.app, name="notifications")
app.add_typer(approvals.app, name="approvals")
app.command("approve")(approvals.approve)
app.add_typer(drills.app, name="drills")
app.command("scheduler")(scheduler.scheduler)
app.command("demo")(demo.demo)
app.command("init")(db.init)
app.command("export")(export.export)
app.command("serve")(serve.serve)
app.command("status")(status.status)
app.command("deploy")(workers.deploy)
app.command("worker")(workers.worker)
incident.app.command("resolve")(resolve.resolve)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"rearguard {version('rearguard')}")
        raise typer.Exit()


@app.callback()
def root(
    home: Annotated[
        Path | None,
        typer.Option(help="State directory (default: $REARGUARD_HOME or ~/.rearguard)."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="Database URL (default: $REARGUARD_DATABASE_URL or SQLite in home)."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Set the options every command shares."""
    options.home = home
    options.database_url = database_url


def main() -> None:
    """Entry point of the console script: one line per expected error, never a traceback."""
    try:
        result = app(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        # Typer 0.2x vendors click: its usage errors (bad choice, missing argument, unknown
        # command) are typer._click exceptions, not click's.
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        err.print("aborted")
        sys.exit(EXIT_FAILED)
    except RearguardError as exc:
        _fail(exc.message, exc.hint, exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("REARGUARD_DEBUG"):
            raise
        message, hint = _describe_unexpected(exc)
        _fail(message, hint, EXIT_FAILED)
    sys.exit(result if isinstance(result, int) else 0)


def _describe_unexpected(exc: Exception) -> tuple[str, str]:
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc and isinstance(exc, sqlalchemy_exc.OperationalError):
        return f"database error: {exc.orig}", "check the database URL and that it is reachable"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        f"internal error: {type(exc).__name__}: {first_line}",
        "rerun with REARGUARD_DEBUG=1 for a traceback, and report it",
    )


def _fail(message: str, hint: str | None, code: int) -> None:
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err.print(f"[dim]hint:[/] {escape(hint)}")
    sys.exit(code)
