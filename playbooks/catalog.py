"""The playbook catalog: incident type -> playbook, ATLAS techniques, Code of Practice provisions.

Plain data, so that listing playbooks and validating an incident type never imports Prefect.

Users add playbooks as plug-ins: an installed distribution that declares an entry point in the
``rearguard.playbooks`` group, whose object is a :class:`PlaybookSpec` (or a mapping with the
same fields). Plug-ins are discovered when a type is not built in or when the catalog is
listed, never at import; a plug-in that cannot be loaded is reported in one line naming it and
leaves every other playbook usable.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

from rearguard.models.enums import AssetKind
from rearguard.models.errors import ConfigurationError, NotFoundError

ENTRY_POINT_GROUP = "rearguard.playbooks"
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ENTRYPOINT_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


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
        """Import and return the playbook's Prefect flow.

        Raises:
            ConfigurationError: the flow cannot be imported (a broken plug-in, typically).
        """
        module, _, name = self.entrypoint.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except Exception as exc:  # a plug-in's module may raise anything while importing
            raise ConfigurationError(
                f"playbook {self.type!r}: cannot load {self.entrypoint}: {_one_line(exc)}",
                hint="fix or uninstall the package that provides it",
            ) from exc

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


_TAMPERING_STEPS = (
    "quarantine",
    "verify_integrity",
    "select_known_good",
    "await_approval",
    "rollback",
    "record_diff",
    "validate",
    "notify",
)

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
                "notify:opened",
                "quarantine",
                "notify:contained",
                "verify_integrity",
                "select_known_good",
                "await_approval",
                "rollback",
                "validate",
                "notify:recovered",
            ),
            asset_kinds=(AssetKind.MODEL, AssetKind.PROMPT, AssetKind.CONFIG),
        ),
        PlaybookSpec(
            type="prompt_tampering",
            title="Altered system prompt or guardrail text: roll back, record what changed",
            entrypoint="rearguard.playbooks.tampering:prompt_tampering",
            atlas_ids=("AML.T0051",),
            provisions=("5.2", "5.3", "5.3.1", "6.5", "8.3", "12.1"),
            steps=_TAMPERING_STEPS,
            asset_kinds=(AssetKind.PROMPT,),
        ),
        PlaybookSpec(
            type="config_tampering",
            title="Altered serving or guardrail configuration: roll back, record what changed",
            entrypoint="rearguard.playbooks.tampering:config_tampering",
            atlas_ids=("AML.T0081",),
            provisions=("5.2", "5.3", "5.3.1", "6.5", "8.3", "12.1"),
            steps=_TAMPERING_STEPS,
            asset_kinds=(AssetKind.CONFIG,),
        ),
        PlaybookSpec(
            type="degradation",
            title="Production fails its validation check: roll back to a version that passes",
            entrypoint="rearguard.playbooks.degradation:degradation",
            atlas_ids=("AML.T0031", "AML.T0015"),
            provisions=("5.3", "5.3.1", "6.5", "12.1"),
            steps=(
                "confirm_degradation",
                "select_known_good",
                "await_approval",
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
                "await_approval",
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
                "await_approval",
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
                "notify_legal",
                "await_approval",
                "run_hook:rotate_credentials",
                "notify",
            ),
            asset_kinds=(AssetKind.MODEL,),
        ),
    )
}


@dataclass(frozen=True)
class PluginProblem:
    """A plug-in playbook that could not be added to the catalog, and why."""

    name: str
    value: str
    message: str

    def line(self) -> str:
        """One line for the user, naming the plug-in."""
        return f"plug-in playbook {self.name!r} ({self.value}) not loaded: {self.message}"


def discover_plugins() -> tuple[dict[str, PlaybookSpec], list[PluginProblem]]:
    """Load the ``rearguard.playbooks`` entry points of the installed distributions.

    Returns:
        The plug-in playbooks by type, and one problem per entry point that could not be used
        (its import failed, its object is not a playbook spec, or its type is taken).
    """
    from importlib.metadata import entry_points

    found: dict[str, PlaybookSpec] = {}
    problems: list[PluginProblem] = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = _as_spec(point.load())
            if spec.type in CATALOG or spec.type in found:
                raise ValueError(f"incident type {spec.type!r} is already taken")
        except Exception as exc:  # whatever a plug-in raises, the others stay usable
            problems.append(PluginProblem(point.name, point.value, _one_line(exc)))
            continue
        found[spec.type] = spec
    return found, problems


def all_playbooks() -> tuple[dict[str, PlaybookSpec], list[PluginProblem]]:
    """Every playbook, built-in first then plug-ins, and the plug-ins that could not be loaded."""
    plugins, problems = discover_plugins()
    return {**CATALOG, **plugins}, problems


def _as_spec(value: Any) -> PlaybookSpec:
    if isinstance(value, Mapping):
        known = {f.name for f in fields(PlaybookSpec)}
        required = {f.name for f in fields(PlaybookSpec) if f.default is MISSING}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(map(str, unknown))}")
        missing = sorted(required - set(value))
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        value = PlaybookSpec(**{k: value[k] for k in known & set(value)})
    if not isinstance(value, PlaybookSpec):
        raise TypeError(f"expected a PlaybookSpec or a mapping, got {type(value).__name__}")
    if not isinstance(value.type, str) or not _TYPE_RE.match(value.type):
        raise ValueError(f"invalid type {value.type!r}: lower-case letters, digits and _")
    if not isinstance(value.entrypoint, str) or not _ENTRYPOINT_RE.match(value.entrypoint):
        raise ValueError(f"invalid entrypoint {value.entrypoint!r}: write it as module:flow")
    return PlaybookSpec(
        type=value.type,
        title=str(value.title),
        entrypoint=value.entrypoint,
        atlas_ids=_strings(value.atlas_ids, "atlas_ids"),
        provisions=_strings(value.provisions, "provisions"),
        steps=_strings(value.steps, "steps"),
        asset_kinds=tuple(AssetKind(k) for k in _strings(value.asset_kinds, "asset_kinds")),
        inputs=_strings(value.inputs, "inputs"),
    )


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of strings")
    return tuple(value)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def get_playbook(incident_type: str) -> PlaybookSpec:
    """Return the catalog entry of an incident type, built in or from a plug-in.

    Raises:
        NotFoundError: no playbook handles that type.
    """
    spec = CATALOG.get(incident_type)
    if spec is not None:
        return spec
    playbooks, problems = all_playbooks()
    spec = playbooks.get(incident_type)
    if spec is None:
        broken = [p.line() for p in problems if p.name == incident_type]
        known = ", ".join(sorted(playbooks))
        hint = broken[0] if broken else f"known: {known}"
        raise NotFoundError(f"unknown incident type {incident_type!r}", hint=hint)
    return spec
