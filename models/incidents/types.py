"""Incident types: one entry per type, holding everything rearguard knows about it.

An :class:`IncidentType` says what the type is (title, MITRE ATLAS ids, Code of Practice
provisions), what ``incident open`` needs for it (:class:`Input`), which asset kinds it acts on,
the steps its playbook records, the flow that runs it (``module:function``, imported only by
:mod:`rearguard.playbooks.catalog`), how a drill plants its compromise and what counts as a
pass, when the integrity sweep opens it, and how the exports describe it. Plain data: nothing
here imports Prefect, so models/ reads it and listing types stays fast.

Users add types as plug-ins: an installed distribution that declares an entry point in the
``rearguard.playbooks`` group, whose object is an :class:`IncidentType` (exported to plug-ins
as ``rearguard.playbooks.catalog.PlaybookSpec``) or a mapping with the same fields. Plug-ins are
discovered when a type is not built in or when the types are listed, never at import; a plug-in
that cannot be loaded is reported in one line naming it and leaves every other type usable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from enum import StrEnum
from importlib.metadata import entry_points
from typing import Any

from rearguard.models.drills.injectors import (
    DrillRule,
    exercise_theft_response,
    plant_malicious_file,
    poison_dataset,
    tamper_production_bytes,
    tamper_production_text,
)
from rearguard.models.enums import AssetKind, IncidentStatus
from rearguard.models.errors import NotFoundError, UsageError

ENTRY_POINT_GROUP = "rearguard.playbooks"
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ENTRYPOINT_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class Input(StrEnum):
    """What ``incident open`` needs for a type, besides its severity and summary."""

    ASSET = "asset"  # --asset NAME
    DIGEST = "digest"  # --digest SHA256, or --file PATH hashed for you
    DATASET = "dataset"  # --dataset NAME (the poisoned dataset)
    SINCE = "since"  # --since ISO8601, required rather than optional


@dataclass(frozen=True)
class ExportProfile:
    """How an incident type is described to STIX consumers and in the OECD report."""

    stix_incident_types: tuple[str, ...] = ("compromised-system",)
    oecd_harm_types: tuple[str, ...] = ("economic/property",)
    harm_description: str = "potential harm from an AI asset that could not be trusted"


@dataclass(frozen=True)
class SweepRule:
    """When the integrity sweep opens an incident of a type.

    Attributes:
        tampered_kinds: a servable version of an asset of one of these kinds has stored bytes
            that no longer match its manifest (its playbook runs only when production is
            among the failing versions: otherwise nothing needs rolling back).
        dangerous_file: a file that matches its manifest (so it was registered that way) holds
            dangerous content (its playbook handles every version it finds, so it always runs).
    """

    tampered_kinds: tuple[AssetKind, ...] = ()
    dangerous_file: bool = False


# Steps, as the catalog lists them and :func:`step_name` reads them back from a timeline. Every
# playbook runs inside the playbook guard, which notifies when it opens and when it ends.
_OPENED, _CONTAINED, _RECOVERED = "notify:opened", "notify:contained", "notify:recovered"
_SELECT_AND_ROLL_BACK = ("select_known_good", "rollback", "validate")
_RESTORE = (
    "quarantine",
    _CONTAINED,
    "verify_integrity",
    "select_known_good",
    "await_approval",
    "rollback",
    "validate",
)
_TAMPERING = (*_RESTORE[:-1], "record_diff", _RESTORE[-1])
# A recorded step's argument that the catalog names it by (``notify:opened``, ``run_hook:retrain``).
_QUALIFIERS = {"notify": "event", "run_hook": "hook"}


def step_name(step: str, arguments: Mapping[str, Any]) -> str:
    """The catalog's name of a step recorded with these arguments (its intent event's)."""
    qualifier = arguments.get(_QUALIFIERS.get(step, ""))
    return f"{step}:{qualifier}" if qualifier else step


@dataclass(frozen=True)
class IncidentType:
    """Everything rearguard knows about one incident type, and the playbook that handles it.

    Attributes:
        type: the type's name (lower-case letters, digits and ``_``).
        title: one line saying what happened and what the playbook does.
        entrypoint: the playbook's Prefect flow, as ``module:function``.
        atlas_ids: the MITRE ATLAS techniques it answers.
        provisions: the Code of Practice provisions its record gives evidence for.
        steps: the steps its playbook records, in order (see :func:`step_name`).
        asset_kinds: the kinds of asset it acts on.
        inputs: what ``incident open`` needs for it.
        drill: how a drill plants its compromise and what a pass is; None: not drillable.
        sweep: when the integrity sweep opens it; None: never.
        profile: how the exports describe it.
    """

    type: str
    title: str
    entrypoint: str
    atlas_ids: tuple[str, ...]
    provisions: tuple[str, ...]
    steps: tuple[str, ...]
    asset_kinds: tuple[AssetKind, ...]
    inputs: tuple[Input, ...] = (Input.ASSET,)
    drill: DrillRule | None = None
    sweep: SweepRule | None = None
    profile: ExportProfile = ExportProfile()

    def drill_rule(self) -> DrillRule:
        """How this type is drilled.

        Raises:
            UsageError: no drill rule exists, so this type cannot be drilled yet.
        """
        if self.drill is None:
            known = ", ".join(sorted(t for t, spec in INCIDENT_TYPES.items() if spec.drill))
            raise UsageError(
                f"playbook {self.type!r} cannot be drilled", hint=f"drillable: {known}"
            )
        return self.drill

    def needs(self, value: Input) -> bool:
        """Whether ``incident open`` needs this input for the type."""
        return value in self.inputs


INCIDENT_TYPES: dict[str, IncidentType] = {
    spec.type: spec
    for spec in (
        IncidentType(
            type="model_compromise",
            title="Tampered model, prompt or config artifact: contain, verify, roll back",
            entrypoint="rearguard.playbooks.model_compromise:model_compromise",
            atlas_ids=("AML.T0018", "AML.T0031"),
            provisions=("5.1", "5.2", "5.3", "5.3.1", "6.5", "8.1.2", "12.1"),
            steps=(_OPENED, *_RESTORE, _RECOVERED),
            asset_kinds=(AssetKind.MODEL, AssetKind.PROMPT, AssetKind.CONFIG),
            drill=DrillRule(tamper_production_bytes),
            sweep=SweepRule(tampered_kinds=(AssetKind.MODEL,)),
            profile=ExportProfile(
                stix_incident_types=("compromised-system",),
                oecd_harm_types=("economic/property", "reputational"),
                harm_description=(
                    "a tampered model, prompt or configuration artifact was served in "
                    "production: its outputs could not be trusted for the time it was exposed"
                ),
            ),
        ),
        IncidentType(
            type="prompt_tampering",
            title="Altered system prompt or guardrail text: roll back, record what changed",
            entrypoint="rearguard.playbooks.tampering:prompt_tampering",
            atlas_ids=("AML.T0051",),
            provisions=("5.2", "5.3", "5.3.1", "6.5", "8.3", "12.1"),
            steps=(_OPENED, *_TAMPERING, _RECOVERED),
            asset_kinds=(AssetKind.PROMPT,),
            drill=DrillRule(tamper_production_text),
            sweep=SweepRule(tampered_kinds=(AssetKind.PROMPT,)),
        ),
        IncidentType(
            type="config_tampering",
            title="Altered serving or guardrail configuration: roll back, record what changed",
            entrypoint="rearguard.playbooks.tampering:config_tampering",
            atlas_ids=("AML.T0081",),
            provisions=("5.2", "5.3", "5.3.1", "6.5", "8.3", "12.1"),
            steps=(_OPENED, *_TAMPERING, _RECOVERED),
            asset_kinds=(AssetKind.CONFIG,),
            drill=DrillRule(tamper_production_text),
            sweep=SweepRule(tampered_kinds=(AssetKind.CONFIG,)),
        ),
        IncidentType(
            type="degradation",
            title="Production fails its validation check: roll back to a version that passes",
            entrypoint="rearguard.playbooks.degradation:degradation",
            atlas_ids=("AML.T0031", "AML.T0015"),
            provisions=("5.3", "5.3.1", "6.5", "12.1"),
            steps=(
                _OPENED,
                "confirm_degradation",
                "select_known_good",
                "await_approval",
                "rollback",
                "validate",
                _RECOVERED,
            ),
            asset_kinds=(AssetKind.MODEL, AssetKind.PROMPT, AssetKind.CONFIG),
            # The asset's validation command must catch the tampered bytes the drill plants.
            drill=DrillRule(tamper_production_bytes, needs_validation=True),
        ),
        IncidentType(
            type="supply_chain",
            title="Malicious third-party file: denylist it, quarantine every version holding it",
            entrypoint="rearguard.playbooks.supply_chain:supply_chain",
            atlas_ids=("AML.T0010",),
            provisions=("5.1", "5.2", "5.3", "5.3.1", "6.5", "8.1.2", "12.1"),
            steps=(
                _OPENED,
                "denylist_digest",
                "find_digest_versions",
                "quarantine",
                _CONTAINED,
                "await_approval",
                *_SELECT_AND_ROLL_BACK,
                _RECOVERED,
            ),
            asset_kinds=(AssetKind.MODEL, AssetKind.PROMPT, AssetKind.CONFIG, AssetKind.DATASET),
            inputs=(Input.DIGEST,),
            drill=DrillRule(plant_malicious_file),
            sweep=SweepRule(dangerous_file=True),
        ),
        IncidentType(
            type="data_poisoning",
            title="Poisoned training data: follow lineage, quarantine, roll back, retrain",
            entrypoint="rearguard.playbooks.data_poisoning:data_poisoning",
            atlas_ids=("AML.T0020",),
            provisions=("5.1", "5.2", "5.3", "5.3.1", "6.5", "12.1"),
            steps=(
                _OPENED,
                "mark_dataset_suspect",
                "run_hook:freeze_ingestion",
                "trace_lineage",
                "quarantine",
                _CONTAINED,
                "await_approval",
                *_SELECT_AND_ROLL_BACK,
                "run_hook:retrain",
                _RECOVERED,
            ),
            asset_kinds=(AssetKind.DATASET, AssetKind.MODEL),
            inputs=(Input.DATASET, Input.SINCE),
            drill=DrillRule(poison_dataset),
        ),
        IncidentType(
            type="model_theft",
            title="Stolen model: verify production, rotate credentials, tell legal and privacy",
            entrypoint="rearguard.playbooks.model_theft:model_theft",
            atlas_ids=("AML.T0024", "AML.T0025"),
            provisions=("5.3", "6.5", "12.1"),
            # When production fails its verification, the model-compromise restore runs
            # between verify_production and the legal notice, which goes before any approval
            # or hook so that neither can hold it up.
            steps=(
                _OPENED,
                "verify_production",
                "notify_legal",
                "await_approval",
                "run_hook:rotate_credentials",
                _CONTAINED,
            ),
            asset_kinds=(AssetKind.MODEL,),
            drill=DrillRule(exercise_theft_response, aims_for=IncidentStatus.CONTAINED),
        ),
    )
}


def sweep_type(*, kind: AssetKind, tampered: bool) -> IncidentType | None:
    """The built-in type the integrity sweep opens for a failing asset, if any.

    Args:
        kind: the asset's kind.
        tampered: stored bytes no longer match the manifest (else: a dangerous file that does).
    """
    for spec in INCIDENT_TYPES.values():
        rule = spec.sweep
        if rule is not None and (kind in rule.tampered_kinds if tampered else rule.dangerous_file):
            return spec
    return None


@dataclass(frozen=True)
class PluginProblem:
    """A plug-in playbook that could not be added to the catalog, and why."""

    name: str
    value: str
    message: str

    def line(self) -> str:
        """One line for the user, naming the plug-in."""
        return f"plug-in playbook {self.name!r} ({self.value}) not loaded: {self.message}"


def discover_plugins() -> tuple[dict[str, IncidentType], list[PluginProblem]]:
    """Load the ``rearguard.playbooks`` entry points of the installed distributions.

    Returns:
        The plug-in types by name, and one problem per entry point that could not be used
        (its import failed, its object is not a type entry, or its type is taken).
    """
    found: dict[str, IncidentType] = {}
    problems: list[PluginProblem] = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = check_entry(point.load())
            if spec.type in INCIDENT_TYPES or spec.type in found:
                raise ValueError(f"incident type {spec.type!r} is already taken")
        except Exception as exc:  # whatever a plug-in raises, the others stay usable
            problems.append(PluginProblem(point.name, point.value, one_line(exc)))
            continue
        found[spec.type] = spec
    return found, problems


def all_incident_types() -> tuple[dict[str, IncidentType], list[PluginProblem]]:
    """Every type, built-in first then plug-ins, and the plug-ins that could not be loaded."""
    plugins, problems = discover_plugins()
    return {**INCIDENT_TYPES, **plugins}, problems


def get_incident_type(incident_type: str) -> IncidentType:
    """Return the entry of an incident type, built in or from a plug-in.

    Raises:
        NotFoundError: no playbook handles that type.
    """
    spec = INCIDENT_TYPES.get(incident_type)
    if spec is not None:
        return spec
    known_types, problems = all_incident_types()
    spec = known_types.get(incident_type)
    if spec is None:
        broken = [p.line() for p in problems if p.name == incident_type]
        known = ", ".join(sorted(known_types))
        hint = broken[0] if broken else f"known: {known}"
        raise NotFoundError(f"unknown incident type {incident_type!r}", hint=hint)
    return spec


def check_entry(value: Any) -> IncidentType:
    """Check a plug-in's entry (an :class:`IncidentType` or a mapping of its fields).

    Returns:
        The entry, its fields normalised (tuples, enums).

    Raises:
        ValueError: a field is missing, unknown or invalid.
        TypeError: the object is neither an entry nor a mapping, or a field has the wrong type.
    """
    if isinstance(value, Mapping):
        known = {f.name for f in fields(IncidentType)}
        required = {f.name for f in fields(IncidentType) if f.default is MISSING}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(map(str, unknown))}")
        missing = sorted(required - set(value))
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        value = IncidentType(**{k: value[k] for k in known & set(value)})
    if not isinstance(value, IncidentType):
        raise TypeError(f"expected a PlaybookSpec or a mapping, got {type(value).__name__}")
    # A plugin's values are not checked by its type hints: read them as any object.
    type_name: object = value.type
    entrypoint: object = value.entrypoint
    if not isinstance(type_name, str) or not _TYPE_RE.match(type_name):
        raise ValueError(f"invalid type {type_name!r}: lower-case letters, digits and _")
    if not isinstance(entrypoint, str) or not _ENTRYPOINT_RE.match(entrypoint):
        raise ValueError(f"invalid entrypoint {entrypoint!r}: write it as module:flow")
    if value.sweep is not None:
        raise ValueError("sweep rules are for built-in types: the sweep opens only those")
    for name, kind in (("drill", DrillRule), ("profile", ExportProfile)):
        if getattr(value, name) is not None and not isinstance(getattr(value, name), kind):
            raise TypeError(f"{name} must be a {kind.__name__}")
    return IncidentType(
        type=value.type,
        title=str(value.title),
        entrypoint=value.entrypoint,
        atlas_ids=_strings(value.atlas_ids, "atlas_ids"),
        provisions=_strings(value.provisions, "provisions"),
        steps=_strings(value.steps, "steps"),
        asset_kinds=tuple(AssetKind(k) for k in _strings(value.asset_kinds, "asset_kinds")),
        inputs=tuple(Input(i) for i in _strings(value.inputs, "inputs")),
        drill=value.drill,
        sweep=value.sweep,
        profile=value.profile,
    )


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of strings")
    return tuple(value)


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
