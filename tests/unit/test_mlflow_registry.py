"""The MLflow Model Registry backend against a real MLflow tracking store (SQLite).

What is asserted is what a team using MLflow sees there (model versions, the ``rearguard.*``
tags, the alias) and what rearguard sees through it (the same verification as with the local
store, errors that say what is wrong in one line).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
from scenarios import (
    ALIAS,
    add_version,
    build_scenario,
    production_on_disk,
    tamper_version,
)

from rearguard.models.assets.mlflow_import import import_versions
from rearguard.models.assets.versions import get_asset, get_version, verify_one
from rearguard.models.config.settings import load_settings
from rearguard.models.enums import VersionStatus
from rearguard.models.errors import ConfigurationError, ConflictError, NotFoundError
from rearguard.models.registry.mlflow_backend import MlflowRegistry
from rearguard.models.runtime import Runtime, open_registry


def mlflow_versions(runtime: Runtime, asset: str) -> dict[str, dict[str, str]]:
    """Each MLflow version of an asset's registered model: its tags, by rearguard label."""
    assert isinstance(runtime.registry, MlflowRegistry)
    found = runtime.registry.client.search_model_versions(f"name = '{asset}'")
    return {v.tags["rearguard.label"]: dict(v.tags) for v in found}


def mlflow_alias(runtime: Runtime, asset: str, alias: str = ALIAS) -> str | None:
    """The MLflow version number the alias points at, as MLflow has it."""
    assert isinstance(runtime.registry, MlflowRegistry)
    found = runtime.registry.client.get_registered_model(asset).aliases.get(alias)
    return None if found is None else str(found)


def check(runtime: Runtime, asset: str, label: str) -> str:
    with runtime.db.read_session() as session:
        found = get_asset(session=session, name=asset)
        version = get_version(session=session, asset=found, label=label)
        return verify_one(
            session=session, registry=runtime.registry, asset=found, version=version
        ).summary()


def test_versions_tags_and_alias_live_in_mlflow(mlflow_runtime: Runtime, tmp_path: Path) -> None:
    build_scenario(mlflow_runtime, tmp_path)

    versions = mlflow_versions(mlflow_runtime, "model-a")
    assert {label: tags["rearguard.status"] for label, tags in versions.items()} == {
        "v1": "known_good",
        "v2": "known_good",
        "v3": "candidate",
    }
    assert {tags["rearguard.kind"] for tags in versions.values()} == {"model"}
    assert mlflow_alias(mlflow_runtime, "model-a") == "3"
    assert production_on_disk(mlflow_runtime, "model-a") == "v3"
    assert mlflow_runtime.registry.alias_location(asset="model-a", alias=ALIAS) == (
        "models:/model-a@production"
    )
    # The artifacts MLflow stores are the bytes hashed at registration.
    files = mlflow_runtime.registry.version_files(asset="model-a", label="v2")
    source = tmp_path / "sources" / "model-a" / "v2" / "weights.bin"
    assert hashlib.sha256(files["weights.bin"].read_bytes()).digest() == (
        hashlib.sha256(source.read_bytes()).digest()
    )
    assert mlflow_runtime.settings.home in files["weights.bin"].parents


def test_tampered_artifacts_fail_verification(mlflow_runtime: Runtime, tmp_path: Path) -> None:
    build_scenario(mlflow_runtime, tmp_path)
    assert check(mlflow_runtime, "model-a", "v3") == "1 files, 1344 bytes verified"

    tamper_version(mlflow_runtime, "model-a", "v3")

    assert "weights.bin: sha256 mismatch" in check(mlflow_runtime, "model-a", "v3")
    assert check(mlflow_runtime, "model-a", "v2") == "1 files, 1344 bytes verified"


def test_a_new_process_finds_versions_by_label(mlflow_runtime: Runtime, tmp_path: Path) -> None:
    build_scenario(mlflow_runtime, tmp_path, approved=("v1",), production="v1")
    fresh = open_registry(mlflow_runtime.settings)  # nothing cached

    assert fresh.read_alias(asset="model-a", alias=ALIAS) == "v1"
    fresh.move_alias(asset="model-a", alias=ALIAS, label="v2")

    assert mlflow_alias(mlflow_runtime, "model-a") == "2"
    assert sorted(fresh.version_files(asset="model-a", label="v3")) == ["weights.bin"]


def test_a_configurable_alias_name(mlflow_runtime: Runtime, tmp_path: Path) -> None:
    build_scenario(mlflow_runtime, tmp_path, production=None)
    mlflow_runtime.registry.move_alias(asset="model-a", alias="champion", label="v2")

    assert mlflow_alias(mlflow_runtime, "model-a", "champion") == "2"
    assert mlflow_runtime.registry.read_alias(asset="model-a", alias="champion") == "v2"
    assert mlflow_runtime.registry.read_alias(asset="model-a", alias=ALIAS) is None


def test_a_label_mlflow_already_has_is_adopted_not_replaced(
    mlflow_runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(mlflow_runtime, tmp_path, approved=("v1",), production="v1")
    # Uploaded, but the process was killed before its database row committed.
    staged = mlflow_runtime.registry.stage_version(source=tmp_path / "sources" / "model-a" / "v1")
    mlflow_runtime.registry.publish_version(staged, asset="model-a", label="v4", kind="model")
    mlflow_runtime.registry.discard_staged(staged)

    with pytest.raises(ConflictError, match="already has a version labelled 'v4'") as raised:
        add_version(mlflow_runtime, tmp_path, "model-a", "v4")
    assert raised.value.hint == "`rearguard assets import model-a` adopts it, or use another label"
    assert sorted(mlflow_versions(mlflow_runtime, "model-a")) == ["v1", "v2", "v3", "v4"]
    adopted = import_versions(
        db=mlflow_runtime.db,
        registry=mlflow_runtime.registry,
        name="model-a",
        kind=None,
        actor="carol",
        alias=ALIAS,
    )
    assert [v["version"] for v in adopted.imported] == ["v4"]
    assert adopted.known == ["v1", "v2", "v3"] and adopted.alias == "v1"
    assert check(mlflow_runtime, "model-a", "v4") == "1 files, 1344 bytes verified"


def test_an_unknown_registered_model_is_a_not_found_error(
    mlflow_runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(mlflow_runtime, tmp_path, production=None)
    with pytest.raises(NotFoundError, match="nope"):
        mlflow_runtime.registry.read_alias(asset="nope", alias=ALIAS)
    with pytest.raises(NotFoundError, match="Registered Model with name=nope not found"):
        mlflow_runtime.registry.version_files(asset="nope", label="v1")
    with pytest.raises(NotFoundError, match="MLflow model 'model-a' has no version labelled 'v9'"):
        mlflow_runtime.registry.version_files(asset="model-a", label="v9")


def test_an_unreachable_tracking_server_is_a_configuration_error_without_credentials(
    mlflow_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REARGUARD_REGISTRY_TRACKING_URI", "http://bob:s3cret@127.0.0.1:9")
    registry = open_registry(load_settings(home=mlflow_runtime.settings.home))

    with pytest.raises(ConfigurationError) as raised:
        registry.read_alias(asset="model-a", alias=ALIAS)
    assert raised.value.message.startswith("cannot reach MLflow at http://127.0.0.1:9 ")
    assert "s3cret" not in f"{raised.value.message} {raised.value.hint}"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "postgresql://bob:s3cret@127.0.0.1:1/mlflow",
            "cannot use MLflow at postgresql://127.0.0.1:1/mlflow",
        ),
        ("foo://bar", "MLflow does not support the tracking URI foo://bar"),
    ],
)
def test_a_database_store_that_is_down_or_a_bad_uri_is_a_configuration_error(
    home: Path, monkeypatch: pytest.MonkeyPatch, uri: str, message: str
) -> None:
    monkeypatch.setenv("REARGUARD_REGISTRY_BACKEND", "mlflow")
    monkeypatch.setenv("REARGUARD_REGISTRY_TRACKING_URI", uri)
    registry = open_registry(load_settings(home=home))

    with pytest.raises(ConfigurationError) as raised:
        registry.read_alias(asset="model-a", alias=ALIAS)
    assert raised.value.message.startswith(message)
    assert "s3cret" not in raised.value.message


def test_mlflow_needs_a_tracking_uri_and_the_extra(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REARGUARD_REGISTRY_BACKEND", "mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigurationError, match="needs a tracking URI"):
        open_registry(load_settings(home=home))

    monkeypatch.setenv("REARGUARD_REGISTRY_TRACKING_URI", f"sqlite:///{home / 'm.db'}")
    registry = open_registry(load_settings(home=home))
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    with pytest.raises(ConfigurationError, match="mlflow") as raised:
        registry.read_alias(asset="model-a", alias=ALIAS)
    assert raised.value.hint == "install rearguard[mlflow]"


def test_remote_artifacts_are_downloaded_afresh_for_each_check(
    mlflow_runtime: Runtime, tmp_path: Path
) -> None:
    # The download path of a remote artifact store, driven here through a file: URI (MLflow's
    # download_artifacts does the same for every store).
    build_scenario(mlflow_runtime, tmp_path, production=None)
    registry = mlflow_runtime.registry
    assert isinstance(registry, MlflowRegistry)
    stored = registry.version_location(asset="model-a", label="v1")

    first = registry._download("model-a", "1", stored.as_uri())
    tamper_version(mlflow_runtime, "model-a", "v1")
    again = registry._download("model-a", "1", stored.as_uri())

    assert again == first == mlflow_runtime.settings.home / "mlflow" / "downloads" / "model-a" / "1"
    assert (again / "weights.bin").read_bytes() == (stored / "weights.bin").read_bytes()
    assert sorted(p.name for p in again.parent.iterdir()) == ["1"]


def test_an_imported_version_that_the_scan_flags_is_suspect_never_known_good(
    mlflow_runtime: Runtime, tmp_path: Path
) -> None:
    build_scenario(mlflow_runtime, tmp_path, production=None)
    source = tmp_path / "evil"
    source.mkdir()
    (source / "weights.bin").write_bytes(b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00id\x85R.")
    staged = mlflow_runtime.registry.stage_version(source=source)
    mlflow_runtime.registry.publish_version(staged, asset="model-a", label="v9", kind="model")
    mlflow_runtime.registry.discard_staged(staged)

    adopted = import_versions(
        db=mlflow_runtime.db,
        registry=mlflow_runtime.registry,
        name="model-a",
        kind=None,
        actor="carol",
        alias=ALIAS,
        status=VersionStatus.KNOWN_GOOD,
    )

    assert [(v["version"], v["status"]) for v in adopted.imported] == [("v9", "suspect")]
    with mlflow_runtime.db.read_session() as session:
        version = get_version(
            session=session, asset=get_asset(session=session, name="model-a"), label="v9"
        )
        assert version.approved_by is None
        assert "posix.system" in (version.status_reason or "")
