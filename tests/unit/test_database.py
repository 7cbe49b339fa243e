"""The application database: SQLite durability settings, schema revisions, ``db upgrade``."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from rearguard.models.config.settings import load_settings
from rearguard.models.db import engine as database
from rearguard.models.db.engine import Database, normalise_url
from rearguard.models.errors import EXIT_USAGE, ConfigurationError
from rearguard.models.runtime import Runtime

TABLES = {
    "alembic_version",
    "asset",
    "asset_version",
    "version_file",
    "alias",
    "incident",
    "timeline_event",
    "chain_head",
}


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    """A SQLite database file of its own, schema created."""
    db = Database(f"sqlite:///{tmp_path / 'state' / 'rearguard.db'}")
    db.upgrade()
    yield db  # type: ignore[misc]
    db.dispose()


def sqlite_path(db: Database) -> str:
    """The file behind a SQLite database."""
    return db.url.split("///", 1)[1]


def test_sqlite_sessions_are_wal_with_full_sync(sqlite_db: Database) -> None:
    for opener in (sqlite_db.session, sqlite_db.read_session):
        with opener() as session:
            assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert session.execute(text("PRAGMA synchronous")).scalar() == 2
            assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert session.execute(text("PRAGMA busy_timeout")).scalar() == 30_000


def _try_write_lock(path: str) -> bool:
    """True when another connection can take the write lock right now."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        other.close()


def test_sqlite_write_session_holds_the_write_lock_from_its_first_statement(
    sqlite_db: Database,
) -> None:
    path = sqlite_path(sqlite_db)
    with sqlite_db.session() as session:
        session.execute(text("SELECT 1"))
        assert not _try_write_lock(path)
    assert _try_write_lock(path)
    with sqlite_db.read_session() as session:
        session.execute(text("SELECT count(*) FROM asset"))
        assert _try_write_lock(path)


def _stamp(url: str, revision: str) -> None:
    engine = create_engine(normalise_url(url))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


def test_newer_schema_revision_is_refused(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(home)
    settings = load_settings(home=home, database_url=database_url)
    Runtime.from_settings(settings).db.dispose()
    _stamp(database_url, "9999")

    with pytest.raises(ConfigurationError, match="newer") as raised:
        Runtime.from_settings(settings)

    assert "9999" in raised.value.message
    assert raised.value.exit_code == EXIT_USAGE


def _assert_one_line_error(result, *, code: int, contains: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert contains in errors[0]
    assert all(line.startswith(("error:", "hint:")) for line in lines), result.stderr


def test_cli_refuses_a_newer_database_in_one_line(cli, database_url: str) -> None:  # type: ignore[no-untyped-def]
    assert cli("db", "upgrade").returncode == 0
    _stamp(database_url, "9999")

    result = cli("assets", "list")

    _assert_one_line_error(result, code=2, contains="newer")


def test_cli_reports_an_unreachable_database_in_one_line(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("assets", "list", env={"REARGUARD_DATABASE_URL": "postgresql://u@127.0.0.1:1/x"})

    _assert_one_line_error(result, code=2, contains="cannot open the database")


def test_cli_names_what_to_install_for_a_missing_database_driver(cli) -> None:  # type: ignore[no-untyped-def]
    # pg8000 is a PostgreSQL driver rearguard does not install; SQLAlchemy imports it on use.
    result = cli(
        "assets", "list", env={"REARGUARD_DATABASE_URL": "postgresql+pg8000://u@127.0.0.1:1/x"}
    )

    _assert_one_line_error(result, code=2, contains="driver for postgresql+pg8000:// is not")
    assert "pip install 'rearguard[postgres]'" in result.stderr


def test_db_upgrade_creates_the_schema_on_a_fresh_database(cli, database_url: str) -> None:  # type: ignore[no-untyped-def]
    db = Database(database_url)
    try:
        assert not db.has_tables()

        first = cli("db", "upgrade")
        assert first.returncode == 0, first.stderr
        current, head = db.revisions()
        assert "upgraded (empty) -> " + head in first.stdout
        assert current == head
        assert set(inspect(db.engine).get_table_names()) >= TABLES

        again = cli("db", "upgrade")
        assert again.returncode == 0, again.stderr
        assert f"already at revision {head}" in again.stdout
        status = cli("db", "status")
        assert status.returncode == 0, status.stderr
        assert status.stdout.strip().endswith("current")
    finally:
        db.dispose()


def test_revisions_read_from_migration_files_match_alembic() -> None:
    """The cheap header scan agrees with Alembic's own view of the migrations."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from rearguard.models.db.revisions import MIGRATIONS_DIR, known_revisions

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    known, head = known_revisions()
    assert head == script.get_current_head()
    assert known == {revision.revision for revision in script.walk_revisions()}


def _write(db: Database, note: str, done: list[tuple[str, float]]) -> None:
    """One write transaction; records when it committed."""
    with db.transaction() as connection:
        connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS note (text TEXT)")
        connection.exec_driver_sql("INSERT INTO note VALUES (?)", (note,))
    done.append((note, time.monotonic()))


def test_a_favoured_writer_raises_the_flag_while_it_waits_and_others_yield_to_it(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The intake's writer (favoured) and a playbook process's (yielding) on one SQLite file:
    blocked by a third writer, the favoured one raises the shared flag; a yielding writer does
    not begin while it is raised, and the favoured one writes first."""
    monkeypatch.setattr(database, "_MAX_YIELD_S", 30.0)  # only the flag decides here
    flag = threading.Event()
    intake = Database(sqlite_db.url)
    playbooks = Database(sqlite_db.url)
    intake.share_write_lock(flag, favoured=True)
    playbooks.share_write_lock(flag, favoured=False)
    done: list[tuple[str, float]] = []
    holder = sqlite3.connect(sqlite_path(sqlite_db), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    first = threading.Thread(target=_write, args=(intake, "intake", done))
    first.start()
    assert flag.wait(10), "the blocked intake writer did not raise the flag"
    second = threading.Thread(target=_write, args=(playbooks, "playbook", done))
    second.start()
    time.sleep(0.2)
    assert done == []  # both wait: one for the lock, the other for the flag
    holder.rollback()
    first.join(10)
    second.join(10)
    assert [note for note, _ in done] == ["intake", "playbook"]
    assert not flag.is_set()
    holder.close()
    intake.dispose()
    playbooks.dispose()


def test_a_yielding_writer_goes_ahead_once_its_yield_is_over(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flag left raised (a favoured process that died waiting) delays the others by at
    most their yield, never stops them."""
    monkeypatch.setattr(database, "_MAX_YIELD_S", 0.2)
    flag = threading.Event()
    flag.set()
    playbooks = Database(sqlite_db.url)
    playbooks.share_write_lock(flag, favoured=False)
    done: list[tuple[str, float]] = []
    started = time.monotonic()
    _write(playbooks, "playbook", done)
    assert [note for note, _ in done] == ["playbook"]
    assert done[0][1] - started >= 0.2  # it did wait for the flag first
    playbooks.dispose()
