"""The MLflow Model Registry as the asset registry (``[registry] backend = "mlflow"``).

An asset is a registered model of the same name; a version is an MLflow model version whose
``rearguard.label`` tag holds our label; its files are the artifacts of a run in the
``rearguard`` experiment, uploaded from the bytes that were hashed at registration. The
production alias is an MLflow alias, so a rollback is one ``set_registered_model_alias`` call.
Statuses stay in our database, mirrored to the ``rearguard.status`` tag for people who look at
MLflow. A drill's sandbox is the same registry under a name prefix
(``rearguard-drill-<run>-<asset>``), its artifacts copied into the sandbox's home.

mlflow is imported lazily: it is an optional extra (``rearguard[mlflow]``).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from rearguard.models.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    OperationFailed,
    UsageError,
)
from rearguard.models.registry.base import Progress, StagedVersion
from rearguard.models.registry.local import (
    collect_source_files,
    copy_with_hash,
    remove_tree,
    stage_files,
    walk_version_dir,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

LABEL_TAG = "rearguard.label"
KIND_TAG = "rearguard.kind"
STATUS_TAG = "rearguard.status"
ARTIFACT_PATH = "files"
DRILL_PREFIX = "rearguard-drill-"

# Ours, unless the user set them. MLflow's HTTP client retries 7 times with exponential backoff
# and waits 120 s per request by default: minutes before an unreachable server is reported.
# MLflow 3 also sends usage telemetry to its makers; an incident tool talks to the registry only.
_MLFLOW_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


def _import_client() -> type[MlflowClient]:
    """The MlflowClient class, with our defaults for MLflow set (cheap after the first call).

    HTTP retries bounded, no telemetry, INFO logs quiet, database retries bounded.

    Raises:
        ConfigurationError: the ``mlflow`` extra is not installed.
    """
    for name, value in _MLFLOW_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        from mlflow import MlflowClient
    except ImportError as exc:
        raise ConfigurationError(
            '[registry] backend = "mlflow" needs the mlflow client, which is not installed',
            hint="install rearguard[mlflow]",
        ) from exc
    # Store migrations and artifact uploads log at INFO; the CLI's output is ours.
    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _bound_database_retries()
    return MlflowClient


def _bound_database_retries() -> None:
    """Make a database-backed tracking store that is down an error in a second, not 100 s.

    MLflow tries to connect to it 10 times with exponential backoff (about 100 s), warning
    each time, and no setting bounds that; two tries, and no multi-line warnings in the
    output, are enough for a command.
    """
    from mlflow.store.db import utils as db_utils

    if hasattr(db_utils, "MAX_RETRY_COUNT"):
        db_utils.MAX_RETRY_COUNT = min(db_utils.MAX_RETRY_COUNT, 2)
    logging.getLogger(db_utils.__name__).setLevel(logging.ERROR)


class MlflowRegistry:
    """Versions, artifacts and aliases in an MLflow tracking server's model registry.

    Args:
        tracking_uri: the tracking (and registry) URI: ``http(s)://...``, ``sqlite:///...``.
        home: rearguard's home; staged registrations and downloads of remote artifacts go
            under ``<home>/mlflow``.
        experiment: the experiment whose runs hold the uploaded artifacts.
        artifact_location: where that experiment keeps artifacts when rearguard creates it
            (None: the tracking server's default).
        prefix: prepended to every asset name to make the registered model's name (a drill
            sandbox's ``rearguard-drill-<run>-``; empty for production).
    """

    def __init__(
        self,
        *,
        tracking_uri: str,
        home: Path,
        experiment: str = "rearguard",
        artifact_location: str | None = None,
        prefix: str = "",
    ) -> None:
        self.tracking_uri = tracking_uri
        self.home = home
        self.experiment = experiment
        self.artifact_location = artifact_location
        self.prefix = prefix
        self._client: MlflowClient | None = None
        self._client_lock = threading.Lock()
        self._experiment_id: str | None = None
        self._numbers: dict[tuple[str, str], str] = {}

    # -- MLflow calls ------------------------------------------------------------------------

    @property
    def client(self) -> MlflowClient:
        """The MLflow client, created on first use."""
        # Verification may first reach MLflow from several hashing threads at once.
        with self._client_lock:
            if self._client is None:
                client_class = _import_client()
                self._client = client_class(
                    tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
        return self._client

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Turn the failures of the MLflow calls inside into one-line rearguard errors.

        Raises:
            NotFoundError: MLflow says the thing does not exist.
            ConfigurationError: the tracking server cannot be reached.
            OperationFailed: any other refusal.
        """
        _import_client()  # mlflow imported with our defaults set, or a clear error raised
        from mlflow.exceptions import MlflowException
        from sqlalchemy.exc import SQLAlchemyError

        try:
            yield
        except MlflowException as exc:
            text = _one_line(exc.message)
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise NotFoundError(
                    f"MLflow: {text}",
                    hint=f"check the name, and that {self.display_uri} is the right MLflow",
                ) from exc
            if "API request to" in text and "failed with exception" in text:
                raise ConfigurationError(
                    f"cannot reach MLflow at {self.display_uri} ({what})", hint=self._where()
                ) from exc
            if "unsupported URI" in text:
                raise ConfigurationError(
                    f"MLflow does not support the tracking URI {self.display_uri}",
                    hint=self._where(),
                ) from exc
            raise OperationFailed(f"MLflow refused to {what}: {text}") from exc
        # A database-backed store (down, or its driver not installed), or artifact files.
        except (OSError, SQLAlchemyError, ImportError) as exc:
            raise ConfigurationError(
                f"cannot use MLflow at {self.display_uri} ({what}): {_one_line(str(exc))}",
                hint=self._where(),
            ) from exc

    @property
    def display_uri(self) -> str:
        """The tracking URI without credentials, for messages."""
        parsed = urlparse(self.tracking_uri)
        if parsed.username is None and parsed.password is None:
            return self.tracking_uri
        return parsed._replace(netloc=parsed.netloc.rpartition("@")[2]).geturl()

    def _where(self) -> str:
        return "check [registry] tracking_uri (REARGUARD_REGISTRY_TRACKING_URI)"

    def model_name(self, asset: str) -> str:
        """The registered model holding an asset's versions."""
        return f"{self.prefix}{asset}"

    def _number(self, asset: str, label: str) -> str:
        """The MLflow version number of a label (labels are immutable, so it is cached).

        Raises:
            NotFoundError: no version of the registered model carries the label.
        """
        model = self.model_name(asset)
        found = self._numbers.get((model, label))
        if found is None:
            # Names and labels are letters, digits, '.', '_' and '-' (check_name): no quoting.
            with self._calling("search model versions"):
                versions = self.client.search_model_versions(
                    f"name = '{model}' and tags.`{LABEL_TAG}` = '{label}'"
                )
            if not versions:
                with self._calling("read the registered model"):
                    self.client.get_registered_model(model)  # NotFoundError when it is missing
                raise NotFoundError(
                    f"MLflow model {model!r} has no version labelled {label!r}",
                    hint=f"see the {LABEL_TAG} tags of its versions",
                )
            found = self._numbers[(model, label)] = str(versions[0].version)
        return found

    def _experiment(self) -> str:
        """The id of the experiment holding the artifact runs, created on first use."""
        if self._experiment_id is None:
            with self._calling("find or create the experiment"):
                found = self.client.get_experiment_by_name(self.experiment)
                if found is None:
                    self._experiment_id = self.client.create_experiment(
                        self.experiment, artifact_location=self.artifact_location
                    )
                else:
                    if found.lifecycle_stage != "active":  # a drill sandbox's, reused
                        self.client.restore_experiment(found.experiment_id)
                    self._experiment_id = found.experiment_id
        return self._experiment_id

    # -- registration ------------------------------------------------------------------------

    def stage_version(self, *, source: Path, progress: Progress | None = None) -> StagedVersion:
        """Copy and hash ``source`` into ``<home>/mlflow/staging``; the copy is what is uploaded.

        Raises:
            NotFoundError: the source does not exist.
            UnsafePathError: a symlink in the source points outside it.
            UsageError: the source holds no files.
        """
        return stage_files(
            collect_source_files(source),
            work=self.home / "mlflow" / "staging" / uuid.uuid4().hex,
            place=lambda path, target: copy_with_hash(path, target, progress=progress),
        )

    def publish_version(self, staged: StagedVersion, *, asset: str, label: str, kind: str) -> None:
        """Upload the staged files as a run's artifacts and create the model version.

        Unlike the local store, a version MLflow already has under the label is never replaced:
        the caller holds the label in this database only, and another rearguard database, or a
        person, may use the same MLflow.

        Raises:
            ConflictError: the registered model has a version carrying the label (one left by
                a registration killed before its commit is adopted by ``assets import``).
        """
        files = walk_version_dir(staged.work / "version")
        self._create_version(asset=asset, label=label, kind=kind, files=files)

    def _create_version(self, *, asset: str, label: str, kind: str, files: dict[str, Path]) -> None:
        """Upload ``files`` (relative path -> file of that name) as a new run's artifacts, and
        create the model version from them."""
        model = self.model_name(asset)
        try:
            number = self._number(asset, label)
        except NotFoundError:
            pass
        else:
            raise ConflictError(
                f"MLflow model {model!r} already has a version labelled {label!r} ({number})",
                hint=f"`rearguard assets import {asset}` adopts it, or use another label",
            )
        experiment = self._experiment()
        with self._calling(f"register {model}@{label}"):
            if not self.client.search_registered_models(f"name = '{model}'"):
                self.client.create_registered_model(model, tags={"rearguard.managed": "true"})
            run = self.client.create_run(experiment, run_name=f"{model}@{label}")
            local = _local_path(run.info.artifact_uri)
            for relative, path in sorted(files.items()):
                if local is not None:
                    # MLflow's local repository copies through Python; the kernel is faster.
                    target = local.joinpath(ARTIFACT_PATH, *PurePosixPath(relative).parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)
                else:
                    folder = PurePosixPath(ARTIFACT_PATH, relative).parent
                    self.client.log_artifact(run.info.run_id, str(path), str(folder))
            self.client.set_terminated(run.info.run_id)
            created = self.client.create_model_version(
                model,
                source=f"{run.info.artifact_uri}/{ARTIFACT_PATH}",
                run_id=run.info.run_id,
                tags={LABEL_TAG: label, KIND_TAG: kind, STATUS_TAG: "candidate"},
            )
        self._numbers[(model, label)] = str(created.version)

    def discard_staged(self, staged: StagedVersion) -> None:
        """Remove the staging copy."""
        remove_tree(staged.work)

    def discard_version(self, *, asset: str, label: str) -> None:
        """Delete the model version carrying the label, if there is one."""
        try:
            number = self._number(asset, label)
        except NotFoundError:
            return
        model = self.model_name(asset)
        with self._calling(f"delete {model} version {number}"):
            self.client.delete_model_version(model, number)
        self._numbers.pop((model, label), None)

    def copy_version(self, *, asset: str, label: str, kind: str, files: dict[str, Path]) -> int:
        """Store a copy of another registry's version (a drill sandbox's): new artifacts.

        Returns:
            0: every file is uploaded as a copy; none shares storage with the source.
        """
        self._create_version(asset=asset, label=label, kind=kind, files=files)
        return 0

    def attach_signature(self, *, asset: str, label: str, bundle: Path) -> None:
        """Refused: an MLflow model version's artifacts do not change after it is created.

        Raises:
            UsageError: always.
        """
        raise UsageError(
            f"{asset}@{label} is an MLflow model version, whose artifacts cannot change",
            hint="sign the files before registering them: model.sig in the directory, or "
            "assets register --signature",
        )

    def mirror_status(self, *, asset: str, label: str, status: str) -> None:
        """Record a version's new status in its ``rearguard.status`` tag."""
        number = self._number(asset, label)
        model = self.model_name(asset)
        with self._calling(f"tag {model} version {number}"):
            self.client.set_model_version_tag(model, number, STATUS_TAG, status)

    # -- reading -----------------------------------------------------------------------------

    def version_location(self, *, asset: str, label: str) -> Path:
        """The directory holding a version's files.

        In place for a local artifact store; for a remote one, a fresh download under
        ``<home>/mlflow/downloads``, so that what is hashed is what the store holds now.
        """
        model = self.model_name(asset)
        number = self._number(asset, label)
        with self._calling(f"resolve the artifacts of {model} version {number}"):
            uri = self.client.get_model_version_download_uri(model, number)
        local = _local_path(uri)
        return local if local is not None else self._download(model, number, uri)

    def _download(self, model: str, number: str, uri: str) -> Path:
        """Download a version's artifacts, replacing an earlier download of it."""
        from mlflow.artifacts import download_artifacts

        target = self.home / "mlflow" / "downloads" / model / number
        work = target.with_name(f".{number}.{uuid.uuid4().hex}")
        work.mkdir(parents=True)
        try:
            with self._calling(f"download the artifacts of {model} version {number}"):
                fetched = download_artifacts(
                    artifact_uri=uri, dst_path=str(work), tracking_uri=self.tracking_uri
                )
            remove_tree(target)
            Path(fetched).rename(target)
        finally:
            remove_tree(work)
        return target

    def version_files(self, *, asset: str, label: str) -> dict[str, Path]:
        """Every file of a version's artifacts now, by relative path.

        Raises:
            NotFoundError: the version or its artifacts are gone.
        """
        root = self.version_location(asset=asset, label=label)
        if not root.is_dir():
            raise NotFoundError(f"{asset}@{label}: stored content is missing from {root}")
        return walk_version_dir(root)

    # -- aliases -----------------------------------------------------------------------------

    def alias_location(self, *, asset: str, alias: str) -> str:
        """The model URI a serving system loads."""
        return f"models:/{self.model_name(asset)}@{alias}"

    def read_alias(self, *, asset: str, alias: str) -> str | None:
        """The label of the version the MLflow alias points at, or None.

        Raises:
            NotFoundError: there is no such registered model.
        """
        model = self.model_name(asset)
        with self._calling(f"read the {alias} alias of {model}"):
            number = self.client.get_registered_model(model).aliases.get(alias)
            if number is None:
                return None
            version = self.client.get_model_version(model, str(number))
        label = version.tags.get(LABEL_TAG, str(number))
        self._numbers[(model, label)] = str(number)
        return label

    def move_alias(self, *, asset: str, alias: str, label: str) -> None:
        """Point the MLflow alias at the version: one registry call."""
        number = self._number(asset, label)
        model = self.model_name(asset)
        with self._calling(f"move the {alias} alias of {model}"):
            self.client.set_registered_model_alias(model, alias, number)

    # -- adopting versions registered with MLflow --------------------------------------------

    def model_versions(self, *, asset: str) -> list[MlflowVersion]:
        """Every version of the asset's registered model, oldest first.

        A version without a ``rearguard.label`` tag (registered with MLflow, not with us) is
        labelled by its version number, and tagged so, so that it is found by label from now on.

        Raises:
            NotFoundError: there is no such registered model.
        """
        model = self.model_name(asset)
        found: list[MlflowVersion] = []
        with self._calling(f"list the versions of {model}"):
            self.client.get_registered_model(model)
            versions = self.client.search_model_versions(f"name = '{model}'")
            for version in sorted(versions, key=lambda v: int(v.version)):
                number = str(version.version)
                label = version.tags.get(LABEL_TAG)
                if label is None:
                    label = number
                    self.client.set_model_version_tag(model, number, LABEL_TAG, label)
                self._numbers[(model, label)] = number
                created = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
                found.append(MlflowVersion(number, label, version.tags.get(KIND_TAG), created))
        return found

    # -- drills ------------------------------------------------------------------------------

    def for_sandbox(self, *, home: Path, name: str) -> MlflowRegistry:
        """The same MLflow, under drill-prefixed model names, artifacts in the sandbox's home."""
        return MlflowRegistry(
            tracking_uri=self.tracking_uri,
            home=home,
            experiment=f"{DRILL_PREFIX}{name}",
            artifact_location=(home / "mlflow-artifacts").as_uri(),
            prefix=f"{DRILL_PREFIX}{name}-",
        )

    def delete_sandbox(self) -> None:
        """Delete a sandbox's registered models and experiment (its artifacts go with its home).

        Raises:
            UsageError: this is not a sandbox's registry.
        """
        if not self.prefix.startswith(DRILL_PREFIX):
            raise UsageError("only a drill sandbox's MLflow models are ever deleted")
        with self._calling(f"delete the drill models {self.prefix}*"):
            for model in self.client.search_registered_models(f"name LIKE '{self.prefix}%'"):
                self.client.delete_registered_model(model.name)
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None and found.lifecycle_stage == "active":
                self.client.delete_experiment(found.experiment_id)
        self._numbers.clear()
        self._experiment_id = None


@dataclass(frozen=True)
class MlflowVersion:
    """A model version as MLflow lists it: number, our label, kind tag, creation time."""

    number: str
    label: str
    kind: str | None
    created: datetime


def _local_path(uri: str) -> Path | None:
    """The local directory of a ``file:`` URI or plain path; None for a remote store."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri)
    return None


def _one_line(text: str) -> str:
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return first if len(first) <= 300 else first[:297] + "..."
