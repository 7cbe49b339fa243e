"""Settings of the exports: where the post-incident review is written when an incident resolves.

Read like every other concern (command line > ``REARGUARD_EXPORTS_*`` > the ``[exports]`` table
of ``rearguard.toml`` > defaults), kept apart from ``settings.py`` so that the exports own them:

```toml
[exports]
auto_review = true          # write <review_dir>/incident-ID.md and .html on `incident resolve`
review_dir = "reviews"      # relative to the home; default <home>/reviews
```
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from rearguard.models.errors import ConfigurationError
from rearguard.models.settings import find_config_file, read_config_file


class ExportSettings(BaseSettings):
    """The ``[exports]`` settings."""

    model_config = SettingsConfigDict(env_prefix="REARGUARD_EXPORTS_", extra="ignore")

    auto_review: bool = True
    review_dir: Path | None = None

    def review_directory(self, home: Path) -> Path:
        """The directory reviews are written to: ``review_dir`` (relative to home) or
        ``<home>/reviews``."""
        if self.review_dir is None:
            return home / "reviews"
        path = self.review_dir.expanduser()
        return path if path.is_absolute() else home / path


def load_export_settings(*, home: Path) -> ExportSettings:
    """Resolve the export settings for a home (the environment, then ``rearguard.toml``).

    Raises:
        ConfigurationError: a value is invalid, or the config file is malformed.
    """
    table = read_config_file(find_config_file(home)).get("exports", {})
    if not isinstance(table, dict):
        raise ConfigurationError("[exports] in rearguard.toml must be a table")

    class _FromToml(ExportSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, InitSettingsSource(settings_cls, table))

    try:
        loaded = _FromToml()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigurationError(f"invalid setting exports.{where}: {first['msg']}") from exc
    return ExportSettings.model_construct(**loaded.model_dump())
