"""The Prefect API the user configured, found as Prefect 3 finds it, without importing Prefect
(a second of a command's time) or anything heavy: the hand-off client asks it before it starts a
background host (see :mod:`rearguard.flows.cli.background`)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from rearguard.models.errors import ConfigurationError


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
        from dotenv import dotenv_values  # lazy: pydantic-settings' reader (so Prefect's); rare

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
