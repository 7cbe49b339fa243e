"""What every CLI command shares: the options of the root command, consoles, output helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rearguard.models.audit.terminal import SafeConsole
from rearguard.models.names import MAX_ROW_ID

if TYPE_CHECKING:
    from rearguard.models.runtime import Runtime

# Safe: whatever they print (a summary, a label) reaches the terminal without its escapes.
out = SafeConsole(highlight=False, soft_wrap=True)
err = SafeConsole(stderr=True, highlight=False, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
LimitOption = Annotated[
    int, typer.Option(min=1, max=MAX_ROW_ID, help="At most this many, newest first.")
]
ID_RANGE = {"min": 1, "max": MAX_ROW_ID}
"""The range of an incident id argument or option (``typer.Argument(**ID_RANGE)``): a number
outside it gets the usage error naming the range, not a database error."""
IncidentFilterOption = Annotated[
    int | None, typer.Option("--incident", help="Only this incident's.", **ID_RANGE)
]

# Files at least this large get a progress bar while they are copied or hashed.
PROGRESS_THRESHOLD_BYTES = 64 * 1024 * 1024


@dataclass
class CliOptions:
    """The root command's options, set once per invocation."""

    home: Path | None = None
    database_url: str | None = None


options = CliOptions()
_runtime: Runtime | None = None


def runtime() -> Runtime:
    """Build (once) the runtime from the root options, the environment and rearguard.toml."""
    global _runtime
    if _runtime is None:
        from rearguard.models.config.settings import load_settings
        from rearguard.models.runtime import Runtime, use_runtime

        settings = load_settings(home=options.home, database_url=options.database_url)
        _runtime = Runtime.from_settings(settings)
        use_runtime(_runtime)
    return _runtime


def reset_runtime() -> None:
    """Forget the runtime (the demo switches homes)."""
    global _runtime
    if _runtime is not None:
        _runtime.db.dispose()
    _runtime = None


def emit_json(value: Any) -> None:
    """Print machine-readable output on standard output."""
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


@contextmanager
def byte_progress(description: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar for large byte counts; yields a thread-safe advance callback or None."""
    if total < PROGRESS_THRESHOLD_BYTES or not err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        f"[bold]{description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def status_style(status: str) -> str:
    """The colour a status is shown in."""
    return {
        "known_good": "green",
        "recovered": "green",
        "resolved": "green",
        "candidate": "cyan",
        "open": "yellow",
        "contained": "yellow",
        "suspect": "yellow",
        "quarantined": "red",
        "failed": "red",
        "retired": "dim",
    }.get(status, "")
