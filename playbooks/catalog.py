"""The playbook catalog: each incident type's entry, and the Prefect flow that handles it.

A type's entry (:class:`PlaybookSpec`) is one object holding everything about the type, kept
as plain data in :mod:`rearguard.models.incidents.types` so that models/ (drills, the sweep)
reads it without Prefect. The catalog adds what only the playbooks layer may do: import the
flow an entry names (:func:`load_flow`).

Users add playbooks as plug-ins: an installed distribution that declares an entry point in the
``rearguard.playbooks`` group, whose object is a :class:`PlaybookSpec` (or a mapping with the
same fields); see :mod:`rearguard.models.incidents.types`.
"""

from __future__ import annotations

import importlib
from typing import Any

from rearguard.models.errors import ConfigurationError
from rearguard.models.incidents.types import (
    ENTRY_POINT_GROUP,
    INCIDENT_TYPES,
    Input,
    PluginProblem,
    all_incident_types,
    get_incident_type,
    one_line,
)
from rearguard.models.incidents.types import IncidentType as PlaybookSpec

__all__ = [
    "CATALOG",
    "ENTRY_POINT_GROUP",
    "Input",
    "PlaybookSpec",
    "PluginProblem",
    "all_playbooks",
    "get_playbook",
    "load_flow",
]

CATALOG = INCIDENT_TYPES
"""The built-in entries, by type."""

all_playbooks = all_incident_types
get_playbook = get_incident_type


def load_flow(spec: PlaybookSpec) -> Any:
    """Import and return the Prefect flow of an entry.

    Raises:
        ConfigurationError: the flow cannot be imported (a broken plug-in, typically).
    """
    module, _, name = spec.entrypoint.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except Exception as exc:  # a plug-in's module may raise anything while importing
        raise ConfigurationError(
            f"playbook {spec.type!r}: cannot load {spec.entrypoint}: {one_line(exc)}",
            hint="fix or uninstall the package that provides it",
        ) from exc
