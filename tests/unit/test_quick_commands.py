"""Read commands called without typer's parameter processing (flows/cli/quick.py): a plain
command line gives what typer would, and every other line is left to typer."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from scenarios import add_version

from rearguard.flows.cli.context import Invocation
from rearguard.flows.cli.main import COMMANDS, build_app
from rearguard.flows.cli.quick import READ_COMMANDS, plain_read
from rearguard.models.incidents.service import open_incident
from rearguard.models.runtime import Runtime

PLAIN = {
    "flags": ["incident", "list", "--json", "--drills"],
    "root options": ["--home", "h", "--database-url=sqlite:///x.db", "assets", "list"],
    "a number argument": ["incident", "show", "12"],
    "a name argument": ["assets", "show", "model-a", "--json"],
    "another flag": ["approvals", "list", "--pending"],
    "a top-level command": ["status", "--json"],
}
LEFT_TO_TYPER = {
    "help": ["incident", "list", "--help"],
    "a repeated flag": ["incident", "list", "--json", "--json"],
    "an option with a value": ["approvals", "list", "--limit", "5"],
    "a number out of range": ["incident", "show", "0"],
    "a number with a leading zero": ["incident", "show", "012"],
    "a missing argument": ["incident", "show"],
    "an extra argument": ["incident", "list", "x"],
    "an empty root option": ["--home=", "incident", "list"],
    "a root option without its value": ["--home", "--json", "incident", "list"],
    "a command that writes": ["incident", "open", "--type", "model_compromise"],
    "the root's help": ["--help"],
}


@pytest.mark.parametrize("argv", PLAIN.values(), ids=PLAIN.keys())
def test_a_plain_read_command_line_is_called_directly(argv: list[str]) -> None:
    assert plain_read(argv, commands=COMMANDS) is not None


@pytest.mark.parametrize("argv", LEFT_TO_TYPER.values(), ids=LEFT_TO_TYPER.keys())
def test_any_other_line_is_left_to_typer(argv: list[str]) -> None:
    assert plain_read(argv, commands=COMMANDS) is None


ARGUMENTS = {("incident", "show"): ["1"], ("assets", "show"): ["model-a"]}


@pytest.mark.parametrize("path", [p for p in READ_COMMANDS if p != ("status",)], ids=" ".join)
def test_each_read_command_prints_what_typer_would_have_it_print(
    path: tuple[str, ...],
    runtime: Runtime,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_version(runtime, tmp_path, "model-a", "v1", kind="config")
    with runtime.db.session() as session:
        open_incident(session=session, type="model_compromise", actor="t", asset_name="model-a")
    monkeypatch.setenv("COLUMNS", "80")
    root = ["--home", str(runtime.settings.home), "--database-url", runtime.db.url]
    for variant in ([], ["--json"]):
        argv = [*root, *path, *ARGUMENTS.get(path, []), *variant]
        quick = plain_read(argv, commands=COMMANDS)
        assert quick is not None
        capsys.readouterr()
        by_typer = printed(capsys, partial(through_typer, argv))
        assert printed(capsys, quick) == by_typer != ""


def through_typer(argv: list[str], invocation: Invocation) -> None:
    """The command line run by the typer app, as ``main`` runs it."""
    build_app(argv)(argv, standalone_mode=False, obj=invocation)


def printed(capsys: pytest.CaptureFixture[str], call: Callable[[Invocation], object]) -> str:
    """What ``call`` prints (standard output and error) in an invocation of its own."""
    invocation = Invocation()
    try:
        call(invocation)
    finally:
        invocation.close()
    return "".join(capsys.readouterr())
