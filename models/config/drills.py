"""Recovery drills and the scheduler that runs them: ``[drills]``, ``[scheduler]``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import (
    Field,
)
from pydantic_settings import SettingsConfigDict

from rearguard.models.config.base import ConcernSettings


class DrillSettings(ConcernSettings):
    """Recovery drills: where their sandboxes go and how long they are kept."""

    toml_table: ClassVar[str] = "drills"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_DRILL_", extra="ignore")
    keep_sandboxes: Literal["none", "failed", "all"] = Field(
        default="failed",
        description="which drill sandboxes (<home>/drills/<run>) stay on disk after the run",
    )
    timezone: str = Field(default="UTC", description="timezone of a drill's cron by default")
    exercise_approvals: bool = Field(
        default=False,
        description="approval gates in a drill wait for a real decision; false: they are "
        "skipped and the timeline says who the policy would have asked",
    )


class SchedulerSettings(ConcernSettings):
    """The scheduler process (``rearguard scheduler``)."""

    toml_table: ClassVar[str] = "scheduler"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_SCHEDULER_", extra="ignore")
    misfire_grace_s: float = Field(
        default=300.0,
        gt=0,
        description="a run this late still runs; later, it is recorded as missed",
    )
    sweep_cron: str | None = Field(
        default=None, description="cron of `assets sweep` runs; none: no scheduled sweep"
    )
    poll_s: float = Field(
        default=5.0, gt=0, description="how often the scheduler looks for changed drills"
    )
