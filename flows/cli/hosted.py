"""The hand-off's serving side: a command line the ``rearguard`` command handed to serve, run
in serve's playbook process exactly as the console script runs it (:func:`run_command`), but
printing for the client's terminal and on the client's streams.

Output cannot drift between the two: the command's own code prints, with consoles made as the
CLI makes them (:func:`rearguard.flows.cli.context.make_console`), from what the client said of
its terminal (whether each stream is one, its size, ``TERM``, ``NO_COLOR``...). What is the
client's own goes with the command: its working directory (for relative paths on the command
line) and, when neither ``--by`` nor the settings name the person acting, its login name. The
settings are serve's, which the client's fingerprint showed to be the same.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, cast

from rearguard.flows.cli.context import Invocation, Terminal, make_console, printing_to
from rearguard.flows.cli.handoff import HANDED_OFF
from rearguard.flows.intake.handoff import Stream
from rearguard.flows.intake.playbook_process import Write
from rearguard.flows.intake.schemas import HandOffOutput, HandOffRequest, HandOffTerminal
from rearguard.models.audit.terminal import SafeConsole
from rearguard.models.config.core import CoreSettings, os_user
from rearguard.models.config.files import read_config_file, table_of
from rearguard.models.config.home import ACTOR_VARIABLES
from rearguard.models.config.settings import Settings
from rearguard.models.runtime import Runtime


class StreamFile(io.TextIOBase):
    """One of the client's output streams, as a text file a console writes to: each write goes
    to the client at once."""

    def __init__(self, stream: Stream, output: HandOffOutput, write: Write) -> None:
        super().__init__()
        self._stream = stream
        self._output = output
        self._write = write

    @property
    def encoding(self) -> str:  # type: ignore[override]  # read-only in io, as here
        """The client's encoding of that stream."""
        return self._output.encoding

    def isatty(self) -> bool:
        """Whether the client's stream is a terminal."""
        return self._output.tty

    def writable(self) -> bool:
        """It is written to."""
        return True

    def write(self, text: str) -> int:
        """Send ``text`` to the client's stream."""
        if text:
            self._write(self._stream, text)
        return len(text)


def client_size(terminal: HandOffTerminal) -> tuple[int, int]:
    """The columns and lines the client's consoles would have had: as rich finds them, from
    the terminal's size, ``COLUMNS`` and ``LINES``, else 80 by 25 (each one that is 0 too)."""
    width, height = terminal.size or (0, 0)
    columns, lines = terminal.environ.get("COLUMNS", ""), terminal.environ.get("LINES", "")
    return (
        (int(columns) if columns.isdigit() else width) or 80,
        (int(lines) if lines.isdigit() else height) or 25,
    )


def client_terminal(terminal: HandOffTerminal, write: Write) -> Terminal:
    """Consoles that print as the client's would, and send what they print to it."""
    size = client_size(terminal)

    def console(stream: Stream) -> SafeConsole:
        output = terminal.outputs.get(stream, HandOffOutput())
        return make_console(
            stderr=stream == "err",
            # A text file as rich needs one (typeshed's IO[str] is not io's base class).
            file=cast("IO[str]", StreamFile(stream, output, write)),
            size=size,
            environ=terminal.environ,
        )

    return Terminal(out=console("out"), err=console("err"))


def client_settings(settings: Settings, people: Mapping[str, str]) -> Settings:
    """serve's settings with the client's person acting (its fingerprint held the rest equal).

    As the client would have found it: its ``REARGUARD_USER`` (or ``REARGUARD_ACTOR``), else
    ``actor`` in ``rearguard.toml`` (serve's, which is the client's), else its login name.
    """
    actor = next((people[name] for name in ACTOR_VARIABLES if name in people), None)
    if actor is None:
        document = read_config_file(settings.config_file)
        configured = table_of(document, CoreSettings.toml_table).get("actor")
        actor = configured if isinstance(configured, str) else os_user(people)
    return dataclasses.replace(settings, core=settings.core.model_copy(update={"actor": actor}))


@dataclasses.dataclass(frozen=True)
class HostedCommands:
    """Runs handed-off command lines (a :class:`rearguard.flows.intake.playbook_process.
    CommandHost`)."""

    built: dict[str, Callable[..., Any]] = dataclasses.field(default_factory=dict)
    """Each command's click command, built once in this process (typer takes milliseconds to
    build one), by its name."""

    def prepare(self) -> None:
        """Make this process fit to parse command lines in several threads at once, and build
        every handed-off command (the first one runs as fast as the next ones)."""
        # typer sets PYDANTIC_DISABLE_PLUGINS while it builds and parses a command's options,
        # then deletes it if it was unset: two commands parsed at once race (a KeyError). Once
        # set it is only ever restored. Empty disables no plugin, and pydantic read it long
        # ago: it loads its plugins once, at its first model.
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "")
        for words in HANDED_OFF:
            self.command(list(words))

    def command(self, argv: list[str]) -> Callable[..., Any]:
        """The click command that runs ``argv`` (built on first use)."""
        # lazy: in the playbook process only
        from typer.main import get_command

        from rearguard.flows.cli.main import build_app, invoked_command  # lazy: as above

        name = invoked_command(argv) or ""
        if name not in self.built:
            self.built[name] = get_command(build_app(argv))
        return self.built[name]

    def run(self, request: HandOffRequest, *, runtime: Runtime, write: Write) -> int:
        """Run the request's command line on (a copy of) ``runtime``, as the console script
        would, printing for the client with ``write``; its exit status."""
        from rearguard.flows.cli.main import run_command  # lazy: in the playbook process only
        from rearguard.flows.prefect_infra.lent import with_prefect  # lazy: as above

        terminal = client_terminal(request.terminal, write)
        lent = with_prefect(
            dataclasses.replace(
                runtime,
                settings=client_settings(runtime.settings, request.people),
                reporters=[],  # this command's own, not the other playbooks' of the process
                console=terminal.err.file,  # notifications printed as the CLI prints them
            )
        )
        run = Invocation(built=lent, lent=True, cwd=Path(request.cwd))
        argv = list(request.argv)
        with printing_to(terminal):
            return run_command(argv, run, prog_name=request.prog, command=self.command(argv))
