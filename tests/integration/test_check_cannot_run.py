"""A validation check that cannot run judges nothing: the step fails with the cause, and no
version is marked for it.

The README's check is ``python checks/smoke.py $REARGUARD_ASSET_PATH``: relative, so it only
works from the directory it was written in, unless rearguard resolves it when it is set.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from scenarios import build_scenario, production_on_disk, write_source

from rearguard.models.assets.versions import get_asset, get_version
from rearguard.models.runtime import Runtime

pytestmark = pytest.mark.one_database

SMOKE = "import pathlib, sys\nsys.exit(0 if pathlib.Path(sys.argv[1]).is_dir() else 1)\n"


def statuses(runtime: Runtime) -> dict[str, str]:
    with runtime.db.read_session() as session:
        asset = get_asset(session=session, name="model-a")
        return {
            label: str(get_version(session=session, asset=asset, label=label).status)
            for label in ("v1", "v2", "v3")
        }


def test_a_relative_check_run_from_root_fails_with_its_cause_and_marks_nothing(
    cli_env: dict[str, str], runtime: Runtime, tmp_path: Path
) -> None:
    # Set before relative paths were resolved (or in-process): the check depends on the cwd.
    relative = f"{sys.executable} checks/smoke.py $REARGUARD_ASSET_PATH"
    build_scenario(runtime, tmp_path, validate=relative)
    before = statuses(runtime)

    result = run_cli(
        "incident",
        "open",
        "--type",
        "degradation",
        "--asset",
        "model-a",
        env=cli_env,
        cwd=Path("/"),
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "the validation check of model-a cannot run" in result.stdout
    assert "can't open file" in result.stdout and "checks/smoke.py" in result.stdout
    assert "judged no version" in result.stdout
    assert statuses(runtime) == before  # v3 is not "degraded", nothing suspect
    assert production_on_disk(runtime, "model-a") == "v3"


def test_model_compromise_with_a_check_that_cannot_run_marks_no_version_by_it(
    cli_env: dict[str, str], runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(
        runtime, tmp_path, validate="no-such-checker $REARGUARD_ASSET_PATH", tampered=True
    )

    result = run_cli(
        "incident",
        "open",
        "--type",
        "model_compromise",
        "--asset",
        "model-a",
        env=cli_env,
        cwd=Path("/"),
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot start 'no-such-checker'" in result.stdout
    # Containment still happened (v3's bytes were altered); v1 and v2 keep their trust.
    assert statuses(runtime) == {"v1": "known_good", "v2": "known_good", "v3": "quarantined"}


def test_a_relative_check_is_resolved_at_registration_and_works_from_root(
    cli, cli_env: dict[str, str], runtime: Runtime, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "checks").mkdir(parents=True)
    (project / "checks" / "smoke.py").write_text(SMOKE)
    for label in ("v1", "v2", "v3"):
        source = write_source(tmp_path, "model-a", label, {"w.bin": label.encode() * 100})
        args = ["assets", "register", "model-a", str(source), "--version", label, "--kind", "model"]
        if label == "v1":
            args += ["--validate", f"{sys.executable} checks/smoke.py $REARGUARD_ASSET_PATH"]
        assert run_cli(*args, env=cli_env, cwd=project).returncode == 0
    for label in ("v1", "v2"):
        assert cli("assets", "approve", "model-a", label).returncode == 0
    assert cli("assets", "promote", "model-a", "v3").returncode == 0
    shown = json.loads(cli("assets", "show", "model-a", "--json").stdout)
    assert f"{project / 'checks' / 'smoke.py'}" in shown["validate_command"]

    refused = run_cli(
        "assets",
        "register",
        "model-b",
        str(tmp_path / "sources" / "model-a" / "v1"),
        "--version",
        "v1",
        "--kind",
        "model",
        "--validate",
        "python3 checks/smoke.py",
        env=cli_env,
        cwd=Path("/"),
    )
    assert refused.returncode == 2
    assert "'checks/smoke.py', which does not exist in /" in refused.stderr
    assert "model-b" not in cli("assets", "list").stdout

    result = run_cli(
        "incident",
        "open",
        "--type",
        "model_compromise",
        "--asset",
        "model-a",
        env=cli_env,
        cwd=Path("/"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert production_on_disk(runtime, "model-a") == "v2"
