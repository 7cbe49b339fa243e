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
    # What `incident open` needs for this type: "asset", "digest|file", "dataset", "since".
    inputs: tuple[str, ...] = ("asset",)

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
            "inputs": list(self.inputs),
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
                "rollback",
                "validate",
                "notify",
            ),
            asset_kinds=(AssetKind.MODEL, AssetKind.PROMPT, AssetKind.CONFIG),
        ),
        PlaybookSpec(
            type="supply_chain",
            title="Malicious third-party file: denylist it, quarantine every version holding it",
            entrypoint="rearguard.playbooks.supply_chain:supply_chain",
            atlas_ids=("AML.T0010",),
            provisions=("5.1", "5.2", "5.3", "5.3.1", "6.5", "8.1.2", "12.1"),
            steps=(
                "denylist_digest",
                "find_digest_versions",
                "quarantine",
                "select_known_good",
                "rollback",
                "validate",
                "notify",
            ),
            asset_kinds=(AssetKind.MODEL, AssetKind.PROMPT, AssetKind.CONFIG, AssetKind.DATASET),
            inputs=("digest|file",),
        ),
        PlaybookSpec(
            type="data_poisoning",
            title="Poisoned training data: follow lineage, quarantine, roll back, retrain",
            entrypoint="rearguard.playbooks.data_poisoning:data_poisoning",
            atlas_ids=("AML.T0020",),
            provisions=("5.1", "5.2", "5.3", "5.3.1", "6.5", "12.1"),
            steps=(
                "mark_dataset_suspect",
                "run_hook:freeze_ingestion",
                "trace_lineage",
                "quarantine",
                "notify:data_owner",
                "select_known_good",
                "rollback",
                "validate",
                "run_hook:retrain",
                "notify",
            ),
            asset_kinds=(AssetKind.DATASET, AssetKind.MODEL),
            inputs=("dataset", "since"),
        ),
        PlaybookSpec(
            type="model_theft",
            title="Stolen model: verify production, rotate credentials, tell legal and privacy",
            entrypoint="rearguard.playbooks.model_theft:model_theft",
            atlas_ids=("AML.T0024", "AML.T0025"),
            provisions=("5.3", "6.5", "12.1"),
            steps=(
                "verify_production",
                "run_hook:rotate_credentials",
                "notify_legal",
                "notify",
            ),
            asset_kinds=(AssetKind.MODEL,),
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
