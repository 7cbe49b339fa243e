"""The console script's entry point: what can start before the command line's imports do.

Importing typer, click, rich and the command modules takes about 0.2 s, and a command's own
imports (SQLAlchemy, SQLModel, pydantic) several tenths more. ``assets verify`` uses that time:
before anything else is imported, it forks a child that hashes the asset's stored files (see
:mod:`rearguard.models.integrity.prehash`). A command that runs a playbook is handed to this
home's ``rearguard serve`` first, when one runs and takes it, without those imports (see
:mod:`rearguard.flows.cli.handoff`). Every other command goes straight to the CLI.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rearguard.flows.cli.handoff import hand_off, leave, split_root_options
from rearguard.flows.cli.prompt_exit import PromptExit

if TYPE_CHECKING:
    from rearguard.models.integrity.prehash import HashedAhead


def _hash_ahead(argv: list[str]) -> HashedAhead | None:
    """For ``[--home DIR] assets verify [NAME]``, start hashing the local store's files and
    return the child's handle (None for any other command).

    Only a guess from the command line; the command itself works out everything again, and
    reuses a digest only for the same unchanged file.
    """
    root_options, argv = split_root_options(argv)
    if argv[:2] != ["assets", "verify"]:
        return None
    from rearguard.models.config.home import default_home  # lazy: CLI start-up (assets verify only)
    from rearguard.models.integrity import prehash  # lazy: CLI start-up (assets verify only)

    home = Path(root_options["--home"]) if "--home" in root_options else default_home()
    names = [a for a in argv[2:] if not a.startswith("-")]
    return prehash.start(prehash.store_files(home, names[0] if len(names) == 1 else None))


def main() -> None:
    """Run the ``rearguard`` command (in this home's serve, when it runs and takes it)."""
    if (handed := hand_off(sys.argv[1:])) is not None:
        leave(handed)
    # Before anything registers an exit handler: the prompt exit runs after all of them.
    prompt = PromptExit.install()
    ahead = _hash_ahead(sys.argv[1:])
    from rearguard.flows.cli.main import (  # lazy: CLI start-up (fork the hashing child first)
        main as run,
    )

    try:
        run(hashed_ahead=ahead)
    except SystemExit as exc:
        prompt.record(exc.code)
        raise
    prompt.record(0)


if __name__ == "__main__":  # the background host: python -m rearguard.flows.cli.launch
    main()
