"""Read commands called without typer's parameter processing, when their command line is plain.

Typer (0.2x) passes every parameter of a command line, its own ``--help`` included, through a
pydantic ``TypeAdapter``: importing pydantic and building those takes about as long as the
whole rest of ``rearguard incident list`` (bench/bench_cli.py). A read command's line is
mostly plain: the root options, the command's name, its positional arguments and its flags
(``incident list --json``, ``incident show 3``). Such a line is matched here against the
command's own typer declarations, and the command is called with the values typer would give
it. Any other line (``--help``, an option given a value, a mistake) is left to typer, which
answers it as always.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import typer
from typer.core import TyperCommand
from typer.models import ArgumentInfo, OptionInfo, ParameterInfo

from rearguard.flows.cli.context import Invocation
from rearguard.flows.cli.handoff import ROOT_OPTIONS as ROOT_OPTION_NAMES

READ_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("incident", "list"),
    ("incident", "show"),
    ("assets", "list"),
    ("assets", "show"),
    ("approvals", "list"),
    ("status",),
)
"""The commands that only read: called here when their line is plain, and none of them imports
Prefect (tests/unit/test_code_rules.py)."""

ROOT_OPTIONS = {option: option[2:].replace("-", "_") for option in ROOT_OPTION_NAMES}
"""The root options that take a value (``rearguard --home DIR ...``), by the name they set."""

QuickCall = Callable[[Invocation], Any]
"""Runs the command matched in the invocation; returns its exit status (None: 0)."""

_NUMBER = re.compile(r"0|[1-9][0-9]{0,9}")


def plain_read(
    argv: list[str], *, commands: Mapping[str, tuple[str, str, bool]]
) -> QuickCall | None:
    """The call of a read command whose command line ``argv`` is plain, or None.

    Args:
        argv: the command line, after the program's name.
        commands: every command's name -> (module under rearguard.flows.cli, attribute, is
            it a group), as the app is built from.
    """
    root = _root_options(argv)
    if root is None:
        return None
    given, rest = root
    path = next((p for p in READ_COMMANDS if tuple(rest[: len(p)]) == p), None)
    if path is None:
        return None
    module, attribute, group = commands[path[0]]
    target = getattr(importlib.import_module(f"rearguard.flows.cli.{module}"), attribute)
    callback = _group_command(target, path[-1]) if group else target
    matched = _arguments(callback, rest[len(path) :]) if callback is not None else None
    if callback is None or matched is None:
        return None
    context_name, values = matched

    def call(run: Invocation) -> Any:
        home = given.get("home")
        run.home, run.database_url = Path(home) if home else None, given.get("database_url")
        context = typer.Context(TyperCommand(path[-1]), obj=run, info_name=path[-1])
        try:
            return callback(**{context_name: context}, **values)
        except typer.Exit as exc:
            return exc.exit_code  # as typer returns it outside standalone mode

    return call


def _root_options(argv: list[str]) -> tuple[dict[str, str], list[str]] | None:
    """The root options at the start of ``argv`` (each at most once, a plain value) and the
    rest; None when one is given in a form left to typer."""
    given: dict[str, str] = {}
    index = 0
    while index < len(argv) and argv[index].startswith("--"):
        option, equals, value = argv[index].partition("=")
        if option not in ROOT_OPTIONS or ROOT_OPTIONS[option] in given:
            break
        if not equals:
            index += 1
            value = argv[index] if index < len(argv) else ""
        if not value or value.startswith("-"):
            return None
        given[ROOT_OPTIONS[option]] = value
        index += 1
    return given, argv[index:]


def _group_command(app: Any, name: str) -> Callable[..., Any] | None:
    """The function of a group's command ``name`` (None when the group has its own options)."""
    if not isinstance(app, typer.Typer) or app.registered_callback is not None:
        return None
    for info in app.registered_commands:
        if info.name == name and info.callback is not None:
            return info.callback
    return None


def _arguments(
    callback: Callable[..., Any], tokens: list[str]
) -> tuple[str, dict[str, Any]] | None:
    """The name of ``callback``'s context parameter and the values of the others for the
    command line's ``tokens``, when each of its parameters is declared plainly and the tokens
    are its flags and its positional arguments, each valid; else None."""
    try:
        parameters = inspect.signature(callback, eval_str=True).parameters
    except NameError:  # an annotation only a type checker can read: left to typer
        return None
    context_name = None
    flags: dict[str, str] = {}
    positional: list[tuple[str, Any, ParameterInfo]] = []
    values: dict[str, Any] = {}
    for name, parameter in parameters.items():
        hint = parameter.annotation
        if hint is typer.Context:
            context_name = name
            continue
        if get_origin(hint) is not Annotated:
            return None
        kind, info = get_args(hint)[:2]
        if isinstance(info, ArgumentInfo) and parameter.default is inspect.Parameter.empty:
            if kind not in (int, str) or info.clamp or info.callback is not None:
                return None
            positional.append((name, kind, info))
        elif isinstance(info, OptionInfo) and parameter.default is not inspect.Parameter.empty:
            values[name] = parameter.default  # unless the line sets it, a plain flag
            if kind is bool and parameter.default is False and _plain_flag(info):
                flags.update(dict.fromkeys(_declarations(info), name))
        else:
            return None
    arguments = [token for token in tokens if not token.startswith("-")]
    set_flags = [flags.get(token) for token in tokens if token.startswith("-")]
    if (
        context_name is None
        or None in set_flags
        or len(set(set_flags)) != len(set_flags)
        or len(arguments) != len(positional)
    ):
        return None
    values.update(dict.fromkeys((f for f in set_flags if f is not None), True))
    for (name, kind, info), token in zip(positional, arguments, strict=True):
        if kind is int:
            if not _NUMBER.fullmatch(token) or not _within(int(token), info):
                return None
            values[name] = int(token)
        else:
            values[name] = token
    return context_name, values


def _declarations(info: OptionInfo) -> tuple[str, ...]:
    """An option's names: in ``Annotated``, typer.Option's first argument is its first name."""
    first = (info.default,) if isinstance(info.default, str) else ()
    return (*first, *(info.param_decls or ()))


def _plain_flag(info: OptionInfo) -> bool:
    """A flag named by long names only (without them, typer makes ``--x/--no-x``), with
    nothing run or read when it is parsed."""
    names = _declarations(info)
    return (
        bool(names)
        and all(d.startswith("--") and "/" not in d for d in names)
        and info.callback is None
        and info.envvar is None
        and not info.is_eager
        and not info.prompt
    )


def _within(value: int, info: ParameterInfo) -> bool:
    return (info.min is None or value >= info.min) and (info.max is None or value <= info.max)
