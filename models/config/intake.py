"""The HTTP intake of ``rearguard serve``: ``[intake]``, ``REARGUARD_INTAKE_*``."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
)
from pydantic_settings import NoDecode, SettingsConfigDict

from rearguard.models.config.base import ConcernSettings, comma_list


def _secret_list(value: Any) -> Any:
    return comma_list(value.get_secret_value() if isinstance(value, SecretStr) else value)


class AlertRule(BaseModel):
    """How Alertmanager alerts whose labels match ``match`` become incidents.

    ``type``/``asset``/``severity`` give a fixed value; the ``*_label`` fields name the label
    that holds it instead. The first rule that matches an alert wins.
    """

    model_config = ConfigDict(extra="forbid")
    match: dict[str, str] = Field(default_factory=dict, description="labels that must be equal")
    type: str | None = None
    type_label: str = "rearguard_type"
    asset: str | None = None
    asset_label: str = "asset"
    severity: str | None = None
    severity_label: str = "severity"


class IntakeSettings(ConcernSettings):
    """The HTTP intake (``rearguard serve``). Tokens and the HMAC secret come from the
    environment (``REARGUARD_INTAKE_TOKENS``, ``REARGUARD_INTAKE_HMAC_SECRET``)."""

    toml_table: ClassVar[str] = "intake"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_INTAKE_", extra="ignore")
    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=0, le=65535)
    tokens: Annotated[list[SecretStr], NoDecode, BeforeValidator(_secret_list)] = Field(
        default_factory=list, description="bearer tokens accepted, comma-separated"
    )
    auth: Literal["required", "off"] = Field(
        default="required", description="off is allowed only on a loopback address"
    )
    hmac_secret: SecretStr | None = Field(
        default=None, description="when set, X-Rearguard-Signature: sha256=<hex of the body>"
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    dedup_window_s: float = Field(
        default=0.0,
        ge=0,
        description="after an incident is resolved, its alerts still attach to it this long",
    )
    dispatch: Literal["inline", "deployment"] = Field(
        default="inline",
        description="inline: playbooks run in the serving process; deployment: as flow runs of "
        "the playbooks' Prefect deployments (`rearguard deploy`), on the work pool's workers",
    )
    work_pool: str = Field(
        default="rearguard", min_length=1, description="the Prefect work pool of `deployment`"
    )
    playbook_workers: int = Field(
        default=8, ge=1, le=64, description="playbooks the intake runs at once (inline)"
    )
    alertmanager: list[AlertRule] = Field(default_factory=list)
