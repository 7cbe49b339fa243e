"""The playbook catalog: incident type -> playbook, ATLAS techniques, Code of Practice provisions.

Plain data, so that listing playbooks and validating an incident type never imports Prefect.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from rearguard.models.enums import AssetKind
from rearguard.models.errors import NotFoundError


@dataclass(frozen=True)
class PlaybookSpec:
    """What the catalog knows about one playbook."""

    type: str
    title: str
    entrypoint: str
    atlas_ids: tuple[str, ...]
    provisions: tuple[str, ...]
    steps: tuple[str, ...]
    asset_kinds: tuple[AssetKind, ...]

    def load(self) -> Any:
        """Import and return the playbook's Prefect flow."""
        module, _, name = self.entrypoint.partition(":")
        return getattr(importlib.import_module(module), name)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly form."""
        return {
            "type": self.type,
            "title": self.title,
            "entrypoint": self.entrypoint,
            "atlas_ids": list(self.atlas_ids),
            "provisions": list(self.provisions),
            "steps": list(self.steps),
            "asset_kinds": [str(k) for k in self.asset_kinds],
        }


CATALOG: dict[str, PlaybookSpec] = {
    spec.type: spec
    for spec in (
        PlaybookSpec(
            type="model_compromise",
            title="Tampered model, prompt or config artifact: contain, verify, roll back",
            entrypoint="rearguard.playbooks.model_compromise:model_compromise",
            atlas_ids=("AML.T0018", "AML.T0031"),
            provisions=("5.1", "5.2", "5.3", "5.3.1", "6.5", "8.1.2", "12.1"),
            steps=(
                "quarantine",
                "verify_integrity",
                "select_known_good",
                "await_approval",
                "rollback",
                "validate",
                "notify",
            ),
            asset_kinds=(AssetKind.MODEL, AssetKind.PROMPT, AssetKind.CONFIG),
        ),
    )
}


def get_playbook(incident_type: str) -> PlaybookSpec:
    """Return the catalog entry of an incident type.

    Raises:
        NotFoundError: no playbook handles that type.
    """
    spec = CATALOG.get(incident_type)
    if spec is None:
        known = ", ".join(sorted(CATALOG))
        raise NotFoundError(f"unknown incident type {incident_type!r}", hint=f"known: {known}")
    return spec
