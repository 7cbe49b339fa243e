"""The read commands' path to the database (no settings machinery, no SQLAlchemy): it finds the
database the settings would, and leaves every case it does not resolve to them."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import rearguard_in_process_on

from rearguard.models.config.location import database_location
from rearguard.models.config.settings import load_settings
from rearguard.models.db.direct import current_sqlite
from rearguard.models.db.engine import Database

PLAIN = {
    "nothing set": ({}, "", None),
    "the home from the environment": ({"REARGUARD_HOME": "{tmp}/env-home"}, "", None),
    "the home from the file": ({}, 'home = "{tmp}/file-home"\n', None),
    "the database from the environment": (
        {"REARGUARD_DATABASE_URL": "sqlite:///{tmp}/env.db"},
        "",
        None,
    ),
    "the file's database and timeout": (
        {},
        '[database]\nurl = "postgresql://u@db/x"\nbusy_timeout_s = 5\n',
        None,
    ),
    "the flag over the environment": (
        {
            "REARGUARD_DATABASE_URL": "sqlite:///{tmp}/env.db",
            "REARGUARD_DATABASE_BUSY_TIMEOUT_S": "12.5",
        },
        "",
        "sqlite:///{tmp}/flag.db",
    ),
}


@pytest.mark.parametrize(("env", "toml", "flag"), PLAIN.values(), ids=PLAIN.keys())
def test_the_database_is_found_where_the_settings_find_it(
    env: dict[str, str],
    toml: str,
    flag: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rearguard.toml").write_text(toml.replace("{tmp}", str(tmp_path)))
    for name, value in env.items():
        monkeypatch.setenv(name, value.replace("{tmp}", str(tmp_path)))
    url = flag.replace("{tmp}", str(tmp_path)) if flag else None

    found = database_location(home=None, database_url=url)
    settings = load_settings(home=None, database_url=url)

    assert found is not None
    assert found.url == settings.database_url
    assert found.busy_timeout_s == settings.database.busy_timeout_s
    assert found.embedded == settings.is_embedded_database


UNUSUAL = {
    "a name in other letter case": ({"rearguard_database_url": "sqlite:///x.db"}, ""),
    "seconds with spaces": ({"REARGUARD_DATABASE_BUSY_TIMEOUT_S": " 12 "}, ""),
    "an empty URL": ({"REARGUARD_DATABASE_URL": ""}, ""),
    "a URL that is not a string": ({}, "[database]\nurl = 3\n"),
    "seconds that are a boolean": ({}, "[database]\nbusy_timeout_s = true\n"),
}


@pytest.mark.parametrize(("env", "toml"), UNUSUAL.values(), ids=UNUSUAL.keys())
def test_what_is_not_plain_is_left_to_the_settings(
    env: dict[str, str], toml: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rearguard.toml").write_text(toml)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert database_location(home=tmp_path, database_url=None) is None


def test_only_a_database_at_the_newest_schema_is_read_directly(tmp_path: Path) -> None:
    path = tmp_path / "rearguard.db"
    with current_sqlite(str(path), busy_timeout_s=1) as missing:
        assert missing is None
    assert not path.exists()  # nothing created: the full Database creates and upgrades it

    db = Database(f"sqlite:///{path}")
    try:
        with current_sqlite(str(path), busy_timeout_s=1) as empty:
            assert empty is None
        db.upgrade()
        with current_sqlite(str(path), busy_timeout_s=1) as current:
            assert current is not None
            assert current.rows("SELECT count(*) FROM incident") == [(0,)]
        with db.transaction() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0009_metrics'")
        with current_sqlite(str(path), busy_timeout_s=1) as behind:
            assert behind is None
    finally:
        db.dispose()


def database_at(path: Path, revision: str) -> None:
    """A SQLite database at an older schema ``revision``, as an older rearguard left it."""
    from alembic import command
    from alembic.config import Config

    from rearguard.models.db.revisions import MIGRATIONS_DIR

    db = Database(f"sqlite:///{path}")
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["engine"] = db.engine
        command.upgrade(config, revision)
    finally:
        db.dispose()


def test_a_database_at_an_older_schema_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "elsewhere.db"
    database_at(path, "0009_metrics")

    listed = rearguard_in_process_on(
        tmp_path,
        "incident",
        "list",
        monkeypatch=monkeypatch,
        capsys=capsys,
        env={"REARGUARD_DATABASE_URL": f"sqlite:///{path}"},
    )

    assert listed.returncode != 0 and listed.stdout == ""
    assert "the database schema is at 0009_metrics, this rearguard needs" in listed.stderr
    assert "rearguard db upgrade" in listed.stderr and "Traceback" not in listed.stderr


def test_the_embedded_database_at_an_older_schema_is_upgraded_then_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database_at(tmp_path / "rearguard.db", "0009_metrics")

    listed = rearguard_in_process_on(
        tmp_path, "incident", "list", monkeypatch=monkeypatch, capsys=capsys
    )

    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "", "no incidents\n")
    with current_sqlite(str(tmp_path / "rearguard.db"), busy_timeout_s=1) as upgraded:
        assert upgraded is not None
