"""The console script's exit, without the interpreter's finalization.

A command that ran a playbook has imported Prefect, SQLAlchemy, pydantic and their
dependencies, and holds Prefect's worker threads and event loops. After its last line, a
normal exit then tore the interpreter down object by object: 1-2.5 s on a loaded machine
(bench/README.md, "Second command without serve"), for nothing rearguard keeps.

So the exit goes as Python's own does, up to the point where nothing more can be saved: the
non-daemon threads are joined, every ``atexit`` handler runs (Prefect's, logging's flush and
close, multiprocessing's), and only then, from the handler that was registered first and so
runs last, the standard streams are flushed and the process ends at once. What rearguard keeps
is durable before that: its transactions are committed (SQLite ``synchronous=FULL``), the
outbox's rows with them, a checkpoint's file sinks written and synced.
"""

from __future__ import annotations

import atexit
import os
import sys

_FAILED = 1


class PromptExit:
    """Ends the process promptly once the exit handlers have run, with the command's status.

    Create it (:meth:`install`) before anything registers an ``atexit`` handler of its own;
    record the command's status with :meth:`record` as its ``SystemExit`` goes by.
    """

    def __init__(self) -> None:
        self.status = _FAILED  # an uncaught exception: Python's own status for it

    @classmethod
    def install(cls) -> PromptExit:
        """Register the prompt exit as the last of the exit handlers to run."""
        prompt = cls()
        atexit.register(prompt.exit)
        return prompt

    def record(self, code: object) -> None:
        """The status a ``SystemExit`` carries, as Python reads it: None is 0, a number is
        itself, anything else a message (which Python prints) and 1."""
        self.status = (code or 0) if code is None or isinstance(code, int) else _FAILED

    def exit(self) -> None:
        """Flush the standard streams and end the process with the recorded status."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe (`| head`), a closed stream
                continue
        os._exit(self.status)
