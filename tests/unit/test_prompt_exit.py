"""The console script's prompt exit: the command's status, its output flushed, every exit
handler run first (Prefect's, logging's), only the interpreter's teardown skipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import atexit, logging, sys, threading
from rearguard.flows.cli.prompt_exit import PromptExit

prompt = PromptExit.install()
handler = logging.FileHandler(sys.argv[1])  # closed (and flushed) by logging's exit handler
logging.getLogger("t").addHandler(handler)
logging.getLogger("t").warning("logged")
atexit.register(lambda: open(sys.argv[2], "w").write("ran"))
worker = threading.Thread(target=lambda: open(sys.argv[3], "w").write("joined"))
sys.stdout.write("x" * 100_000)  # more than a pipe holds, no newline
try:
    worker.start()
    raise SystemExit(CODE)
except SystemExit as exc:
    prompt.record(exc.code)
    raise
"""


@pytest.mark.parametrize(("code", "status"), [("3", 3), ("None", 0), ("'a message'", 1)])
def test_the_exit_keeps_the_status_the_output_and_the_exit_handlers(
    code: str, status: int, tmp_path: Path
) -> None:
    log, handler, thread = tmp_path / "log", tmp_path / "atexit", tmp_path / "thread"

    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.replace("CODE", code), str(log), str(handler), str(thread)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert done.returncode == status
    assert done.stdout == "x" * 100_000
    assert done.stderr == ("a message\n" if status == 1 else "")
    assert log.read_text() == "logged\n"
    assert handler.read_text() == "ran"
    assert thread.read_text() == "joined"
