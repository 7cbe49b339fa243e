"""A local Prefect server for a long-running rearguard process (``rearguard serve``).

Without ``PREFECT_API_URL`` every playbook run would start Prefect's temporary server
(10-20 s). ``rearguard serve`` starts one server instead, on a free loopback port
(:mod:`rearguard.flows.prefect_infra.server_app`: Prefect's own app, retrying its SQLite lock
conflicts), points its own process (and the playbooks it runs) at it, and publishes its address
in the home (``prefect-server.json``) while it runs, so that rearguard commands run on the same
home without a Prefect API of their own (``incident open``, ``approve``, ``drills run``...) use
it too.

Without serve, the first command that runs a playbook starts the same server in the background
(:func:`shared_prefect_server`): detached from the command, so that later commands reuse it, and
stopping itself once unused for ``[prefect] idle_stop_s``. Two files in the home keep that
orderly: ``prefect-server.lock``, held while a command looks for the server and, finding none,
starts and publishes one (so two commands at once end with one server), and while the server
decides to stop; and ``prefect-server.users``, on which every command using the server holds a
shared lock until it exits (however it exits), so that a playbook that sends the server nothing
for a while (a long hash, an approval polled less often than the idle time) keeps it.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rearguard.flows.exports.output import atomic_text_file
from rearguard.flows.intake.published import alive
from rearguard.models.config.home import HOME_FILE_HINT, PRIVATE_FILE_MODE
from rearguard.models.errors import ConfigurationError

_STARTUP_TIMEOUT_S = 180.0
PUBLISHED_FILE = "prefect-server.json"
LOOPBACK_CA_FILE = "prefect-loopback-ca.pem"
LOCK_FILE = "prefect-server.lock"
USERS_FILE = "prefect-server.users"
_PROBE_TIMEOUT_S = 1.0


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class PublishedServer:
    """The local Prefect server a home's record names.

    Attributes:
        api_url: its API URL (loopback, plain HTTP).
        ca_file: the CA file its clients load (:func:`loopback_ca_file`).
        pid: the process whose life the record follows: serve's, or the background server's own.
        server_pid: the server's process.
        idle_stop_s: a background server stops after this long unused; None for serve's.
    """

    api_url: str
    ca_file: Path
    pid: int
    server_pid: int | None
    idle_stop_s: float | None

    def client_env(self) -> dict[str, str]:
        """The Prefect client's settings, as environment variables, for this server."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_API_SSL_CERT_FILE": str(self.ca_file)}


def published_server(home: Path) -> PublishedServer | None:
    """The local Prefect server published in ``home`` (by ``rearguard serve`` or a background
    start), if it runs and answers now; None otherwise (none, a stale file, not answering)."""
    try:
        published = json.loads((home / PUBLISHED_FILE).read_text(encoding="utf-8"))
        server = PublishedServer(
            api_url=str(published["api_url"]),
            ca_file=Path(str(published["ca_file"])),
            pid=int(published["pid"]),
            server_pid=int(published["server_pid"]) if published.get("server_pid") else None,
            idle_stop_s=(float(published["idle_stop_s"]) if published.get("idle_stop_s") else None),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not server.api_url.startswith("http://127.0.0.1:") or not alive(server.pid):
        return None
    if not _answers(server.api_url + "/health"):
        return None
    return server


def published_client_env(home: Path) -> dict[str, str] | None:
    """The Prefect client's settings (as environment variables) for the local Prefect server
    published in ``home``, if one runs and answers now; None otherwise."""
    server = published_server(home)
    return server.client_env() if server else None


def shared_prefect_server(
    *, home: Path, idle_stop_s: float, announce: Callable[[str], None] | None = None
) -> dict[str, str] | None:
    """The Prefect client's settings for the home's local server, started in the background
    when none answers; this process then counts as its user until it exits.

    The server is detached from this process (a session of its own, its output in
    ``home/prefect.log``): it outlives the command, for the next ones, until nothing has used
    it for ``idle_stop_s``.

    Args:
        home: the rearguard home whose server it is.
        idle_stop_s: a new server stops after this long unused; 0 starts none.
        announce: told one line before a new server is started (which takes seconds).

    Returns:
        The client's settings, or None when none answers and ``idle_stop_s`` is 0.

    Raises:
        ConfigurationError: the new server exited or did not become healthy in time.
    """
    with _home_lock(home):
        server = published_server(home)
        if server is None:
            if idle_stop_s <= 0:
                return None
            if announce is not None:
                announce(
                    "starting a local Prefect server in the background (later commands reuse "
                    f"it; it stops after {idle_stop_s:g} s unused, [prefect] idle_stop_s)"
                )
            server = _start_background(home=home, idle_stop_s=idle_stop_s)
        _hold_lease(home)
    return server.client_env()


def withdraw_if_unused(*, home: Path, still_idle: Callable[[], bool]) -> bool:
    """For a background server about to stop: under the home's lock, when no command uses it
    and ``still_idle()``, remove its record so that no command picks it up while it stops.

    Returns:
        True when it may stop now.
    """
    with _home_lock(home):
        if in_use(home) or not still_idle():
            return False
        withdraw(home)
        return True


def withdraw(home: Path) -> None:
    """Remove the home's record if this process published it (another may have replaced it)."""
    _unpublish(home / PUBLISHED_FILE)


def in_use(home: Path) -> bool:
    """True while some command holds its lease on the home's local server."""
    fd = os.open(home / USERS_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's lock
    return False


@contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _hold_lease(home: Path) -> None:
    """A shared lock on the users file, held until this process exits."""
    fd = os.open(home / USERS_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    # Never closed on purpose: the kernel releases the lock when the process ends, however it
    # ends, and a command uses the server until then. Not inherited by its children (PEP 446).


def _start_background(*, home: Path, idle_stop_s: float) -> PublishedServer:
    process, api_url, ca_file = _start_server(
        home=home,
        options=["--home", str(home), "--idle-stop-s", f"{idle_stop_s:g}"],
        detached=True,
    )
    server = PublishedServer(
        api_url=api_url,
        ca_file=ca_file,
        pid=process.pid,
        server_pid=process.pid,
        idle_stop_s=idle_stop_s,
    )
    record = {
        "api_url": api_url,
        "ca_file": str(ca_file),
        "pid": process.pid,
        "server_pid": process.pid,
        "idle_stop_s": idle_stop_s,
    }
    _write_whole(home / PUBLISHED_FILE, json.dumps(record))
    return server


def _start_server(
    *, home: Path, options: list[str], detached: bool
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start server_app on a free loopback port and wait until it is healthy.

    Returns:
        The process, its API URL and the CA file for its clients.
    """
    process, api_url, ca_file = _spawn_server(home=home, options=options, detached=detached)
    try:
        _wait_healthy(process, api_url, home)
    except BaseException:
        _stop(process)
        raise
    return process, api_url, ca_file


def _spawn_server(
    *, home: Path, options: list[str], detached: bool
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start server_app on a free loopback port (it takes seconds to answer).

    Returns:
        The process, its API URL and the CA file for its clients.
    """
    port = free_loopback_port()
    log_path = home / "prefect.log"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "rearguard.flows.prefect_infra.server_app"]
    command += ["--port", str(port), *options]
    with open(
        os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE), "ab"
    ) as log:
        # serve's server: a process group of its own (stopped as one), but serve's session:
        # where the kernel groups CPU time by session (autogroup), a new session would get a
        # share equal to serve's whatever its niceness, and the intake would lose half the
        # machine to it. A background server: a session of its own, to outlive the command
        # (and its terminal).
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=None if detached else 0,
            start_new_session=detached,
        )
    try:
        ca_file = loopback_ca_file(home / LOOPBACK_CA_FILE)
    except BaseException:
        _stop(process)
        raise
    return process, f"http://127.0.0.1:{port}/api", ca_file


def use_client_env(env: dict[str, str]) -> list[str]:
    """Point this process's Prefect client at a local server (before Prefect is imported):
    its API URL, and its CA file unless the user chose one. Returns the names it set."""
    os.environ["PREFECT_API_URL"] = env["PREFECT_API_URL"]
    names = ["PREFECT_API_URL"]
    if not os.environ.get("PREFECT_API_SSL_CERT_FILE"):
        os.environ["PREFECT_API_SSL_CERT_FILE"] = env["PREFECT_API_SSL_CERT_FILE"]
        names.append("PREFECT_API_SSL_CERT_FILE")
    return names


def loopback_ca_file(path: Path) -> Path:
    """Write (once) a CA file that vouches for no server, for clients of a plain-HTTP API.

    Prefect's client builds an SSL context each time it is created, loading the whole CA
    bundle, and a playbook creates several: during an alert storm that was a third of the
    playbook process's CPU (bench/README.md has the profile). A plain-HTTP API on loopback
    never uses the context. Pointed at this file instead (one self-signed certificate whose
    key is thrown away), building it costs next to nothing, and were TLS ever used, it would
    trust nothing.
    """
    if path.is_file():
        return path

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rearguard loopback, trusts none")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_whole(path, certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"))
    return path


def _answers(url: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """True when ``url`` (a loopback health URL) answers 200 within ``timeout``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@dataclass(frozen=True)
class LocalServer:
    """The local Prefect server of a serve, started and perhaps not answering yet."""

    api_url: str
    """Its API URL; this process's Prefect client settings already point at it."""
    home: Path
    """The home it serves."""
    process: subprocess.Popen[bytes]
    """Its process."""
    record: dict[str, str | int | float | None]
    """What it publishes in the home once it answers."""

    def wait_ready(self) -> None:
        """Wait until it answers, then publish it in the home for other rearguard commands.

        Raises:
            ConfigurationError: the server exited or did not become healthy in time.
        """
        _wait_healthy(self.process, self.api_url, self.home)
        _write_whole(self.home / PUBLISHED_FILE, json.dumps(self.record))


@contextmanager
def local_prefect_server(
    *, home: Path, niceness: int = 0, idle_stop_s: float | None = None
) -> Iterator[LocalServer]:
    """Run a Prefect server on loopback until the block ends. It answers seconds after the
    block starts: what else takes time (a playbook process's imports) can start meanwhile,
    and :meth:`LocalServer.wait_ready` waits for it and publishes it in ``home`` for other
    rearguard commands.

    Sets ``PREFECT_API_URL`` in this process's environment for the block (processes started
    in it inherit it). Prefect settings are read when Prefect is first imported, so enter this
    before importing it. The server's output goes to ``home/prefect.log``.

    Args:
        home: the rearguard home the server serves.
        niceness: how much to lower the server's CPU priority (``os.nice``).
        idle_stop_s: the idle stop of the process it follows (a background host's), for
            ``rearguard status``; None for serve's.
    """
    process, api_url, ca_file = _spawn_server(
        home=home,
        options=["--parent", str(os.getpid()), "--niceness", str(niceness)],
        detached=False,
    )
    names: list[str] = []
    try:
        names = use_client_env(
            {"PREFECT_API_URL": api_url, "PREFECT_API_SSL_CERT_FILE": str(ca_file)}
        )
        record: dict[str, str | int | float | None] = {
            "api_url": api_url,
            "ca_file": str(ca_file),
            "pid": os.getpid(),
            "server_pid": process.pid,
            "idle_stop_s": idle_stop_s,
        }
        yield LocalServer(api_url=api_url, home=home, process=process, record=record)
    finally:
        for name in names:
            os.environ.pop(name, None)
        _unpublish(home / PUBLISHED_FILE)
        _stop(process)


def _write_whole(path: Path, text: str) -> None:
    """Write ``path`` in the home, owner-only, so that a reader (another rearguard command)
    never sees half of it."""
    with atomic_text_file(path, mode=PRIVATE_FILE_MODE, hint=HOME_FILE_HINT) as out:
        out.write(text)


def _unpublish(path: Path) -> None:
    """Remove the record if it is still this process's (another serve may have replaced it)."""
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _wait_healthy(process: subprocess.Popen[bytes], api_url: str, home: Path) -> None:
    hint = f"see {home / 'prefect.log'}, or set PREFECT_API_URL to a running server"
    if not wait_for_api(api_url, exited=lambda: process.poll() is not None):
        if process.poll() is not None:
            raise ConfigurationError(
                f"the local Prefect server exited with {process.returncode}", hint=hint
            )
        raise ConfigurationError(
            f"the local Prefect server was not healthy after {_STARTUP_TIMEOUT_S:.0f} s",
            hint=hint,
        )


def wait_for_api(
    api_url: str,
    *,
    timeout: float = _STARTUP_TIMEOUT_S,
    exited: Callable[[], bool] = lambda: False,
) -> bool:
    """Wait until the Prefect API at ``api_url`` answers its health check (a local server
    started beside this process may take seconds).

    Args:
        api_url: the API's URL.
        timeout: how long to wait.
        exited: True once the server's process has ended (no use waiting longer).

    Returns:
        False if it did not answer within ``timeout`` seconds, or its process ended.
    """
    deadline = time.monotonic() + timeout
    while not _answers(f"{api_url.rstrip('/')}/health", timeout=2):
        if exited() or time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


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
