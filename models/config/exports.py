"""Settings of the exports: where the post-incident review is written when an incident resolves.

```toml
[exports]
auto_review = true          # write <review_dir>/incident-ID.md and .html on `incident resolve`
review_dir = "reviews"      # relative to the home; default <home>/reviews
```
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from rearguard.models.config.base import ConcernSettings


class ExportSettings(ConcernSettings):
    """The ``[exports]`` settings (``REARGUARD_EXPORTS_*``)."""

    toml_table: ClassVar[str] = "exports"
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
