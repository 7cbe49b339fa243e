"""Settings of the audit chain's signed checkpoints.

```toml
[audit]
signing_key = "/etc/rearguard/checkpoint.pem"   # Ed25519 private key, PEM, mode 600
checkpoint_every = 1000                          # also one every N events (0: only at ends)
checkpoint_sinks = ["file:///mnt/worm/rearguard-checkpoints.jsonl", "https://audit.example/cp",
                    "slack:#audit-checkpoints"]
retry_base_s = 10                                # a failing sink is retried after 10 s, 20 s, ...
retry_max_s = 900                                # ... at most 15 minutes apart
```

A sink is ``file://PATH`` (JSON lines appended), an ``http(s)://`` URL (a webhook, signed as the
webhook channel signs, with ``webhook_secret``), ``slack:CHANNEL`` (a message per checkpoint, with
``[notifications.slack]``'s token: a channel the database's writers cannot edit), or ``webhook``
(the URL and secret of ``[notifications.webhook]``).

A sink that cannot be reached keeps its checkpoints; they are retried in order after
``retry_base_s`` (doubling up to ``retry_max_s``) by the next checkpoint made, by the scheduler
(``rearguard serve`` or ``rearguard scheduler``) and, at once, by ``rearguard audit checkpoint``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from rearguard.models.config.base import CommaList, ConcernSettings

SINK_SCHEMES = ("file://", "http://", "https://", "slack:")


class AuditSettings(ConcernSettings):
    """The ``[audit]`` settings (``REARGUARD_AUDIT_*``)."""

    toml_table: ClassVar[str] = "audit"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_AUDIT_", extra="ignore")

    signing_key: Path | None = Field(
        default=None, description="Ed25519 private key (PEM) that signs checkpoints"
    )
    checkpoint_every: int = Field(
        default=0, ge=0, description="also sign a checkpoint every this many events (0: off)"
    )
    checkpoint_sinks: CommaList = Field(
        default_factory=list,
        description="where checkpoints are published: file://, http(s)://, slack:, webhook",
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC secret of the http(s):// checkpoint sinks"
    )
    publish_timeout_s: float = Field(default=5.0, gt=0, description="per network sink attempt")
    retry_base_s: float = Field(
        default=10.0, gt=0, description="wait before retrying a sink that failed (doubling)"
    )
    retry_max_s: float = Field(
        default=900.0, gt=0, description="the longest wait before retrying a failing sink"
    )

    @field_validator("checkpoint_sinks")
    @classmethod
    def _known_sinks(cls, value: list[str]) -> list[str]:
        for sink in value:
            if sink != "webhook" and not sink.startswith(SINK_SCHEMES):
                raise ValueError(
                    f"unknown checkpoint sink {sink!r}: give file://PATH, an http(s):// URL, "
                    "slack:CHANNEL or webhook"
                )
            scheme = next((s for s in SINK_SCHEMES if sink.startswith(s)), "")
            if scheme in ("file://", "slack:") and len(sink) == len(scheme):
                where = "a path" if scheme == "file://" else "a channel (an id or #name)"
                raise ValueError(f"a {scheme} checkpoint sink needs {where}")
        return value
