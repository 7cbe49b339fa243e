"""The HTTP intake of ``rearguard serve``: ``[intake]``, ``REARGUARD_INTAKE_*``."""

from __future__ import annotations

from dataclasses import dataclass
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


READ = "read"
WRITE = "write"
SCOPES = frozenset({READ, WRITE})


@dataclass(frozen=True)
class ScopedToken:
    """An intake token and what it may do: ``write`` opens incidents and posts alerts,
    ``read`` lists and shows them."""

    token: bytes
    scopes: frozenset[str]


def scoped_token(entry: str) -> ScopedToken:
    """One ``REARGUARD_INTAKE_TOKENS`` entry: ``read:TOKEN``, ``write:TOKEN`` or a bare
    ``TOKEN`` (both scopes)."""
    scope, colon, token = entry.partition(":")
    if colon and scope in SCOPES and token:
        return ScopedToken(token.encode(), frozenset({scope}))
    return ScopedToken(entry.encode(), SCOPES)


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
        default_factory=list,
        description="bearer tokens accepted, comma-separated; each `read:TOKEN` (list and show "
        "incidents), `write:TOKEN` (open incidents, post alerts) or a bare TOKEN (both)",
    )
    auth: Literal["required", "off"] = Field(
        default="required", description="off is allowed only on a loopback address"
    )
    hmac_secret: SecretStr | None = Field(
        default=None,
        description="when set, POSTs carry X-Rearguard-Timestamp (Unix seconds, within 5 "
        "minutes) and X-Rearguard-Signature: sha256=<hex HMAC of '<timestamp>.<body>'>",
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, description="a request's line and headers, at most (431)"
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="a request's line and headers arrive within this (408)"
    )
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
    metrics_public: bool = Field(
        default=False,
        description="serve GET /metrics without a token (only on a loopback address); "
        "otherwise a token with the read scope",
    )

    def scoped_tokens(self) -> list[ScopedToken]:
        """The tokens, each with its scopes."""
        return [scoped_token(t.get_secret_value()) for t in self.tokens]
