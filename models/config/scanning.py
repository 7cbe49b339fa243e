"""The artifact scanner: ``[scanning]`` (what blocks trust, container limits), and the per-asset
``[assets.NAME.scanning]`` table (constructs a named person allowed, and why)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from rearguard.models.config.base import ConcernSettings, comma_list
from rearguard.models.integrity.scan.findings import Severity


class AssetScanning(BaseModel):
    """``[assets.NAME.scanning]``: pickle globals (``module.name``) this asset may hold.

    An allowance is a person's decision, so it names who made it and why; both are recorded in
    the timeline whenever the allowance accepts a finding.
    """

    model_config = ConfigDict(extra="forbid")
    allow: list[str] = Field(
        default_factory=list, description="constructs accepted for this asset (mypkg.Model)"
    )
    allowed_by: str = Field(default="", description="who decided to allow them")
    reason: str = Field(default="", description="why they are safe for this asset")

    @model_validator(mode="after")
    def _accountable(self) -> AssetScanning:
        if self.allow and not (self.allowed_by.strip() and self.reason.strip()):
            raise ValueError("an allow list needs allowed_by (who) and reason (why)")
        for construct in self.allow:
            module, dot, name = construct.rpartition(".")
            if not (module and dot and name) or " " in construct:
                raise ValueError(f"allow entries are module.name, not {construct!r}")
        return self


class ScanningSettings(ConcernSettings):
    """``[scanning]``: which findings block trust, and how far containers are opened."""

    toml_table: ClassVar[str] = "scanning"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_SCANNING_", extra="ignore")
    block: Annotated[list[Severity], NoDecode, BeforeValidator(comma_list)] = Field(
        default_factory=lambda: list(Severity),
        description="severities that block approval, promotion and known-good selection",
    )
    engines: Annotated[
        list[Literal["picklescan", "fickling", "modelaudit"]], NoDecode, BeforeValidator(comma_list)
    ] = Field(
        default_factory=list,
        description=(
            "other scanners whose verdicts are recorded beside rearguard's: picklescan and "
            "fickling (the engines extra), modelaudit (its command on PATH)"
        ),
    )
    max_depth: int = Field(default=8, ge=1, le=64, description="containers inside containers")
    max_members: int = Field(default=100_000, ge=1, description="members of one file's containers")
    max_expanded_bytes: int = Field(
        default=64 * 1024**3, ge=1, description="bytes read out of one file's containers"
    )
