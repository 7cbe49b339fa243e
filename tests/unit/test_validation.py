"""The validation command: argv without a shell, our variables expanded, a timeout."""

from __future__ import annotations

import sys
from pathlib import Path

from rearguard.models.assets.checks import run_validation


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
