"""The layer rules the package's folders promise, read from the source's imports.

models/ and notifications/ are plain Python: no Prefect, no flows, no playbooks. Only the CLI
imports the CLI. Imports inside functions count too: they are imports all the same.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLAIN = ("models", "notifications")
FORBIDDEN_IN_PLAIN = ("prefect", "rearguard.flows", "rearguard.playbooks")


def imports(folder: str) -> Iterator[tuple[Path, str]]:
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                yield from ((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield path, node.module


def reaches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_models_and_notifications_import_no_prefect_flows_or_playbooks() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {module}"
        for folder in PLAIN
        for path, module in imports(folder)
        if any(reaches(module, prefix) for prefix in FORBIDDEN_IN_PLAIN)
    ]
    assert found == []


def test_only_the_cli_imports_the_cli() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {module}"
        for folder in ("models", "notifications", "flows", "playbooks")
        for path, module in imports(folder)
        if reaches(module, "rearguard.flows.cli")
        and not path.is_relative_to(ROOT / "flows" / "cli")
    ]
    assert found == []
