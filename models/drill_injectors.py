"""Compromise injectors: per playbook type, the simulated attack a drill plants in its sandbox.

An injector is ``fn(*, runtime, asset) -> dict``: ``runtime`` is the sandbox's (drill mode),
``asset`` the drilled asset; it alters the sandbox so that the playbook has something real to
recover from, and returns what it did (recorded with the drill run). A new playbook type
plugs in with ``@injector("its_type")``. Injectors work on the sandbox only, and replace files
with :func:`rearguard.models.drill_sandbox.replace_file`, never write into them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO

from rearguard.models.assets import alias_version, get_asset
from rearguard.models.drill_sandbox import replace_file
from rearguard.models.errors import OperationFailed, UsageError
from rearguard.models.runtime import Runtime

Injector = Callable[..., dict[str, Any]]
INJECTORS: dict[str, Injector] = {}
TAMPER_MARK = b"\x00rearguard-drill-tamper\x00"


def injector(playbook_type: str) -> Callable[[Injector], Injector]:
    """Register the decorated function as the injector of a playbook type."""

    def register(function: Injector) -> Injector:
        INJECTORS[playbook_type] = function
        return function

    return register


def get_injector(playbook_type: str) -> Injector:
    """Return the injector of a playbook type.

    Raises:
        UsageError: no injector exists, so that playbook cannot be drilled yet.
    """
    found = INJECTORS.get(playbook_type)
    if found is None:
        known = ", ".join(sorted(INJECTORS))
        raise UsageError(
            f"playbook {playbook_type!r} cannot be drilled", hint=f"drillable: {known}"
        )
    return found


def production_label(runtime: Runtime, asset: str) -> str:
    """The label production serves in the sandbox.

    Raises:
        OperationFailed: the asset has no production version to compromise.
    """
    alias = runtime.settings.registry.alias
    with runtime.db.read_session() as session:
        current = alias_version(
            session=session, asset=get_asset(session=session, name=asset), alias=alias
        )
    if current is None:
        raise OperationFailed(f"{asset} has no {alias} version to compromise in a drill")
    return current.label


def _overwrite_start(handle: BinaryIO) -> None:
    handle.write(TAMPER_MARK)


@injector("model_compromise")
def tamper_production_bytes(*, runtime: Runtime, asset: str) -> dict[str, Any]:
    """AML.T0018: overwrite the start of every file production serves (in the sandbox)."""
    label = production_label(runtime, asset)
    files = runtime.registry.version_files(asset=asset, label=label)
    for path in files.values():
        replace_file(path, _overwrite_start)
    return {"compromise": "tampered bytes", "version": label, "files": sorted(files)}
