"""A local Prefect server for a long-running rearguard process (``rearguard serve``).

Without ``PREFECT_API_URL`` every playbook run would start Prefect's temporary server
(10-20 s). ``rearguard serve`` starts ``prefect server start`` once, on a free loopback port,
and points its own process (and the playbooks it runs) at it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rearguard.models.errors import ConfigurationError

_STARTUP_TIMEOUT_S = 180.0


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def local_prefect_server(log_path: Path) -> Iterator[str]:
    """Run ``prefect server start`` on loopback until the block ends; yield its API URL.

    Sets ``PREFECT_API_URL`` in this process's environment for the block. Prefect settings
    are read when Prefect is first imported, so enter this before importing it.

    Args:
        log_path: where the server's output goes.

    Raises:
        ConfigurationError: the server exited or did not become healthy in time.
    """
    port = free_loopback_port()
    prefect = Path(sys.executable).with_name("prefect")
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(process, f"http://127.0.0.1:{port}/api/health", log_path)
        api_url = f"http://127.0.0.1:{port}/api"
        os.environ["PREFECT_API_URL"] = api_url
        yield api_url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        _stop(process)


def _wait_healthy(process: subprocess.Popen[bytes], health: str, log_path: Path) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigurationError(
                f"the local Prefect server exited with {process.returncode}",
                hint=f"see {log_path}, or set PREFECT_API_URL to a running server",
            )
        try:
            with urllib.request.urlopen(health, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise ConfigurationError(
        f"the local Prefect server was not healthy after {_STARTUP_TIMEOUT_S:.0f} s",
        hint=f"see {log_path}, or set PREFECT_API_URL to a running server",
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # Its own process group: the server's uvicorn and services go with it.
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
