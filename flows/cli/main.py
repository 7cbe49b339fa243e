"""The ``rearguard`` command: the root app, its options, and one-line error handling.

Each command group lives in its own module. Heavy imports (SQLAlchemy, Prefect) happen inside
commands, so ``rearguard --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from rearguard.flows.cli.context import Invocation, err, invocation
from rearguard.flows.cli.handoff import ROOT_OPTIONS
from rearguard.flows.cli.quick import plain_read
from rearguard.flows.prefect_infra.quiet import apply_defaults
from rearguard.models.errors import EXIT_FAILED, RearguardError

if TYPE_CHECKING:
    from rearguard.models.integrity.prehash import HashedAhead

# Every command: its name -> (module under rearguard.flows.cli, attribute, is it a group).
# A command line that names one imports only that one's module (see build_app).
COMMANDS: dict[str, tuple[str, str, bool]] = {
    "assets": ("assets", "app", True),
    "incident": ("incident", "app", True),
    "playbook": ("playbook", "app", True),
    "audit": ("audit", "app", True),
    "db": ("db", "app", True),
    "notify": ("notify", "app", True),
    "notifications": ("notifications", "app", True),
    "approvals": ("approvals", "app", True),
    "denylist": ("denylist", "app", True),
    "approve": ("approvals", "approve", False),
    "drills": ("drills", "app", True),
    "scheduler": ("scheduler", "scheduler", False),
    "demo": ("demo", "demo", False),
    "init": ("db", "init", False),
    "export": ("export", "export", False),
    "scan": ("scan", "scan", False),
    "serve": ("serve", "serve", False),
    "status": ("status", "status", False),
    "deploy": ("workers", "deploy", False),
    "worker": ("workers", "worker", False),
}


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version  # lazy: CLI start-up

        print(f"rearguard {version('rearguard')}")
        raise typer.Exit()


def root(
    ctx: typer.Context,
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
    given = invocation(ctx)
    given.home = home
    given.database_url = database_url


def invoked_command(argv: list[str]) -> str | None:
    """The command a command line names, when it names one of ours (after the root options)."""
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in ROOT_OPTIONS:
            index += 2
        elif token.startswith("-"):
            if not token.startswith(tuple(f"{o}=" for o in ROOT_OPTIONS)):
                return None  # --help, --version, or a mistake: the whole app answers
            index += 1
        else:
            return token if token in COMMANDS else None
    return None


def build_app(argv: list[str]) -> typer.Typer:
    """The ``rearguard`` app: every command, or only the one ``argv`` names.

    Building one command's app imports one command module, not all of them: every command
    starts faster (``assets verify`` is timed against ``openssl``).
    """
    app = typer.Typer(
        name="rearguard",
        help=(
            "Incident response and recovery for AI systems: contain a compromised model, "
            "prompt, config or dataset, roll production back to a verified known-good version, "
            "and keep a tamper-evident record of every action."
        ),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Plain click help: typer's rich help imports rich.markdown and markdown-it, which
        # alone would take `rearguard --help` past its 0.4 s budget.
        rich_markup_mode=None,
    )
    app.callback()(root)
    wanted = invoked_command(argv)
    for name, (module, attribute, group) in COMMANDS.items():
        if wanted is not None and name != wanted:
            continue
        target = getattr(importlib.import_module(f"rearguard.flows.cli.{module}"), attribute)
        if group:
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
    return app


def main(*, hashed_ahead: HashedAhead | None = None) -> None:
    """Entry point of the console script: one line per expected error, never a traceback.

    Args:
        hashed_ahead: the digests a child process is hashing ahead of the command's start
            (``assets verify``, see :mod:`rearguard.flows.cli.launch`).
    """
    # Before any command imports Prefect, which reads its settings once, on import.
    apply_defaults()
    sys.exit(run_command(sys.argv[1:], Invocation(hashed_ahead=hashed_ahead)))


def run_command(
    argv: list[str],
    run: Invocation,
    *,
    prog_name: str | None = None,
    command: Callable[..., Any] | None = None,
) -> int:
    """Run one command line on an invocation, printing as the console script does, and
    return its exit status (also what ``rearguard serve`` runs for a client).

    Args:
        argv: the command line after the program's name.
        run: the invocation; closed at the end.
        prog_name: the program's name in usage messages (click's guess when None).
        command: the app to run it with, built already (``build_app(argv)`` when None).
    """
    try:
        quick = None if command is not None else plain_read(argv, commands=COMMANDS)
        if quick is not None:  # a read command, without typer's parameter processing
            result = quick(run)
        else:
            app = command or build_app(argv)
            result = app(args=argv, prog_name=prog_name, standalone_mode=False, obj=run)
        run.checkpoint_if_due()
    except _click("Exit") as exc:
        return int(exc.exit_code)
    except _click("ClickException") as exc:
        exc.show(file=err.file)
        return int(exc.exit_code)
    except typer.TyperException as exc:
        # Typer 0.2x vendors click: its usage errors (bad choice, missing argument, unknown
        # command) are typer._click exceptions, not click's.
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show(file=err.file)
        return int(exc.exit_code)
    except _click("Abort", typer.Abort):
        err.print("aborted")
        return EXIT_FAILED
    except RearguardError as exc:
        return _fail(exc.message, exc.hint, exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as exc:
        if os.environ.get("REARGUARD_DEBUG"):
            raise
        message, hint = _describe_unexpected(exc)
        return _fail(message, hint, EXIT_FAILED)
    finally:
        run.close()
    return result if isinstance(result, int) else 0


def _click(name: str, *also: type[BaseException]) -> tuple[type[Any], ...]:
    """Click's own exception ``name`` once click is imported (typer before 0.26 raises them;
    it vendors click since, so importing click would only slow every command), and ``also``."""
    exceptions = sys.modules.get("click.exceptions")
    found = (getattr(exceptions, name),) if exceptions else ()
    return (*found, *also)


def _describe_unexpected(exc: Exception) -> tuple[str, str]:
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc and isinstance(exc, sqlalchemy_exc.OperationalError):
        return f"database error: {exc.orig}", "check the database URL and that it is reachable"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        f"internal error: {type(exc).__name__}: {first_line}",
        "rerun with REARGUARD_DEBUG=1 for a traceback, and report it",
    )


def _fail(message: str, hint: str | None, code: int) -> int:
    err.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err.print(f"[dim]hint:[/] {escape(hint)}")
    return code
