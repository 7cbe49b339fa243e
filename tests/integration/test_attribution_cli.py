"""Who decided: every command that records a person's word needs a name, and says how to give one.

The name comes from ``--by``, else ``REARGUARD_USER`` (or ``REARGUARD_ACTOR``), else ``actor``
in rearguard.toml, else the login user (``USER``); with none at hand the command is refused
before it records anything.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli
from scenarios import build_scenario, write_source

from rearguard.models.assets.versions import get_asset, get_version
from rearguard.models.runtime import Runtime

pytestmark = pytest.mark.one_database

Result = subprocess.CompletedProcess[str]
NAME_VARIABLES = ("REARGUARD_USER", "REARGUARD_ACTOR", "USER", "LOGNAME", "USERNAME")


def nameless(cli_env: dict[str, str], home: Path):  # type: ignore[no-untyped-def]
    """Run rearguard as the ``cli`` fixture does, but with no user name in the environment."""
    env = {k: v for k, v in cli_env.items() if k not in NAME_VARIABLES}
    return lambda *args, **extra: run_cli(*args, env={**env, **extra}, cwd=home)


def status_of(runtime: Runtime, asset: str, label: str) -> tuple[str, str | None]:
    with runtime.db.read_session() as session:
        version = get_version(
            session=session, asset=get_asset(session=session, name=asset), label=label
        )
        return str(version.status), version.approved_by


def refused_for_want_of_a_name(result: Result) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: no name to record"), lines
    assert "--by NAME" in lines[0] and "REARGUARD_USER" in lines[0]


def test_an_approval_with_no_name_at_hand_is_refused_and_records_nothing(
    cli, cli_env: dict[str, str], home: Path, runtime: Runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    build_scenario(runtime, tmp_path, approved=("v1",), production="v1")
    anonymous = nameless(cli_env, home)

    refused_for_want_of_a_name(anonymous("assets", "approve", "model-a", "v2"))
    assert status_of(runtime, "model-a", "v2") == ("candidate", None)
    refused_for_want_of_a_name(
        anonymous("incident", "open", "--type", "model_compromise", "--asset", "model-a")
    )
    assert json.loads(cli("incident", "list", "--json").stdout) == []


def test_the_name_comes_from_by_then_the_environment_then_rearguard_toml(
    cli, cli_env: dict[str, str], runtime: Runtime, home: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    anonymous = nameless(cli_env, home)
    for label in ("v1", "v2", "v3", "v4"):
        source = write_source(tmp_path, "model-a", label, {"w.bin": label.encode() * 10})
        assert (
            cli(
                "assets", "register", "model-a", str(source), "--version", label, "--kind", "model"
            ).returncode
            == 0
        )
    (home / "rearguard.toml").write_text('actor = "carol"\n')

    assert cli("assets", "approve", "model-a", "v1", "--by", "alice").returncode == 0
    assert cli("assets", "approve", "model-a", "v2", env={"REARGUARD_USER": "dave"}).returncode == 0
    assert anonymous("assets", "approve", "model-a", "v3").returncode == 0
    (home / "rearguard.toml").unlink()
    assert anonymous("assets", "approve", "model-a", "v4", USER="erin").returncode == 0

    assert [status_of(runtime, "model-a", v)[1] for v in ("v1", "v2", "v3", "v4")] == [
        "alice",
        "dave",
        "carol",
        "erin",
    ]


def test_approve_takes_by_and_still_its_old_as_and_a_denial_needs_a_reason(
    cli, runtime: Runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    build_scenario(runtime, tmp_path, approved=("v1",), production="v1")
    opened = cli(
        "incident", "open", "--type", "model_compromise", "--asset", "model-a", "--no-run", "--json"
    )
    incident = str(json.loads(opened.stdout)["id"])

    denied = cli("approve", incident, "--by", "alice", "--deny")
    assert denied.returncode == 2
    assert denied.stderr.startswith('error: a denial needs a reason: add --comment "why"')
    two = cli("approve", incident, "--by", "alice", "--as", "bob")
    assert two.returncode == 2 and "two people" in two.stderr
    # Past the name checks, the request itself is what is missing (nothing waits yet).
    for flag in ("--by", "--as"):
        result = cli("approve", incident, flag, "alice")
        assert result.returncode == 2 and "no name" not in result.stderr, result.stderr
    assert "--as" not in cli("approve", "--help").stdout
