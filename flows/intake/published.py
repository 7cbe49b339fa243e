"""Where this home's ``rearguard serve`` answers, published in the home for other commands.

Once its intake listens, serve writes ``<home>/serve.json`` (owner-only, 0600): the intake's
URL, its process id, an instance id, new for every start, that its ``/healthz`` answers with
too, and its hand-off token (also new for every start; see
:mod:`rearguard.flows.intake.handoff`). ``rearguard status`` reads it and asks ``/healthz``: the
same instance id is this home's serve; any other answer on that address is something else.
serve removes the file as it stops, if it is still its own (a second serve on the home
replaces it).

Read by the hand-off client before anything else is imported: reading needs the standard
library only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from pathlib import Path
from typing import NamedTuple

PUBLISHED_FILE = "serve.json"


class PublishedServe(NamedTuple):
    """A running serve, as it published itself (a named tuple: the hand-off client reads it,
    and importing dataclasses would cost it milliseconds)."""

    url: str
    """The intake's base URL (``http://127.0.0.1:8088``)."""
    instance: str
    """Its instance id, which its ``/healthz`` answers with."""
    pid: int
    token: str = ""
    """The hand-off token: a client that can read this file may hand commands to this serve
    (empty in a file written before serve took commands)."""
    idle_stop_s: float = 0.0
    """A background host's idle stop (``serve --background``, started by a command; see
    :mod:`rearguard.flows.cli.background`); 0 for a serve a person started."""


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def reachable_url(host: str, port: int) -> str:
    """The URL a client on this machine reaches an intake bound to ``host``:``port`` at (an
    intake bound to every address answers on loopback)."""
    bare = host.strip("[]")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:  # a name
        return f"http://{bare}:{port}"
    if address.is_unspecified:
        bare = "127.0.0.1" if address.version == 4 else "::1"
    return f"http://[{bare}]:{port}" if ":" in bare else f"http://{bare}:{port}"


def new_instance_id() -> str:
    """A new serve's instance id (random: two serves never share one)."""
    import secrets  # lazy: the hand-off client reads serve.json only

    return secrets.token_hex(16)


def new_token() -> str:
    """A new serve's hand-off token (random, 256 bits)."""
    import secrets  # lazy: the hand-off client reads serve.json only

    return secrets.token_urlsafe(32)


def publish(home: Path, served: PublishedServe) -> None:
    """Write ``serve.json`` in the home, whole (a reader never sees half of it), owner-only."""
    # lazy: the hand-off client reads serve.json before anything else is imported
    from rearguard.flows.exports.output import atomic_text_file
    from rearguard.models.config.home import HOME_FILE_HINT, PRIVATE_FILE_MODE  # lazy: as above

    with atomic_text_file(
        home / PUBLISHED_FILE, mode=PRIVATE_FILE_MODE, hint=HOME_FILE_HINT
    ) as out:
        out.write(json.dumps(served._asdict()))


def alive(pid: int) -> bool:
    """True while process ``pid`` exists (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def read_published(home: Path) -> PublishedServe | None:
    """The serve this home's ``serve.json`` names, or None when there is none (or it is not
    one serve wrote)."""
    try:
        found = json.loads((home / PUBLISHED_FILE).read_text(encoding="utf-8"))
        return PublishedServe(
            url=str(found["url"]),
            instance=str(found["instance"]),
            pid=int(found["pid"]),
            token=str(found.get("token", "")),
            idle_stop_s=float(found.get("idle_stop_s", 0.0)),
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def unpublish(home: Path, instance: str) -> None:
    """Remove ``serve.json`` if it still names this instance."""
    found = read_published(home)
    if found is not None and found.instance == instance:
        with contextlib.suppress(OSError):
            (home / PUBLISHED_FILE).unlink()
