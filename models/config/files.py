"""``rearguard.toml``: where it is found and how it is read, without the settings machinery
(pydantic), so that a read command can find its database in a few milliseconds."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rearguard.models.errors import ConfigurationError

CONFIG_FILENAME = "rearguard.toml"


def find_config_file(home: Path) -> Path | None:
    """Return the ``rearguard.toml`` that applies: the current directory's, else the home's."""
    for candidate in (Path.cwd() / CONFIG_FILENAME, home / CONFIG_FILENAME):
        if candidate.is_file():
            return candidate
    return None


def read_config_file(path: Path | None) -> dict[str, Any]:
    """Parse a ``rearguard.toml`` file into a dict; a malformed file is a ConfigurationError."""
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(
            f"cannot read {path}: {exc}", hint="fix or remove the file"
        ) from exc


def table_of(document: Mapping[str, Any], dotted: str) -> dict[str, Any]:
    """The table ``dotted`` (``notifications.slack`` is a nested table) of a parsed file; the
    whole document for an empty name; empty when absent or not a table."""
    table: Any = document
    for part in dotted.split(".") if dotted else ():
        table = table.get(part, {}) if isinstance(table, Mapping) else {}
    return dict(table) if isinstance(table, Mapping) else {}
