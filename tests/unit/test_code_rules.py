"""Rules of the code that no linter checks here: no private name crosses a module boundary, and
an import inside a function says why it is not at the module's top."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "flows", "notifications", "playbooks")
LAZY = "# lazy:"


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


def _imports_in_functions(node: ast.AST, *, inside: bool = False) -> Iterator[ast.stmt]:
    for child in ast.iter_child_nodes(node):
        if inside and isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        in_function = inside or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        yield from _imports_in_functions(child, inside=in_function)


def unexplained_lazy_imports(source: str) -> list[int]:
    """The lines of the imports inside functions that carry no ``# lazy: <why>`` comment, on
    one of their own lines or alone on the line above."""
    lines = source.splitlines()
    unexplained = []
    for node in _imports_in_functions(ast.parse(source)):
        first, last = node.lineno, node.end_lineno or node.lineno
        own = any(LAZY in line for line in lines[first - 1 : last])
        above = first > 1 and lines[first - 2].strip().startswith(LAZY)
        if not (own or above):
            unexplained.append(first)
    return unexplained


def test_the_lazy_import_check_finds_an_import_without_its_reason() -> None:
    source = (
        "import json\n"
        "def a():\n"
        "    import csv  # lazy: optional extra\n"
        "    import zlib\n"  # the line above is another import's reason, not its own
        "def b():\n"
        "    # lazy: CLI start-up\n"
        "    from os import (\n"
        "        path,\n"
        "    )\n"
        "    class C:\n"
        "        import ssl\n"
        "    return path, C\n"
    )
    assert unexplained_lazy_imports(source) == [4, 11]


def test_an_import_inside_a_function_says_why_it_is_not_at_the_top() -> None:
    # Imports belong at the module's top; one stays in a function only for what must wait (the
    # CLI's start-up, an optional extra, Prefect until it is configured), and says which.
    missing = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _sources()
        for line in unexplained_lazy_imports(path.read_text(encoding="utf-8"))
    ]
    assert missing == [], "imports inside functions without a `# lazy: <why>` comment:\n" + (
        "\n".join(missing)
    )


# What the CLI imports before it calls configure_prefect (and a worker before it sets
# PREFECT_WORKER_QUERY_SECONDS): Prefect reads its settings once, when it is imported.
BEFORE_PREFECT_IS_CONFIGURED = (
    "rearguard.flows.run_playbook",
    "rearguard.flows.opening",
    "rearguard.flows.approvals.decide",
    "rearguard.flows.drills.run",
    "rearguard.flows.drills.scheduler",
    "rearguard.flows.prefect_infra.deployments",
    "rearguard.flows.prefect_infra.lent",
)


def test_what_runs_before_prefect_is_configured_does_not_import_prefect() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {BEFORE_PREFECT_IS_CONFIGURED!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'prefect' in sys.modules:\n"
        "        print(name)\n"
        "        break\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert found.stdout == "", f"importing {found.stdout.strip()} imports Prefect"


# What each read command must start without, run on a home that holds an asset and an incident
# (arguments given where the command takes one): Prefect for all, SQLAlchemy for `incident list`,
# whose budget is 10x python reading the same rows with sqlite3 (bench/bench_cli.py).
READ_COMMAND_ARGUMENTS = {("incident", "show"): ["1"], ("assets", "show"): ["model-a"]}
WITHOUT_SQLALCHEMY = (["incident", "list"], ["incident", "list", "--json"])


def test_the_read_commands_import_neither_prefect_nor_what_they_need_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scenarios import add_version

    from rearguard.flows.cli.quick import READ_COMMANDS
    from rearguard.models.config.settings import load_settings
    from rearguard.models.incidents.service import open_incident
    from rearguard.models.runtime import Runtime

    home = tmp_path / "home"  # the embedded database: SQLite, as a user starts
    monkeypatch.chdir(tmp_path)
    rt = Runtime.from_settings(load_settings(home=home))
    try:
        add_version(rt, tmp_path, "model-a", "v1", kind="config")
        with rt.db.session() as session:
            open_incident(session=session, type="model_compromise", actor="t", asset_name="model-a")
    finally:
        rt.db.dispose()
    commands = [
        *WITHOUT_SQLALCHEMY,
        *([*path, *READ_COMMAND_ARGUMENTS.get(path, [])] for path in READ_COMMANDS),
    ]
    # Each command runs as the console script runs it, one after another in one interpreter:
    # the first whose run brings a forbidden module in is the one named.
    code = (
        "import contextlib, io, sys\n"
        "from rearguard.flows.cli.main import main\n"
        f"for argv in {commands!r}:\n"
        "    sys.argv = ['rearguard', *argv]\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main()\n"
        f"    forbidden = ['prefect'] + ['sqlalchemy'] * (argv in {list(WITHOUT_SQLALCHEMY)!r})\n"
        "    if found := [name for name in forbidden if name in sys.modules]:\n"
        "        print(' '.join(argv), 'imports', *found)\n"
        "        break\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REARGUARD_", "PREFECT_"))}
    env.update(REARGUARD_HOME=str(home), PREFECT_HOME=str(tmp_path / "prefect"))
    found = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=env,
    )
    assert found.stdout == "", found.stdout
