"""The hand-off's rules that need no serve: which settings a command must share with serve to
be handed to it, who it records as acting, what it imports, and the request serve reads."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from rearguard.flows.cli.handoff import fingerprint, split_root_options
from rearguard.flows.cli.hosted import client_settings
from rearguard.flows.intake.handoff import request_body
from rearguard.flows.intake.schemas import HandOffRequest
from rearguard.models.config.settings import load_settings


def test_settings_that_differ_keep_a_command_off_serve_and_others_do_not(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    base = {"REARGUARD_DATABASE_URL": "sqlite:////x.db", "PATH": "/bin"}

    def of(
        environ: dict[str, str], *, cwd: Path = tmp_path, database_url: str | None = None
    ) -> str:
        return fingerprint(home=str(home), database_url=database_url, environ=environ, cwd=cwd)

    same = of(base)
    # Who acts, serve's own parts, the home's spelling and anything not rearguard's: the same.
    for other in (
        {**base, "REARGUARD_USER": "bob", "USER": "bob", "PREFECT_API_URL": "http://x"},
        {**base, "REARGUARD_INTAKE_TOKENS": "t", "REARGUARD_SCHEDULER_ENABLED": "0"},
        {**base, "REARGUARD_HOME": str(home), "REARGUARD_LOCAL": ""},
    ):
        assert of(other) == same, other
    # What a command's own settings read: different.
    assert of({**base, "REARGUARD_PLAYBOOK_SETTLE_S": "5"}) != same
    assert of({**base, "rearguard_database_url": "sqlite:////y.db"}) != same
    assert of(base, database_url="sqlite:////y.db") != same
    # --database-url is the variable it overrides: the same settings either way.
    assert of(base, database_url="sqlite:////x.db") == same
    assert of({"PATH": "/bin"}, database_url="sqlite:////x.db") == same
    assert fingerprint(home=None, database_url=None, environ=base, cwd=tmp_path) != same
    # The rearguard.toml that applies, and what it says.
    (home / "rearguard.toml").write_text("[playbooks]\nsettle_s = 5\n")
    in_home = of(base)
    assert in_home != same
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "rearguard.toml").write_text("[playbooks]\nsettle_s = 5\n")
    assert of(base, cwd=tmp_path / "work") != in_home  # another file, however alike
    (home / "rearguard.toml").write_text("[playbooks]\nsettle_s = 6\n")
    assert of(base) != in_home


def test_root_options_come_before_the_command_in_either_spelling() -> None:
    assert split_root_options(
        ["--home", "/h", "--database-url=sqlite:///x", "incident", "open", "--home", "y"]
    ) == ({"--home": "/h", "--database-url": "sqlite:///x"}, ["incident", "open", "--home", "y"])
    assert split_root_options(["--home"]) == ({}, ["--home"])


def test_serve_records_the_person_the_command_would_have_recorded(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    people = {"USER": "dave", "LOGNAME": "dave2"}

    def actor(given: dict[str, str], configured: str | None = None) -> str | None:
        found = settings
        if configured is not None:
            (tmp_path / "rearguard.toml").write_text(f'actor = "{configured}"\n')
            found = dataclasses.replace(settings, config_file=tmp_path / "rearguard.toml")
        return client_settings(found, given).core.actor

    assert actor(people) == "dave"
    assert actor(people, configured="erin") == "erin"
    assert actor({**people, "REARGUARD_ACTOR": "frank"}, configured="erin") == "frank"
    assert actor({**people, "REARGUARD_USER": "gail", "REARGUARD_ACTOR": "frank"}) == "gail"
    assert actor({}) is None


def test_the_request_the_client_writes_is_the_one_serve_reads() -> None:
    body = request_body(
        argv=["incident", "open", "--type", "model_compromise"],
        fingerprint="f" * 64,
        cwd="/work",
        prog="rearguard",
        people={"USER": "dave"},
        outputs={"out": (True, "utf-8"), "err": (False, "ascii")},
        size=(80, 24),
        terminal_environ={"TERM": "xterm", "NO_COLOR": "1"},
    )
    read = HandOffRequest.model_validate_json(body)
    assert read.argv[-1] == "model_compromise" and read.people == {"USER": "dave"}
    assert read.terminal.outputs["err"].encoding == "ascii"
    assert read.terminal.size == (80, 24) and read.terminal.environ["NO_COLOR"] == "1"


def test_a_command_that_looks_for_serve_imports_neither_prefect_nor_the_orm(
    tmp_path: Path,
) -> None:
    """The console script's first step, up to asking a serve (here one that is gone)."""
    (tmp_path / "serve.json").write_text(
        json.dumps({"url": "http://127.0.0.1:9", "instance": "i", "pid": 1, "token": "t"})
    )
    code = (
        "import sys\n"
        "from rearguard.flows.cli.launch import hand_off\n"
        f"print(hand_off(['--home', {str(tmp_path)!r}, 'incident', 'open', '--type', 'x']))\n"
        "heavy = ('prefect', 'sqlalchemy', 'sqlmodel', 'pydantic', 'typer', 'click', 'rich',\n"
        "         'http', 'email', 'ssl', 'dataclasses')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in heavy))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert found.stdout.splitlines() == ["None", "[]"], found.stdout
    assert found.stderr == (
        "note: this home's serve (http://127.0.0.1:9) does not answer; running the command here\n"
    )
