"""Validation of names, paths and ids that come from input."""

from __future__ import annotations

import re

from rearguard.models.errors import UsageError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

MAX_ROW_ID = 2**31 - 1
"""The largest id a row can have: ids are ``INTEGER`` columns, 32-bit on PostgreSQL (SQLite's
go further, but an id past PostgreSQL's would never be given). A larger number names no row,
and PostgreSQL refuses to compare an ``INTEGER`` with it ("integer out of range")."""


def check_name(value: str, *, what: str) -> str:
    """Return ``value`` if it is a safe asset name or version label.

    Safe means 1-128 characters of letters, digits, ``.``, ``_`` and ``-``, starting with a
    letter or digit, so it can never name a parent directory or carry a separator.

    Raises:
        UsageError: the value is not a safe name.
    """
    if not _NAME.fullmatch(value or "") or ".." in value:
        raise UsageError(
            f"invalid {what} {value!r}",
            hint="use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return value


def unstorable(text: str) -> str | None:
    """Why a text cannot be stored as it is, or None.

    PostgreSQL's text holds no NUL character, and no database holds a lone surrogate (a
    ``\\ud800`` escape in JSON parses into one, and is not UTF-8).
    """
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group(0) == "\x00":
        return "holds a NUL character"
    return "is not valid Unicode (a lone surrogate)"


def check_storable(text: str | None, *, what: str) -> str | None:
    """Return ``text`` if a database can hold it as it is.

    Raises:
        UsageError: it holds a NUL character or a lone surrogate.
    """
    problem = unstorable(text) if text else None
    if problem:
        raise UsageError(f"the {what} {problem}", hint="remove the control character")
    return text


def storable(text: str) -> str:
    """``text`` with each NUL and lone surrogate replaced by U+FFFD, for recording a refusal."""
    return _UNSTORABLE.sub("\ufffd", text)
