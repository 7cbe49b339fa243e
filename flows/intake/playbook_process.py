"""The intake's playbook process: opened incidents' playbooks run in a child process that
``rearguard serve`` starts and supervises, not in the threads that answer HTTP.

A playbook is CPU work in Python (Prefect's engine, hashing, the audit chain); in the serving
process it would share one interpreter lock with the request handlers, and an alert storm's
answers would wait behind the storm's playbooks. The child has its own interpreter and runs
the playbooks with :class:`rearguard.flows.intake.dispatcher.PlaybookDispatcher`, exactly as the
serving process would have.

The child is started with ``spawn`` (never ``fork``: the parent has threads), from the same
settings. If it dies, another is started at once and given the incidents the dead one had not
finished: steps converge on a rerun, so a half-run playbook resumes. An incident whose playbook
was running in ``_MAX_ATTEMPTS`` children that died is given up (counted in ``errors``, logged):
a playbook that kills its process every time must not restart it forever.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol

from rearguard.flows.intake.dispatcher import PlaybookDispatcher
from rearguard.flows.intake.handoff import Stream, exit_line, output_line
from rearguard.flows.intake.schemas import HandOffRequest
from rearguard.flows.run_playbook import (
    configure_prefect,
    run_records_off_the_terminal,
    warm_up,
)
from rearguard.models.audit.terminal import safe_log_handler
from rearguard.models.config.settings import Settings
from rearguard.models.runtime import Runtime

logger = logging.getLogger(__name__)
_STOP = None
_READY = "ready"
_COMMAND = "command"
_LINE = "line"
_EXIT = "exit"
_MAX_ATTEMPTS = 3
PLAYBOOK_NICENESS = 10
"""How much lower the CPU priority of the playbook process is than the intake's. The intake
answers from one interpreter, so it can use at most one core: on two cores the playbooks keep
the other, and during a storm they no longer take the intake's (bench_intake, bench/README.md
"Intake, 2026-12-04")."""
PREFECT_SERVER_NICENESS = 19
"""The CPU priority of serve's local Prefect server: the lowest, below the playbook process.
The playbook process holds the SQLite write lock that the intake waits for (short
transactions, but a holder without CPU holds it longer); the Prefect server holds nothing the
intake waits for. At 19 rather than 10, the storm's first steps came sooner (median 2.0 s over
six runs, 1.9-3.0, against 2.7 s, 2.2-2.9) and the intake's p99 at 1,000 alerts/s was no
worse (bench/README.md "Intake, 2026-12-05")."""


Write = Callable[[Stream, str], None]
"""Called as write(stream, text) with what a handed-off command prints."""
Sink = Callable[[bytes, bool], None]
"""Called as sink(line, last) with each line of a handed-off command's stream."""


class CommandHost(Protocol):
    """Runs CLI command lines in the playbook process for the hand-off; ``rearguard serve``
    gives one (the CLI's; it is pickled by reference into the child)."""

    def prepare(self) -> None:
        """Import ahead what running a command needs, so that the first one is not slower."""

    def run(self, request: HandOffRequest, *, runtime: Runtime, write: Write) -> int:
        """Run the request's command line on ``runtime``, printing with ``write``; return its
        exit status."""


class PlaybookProcess:
    """Runs incidents' playbooks, and handed-off commands, in a supervised child process.

    Args:
        settings: the settings the child builds its runtime from.
        workers: how many playbooks the child runs at once (on different assets).
        host: what runs handed-off commands (None: the child takes none).
        starting_server: the Prefect API is a local server the caller has just started, which
            may not answer yet: the child's warm-up waits for it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        workers: int,
        host: CommandHost | None = None,
        starting_server: bool = False,
    ) -> None:
        self._settings = settings
        self._workers = workers
        self._host = host
        self._starting_server = starting_server
        self._commands: dict[int, Sink] = {}  # handed-off commands that have not ended
        self._last_command = 0
        self._context = multiprocessing.get_context("spawn")
        # Raised by this process's database writers while they wait for SQLite's write lock:
        # the child's writers let them go first (see Database.share_write_lock).
        self.write_flag = self._context.Event()
        self._guard = threading.Lock()
        self._outstanding: dict[int, int] = {}  # submitted, not yet ended: children tried
        self._stopping = False
        self._child: Any = None
        self._tasks: Connection | None = None
        self.counts = {"started": 0, "finished": 0, "errors": 0, "restarts": 0}
        self._ready = threading.Event()
        with self._guard:
            self._start_child()

    def submit(self, incident_id: int) -> None:
        """Hand an incident's playbook to the child (starting a new child if it died)."""
        with self._guard:
            if self._stopping:
                return
            self._outstanding[incident_id] = 1
            self._send(incident_id)

    def hand_off(self, request: HandOffRequest, sink: Sink) -> bool:
        """Have the child run a handed-off command line; ``sink`` gets its stream's lines.

        Returns:
            False when it was not taken (no host, or stopping); ``sink`` then gets nothing.
        """
        with self._guard:
            if self._stopping or self._host is None:
                return False
            self._last_command += 1
            self._commands[self._last_command] = sink
            self._send((_COMMAND, self._last_command, request))
        return True

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the child has warmed up (:func:`rearguard.flows.run_playbook.warm_up`), so
        that the first incident's playbook starts as fast as the next ones.

        Returns:
            False if it had not after ``timeout`` seconds (its incidents wait for it).
        """
        return self._ready.wait(timeout)

    def stop(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Stop taking work; with ``wait``, let queued and running playbooks finish."""
        with self._guard:
            self._stopping = True
            child, tasks = self._child, self._tasks
            running = len(self._outstanding)
        if wait and child.is_alive():
            assert tasks is not None
            if running:
                logger.warning(
                    "waiting for %d playbook(s) to end; one waiting for an approval ends when "
                    "it is decided (`rearguard approvals list --pending`) or times out",
                    running,
                )
            with contextlib.suppress(OSError):
                tasks.send(_STOP)
            child.join(timeout)
        if child.is_alive():
            child.kill()  # it ignores SIGTERM
            child.join(10)

    def _start_child(self) -> None:
        """Start a child and give it every outstanding incident; the caller holds the guard."""
        tasks_out, tasks_in = self._context.Pipe(duplex=False)
        events_out, events_in = self._context.Pipe(duplex=False)
        child = self._context.Process(
            target=run_child,
            args=(
                self._settings,
                self._workers,
                tasks_out,
                events_in,
                self.write_flag,
                self._host,
                self._starting_server,
            ),
            name="rearguard-playbooks",
            daemon=True,
        )
        child.start()
        tasks_out.close()
        events_in.close()
        self._child, self._tasks = child, tasks_in
        threading.Thread(
            target=self._read_events, args=(events_out,), name="rearguard-pb-events", daemon=True
        ).start()
        for incident_id in self._outstanding:
            self._send(incident_id)

    def _send(self, task: int | tuple[str, int, HandOffRequest]) -> None:
        assert self._tasks is not None
        # If the child is gone, its event reader starts another with the outstanding ones.
        with contextlib.suppress(OSError):
            self._tasks.send(task)

    def _read_events(self, events: Connection) -> None:
        while True:
            try:
                kind, key, *rest = events.recv()
            except (EOFError, OSError):
                break
            if kind == _READY:
                self._ready.set()
            elif kind in (_LINE, _EXIT):
                self._relay(kind, key, rest)
            else:
                with self._guard:
                    self.counts[kind] += 1
                    if kind != "started":
                        self._outstanding.pop(key, None)
        with self._guard:
            if not self._stopping:
                self._restart()
            ended, self._commands = self._commands, {}
        for sink in ended.values():
            sink(
                output_line("err", "error: serve's playbook process stopped under the command\n"),
                False,
            )
            sink(exit_line(1), True)

    def _relay(self, kind: str, command: int, rest: list[Any]) -> None:
        """Pass a line of a handed-off command's output (or its end) to its request."""
        with self._guard:
            sink = (
                self._commands.pop(command, None) if kind == _EXIT else self._commands.get(command)
            )
        if sink is None:
            return
        if kind == _EXIT:
            sink(exit_line(int(rest[0])), True)
        else:
            sink(output_line(rest[0], str(rest[1])), False)

    def _restart(self) -> None:
        """The child died: start another with the unfinished incidents; the caller holds the
        guard."""
        self._child.join(10)
        logger.error(
            "the playbook process died (exit code %s); starting another", self._child.exitcode
        )
        self.counts["restarts"] += 1
        for incident_id, attempts in list(self._outstanding.items()):
            if attempts >= _MAX_ATTEMPTS:
                del self._outstanding[incident_id]
                self.counts["errors"] += 1
                logger.error(
                    "incident %s: its playbook's process died %d times; giving up",
                    incident_id,
                    attempts,
                )
            else:
                self._outstanding[incident_id] = attempts + 1
        self._start_child()


def run_child(
    settings: Settings,
    workers: int,
    tasks: Connection,
    events: Connection,
    write_flag: Any,
    host: CommandHost | None = None,
    starting_server: bool = False,
) -> None:
    """The child's main: run each incident id received (and each handed-off command, with
    ``host``) until told to stop, then let the running and queued ones end. Its database
    writers yield to the parent's while ``write_flag`` is raised. It ignores SIGINT and
    SIGTERM: the parent stops it. With ``starting_server``, its warm-up waits for the local
    Prefect server its parent has just started."""
    # Ctrl+C in a terminal signals the whole process group, and a service manager may signal
    # every process of the service: the parent alone decides when its playbooks stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    logging.basicConfig(level=logging.WARNING, handlers=[safe_log_handler()])
    # How each playbook ended, one line each, on serve's console.
    logging.getLogger("rearguard.flows.intake.dispatcher").setLevel(logging.INFO)
    os.nice(PLAYBOOK_NICENESS)
    configure_prefect()
    send_lock = threading.Lock()

    def send(*event: Any) -> None:
        with send_lock:
            events.send(event)

    def report(kind: str, incident_id: int) -> None:
        send(kind, incident_id)

    runtime = Runtime.from_settings(settings)
    runtime.db.share_write_lock(write_flag, favoured=False)
    commands: list[threading.Thread] = []
    with run_records_off_the_terminal():
        try:
            if host is not None:
                host.prepare()  # before the warm-up, which may wait for the Prefect server
            warm_up(wait_for_server=starting_server)
        except Exception as exc:  # the playbooks will say what is wrong, one by one
            logger.warning("the playbook process could not warm up: %s", exc)
        report(_READY, 0)
        dispatcher = PlaybookDispatcher(runtime, workers=workers, report=report)
        while True:
            try:
                task = tasks.recv()
            except (EOFError, OSError):
                break  # the parent is gone: finish what is queued
            if task is _STOP:
                break
            if isinstance(task, tuple) and host is not None:
                _, command, request = task
                commands = [running for running in commands if running.is_alive()]
                thread = threading.Thread(
                    target=run_handed_off,
                    args=(host, runtime, request, command, send),
                    name=f"rearguard-cli-{command}",
                )
                thread.start()
                commands.append(thread)
                continue
            dispatcher.submit(task)
        dispatcher.stop(wait=True)
        for thread in commands:
            thread.join()
    runtime.close()  # the playbooks' checkpoints made and published before the child exits


def run_handed_off(
    host: CommandHost,
    runtime: Runtime,
    request: HandOffRequest,
    command: int,
    send: Callable[..., None],
) -> None:
    """Run one handed-off command in the child, sending what it prints and its exit status."""

    def write(stream: Stream, text: str) -> None:
        send(_LINE, command, stream, text)

    try:
        code = host.run(request, runtime=runtime, write=write)
    except Exception:  # the host prints expected errors itself; this is a bug, in serve's log
        logger.exception("a command handed to serve failed: %s", " ".join(request.argv[:2]))
        write("err", "error: serve could not run the command; its log says why\n")
        code = 1
    send(_EXIT, command, code)
