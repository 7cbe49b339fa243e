"""What every CLI command shares: its invocation (the root options and the runtime built from
them), consoles, output helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal

import typer

from rearguard.models.audit.terminal import SafeConsole, printable
from rearguard.models.names import MAX_ROW_ID

if TYPE_CHECKING:
    from rich.status import Status
    from rich.table import Column, Table
    from rich.text import Text

    from rearguard.models.config.settings import Settings
    from rearguard.models.db.direct import DirectReader
    from rearguard.models.integrity.prehash import HashedAhead
    from rearguard.models.runtime import Runtime


_CONSOLE: dict[str, Any] = {"highlight": False, "soft_wrap": True}
"""How every CLI console prints: no guessing at what to colour, long lines left to wrap."""


def make_console(
    *,
    stderr: bool = False,
    file: IO[str] | None = None,
    size: tuple[int, int] | None = None,
    environ: Mapping[str, str] | None = None,
) -> SafeConsole:
    """A console as the CLI prints with. Safe: whatever it prints (a summary, a label) reaches
    the terminal without its escapes.

    Args:
        stderr: standard error rather than standard output (when no ``file`` is given).
        file: where it writes; this process's stream when None.
        size: the terminal's columns and lines; found from this process's when None.
        environ: the environment it reads ``TERM``, ``NO_COLOR``, ``COLUMNS``... from; this
            process's when None.
    """
    width, height = size or (None, None)
    return SafeConsole(
        file=file, stderr=stderr, width=width, height=height, _environ=environ, **_CONSOLE
    )


@dataclass(frozen=True)
class Terminal:
    """Where a command prints, when not on this process's own streams: a command that
    ``rearguard serve`` runs for a client prints on the client's (see :func:`printing_to`)."""

    out: SafeConsole
    err: SafeConsole


_terminal: ContextVar[Terminal | None] = ContextVar("rearguard_cli_terminal", default=None)


@contextmanager
def printing_to(terminal: Terminal) -> Iterator[None]:
    """Make ``out`` and ``err`` print on ``terminal`` in the code inside the block (and in the
    threads and tasks it starts with its context); other threads keep theirs."""
    token = _terminal.set(terminal)
    try:
        yield
    finally:
        _terminal.reset(token)


def hosted() -> bool:
    """True while a command runs in ``rearguard serve`` for a client (inside
    :func:`printing_to`): the process is serve's, not the command's own."""
    return _terminal.get() is not None


class RoutedConsole(SafeConsole):
    """The console commands print with: the terminal bound by :func:`printing_to` when there is
    one, else this process's standard output (or error).

    What commands use of a console is routed: ``print``, ``status``, ``is_terminal`` and
    ``file``. Anything else would print on this process's own stream.
    """

    def __init__(self, *, stderr: bool = False) -> None:
        super().__init__(stderr=stderr, **_CONSOLE)

    def _bound(self) -> SafeConsole | None:
        terminal = _terminal.get()
        if terminal is None:
            return None
        return terminal.err if self.stderr else terminal.out

    def current(self) -> SafeConsole:
        """The console it prints on here and now: for code that prints from other threads
        (a playbook's reporters), which may not carry the binding."""
        return self._bound() or self

    def print(self, *objects: Any, **options: Any) -> None:
        """Print as :meth:`rich.console.Console.print` does, on the bound terminal if any."""
        bound = self._bound()
        if bound is None:
            super().print(*objects, **options)
        else:
            bound.print(*objects, **options)

    def status(self, *args: Any, **options: Any) -> Status:
        """A transient status line (a spinner), on the bound terminal if any."""
        bound = self._bound()
        return super().status(*args, **options) if bound is None else bound.status(*args, **options)

    @property
    def is_terminal(self) -> bool:
        """True when what it prints reaches a terminal (the bound one's, if any)."""
        bound = self._bound()
        return super().is_terminal if bound is None else bound.is_terminal

    @property
    def file(self) -> IO[str]:
        """The file it writes to (the bound terminal's, if any)."""
        bound = self._bound()
        return super().file if bound is None else bound.file

    @file.setter
    def file(self, new_file: IO[str]) -> None:
        SafeConsole.file.fset(self, new_file)  # type: ignore[attr-defined]


out = RoutedConsole()
err = RoutedConsole(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
LimitOption = Annotated[
    int, typer.Option(min=1, max=MAX_ROW_ID, help="At most this many, newest first.")
]
ID_RANGE = {"min": 1, "max": MAX_ROW_ID}
"""The range of an incident id argument or option (``typer.Argument(**ID_RANGE)``): a number
outside it gets the usage error naming the range, not a database error."""
LocalOption = Annotated[
    bool,
    typer.Option(
        "--local",
        help="Run here, not in this home's running `rearguard serve` (also: REARGUARD_LOCAL=1).",
    ),
]
"""``--local`` of the commands serve runs for a client: read before the command line is parsed
(see :mod:`rearguard.flows.cli.handoff`); the command itself has nothing more to do with it."""
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
    lent: bool = False
    """The runtime was lent (by ``rearguard serve``, which runs the command for a client):
    closing the invocation leaves its database open."""
    cwd: Path | None = None
    """The directory relative paths on the command line are relative to (the client's, for a
    command serve runs; this process's own when None)."""

    def settings(self) -> Settings:
        """The settings from the root options, the environment and rearguard.toml (the lent
        runtime's, if any)."""
        if self.built is not None and self.lent:
            return self.built.settings
        from rearguard.models.config.settings import load_settings  # lazy: CLI start-up

        return load_settings(home=self.home, database_url=self.database_url)

    def path(self, given: Path) -> Path:
        """A path from the command line, made absolute against :attr:`cwd` when it is set."""
        return given if self.cwd is None else self.cwd / given.expanduser()

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
        from rearguard.models.config.location import database_location
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
        release its database, if one was built here (a runtime lent by serve stays serve's)."""
        if self.built is not None and not self.lent:
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
    written = out.file
    written.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
    written.flush()


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
