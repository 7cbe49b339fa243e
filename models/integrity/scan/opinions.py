"""Other scanners as a second opinion: their verdicts are recorded beside rearguard's.

``[scanning] engines = ["picklescan", "fickling"]`` (the ``engines`` extra) runs each named
engine on every file rearguard scans. A verdict never replaces rearguard's own findings and
never unblocks anything; it is recorded, with the engine's name and version, so that a reviewer
sees where the scanners disagree. An engine that is not installed, or that fails on a file
(fickling reads bare pickles only), says so in its verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

__all__ = ["ENGINES", "Opinion", "second_opinions"]

ENGINES = ("picklescan", "fickling")
"""The engines rearguard knows how to ask."""

Verdict = Literal["flagged", "clean", "error", "not installed"]


@dataclass(frozen=True)
class Opinion:
    """One engine's verdict on one file."""

    engine: str
    version: str | None
    file: str
    verdict: Verdict
    detail: str = ""

    def as_dict(self) -> dict[str, str | None]:
        """A JSON-friendly form."""
        return {
            "engine": self.engine,
            "version": self.version,
            "file": self.file,
            "verdict": self.verdict,
            "detail": self.detail,
        }


def second_opinions(path: Path, *, shown: str, engines: tuple[str, ...]) -> list[Opinion]:
    """Ask each engine about one file.

    Args:
        path: the file.
        shown: its name in the verdicts.
        engines: engine names, from :data:`ENGINES`.

    Returns:
        One opinion per engine, in order.
    """
    return [_ask(engine, path, shown) for engine in engines]


def _ask(engine: str, path: Path, shown: str) -> Opinion:
    try:
        installed = version(engine)
    except PackageNotFoundError:
        return Opinion(engine, None, shown, "not installed", "pip install 'rearguard[engines]'")
    try:
        flagged, detail = _VERDICTS[engine](path)
    except Exception as exc:  # another project's failure is its verdict, not ours
        return Opinion(engine, installed, shown, "error", f"{type(exc).__name__}: {exc}"[:200])
    return Opinion(engine, installed, shown, "flagged" if flagged else "clean", detail)


def _picklescan(path: Path) -> tuple[bool, str]:
    from picklescan.scanner import scan_file_path  # lazy: optional extra rearguard[engines]

    result = scan_file_path(str(path))
    names = sorted(
        {f"{g.module}.{g.name}" for g in result.globals if g.safety.value != "innocuous"}
    )
    return bool(result.infected_files or result.scan_err), ", ".join(names)[:200]


def _fickling(path: Path) -> tuple[bool, str]:
    import fickling  # lazy: optional extra rearguard[engines]

    return not fickling.is_likely_safe(str(path)), ""


_VERDICTS = {"picklescan": _picklescan, "fickling": _fickling}
