"""Rules of the code that no linter checks here: no private name crosses a module boundary."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "flows", "notifications", "playbooks")


def _sources() -> list[Path]:
    return sorted(path for part in PACKAGES for path in (ROOT / part).rglob("*.py"))


def test_the_package_sources_are_found() -> None:
    assert len(_sources()) > 100


def test_no_private_name_is_imported_from_another_module() -> None:
    crossings: list[str] = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(
                "rearguard."
            ):
                continue
            for alias in node.names:
                if alias.name.startswith("_"):
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    crossings.append(f"{where}: {node.module}.{alias.name}")
    assert crossings == [], "private names imported across modules:\n" + "\n".join(crossings)
