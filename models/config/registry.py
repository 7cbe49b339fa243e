"""The asset registry backend: ``[registry]``, ``REARGUARD_REGISTRY_*``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import (
    Field,
)
from pydantic_settings import SettingsConfigDict

from rearguard.models.config.base import ConcernSettings


class RegistrySettings(ConcernSettings):
    """The asset registry backend."""

    toml_table: ClassVar[str] = "registry"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_REGISTRY_", extra="ignore")
    backend: Literal["local", "mlflow"] = "local"
    alias: str = Field(
        default="production", description="the alias serving systems read (MLflow: e.g. champion)"
    )
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow's tracking URI (backend mlflow); default: MLFLOW_TRACKING_URI",
    )
    experiment: str = Field(
        default="rearguard", description="the MLflow experiment whose runs hold the artifacts"
    )
    artifact_location: str | None = Field(
        default=None,
        description="where rearguard's MLflow experiment keeps artifacts when rearguard creates "
        "it; default: <home>/mlflow-artifacts for a local (sqlite, file) tracking store, the "
        "server's own default for a tracking server",
    )
