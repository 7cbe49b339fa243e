"""Reading the database through its driver's connection alone, for the CLI's read commands.

Importing SQLAlchemy takes several times as long as a whole ``incident list`` needs, so the
read commands query with plain SQL: on the SQLite file opened with the :mod:`sqlite3` module
when nothing else is needed, or on a connection of the runtime's engine (PostgreSQL, or a
database whose schema the full :class:`~rearguard.models.db.engine.Database` must check or
upgrade first). The queries are written once, with ``?`` placeholders, for both drivers.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rearguard.models.db.revisions import known_revisions

_SQLITE_FILE_PREFIX = "sqlite:///"
# The placeholder each DB-API parameter style writes where a query says ``?``.
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def sqlite_file(url: str) -> str | None:
    """The file path of a ``sqlite:///PATH`` URL; None for any other URL (another database,
    an in-memory one, or options that only SQLAlchemy reads)."""
    if not url.startswith(_SQLITE_FILE_PREFIX) or "?" in url:
        return None
    return url[len(_SQLITE_FILE_PREFIX) :] or None


@dataclass
class DirectReader:
    """A DB-API connection to read from, and the placeholder its driver takes for ``?``."""

    connection: Any
    placeholder: str = "?"

    @classmethod
    def of(cls, connection: Any, *, paramstyle: str) -> DirectReader:
        """A reader on a DB-API connection whose driver has ``paramstyle``."""
        return cls(connection, _PLACEHOLDERS[paramstyle])

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one query (``?`` placeholders, no other ``?`` or ``%`` in it) and fetch all."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql.replace("?", self.placeholder), params)
            return list(cursor.fetchall())
        finally:
            cursor.close()


@contextlib.contextmanager
def current_sqlite(path: str, *, busy_timeout_s: float) -> Iterator[DirectReader | None]:
    """The SQLite database at ``path`` opened for reading with the :mod:`sqlite3` module, when
    it exists and its schema is the newest this code knows; else None (missing, empty, at
    another revision, unreadable): the full ``Database`` decides then, upgrading the embedded
    one or saying what is wrong.

    Args:
        path: the database file.
        busy_timeout_s: how long a statement waits for a lock, as the engine's connections do.
    """
    if not Path(path).is_file():
        yield None
        return
    connection = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
    try:
        try:
            connection.execute("PRAGMA query_only = ON")
            found = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.DatabaseError:
            found = []
        current = found[0][0] if len(found) == 1 else None
        yield DirectReader(connection) if current == known_revisions()[1] else None
    finally:
        connection.close()


def utc_moment(value: Any) -> datetime:
    """A timestamp column's value as an aware UTC datetime: SQLite holds naive UTC text,
    PostgreSQL's driver gives an aware datetime (as the tables' ``UTCDateTime`` reads them)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def json_value(value: Any) -> Any:
    """A JSON column's value (an object or a list): SQLite holds its text, PostgreSQL's driver
    decodes it."""
    return json.loads(value) if isinstance(value, str) else value
