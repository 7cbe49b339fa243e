"""The playbooks, the import of MLflow-registered versions and drills on the MLflow backend.

The registry is a real MLflow tracking store (SQLite, artifacts under the home), as the
``rearguard`` subprocess sees it through ``[registry] backend = "mlflow"``. Versions are seeded
in-process where the CLI adds nothing; what is asserted is what a team sees in MLflow (the
alias, the ``rearguard.status`` tags, the artifact bytes) and in rearguard.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from scenarios import add_version, approve, build_scenario, tamper_version, write_source
from test_cli import as_json, assert_error, ok
from test_drills import DRILLED, drill_store, keeping_sandboxes, schedule

from rearguard.flows.drills.run import run_drill
from rearguard.models.assets.versions import promote_version
from rearguard.models.errors import EXIT_INTEGRITY
from rearguard.models.registry.mlflow_backend import DRILL_PREFIX, MlflowRegistry
from rearguard.models.runtime import Runtime

pytestmark = pytest.mark.one_database

EVIL = b"backdoored vendor library" * 8


def mlflow_of(runtime: Runtime) -> Any:
    """The MLflow client of the runtime's registry."""
    assert isinstance(runtime.registry, MlflowRegistry)
    return runtime.registry.client


def mlflow_state(runtime: Runtime) -> dict[str, Any]:
    """What MLflow holds outside drills: every model's aliases, every version's tags and
    source, and every artifact file's sha256, inode and mode."""
    client = mlflow_of(runtime)
    models = {}
    for model in client.search_registered_models():
        if model.name.startswith(DRILL_PREFIX):
            continue
        versions = client.search_model_versions(f"name = '{model.name}'")
        models[model.name] = {
            "aliases": dict(model.aliases),
            "versions": {v.version: (dict(v.tags), v.source) for v in versions},
        }
    files = {}
    for path in sorted((runtime.settings.home / "mlflow-artifacts").rglob("*")):
        if path.is_file():
            info = path.stat()
            files[str(path)] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                info.st_ino,
                info.st_mode,
            )
    return {"models": models, "files": files}


def statuses(runtime: Runtime, model: str) -> dict[str, str]:
    """Each version's ``rearguard.status`` tag in MLflow, by label."""
    found = mlflow_of(runtime).search_model_versions(f"name = '{model}'")
    return {v.tags["rearguard.label"]: v.tags["rearguard.status"] for v in found}


def alias_label(runtime: Runtime, model: str, alias: str = "production") -> str:
    """The label of the version the MLflow alias points at, as MLflow has it."""
    client = mlflow_of(runtime)
    number = client.get_registered_model(model).aliases[alias]
    return client.get_model_version(model, str(number)).tags["rearguard.label"]


def recover(cli, env: dict[str, str], asset: str) -> Any:  # type: ignore[no-untyped-def]
    """Open a model_compromise incident on ``asset`` through the CLI; return it as JSON."""
    return as_json(
        cli("incident", "open", "--type", "model_compromise", "--asset", asset, "--json", env=env)
    )


def test_model_compromise_moves_the_mlflow_alias(  # type: ignore[no-untyped-def]
    cli, mlflow_env: dict[str, str], mlflow_runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(mlflow_runtime, tmp_path)
    tamper_version(mlflow_runtime, "model-a", "v3")  # v3's artifact bytes, where MLflow has them

    failing = cli("assets", "verify", "model-a", env=mlflow_env)
    assert failing.returncode == EXIT_INTEGRITY, failing.stderr
    assert "FAIL model-a@v3" in failing.stdout and "sha256 mismatch" in failing.stdout
    opened = recover(cli, mlflow_env, "model-a")

    assert opened["status"] == "recovered"
    assert opened["state"] == {"compromised": "v3", "selected": "v2"}
    assert alias_label(mlflow_runtime, "model-a") == "v2"
    assert statuses(mlflow_runtime, "model-a") == {
        "v1": "known_good",
        "v2": "known_good",
        "v3": "quarantined",
    }
    incident = as_json(cli("incident", "show", str(opened["id"]), "--json", env=mlflow_env))
    moves = [e for e in incident["timeline"] if e["action"] == "alias.moved"]
    assert len(moves) == 1
    # The evidence is the tampered bytes as found in MLflow's artifact store.
    evidence = mlflow_runtime.settings.home / "evidence" / f"incident-{opened['id']}"
    record = json.loads((evidence / "model-a" / "v3" / "evidence.json").read_text())
    assert [(f["path"], f["matches"]) for f in record["files"]] == [("weights.bin", False)]
    shown = as_json(cli("assets", "show", "model-a", "--json", env=mlflow_env))
    assert shown["alias_location"] == "models:/model-a@production"


def test_supply_chain_on_the_champion_alias(  # type: ignore[no-untyped-def]
    cli, mlflow_env: dict[str, str], mlflow_runtime: Runtime, tmp_path: Path
) -> None:
    for asset in ("m", "n"):
        add_version(mlflow_runtime, tmp_path, asset, "v1")
        approve(mlflow_runtime, asset, "v1")
        for label in ("v2", "v3"):
            files = {"w.bin": f"{asset} {label}".encode(), "vendor/lib.so": EVIL}
            add_version(mlflow_runtime, tmp_path, asset, label, files=files)
        promote_version(
            db=mlflow_runtime.db,
            registry=mlflow_runtime.registry,
            name=asset,
            label="v3",
            alias="champion",
            actor="bob",
        )
    env = {**mlflow_env, "REARGUARD_REGISTRY_ALIAS": "champion"}

    done = as_json(
        cli(
            "incident",
            "open",
            "--type",
            "supply_chain",
            "--digest",
            hashlib.sha256(EVIL).hexdigest(),
            "--json",
            env=env,
        )
    )

    assert done["status"] == "recovered"
    assert done["state"]["production_tainted"] == {"m": "v3", "n": "v3"}
    for asset in ("m", "n"):
        assert alias_label(mlflow_runtime, asset, "champion") == "v1"
        assert statuses(mlflow_runtime, asset) == {
            "v1": "known_good",
            "v2": "quarantined",
            "v3": "quarantined",
        }


def test_import_adopts_versions_registered_with_mlflow(  # type: ignore[no-untyped-def]
    cli,
    mlflow_env: dict[str, str],
    mlflow_runtime: Runtime,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A team's model, registered with MLflow alone (no rearguard tags): version 1 from a
    # run's artifacts (MLflow 2 style), version 2 from a logged model (MLflow 3 style).
    client = mlflow_of(mlflow_runtime)
    experiment = client.create_experiment(
        "team", artifact_location=(tmp_path / "team-artifacts").as_uri()
    )
    client.create_registered_model("fraud")
    sources = [
        write_source(tmp_path, "fraud", str(n), {"model.bin": f"fraud {n}".encode()})
        for n in (1, 2)
    ]
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(sources[0]), artifact_path="model")
    client.create_model_version(
        "fraud", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    logged = client.create_logged_model(experiment_id=experiment, name="fraud")
    client.log_model_artifacts(logged.model_id, str(sources[1]))
    # MLflow resolves a models:/ source through the process's tracking URI, as a team's has.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_env["REARGUARD_REGISTRY_TRACKING_URI"])
    client.create_model_version("fraud", source=f"models:/{logged.model_id}")
    client.set_registered_model_alias("fraud", "production", "2")

    needs_by = cli("assets", "import", "fraud", "--status", "known_good", env=mlflow_env)
    assert_error(needs_by, "--by")
    adopted = as_json(
        cli(
            "assets",
            "import",
            "fraud",
            "--status",
            "known_good",
            "--by",
            "alice",
            "--json",
            env=mlflow_env,
        )
    )

    assert [(v["version"], v["status"]) for v in adopted["imported"]] == [
        ("1", "known_good"),
        ("2", "known_good"),
    ]
    assert adopted["alias"] == "2" and adopted["kind"] == "model"
    ok(cli("assets", "verify", "fraud", env=mlflow_env))
    tamper_version(mlflow_runtime, "fraud", "2")
    opened = recover(cli, mlflow_env, "fraud")
    assert opened["status"] == "recovered" and opened["state"]["selected"] == "1"
    assert alias_label(mlflow_runtime, "fraud") == "1"


def test_an_unknown_model_or_unreachable_mlflow_is_one_line(  # type: ignore[no-untyped-def]
    cli, mlflow_env: dict[str, str], mlflow_runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(mlflow_runtime, tmp_path, approved=("v1",), production="v1")

    assert_error(cli("assets", "import", "nope", env=mlflow_env), "nope not found")
    unreachable = {**mlflow_env, "REARGUARD_REGISTRY_TRACKING_URI": "http://127.0.0.1:9"}
    line = assert_error(
        cli("assets", "verify", "model-a", env=unreachable, timeout=60), "cannot reach MLflow"
    )
    assert "http://127.0.0.1:9" in line
    local = {k: v for k, v in mlflow_env.items() if k != "REARGUARD_REGISTRY_BACKEND"}
    assert_error(cli("assets", "import", "model-a", env=local), "local store")


@pytest.fixture
def _prefect(prefect_api_url: str) -> None:
    """Drills run their playbook under the session's Prefect server."""


@pytest.mark.parametrize("playbook", ["model_compromise", "supply_chain", "data_poisoning"])
@pytest.mark.usefixtures("_prefect")
def test_a_drill_on_mlflow_leaves_production_untouched(
    playbook: str, mlflow_runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    drill_store(mlflow_runtime, home, tmp_path)
    schedule(mlflow_runtime, playbook=playbook, asset=DRILLED.get(playbook, "model-a"))
    before = mlflow_state(mlflow_runtime)

    run = run_drill(runtime=mlflow_runtime, name="weekly")

    assert run.status == "pass", run.reason
    assert any(e["action"] == "alias.moved" for e in run.timeline)
    assert mlflow_state(mlflow_runtime) == before
    # The sandbox's drill models are gone with it (keep_sandboxes = "failed", and it passed).
    drill_models = mlflow_of(mlflow_runtime).search_registered_models(
        f"name LIKE '{DRILL_PREFIX}%'"
    )
    assert drill_models == []


@pytest.mark.usefixtures("_prefect")
def test_a_kept_mlflow_sandbox_holds_copies_of_the_artifacts(
    mlflow_runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(mlflow_runtime, tmp_path)
    schedule(mlflow_runtime)
    before = mlflow_state(mlflow_runtime)

    run = run_drill(runtime=keeping_sandboxes(mlflow_runtime), name="weekly")

    assert run.status == "pass", run.reason
    assert mlflow_state(mlflow_runtime) == before
    drill_model = f"{DRILL_PREFIX}run-{run.id}-model-a"
    assert statuses(mlflow_runtime, drill_model) == {
        "v1": "known_good",
        "v2": "known_good",
        "v3": "quarantined",
    }
    assert alias_label(mlflow_runtime, drill_model) == "v2"
    sandbox = MlflowRegistry(
        tracking_uri=mlflow_runtime.settings.registry.tracking_uri or "", home=tmp_path
    )
    tampered = sandbox.version_files(asset=drill_model, label="v3")["weights.bin"]
    served = mlflow_runtime.registry.version_files(asset="model-a", label="v3")["weights.bin"]
    assert Path(run.sandbox or "") in tampered.parents
    assert tampered.read_bytes() != served.read_bytes()


@pytest.mark.usefixtures("_prefect")
def test_a_drill_fails_and_says_why_when_mlflows_only_known_good_version_is_tampered(
    mlflow_runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(mlflow_runtime, tmp_path, approved=("v1",))
    tamper_version(mlflow_runtime, "model-a", "v1")
    schedule(mlflow_runtime)
    before = mlflow_state(mlflow_runtime)

    run = run_drill(runtime=mlflow_runtime, name="weekly")

    assert run.status == "fail"
    assert "v1 is suspect (failed re-verification: weights.bin: sha256 mismatch" in (
        run.reason or ""
    )
    assert mlflow_state(mlflow_runtime) == before
    # Kept for forensics (keep_sandboxes = "failed"): the sandbox and its drill model.
    assert run.sandbox and Path(run.sandbox).is_dir()
    assert statuses(mlflow_runtime, f"{DRILL_PREFIX}run-{run.id}-model-a")["v1"] == "suspect"
