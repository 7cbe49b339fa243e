"""The application database: engine, sessions, schema migrations.

SQLite runs in WAL mode with ``synchronous=FULL`` (a commit is on disk when it returns), and
every write transaction starts with ``BEGIN IMMEDIATE`` so that writers queue on the database
lock instead of failing half-way with ``SQLITE_BUSY``. PostgreSQL uses its own locking; the
audit chain takes an advisory lock there.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from rearguard.models.config.home import PRIVATE_FILE_MODE
from rearguard.models.db.revisions import MIGRATIONS_DIR, known_revisions
from rearguard.models.errors import ConfigurationError

_READ_ONLY = "rearguard_read_only"


def normalise_url(url: str) -> str:
    """Map ``postgresql://`` and ``postgres://`` to the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class WaitingFlag(Protocol):
    """A flag both processes see (``multiprocessing.Event``): set while a favoured writer
    waits for the SQLite write lock."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...


@dataclass
class _WritePriority:
    """How this engine's writers share SQLite's write lock with another process.

    SQLite's lock is not fair: when it is released, whichever writer asks next takes it, so a
    writer alone in one process can wait behind a long run of another process's transactions
    (the intake's writer behind an alert storm's playbooks; see bench/README.md). A
    *favoured* writer sets ``flag`` while it waits; the other process's writers do not begin
    while it is set, for at most ``_MAX_YIELD_S`` each, so the favoured one waits for one
    transaction at most.
    The flag is one bit, not a count: of two favoured writers waiting at once (the intake's
    writer and, rarely, the drill scheduler in the same process), the first to begin lowers it.
    """

    flag: WaitingFlag | None = None
    favoured: bool = False


_MAX_YIELD_S = 0.05


def _configure_sqlite(engine: Engine, *, busy_timeout_s: float, priority: _WritePriority) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from pysqlite so BEGIN IMMEDIATE can be issued.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(_READ_ONLY):
            connection.exec_driver_sql("BEGIN DEFERRED")
        else:
            _begin_immediate(connection.connection.driver_connection, busy_timeout_s, priority)


def _begin_immediate(
    dbapi_connection: Any, busy_timeout_s: float, priority: _WritePriority
) -> None:
    """``BEGIN IMMEDIATE``, waiting for the write lock in steps of at most 2 ms.

    SQLite's own busy handler sleeps in growing steps, up to 100 ms each: a writer queued behind
    a burst of short transactions (an alert storm's playbooks) waits far longer than the lock
    is held. So the handler is off for this one statement and the wait is ours; every other
    statement keeps the connection's ``busy_timeout``. With a :class:`_WritePriority`, a
    favoured writer raises its flag while it waits, and the others let it go first.
    """
    flag = priority.flag
    if flag is not None and not priority.favoured and flag.is_set():
        yield_until = time.monotonic() + _MAX_YIELD_S
        while flag.is_set() and time.monotonic() < yield_until:
            time.sleep(0.0005)
    deadline = time.monotonic() + busy_timeout_s
    pause = 0.0002
    raised: WaitingFlag | None = None  # the flag this writer set, to clear on the way out
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout = 0")
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
            if flag is not None and priority.favoured and raised is None:
                flag.set()
                raised = flag
            time.sleep(pause)
            pause = min(pause * 2, 0.002)
    finally:
        if raised is not None:
            raised.clear()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cursor.close()


def _driver_hint(url: str) -> str:
    """What to install for a database URL whose driver is missing."""
    if url.startswith("postgresql"):
        return "install rearguard's PostgreSQL extra: pip install 'rearguard[postgres]'"
    return "install the SQLAlchemy driver that the URL names, or use a postgresql:// URL"


class Database:
    """One database: an engine, its sessions, and its migrations.

    Args:
        url: SQLAlchemy URL of the database.
        busy_timeout_s: how long a SQLite writer waits for the lock.
    """

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self._write_priority = _WritePriority()
        if self.is_sqlite:
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                # Created empty (a valid empty database) and owner-only before SQLite opens
                # it; SQLite gives its journal and WAL files the database file's mode.
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
            self.engine = create_engine(self.url, connect_args={"timeout": busy_timeout_s})
            _configure_sqlite(
                self.engine, busy_timeout_s=busy_timeout_s, priority=self._write_priority
            )
        else:
            try:
                self.engine = create_engine(self.url, pool_pre_ping=True)
            except ModuleNotFoundError as exc:
                raise ConfigurationError(
                    f"the database driver for {self.url.split(':', 1)[0]}:// is not installed"
                    f" ({exc.name})",
                    hint=_driver_hint(self.url),
                ) from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write session: commits on success, rolls back on any exception."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction on a plain connection, for writers that need no ORM session."""
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A read-only session that does not take the SQLite write lock."""
        connection = self.engine.connect().execution_options(**{_READ_ONLY: True})
        try:
            with Session(bind=connection, expire_on_commit=False) as session:
                yield session
                # Keep what was read usable after the session ends; a rollback would expire it.
                session.expunge_all()
                session.rollback()
        finally:
            connection.close()

    def share_write_lock(self, flag: WaitingFlag, *, favoured: bool) -> None:
        """Share SQLite's write lock with another process through ``flag``: a favoured
        database's writers go first when they wait; the other's yield to them. No effect on
        PostgreSQL.

        Args:
            flag: the flag both processes see.
            favoured: True in the process whose writers go first.
        """
        self._write_priority.flag = flag
        self._write_priority.favoured = favoured

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # -- migrations -------------------------------------------------------------------------

    def _alembic_config(self) -> Any:
        from alembic.config import Config  # lazy: CLI start-up (Alembic ~0.2 s, only to migrate)

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["engine"] = self.engine
        return config

    def revisions(self) -> tuple[str | None, str]:
        """Return (the database's revision, the newest revision this code knows).

        Reads the ``alembic_version`` row with one query and the revision ids from the
        migration files' headers: every command checks the schema, and loading Alembic's
        script machinery would add a quarter of a second to each.

        Raises:
            ConfigurationError: the database is unreachable or at an unknown revision.
        """
        known, head = known_revisions()
        try:
            with self.engine.connect().execution_options(**{_READ_ONLY: True}) as connection:
                if not inspect(connection).has_table("alembic_version"):
                    current = None
                else:
                    current = connection.exec_driver_sql(
                        "SELECT version_num FROM alembic_version"
                    ).scalar()
        except OperationalError as exc:
            # Drivers' messages span lines; the CLI prints an error as one line.
            reason = " ".join(str(exc.orig).split())
            raise ConfigurationError(
                f"cannot open the database: {reason}", hint="check REARGUARD_DATABASE_URL"
            ) from exc
        if current is not None and current not in known:
            raise ConfigurationError(
                f"the database is at revision {current}, newer than this rearguard knows",
                hint="upgrade rearguard, or point REARGUARD_DATABASE_URL at another database",
            )
        return current, head

    def upgrade(self) -> tuple[str | None, str]:
        """Migrate the schema to the newest revision.

        Returns:
            The revision before and after.

        Raises:
            ConfigurationError: the database is unreachable or at an unknown newer revision.
        """
        from alembic import command  # lazy: CLI start-up (Alembic ~0.2 s, only to migrate)

        before, head = self.revisions()
        if before != head:
            command.upgrade(self._alembic_config(), "head")
        return before, head

    def ensure_current(self, *, auto_upgrade: bool) -> None:
        """Make sure the schema is current, upgrading it when allowed.

        Raises:
            ConfigurationError: the schema is behind and may not be upgraded here, or is newer.
        """
        current, head = self.revisions()
        if current == head:
            return
        if auto_upgrade or (current is None and not self.has_tables()):
            self.upgrade()
            return
        raise ConfigurationError(
            f"the database schema is at {current}, this rearguard needs {head}",
            hint="run `rearguard db upgrade`",
        )

    def has_tables(self) -> bool:
        """True when the database holds any table at all."""
        return bool(inspect(self.engine).get_table_names())
