"""The hand-off's client: a command that runs a playbook (or decides on one) is handed to this
home's running ``rearguard serve`` when one answers, and its output streamed back.

``incident open``, ``playbook run``, ``drills run`` and ``approve`` cost a CLI process its
imports and Prefect's first flow run (seconds); serve's playbook process has paid for both.
Before anything else is imported, :func:`hand_off` looks for the serve that
``<home>/serve.json`` names, checks that it is that serve (its instance id at ``/healthz``) and
posts the command line with the hand-off token serve published there (the file is the
owner's alone). serve runs the command as this process would have, on the client's terminal
(see :mod:`rearguard.flows.intake.handoff`); what it prints comes back as it is printed, and
its exit status is this process's.

Without a serve, a command that runs a playbook starts this home's background host (``serve
--background``; see :mod:`rearguard.flows.cli.background`) and is handed to it; a host that
has stopped, or runs with other settings, is replaced the same way. The command runs here
instead when ``--local`` (or ``REARGUARD_LOCAL``) says so, when no serve or host takes it
(none may start: a Prefect API configured, ``[prefect] idle_stop_s`` 0, an ``approve``), and,
with a one-line note, when a serve a person started does not answer, refuses the token, or
runs with other settings (another environment, another ``rearguard.toml``). Once serve has
the command, it is never run here as well: if serve stops before the command ends, that is an
error.

The standard library only, and little of it (``python -X importtime``): a handed-off command
costs an interpreter's start, a few imports and two requests on one connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NoReturn

from rearguard.flows.intake.handoff import (
    HANDOFF_PATH,
    TERMINAL_VARIABLES,
    parse_line,
    request_body,
)
from rearguard.flows.intake.published import PublishedServe, alive, read_published
from rearguard.models.config.home import ACTOR_VARIABLES, OS_USER_VARIABLES, default_home

RUN_PLAYBOOKS = (("incident", "open"), ("playbook", "run"), ("drills", "run"))
"""The commands that run a playbook: without a serve, one starts the background host."""
HANDED_OFF = (*RUN_PLAYBOOKS, ("approve",))
"""The commands serve runs for a client: each runs a playbook, or decides on one that waits."""
LOCAL_OPTION = "--local"
LOCAL_VARIABLE = "REARGUARD_LOCAL"
ROOT_VARIABLES = {"--home": "REARGUARD_HOME", "--database-url": "REARGUARD_DATABASE_URL"}
"""The root options (each takes a value: ``--home DIR`` or ``--home=DIR``), and the variable
each overrides (a background host is given them this way: a password in a database URL stays
out of its command line, which anyone on the machine sees)."""
ROOT_OPTIONS = tuple(ROOT_VARIABLES)
DATABASE_URL_VARIABLE = ROOT_VARIABLES["--database-url"]
CONNECT_TIMEOUT_S = 2.0
"""How long serve has to accept the connection and answer ``/healthz``."""
PEOPLE_VARIABLES = (*ACTOR_VARIABLES, *OS_USER_VARIABLES)
"""Who acts: the settings' own variables, then the login user's (each command sends its own)."""
# Settings that only serve's own parts read (the intake, its Slack commands, the scheduler).
_SERVES_OWN = ("REARGUARD_INTAKE_", "REARGUARD_SLACK_COMMANDS_", "REARGUARD_SCHEDULER_")
# What each command gives serve itself, or decides before it asks (the home, who acts).
_PER_COMMAND = {"REARGUARD_HOME", "REARGUARD_DEBUG", LOCAL_VARIABLE, *PEOPLE_VARIABLES}


def split_root_options(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """The root options at the start of a command line (``--home``, ``--database-url``) and
    what follows them."""
    options: dict[str, str] = {}
    index = 0
    while index < len(argv):
        name, equals, value = argv[index].partition("=")
        if name not in ROOT_OPTIONS:
            break
        if not equals:
            if index + 1 >= len(argv):
                break
            value = argv[index + 1]
            index += 1
        options[name] = value
        index += 1
    return options, argv[index:]


def fingerprint(
    *, home: str | None, database_url: str | None, environ: Mapping[str, str], cwd: Path
) -> str:
    """What decides a command's settings, as one digest: two processes with the same one have
    the same settings, serve's own parts aside.

    The home as given (``home`` None: the default home), every ``REARGUARD_*`` variable but
    those of serve's own parts and of who acts (each command says who acts), with
    ``--database-url`` counted as the ``REARGUARD_DATABASE_URL`` it overrides, and the
    ``rearguard.toml`` that applies (the working directory's, else the home's) with its
    content.
    """
    home_path = Path(home).expanduser() if home else default_home()
    config: list[str] = []
    for candidate in (cwd / "rearguard.toml", home_path / "rearguard.toml"):
        try:
            content = candidate.read_bytes()
        except OSError:
            continue
        config = [os.path.realpath(candidate), hashlib.sha256(content).hexdigest()]
        break
    variables = [
        (name.upper(), value)
        for name, value in environ.items()
        if name.upper().startswith("REARGUARD_")
        and not name.upper().startswith(_SERVES_OWN)
        and name.upper() not in _PER_COMMAND
        and not (database_url is not None and name.upper() == DATABASE_URL_VARIABLE)
    ]
    if database_url is not None:
        variables.append((DATABASE_URL_VARIABLE, database_url))
    described = {
        "home": os.path.realpath(home_path),
        "environment": sorted(variables),
        "config": config,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def names_one_of(words: list[str], commands: tuple[tuple[str, ...], ...]) -> bool:
    """True when a command line (after the root options) names one of ``commands``
    (:data:`HANDED_OFF`: one serve runs; :data:`RUN_PLAYBOOKS`: one that runs a playbook)."""
    return any(tuple(words[: len(command)]) == command for command in commands)


def hand_off(argv: list[str]) -> int | None:
    """Hand the command line to this home's serve, if it is one serve runs and serve answers;
    without a serve, to this home's background host, started first when none runs (see
    :mod:`rearguard.flows.cli.background`).

    Returns:
        The command's exit status once serve has run it; None to run it here.
    """
    options, words = split_root_options(argv)
    if (
        not names_one_of(words, HANDED_OFF)
        or LOCAL_OPTION in words
        or "--help" in words
        or os.environ.get(LOCAL_VARIABLE)
        or os.environ.get("REARGUARD_DEBUG")
    ):
        return None
    home_option = options.get("--home")
    home = Path(home_option).expanduser() if home_option else default_home()
    body = request_body(
        argv=argv,
        fingerprint=fingerprint(
            home=home_option,
            database_url=options.get("--database-url"),
            environ=os.environ,
            cwd=Path.cwd(),
        ),
        cwd=os.getcwd(),
        prog=os.path.basename(sys.argv[0]) or "rearguard",
        people={name: os.environ[name] for name in PEOPLE_VARIABLES if name in os.environ},
        outputs={"out": _output(sys.stdout), "err": _output(sys.stderr)},
        size=terminal_size(),
        terminal_environ={n: os.environ[n] for n in TERMINAL_VARIABLES if n in os.environ},
    )
    served = read_published(home)
    if served is not None and served.token and (served.idle_stop_s or alive(served.pid)):
        taken = post(served, body)
        if isinstance(taken, int):
            return taken
        if not served.idle_stop_s:  # a serve a person started: they see why it did not
            note(taken)
            return None
        # A background host that has stopped, or stepped aside for other settings: a new one.
    elif served is not None and alive(served.pid):
        return None  # a serve from before the hand-off: it takes no commands
    if not names_one_of(words, RUN_PLAYBOOKS):
        return None  # a decision alone (approve) is not worth starting a host for
    # lazy: only when no serve takes the command (the command is about to take seconds)
    from rearguard.flows.cli import background

    idle_stop_s = background.wanted(home=home)
    if idle_stop_s is None:
        return None
    host = background.start_host(
        home=home, root_options=options, idle_stop_s=idle_stop_s, failed=served
    )
    if host is None:
        return None
    taken = post(host, body)
    if isinstance(taken, int):
        return taken
    note(taken)
    return None


def leave(code: int) -> NoReturn:
    """Exit with a handed-off command's status. serve ran it: this process has nothing left to
    finish or release, and leaves without the interpreter's teardown (7 ms of the 50 a
    handed-off command takes)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a reader that has gone
            stream.flush()
    os._exit(code)


def terminal_size() -> tuple[int, int] | None:
    """The columns and lines of this process's terminal, if it has one."""
    for descriptor in (0, 1, 2):  # where rich looks for it, in its order
        try:
            columns, lines = os.get_terminal_size(descriptor)
        except (OSError, ValueError):
            continue
        return columns, lines
    return None


def _output(stream: object) -> tuple[bool, str]:
    """Whether a stream of this process is a terminal, and its encoding."""
    isatty = getattr(stream, "isatty", None)
    try:
        tty = bool(isatty()) if isatty else False
    except ValueError:  # closed
        tty = False
    return tty, str(getattr(stream, "encoding", None) or "utf-8")


def note(line: str) -> None:
    """One line on standard error: why the command runs here after all."""
    sys.stderr.write(f"note: {line}; running the command here\n")
    sys.stderr.flush()


class Connection:
    """One HTTP/1.1 connection to serve on this machine, as little of HTTP as the hand-off
    needs: a request, then its answer's status, headers and body (``Content-Length`` or
    chunked), the body as it arrives. Not ``http.client``: importing it (``email``, ``ssl``,
    ``idna``) cost a handed-off command a fifth of its time.

    Raises:
        OSError: the connection failed.
        ValueError: what came back is not HTTP.
    """

    def __init__(self, url: str, *, timeout: float) -> None:
        # lazy: only a command handed to a serve that is published needs it (CLI start-up)
        import socket

        self.host = url.removeprefix("http://").rstrip("/")
        name, _, port = self.host.rpartition(":")
        # The address as bytes: a str would be IDNA-encoded, an import of its own.
        address = (name.strip("[]").encode("ascii"), int(port))
        self.socket = socket.create_connection(address, timeout=timeout)  # type: ignore[arg-type]
        self.reader = self.socket.makefile("rb")

    def request(self, method: str, path: str, body: bytes = b"", *headers: str) -> None:
        """Send a request."""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", *headers]
        head.append(f"Content-Length: {len(body)}")
        self.socket.sendall("\r\n".join([*head, "", ""]).encode("latin-1") + body)

    def response(self) -> tuple[int, dict[str, str]]:
        """The next response's status and headers (names in lower case)."""
        status = self.reader.readline().split(None, 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/"):
            raise ValueError("not an HTTP response")
        headers: dict[str, str] = {}
        while (line := self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status[1]), headers

    def body(self, headers: dict[str, str]) -> Iterator[bytes]:
        """The response's body, in the pieces it arrives in."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while size := int(self.reader.readline().split(b";")[0], 16):
                yield self.reader.read(size)
                self.reader.readline()
            while self.reader.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
        elif "content-length" in headers:
            yield self.reader.read(int(headers["content-length"]))
        else:
            yield self.reader.read()

    def lines(self, headers: dict[str, str]) -> Iterator[bytes]:
        """The response's body, line by line as each arrives."""
        pending = b""
        for piece in self.body(headers):
            *complete, pending = (pending + piece).split(b"\n")
            yield from complete
        if pending:
            yield pending

    def close(self) -> None:
        """Close the connection."""
        self.reader.close()
        self.socket.close()


def post(served: PublishedServe, body: bytes) -> int | str:
    """Check that ``served`` is this home's serve, hand it the request, and print what it
    streams back.

    Returns:
        The command's exit status; or, when serve did not take the command, why not (a line
        for :func:`note`).
    """
    where = served.url
    connection = None
    try:
        try:
            connection = Connection(where, timeout=CONNECT_TIMEOUT_S)
            connection.request("GET", "/healthz")
            status, headers = connection.response()
            health = json.loads(b"".join(connection.body(headers)))
            if (
                status != 200
                or not isinstance(health, dict)
                or health.get("instance") != (served.instance)
            ):
                return f"what answers at {where} is not this home's serve (serve.json is stale)"
            connection.request(
                "POST",
                HANDOFF_PATH,
                body,
                f"Authorization: Bearer {served.token}",
                "Content-Type: application/json",
            )
        except (OSError, ValueError):
            return f"this home's serve ({where}) does not answer"
        return stream(connection, where)
    except KeyboardInterrupt:  # before serve had the command: nothing ran
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        if connection is not None:
            connection.close()


def stream(connection: Connection, where: str) -> int | str:
    """Print what serve streams for the command; its exit status, or why serve refused it."""
    try:
        connection.socket.settimeout(None)  # a playbook may wait hours for an approval
        status, headers = connection.response()
        if status != 200:
            detail = _detail(b"".join(connection.body(headers)))
            if status in (401, 403):
                return f"this home's serve ({where}) refused the hand-off token ({detail})"
            return f"this home's serve ({where}) did not take the command: {detail}"
        for line in connection.lines(headers):
            said = parse_line(line)
            if isinstance(said, int):
                return said
            out = sys.stdout if said[0] == "out" else sys.stderr
            with contextlib.suppress(BrokenPipeError):  # nobody reads it: the command goes on
                out.write(said[1])
                out.flush()
    except KeyboardInterrupt:
        sys.stderr.write(
            f"interrupted: serve ({where}) goes on with the command; "
            "`rearguard incident list` shows where it is\n"
        )
        return 130
    except (OSError, ValueError):
        pass
    sys.stderr.write(
        f"error: this home's serve ({where}) stopped answering before the command ended; "
        "it may have run in part: see `rearguard incident list` before running it again\n"
    )
    return 1


def _detail(body: bytes) -> str:
    try:
        return str(json.loads(body)["detail"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")
