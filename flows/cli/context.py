"""What every CLI command shares: its invocation (the root options and the runtime built from
them), consoles, output helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from rearguard.models.audit.terminal import SafeConsole, printable
from rearguard.models.names import MAX_ROW_ID

if TYPE_CHECKING:
    from rich.table import Column, Table
    from rich.text import Text

    from rearguard.models.config.settings import Settings
    from rearguard.models.db.direct import DirectReader
    from rearguard.models.integrity.prehash import HashedAhead
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
class Invocation:
    """One run of the ``rearguard`` command: the root options, the runtime built from them on
    first use (once), and the digests hashed ahead of the command's start. ``main`` makes it
    and hands it to every command through click's context (``ctx.obj``); it closes it at the
    end."""

    home: Path | None = None
    database_url: str | None = None
    hashed_ahead: HashedAhead | None = None
    built: Runtime | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        """The settings from the root options, the environment and rearguard.toml."""
        from rearguard.models.config.settings import load_settings  # lazy: CLI start-up

        return load_settings(home=self.home, database_url=self.database_url)

    def runtime(self) -> Runtime:
        """The command's runtime, built on first use, with what Prefect lends it (Prefect
        itself is imported only when a hook deployment or a Secret block is used)."""
        if self.built is None:
            from rearguard.flows.prefect_infra.lent import with_prefect  # lazy: CLI start-up
            from rearguard.models.runtime import Runtime  # lazy: CLI start-up

            self.built = with_prefect(Runtime.from_settings(self.settings()))
        return self.built

    @contextmanager
    def reading(self) -> Iterator[DirectReader]:
        """The database for a read command's plain SQL (:mod:`rearguard.models.db.direct`).

        The SQLite file is opened with the sqlite3 module alone when the root options, the
        environment and rearguard.toml locate it plainly and its schema is current: no
        settings machinery, no SQLAlchemy, most of the command's start-up. Otherwise
        (PostgreSQL, a schema to upgrade or to refuse, a setting to check) the runtime is
        built as for any command and lends a connection of its engine.
        """
        # lazy: CLI start-up (the read commands' path; --help needs neither)
        from rearguard.models.config.home import database_location
        from rearguard.models.db.direct import (  # lazy: as above
            DirectReader,
            current_sqlite,
            sqlite_file,
        )

        if self.built is None:
            location = database_location(home=self.home, database_url=self.database_url)
            path = sqlite_file(location.url) if location is not None else None
            if location is not None and path is not None:
                with current_sqlite(path, busy_timeout_s=location.busy_timeout_s) as direct:
                    if direct is not None:
                        yield direct
                        return
        engine = self.runtime().db.engine
        connection = engine.raw_connection()
        try:
            yield DirectReader.of(connection, paramstyle=engine.dialect.paramstyle)
        finally:
            connection.close()

    def move_to(self, *, home: Path, database_url: str) -> None:
        """Work on another home and database from now on (the demo makes its own)."""
        self.close()
        self.home, self.database_url = home, database_url

    def checkpoint_if_due(self) -> None:
        """After a command: ask for a signed checkpoint when ``[audit] checkpoint_every``
        events have been appended since the last one (made and published by :meth:`close`)."""
        if self.built is not None and self.built.settings.audit.checkpoint_every:
            from rearguard.models.audit.checkpoints import checkpoint_due  # lazy: CLI start-up

            reason = checkpoint_due(db=self.built.db, settings=self.built.settings)
            if reason is not None:
                self.built.request_checkpoint(reason)

    def close(self) -> None:
        """Finish the runtime's checkpoints (the command's published before it exits) and
        release its database, if one was built."""
        if self.built is not None:
            self.built.close()
            self.built = None


def invocation(ctx: typer.Context) -> Invocation:
    """The invocation a command runs in (a new one when none was given, as in click's tests)."""
    return ctx.ensure_object(Invocation)


def runtime(ctx: typer.Context) -> Runtime:
    """The runtime of the command's invocation (built once, on first use)."""
    return invocation(ctx).runtime()


def reading(ctx: typer.Context) -> AbstractContextManager[DirectReader]:
    """The database of the command's invocation, for plain SQL (see :meth:`Invocation.reading`)."""
    return invocation(ctx).reading()


def emit_json(value: Any) -> None:
    """Print machine-readable output on standard output."""
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


@contextmanager
def byte_progress(description: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar for large byte counts; yields a thread-safe advance callback or None."""
    if total < PROGRESS_THRESHOLD_BYTES or not err.is_terminal:
        yield None
        return
    from rich.progress import (  # lazy: CLI start-up
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


TIME_FORMAT = "%Y-%m-%d %H:%M"
"""How tables show a moment: to the minute (16 characters), so it fits beside the rest."""


def table(*columns: Column | str) -> Table:
    """A table that fits an 80-column terminal: no vertical rules, two spaces between columns.

    Give it :func:`label_column` and :func:`text_column` columns: when the terminal is too
    narrow, the free text is cut (with an ellipsis), never a label.
    """
    # lazy: rich.table is imported only by the commands that print a table (start-up time).
    from rich import box
    from rich.table import Table  # lazy: CLI start-up

    return Table(
        *columns, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True
    )


def label_column(header: str, *, justify: Literal["left", "right"] = "left") -> Column:
    """A column of labels (an id, a status, a time, a version): never wrapped, never cut."""
    from rich.table import Column  # lazy: see table()

    return Column(header, no_wrap=True, justify=justify)


def text_column(header: str, *, wrap: bool = False, min_width: int = 6) -> Column:
    """A column of free text (a reason, a name, a detail) that gives way when space is short.

    Its cells are cut to one line with an ellipsis (:func:`one_line`), or wrapped at words
    (``wrap``, for text that must be read whole, such as a timeline's detail).
    """
    from rich.table import Column  # lazy: see table()

    return Column(header, overflow="fold" if wrap else "ellipsis", min_width=min_width)


def one_line(value: str) -> Text:
    """A cell shown on one line, cut with an ellipsis when its column is too narrow (made
    printable: rich does not pass a Text through the console's own check)."""
    from rich.text import Text  # lazy: see table()

    return Text(printable(value, newlines=False), no_wrap=True, overflow="ellipsis")


def styled(status: str) -> str:
    """A status as markup, in its colour (an unknown or empty one plain)."""
    from rich.markup import escape  # lazy: see table()

    style = status_style(status)
    return f"[{style}]{escape(status)}[/]" if style else escape(status)


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
