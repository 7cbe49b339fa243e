"""The validation command: argv without a shell, our variables expanded, a timeout."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from rearguard.models.assets.checks import CheckCannotRun, resolve_command, run_validation
from rearguard.models.errors import UsageError


def test_asset_path_variable_is_expanded_in_arguments_without_a_shell(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"weights")
    result = run_validation(
        command="test -s $REARGUARD_ASSET_PATH/w.bin",
        location=tmp_path,
        asset="m",
        label="v1",
        timeout_s=10,
    )
    assert result.ok, result

    missing = run_validation(
        command="test -s ${REARGUARD_ASSET_PATH}/absent.bin",
        location=tmp_path,
        asset="m",
        label="v1",
        timeout_s=10,
    )
    assert not missing.ok and missing.exit_code == 1


def test_shell_syntax_is_not_interpreted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    result = run_validation(
        command=f"{sys.executable} -c 'import sys; print(sys.argv[1:])' ; touch {marker}",
        location=tmp_path,
        asset="m",
        label="v1",
        timeout_s=10,
    )
    assert result.ok
    assert "';', 'touch'" in result.output_tail
    assert not marker.exists()


def test_a_hanging_command_is_killed_at_its_timeout(tmp_path: Path) -> None:
    result = run_validation(
        command=f"{sys.executable} -c 'import time; time.sleep(30)'",
        location=tmp_path,
        asset="m",
        label="v1",
        timeout_s=0.5,
    )
    assert not result.ok
    assert result.exit_code is None
    assert result.reason == "timed out after 0.5s"


def _run(command: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    return run_validation(command=command, location=tmp_path, asset="m", label="v1", timeout_s=10)


@pytest.mark.parametrize(
    ("command", "cause"),
    [
        ("no-such-checker-anywhere $REARGUARD_ASSET_PATH", "cannot start 'no-such-checker"),
        ("env no-such-checker-anywhere", "env exited 127, not found"),
        (f"{sys.executable} checks/absent.py", "can't open file"),
    ],
)
def test_a_check_that_cannot_run_judges_nothing(tmp_path: Path, command: str, cause: str) -> None:
    with pytest.raises(CheckCannotRun) as raised:
        _run(command, tmp_path)
    assert cause in raised.value.message
    assert "judged no version" in raised.value.message


def test_a_script_that_is_not_executable_cannot_run(tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(CheckCannotRun, match="Permission denied"):
        _run(str(script), tmp_path)


def test_a_check_that_runs_and_fails_is_a_failure_not_a_cause(tmp_path: Path) -> None:
    failed = _run(f"{sys.executable} -c 'import sys; sys.exit(2)'", tmp_path)
    assert not failed.ok and failed.exit_code == 2


def test_relative_paths_are_resolved_when_the_command_is_set(tmp_path: Path) -> None:
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "smoke.py").write_text("")
    resolved = resolve_command(
        "python3 checks/smoke.py $REARGUARD_ASSET_PATH --strict", cwd=tmp_path
    )
    assert shlex.split(resolved) == [
        "python3",
        str(tmp_path / "checks" / "smoke.py"),
        "$REARGUARD_ASSET_PATH",
        "--strict",
    ]
    unchanged = "python3 /abs/check.py $REARGUARD_ASSET_PATH"
    assert resolve_command(unchanged, cwd=tmp_path) == unchanged


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        ("python3 checks/absent.py", "'checks/absent.py', which does not exist in"),
        ("./run-check --fast", "'./run-check', which does not exist in"),
        ("no-such-checker-anywhere x", "program 'no-such-checker-anywhere' is not on PATH"),
    ],
)
def test_a_relative_path_that_does_not_resolve_is_refused(
    tmp_path: Path, command: str, needle: str
) -> None:
    with pytest.raises(UsageError) as raised:
        resolve_command(command, cwd=tmp_path)
    assert needle in raised.value.message
