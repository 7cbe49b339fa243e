"""A local Prefect server for a long-running rearguard process (``rearguard serve``).

Without ``PREFECT_API_URL`` every playbook run would start Prefect's temporary server
(10-20 s). ``rearguard serve`` starts one server instead, on a free loopback port
(:mod:`rearguard.flows.prefect_infra.server_app`: Prefect's own app, retrying its SQLite lock
conflicts), points its own process (and the playbooks it runs) at it, and publishes its address
in the home (``prefect-server.json``) while it runs, so that rearguard commands run on the same
home without a Prefect API of their own (``incident open``, ``approve``, ``drills run``...) use
it too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dotenv import dotenv_values  # pydantic-settings' reader, so Prefect's too

from rearguard.models.errors import ConfigurationError

_STARTUP_TIMEOUT_S = 180.0
PUBLISHED_FILE = "prefect-server.json"
LOOPBACK_CA_FILE = "prefect-loopback-ca.pem"
_PROBE_TIMEOUT_S = 1.0


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def configured_api_url() -> str | None:
    """The Prefect API URL the user configured, found as Prefect 3 finds it, without importing
    Prefect (a second of the command's time).

    Prefect's sources, first found wins: the environment's ``PREFECT_API_URL``; in the working
    directory, ``.env``, ``prefect.toml`` (``[api] url``) and ``pyproject.toml``
    (``[tool.prefect.api] url``); then the active profile (named by ``PREFECT_PROFILE``, else
    the file's ``active``) of the profiles file (``PREFECT_PROFILES_PATH``, itself looked up in
    the same sources, else ``$PREFECT_HOME/profiles.toml``, else ``~/.prefect/profiles.toml``).
    An unreadable file counts as none, except that Prefect refuses a ``prefect.toml`` or
    ``pyproject.toml`` that is not TOML, and so does this.

    Raises:
        ConfigurationError: the working directory's ``prefect.toml`` or ``pyproject.toml`` is
            not valid TOML.
    """
    if url := _project_setting("PREFECT_API_URL", ("api", "url")):
        return url
    path = _project_setting("PREFECT_PROFILES_PATH", ("profiles_path",))
    prefect_home = os.environ.get("PREFECT_HOME") or "~/.prefect"
    profiles = _read_toml(Path(path or Path(prefect_home) / "profiles.toml").expanduser())
    name = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
    profile = profiles.get("profiles", {}).get(name, {}) if isinstance(name, str) else {}
    url = profile.get("PREFECT_API_URL") if isinstance(profile, dict) else None
    return url if isinstance(url, str) and url else None


def _project_setting(name: str, keys: tuple[str, ...]) -> str | None:
    """A Prefect setting from the environment, else from the working directory's ``.env``,
    ``prefect.toml`` (``keys``) or ``pyproject.toml`` (``[tool.prefect]``, then ``keys``)."""
    if value := os.environ.get(name):
        return value
    if Path(".env").is_file():
        try:
            if value := dotenv_values(".env").get(name):
                return value
        except (OSError, UnicodeDecodeError):
            pass
    for path, table in (("prefect.toml", keys), ("pyproject.toml", ("tool", "prefect", *keys))):
        found: object = _read_toml(Path(path), strict=True)
        for key in table:
            found = found.get(key) if isinstance(found, dict) else None
        if isinstance(found, str) and found:
            return found
    return None


def _read_toml(path: Path, *, strict: bool = False) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return {}
    except tomllib.TOMLDecodeError as exc:
        if strict:
            raise ConfigurationError(
                f"{path.resolve()} is not valid TOML ({exc})",
                hint="Prefect reads its settings from it too: fix it, or run elsewhere",
            ) from exc
        return {}


def published_client_env(home: Path) -> dict[str, str] | None:
    """The Prefect client's settings (as environment variables) for the local Prefect server
    a ``rearguard serve`` on ``home`` runs, if one does and answers now; None otherwise (no
    serve, a stale file, a server not answering)."""
    try:
        published = json.loads((home / PUBLISHED_FILE).read_text(encoding="utf-8"))
        api_url, pid = str(published["api_url"]), int(published["pid"])
        ca_file = Path(str(published["ca_file"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not api_url.startswith("http://127.0.0.1:") or not _alive(pid):
        return None
    if not _answers(api_url + "/health"):
        return None
    return {"PREFECT_API_URL": api_url, "PREFECT_API_SSL_CERT_FILE": str(ca_file)}


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _answers(url: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """True when ``url`` (a loopback health URL) answers 200 within ``timeout``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextmanager
def local_prefect_server(*, home: Path, niceness: int = 0) -> Iterator[str]:
    """Run a Prefect server on loopback until the block ends; yield its API URL.

    Sets ``PREFECT_API_URL`` in this process's environment for the block, and publishes the
    URL in ``home`` for other rearguard commands. Prefect settings are read when Prefect is
    first imported, so enter this before importing it. The server's output goes to
    ``home/prefect.log``.

    Args:
        home: the rearguard home the server serves.
        niceness: how much to lower the server's CPU priority (``os.nice``).

    Raises:
        ConfigurationError: the server exited or did not become healthy in time.
    """
    port = free_loopback_port()
    log_path = home / "prefect.log"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "rearguard.flows.prefect_infra.server_app",
        "--port",
        str(port),
    ]
    command += ["--parent", str(os.getpid()), "--niceness", str(niceness)]
    with log_path.open("ab") as log:
        # A process group of its own (stopped as one), but this session: where the kernel
        # groups CPU time by session (autogroup), a new session would get a share equal to
        # serve's whatever its niceness, and the intake would lose half the machine to it.
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, process_group=0
        )
    published = home / PUBLISHED_FILE
    names: list[str] = []
    try:
        _wait_healthy(process, f"http://127.0.0.1:{port}/api/health", log_path)
        api_url = f"http://127.0.0.1:{port}/api"
        ca_file = loopback_ca_file(home / LOOPBACK_CA_FILE)
        names = use_client_env(
            {"PREFECT_API_URL": api_url, "PREFECT_API_SSL_CERT_FILE": str(ca_file)}
        )
        record = {
            "api_url": api_url,
            "ca_file": str(ca_file),
            "pid": os.getpid(),
            "server_pid": process.pid,
        }
        _write_whole(published, json.dumps(record))
        yield api_url
    finally:
        for name in names:
            os.environ.pop(name, None)
        _unpublish(published)
        _stop(process)


def _write_whole(path: Path, text: str) -> None:
    """Write ``path`` so that a reader (another rearguard command) never sees half of it."""
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    staged.write_text(text, encoding="utf-8")
    staged.replace(path)


def _unpublish(path: Path) -> None:
    """Remove the record if it is still this process's (another serve may have replaced it)."""
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _wait_healthy(process: subprocess.Popen[bytes], health: str, log_path: Path) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigurationError(
                f"the local Prefect server exited with {process.returncode}",
                hint=f"see {log_path}, or set PREFECT_API_URL to a running server",
            )
        if _answers(health, timeout=2):
            return
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
