"""Where the database is, found without the settings machinery, for a read command that needs
nothing else (``incident list`` and the like: the CLI's ``Invocation.reading``); and how long a
background host stays unused, for the hand-off client that starts one."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rearguard.models.config.files import find_config_file, read_config_file, table_of
from rearguard.models.config.home import default_home
from rearguard.models.errors import ConfigurationError


@dataclass(frozen=True)
class DatabaseLocation:
    """Where the database is, as the settings resolve it."""

    url: str
    busy_timeout_s: float
    embedded: bool
    """True for the default: the SQLite file in the home (upgraded on first use)."""


# What the settings read for the database, each from the environment, else from its table of
# rearguard.toml (CoreSettings reads the file's top level).
_LOCATION_SETTINGS = {
    "REARGUARD_HOME": ("", "home"),
    "REARGUARD_DATABASE_URL": ("database", "url"),
    "REARGUARD_DATABASE_BUSY_TIMEOUT_S": ("database", "busy_timeout_s"),
}
_PLAIN_SECONDS = re.compile(r"[0-9]{1,6}(\.[0-9]+)?")
DEFAULT_IDLE_STOP_S = 900.0
"""``[prefect] idle_stop_s``'s default."""
_IDLE_STOP_VARIABLE = "REARGUARD_PREFECT_IDLE_STOP_S"


def database_location(*, home: Path | None, database_url: str | None) -> DatabaseLocation | None:
    """Where the database is, found as :func:`rearguard.models.config.settings.load_settings`
    finds it (flags > ``REARGUARD_*`` > ``rearguard.toml`` > defaults), for a read command
    that needs nothing else: without pydantic, a fraction of the start-up.

    Only the plain cases are resolved here: a value in any other form (an environment name in
    other letter case, an empty or non-string value, seconds that are not a plain number)
    gives None, and the caller loads the settings, which decide and say what is wrong.

    Args:
        home: ``--home`` from the command line, if given.
        database_url: ``--database-url`` from the command line, if given.

    Raises:
        ConfigurationError: the ``rearguard.toml`` that applies is malformed.
    """
    document = read_config_file(find_config_file(home or default_home()))
    found: dict[str, Any] = {}
    for name, (table, key) in _LOCATION_SETTINGS.items():
        if _in_other_case(name):
            return None
        value = os.environ.get(name, table_of(document, table).get(key))
        if value is not None:
            found[name] = value
    url = database_url or found.get("REARGUARD_DATABASE_URL")
    seconds = _plain_seconds(found.get("REARGUARD_DATABASE_BUSY_TIMEOUT_S", 30.0))
    base = home or found.get("REARGUARD_HOME")
    if (
        not isinstance(url, str | None)
        or url == ""
        or not isinstance(base, Path | str | None)
        or base == ""
        or seconds is None
    ):
        return None
    if url is None:
        # The settings' home: the flag, the environment's or the file's as given, else ~.
        state = Path(base) if base is not None else default_home()
        return DatabaseLocation(f"sqlite:///{state / 'rearguard.db'}", seconds, True)
    return DatabaseLocation(url, seconds, False)


def background_idle_stop_s(*, home: Path) -> float | None:
    """``[prefect] idle_stop_s`` as the settings resolve it (``REARGUARD_PREFECT_IDLE_STOP_S``,
    else ``rearguard.toml``, else the default), without pydantic: the hand-off client reads it
    before it starts a background host.

    Args:
        home: the home whose ``rearguard.toml`` applies when the working directory has none.

    Returns:
        The seconds; None when the value is in a form only the settings decide on (they say
        what is wrong), or the file cannot be read.
    """
    if _in_other_case(_IDLE_STOP_VARIABLE):
        return None
    value: Any = os.environ.get(_IDLE_STOP_VARIABLE)
    if value is None:
        try:
            document = read_config_file(find_config_file(home))
        except ConfigurationError:
            return None
        value = table_of(document, "prefect").get("idle_stop_s", DEFAULT_IDLE_STOP_S)
    return _plain_seconds(value)


def _in_other_case(name: str) -> bool:
    """True when the environment names ``name`` in other letters' case: the settings match
    names in any case, so such a value is left to them."""
    return any(k != name and k.upper() == name for k in os.environ)


def _plain_seconds(value: object) -> float | None:
    """Seconds given as a plain number (or its digits), 0 to under 10^6; None otherwise."""
    if isinstance(value, str) and _PLAIN_SECONDS.fullmatch(value):
        return float(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e6:
        return float(value)
    return None
