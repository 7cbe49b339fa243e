"""Hooks playbooks run (``[hooks.NAME]``) and per-asset options (``[assets.NAME]``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from rearguard.models.config.base import ConcernSettings
from rearguard.models.config.scanning import AssetScanning


class HookCommand(BaseModel):
    """One hook command: argv (no shell) or a Prefect deployment, a timeout, the environment
    variables it may see."""

    model_config = ConfigDict(extra="forbid")
    argv: list[str] | None = Field(
        default=None, min_length=1, description="the program and its arguments; no shell"
    )
    deployment: str | None = Field(
        default=None,
        pattern=r"^[^/]+/[^/]+$",
        description="or a Prefect deployment (flow/deployment) whose flow run is the hook",
    )
    timeout_s: float = Field(
        default=300.0, gt=0, description="killed with its group (a flow run: cancelled) after this"
    )
    env: list[str] = Field(
        default_factory=list, description="names of environment variables passed through"
    )
    credentials: list[str] = Field(
        default_factory=list, description="names (never values) of what the hook rotates"
    )

    @model_validator(mode="after")
    def _one_target(self) -> HookCommand:
        if (self.argv is None) == (self.deployment is None):
            raise ValueError('a hook runs either argv = [...] or deployment = "flow/name"')
        return self

    @property
    def label(self) -> str:
        """What the timeline calls it: the program, or ``deployment:<flow/name>``."""
        return self.argv[0] if self.argv else f"deployment:{self.deployment}"


def _one_or_many(value: Any) -> Any:
    """``[hooks.NAME]`` is one command; ``[[hooks.NAME]]`` several, run in order."""
    return [value] if isinstance(value, dict) else value


HookList = Annotated[list[HookCommand], BeforeValidator(_one_or_many)]


class AssetOptions(BaseModel):
    """Per-asset options: ``[assets.NAME]``."""

    model_config = ConfigDict(extra="forbid")
    personal_data: bool = Field(
        default=False, description="the asset touches personal data (UK GDPR breach duties)"
    )
    hooks: dict[str, HookList] = Field(
        default_factory=dict, description="hooks that replace the global ones of the same name"
    )
    scanning: AssetScanning = Field(
        default_factory=AssetScanning, description="constructs a person allowed, and why"
    )
    require_signature: bool | None = Field(
        default=None,
        description="versions need a signature [signing] trusts (default: [signing] require)",
    )


class HookSettings(ConcernSettings):
    """Hooks playbooks run (``[hooks.NAME]``), and per-asset options (``[assets.NAME]``).

    Both are top-level tables of rearguard.toml, so this concern reads the file's root.
    """

    model_config = SettingsConfigDict(env_prefix="REARGUARD_", extra="ignore")
    hooks: dict[str, HookList] = Field(default_factory=dict)
    assets: dict[str, AssetOptions] = Field(default_factory=dict)

    def commands(self, name: str, *, asset: str | None) -> list[HookCommand]:
        """The commands of hook ``name`` for ``asset``: the asset's own, else the global ones."""
        options = self.assets.get(asset or "")
        if options is not None and name in options.hooks:
            return options.hooks[name]
        return self.hooks.get(name, [])

    def personal_data(self, asset: str | None) -> bool:
        """True when ``asset`` is marked as touching personal data."""
        options = self.assets.get(asset or "")
        return bool(options and options.personal_data)
