"""Other scanners as a second opinion: their verdicts are recorded beside rearguard's.

``[scanning] engines = ["picklescan", "fickling", "modelaudit"]`` runs each named engine on
every file rearguard scans. A verdict never replaces rearguard's own findings and never
unblocks anything; it is recorded, with the engine's name and version, so that a reviewer sees
where the scanners disagree. An engine that is not installed, or that fails on a file (fickling
reads bare pickles only), says so in its verdict: never silently clean.

picklescan and fickling are libraries, called in-process (the ``engines`` extra). modelaudit is
run as its command (``modelaudit`` on ``PATH``), installed on its own (``pipx install
modelaudit``): it brings some 80 packages (cloud storage SDKs, a telemetry client, pinned numpy)
that rearguard's environment should not have to hold. It is run once per version (all its
files on one command line), with its telemetry and its result cache off.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

__all__ = ["ENGINES", "Opinion", "engine_versions", "second_opinions"]

ENGINES = ("picklescan", "fickling", "modelaudit")
"""The engines rearguard knows how to ask."""

Verdict = Literal["flagged", "clean", "error", "not installed"]

_INSTALL = {
    "picklescan": "install rearguard[engines]",
    "fickling": "install rearguard[engines]",
    "modelaudit": "install modelaudit so that `modelaudit` is on PATH (pipx install modelaudit)",
}
# Files per modelaudit command line (each one's startup costs about a second).
_MODELAUDIT_BATCH = 200
_MODELAUDIT_TIMEOUT_S = 3600
# modelaudit's severities that its own exit status counts as security findings.
_MODELAUDIT_FLAGS = frozenset({"warning", "critical"})


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


def engine_versions(engines: Sequence[str]) -> dict[str, str | None]:
    """The installed version of each engine, None for one that is not installed.

    Args:
        engines: engine names, from :data:`ENGINES`.
    """
    return {engine: _installed(engine) for engine in engines}


def second_opinions(files: Sequence[tuple[Path, str]], *, engines: Sequence[str]) -> list[Opinion]:
    """Ask each engine about some files (a version's, or those ``rearguard scan`` was given).

    Args:
        files: each file's path now, and its name in the verdicts.
        engines: engine names, from :data:`ENGINES`.

    Returns:
        One opinion per engine and file, engine by engine, files in order.
    """
    opinions: list[Opinion] = []
    for engine in engines:
        installed = _installed(engine)
        if installed is None:
            opinions += [
                Opinion(
                    engine,
                    None,
                    shown,
                    "not installed",
                    f"not scanned by {engine}: {_INSTALL[engine]}",
                )
                for _, shown in files
            ]
        elif engine == "modelaudit":
            for start in range(0, len(files), _MODELAUDIT_BATCH):
                opinions += _modelaudit(files[start : start + _MODELAUDIT_BATCH], installed)
        else:
            opinions += [_in_process(engine, installed, path, shown) for path, shown in files]
    return opinions


def _installed(engine: str) -> str | None:
    if engine == "modelaudit":
        return _modelaudit_version()
    try:
        return version(engine)
    except PackageNotFoundError:
        return None


def _in_process(engine: str, installed: str, path: Path, shown: str) -> Opinion:
    try:
        flagged, detail = _LIBRARIES[engine](path)
    except Exception as exc:  # another project's failure is its verdict, not ours
        return Opinion(engine, installed, shown, "error", f"{type(exc).__name__}: {exc}"[:200])
    return Opinion(engine, installed, shown, "flagged" if flagged else "clean", detail)


def _picklescan(path: Path) -> tuple[bool, str]:
    from picklescan.scanner import scan_file_path  # lazy: the engines extra

    result = scan_file_path(str(path))
    names = sorted(
        {f"{g.module}.{g.name}" for g in result.globals if g.safety.value != "innocuous"}
    )
    return bool(result.infected_files or result.scan_err), ", ".join(names)[:200]


def _fickling(path: Path) -> tuple[bool, str]:
    import fickling  # lazy: the engines extra

    return not fickling.is_likely_safe(str(path)), ""


_LIBRARIES: dict[str, Callable[[Path], tuple[bool, str]]] = {
    "picklescan": _picklescan,
    "fickling": _fickling,
}


# modelaudit, as a command


def _modelaudit_environment() -> dict[str, str]:
    # Its telemetry is on by default and reports to a third party: a scan stays on this host.
    return {**os.environ, "PROMPTFOO_DISABLE_TELEMETRY": "1", "NO_ANALYTICS": "1"}


def _modelaudit_version() -> str | None:
    command = shutil.which("modelaudit")
    if command is None:
        return None
    try:
        done = subprocess.run(  # a fixed command line, no shell
            [command, "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            env=_modelaudit_environment(),
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    # "modelaudit, version 0.2.54"
    words = done.stdout.strip().split()
    return words[-1] if done.returncode == 0 and words else None


def _modelaudit(files: Sequence[tuple[Path, str]], installed: str) -> list[Opinion]:
    """One modelaudit command on the files; each file's verdict from the issues it reports."""
    command = shutil.which("modelaudit")
    paths = [str(path.resolve()) for path, _ in files]
    with tempfile.TemporaryDirectory(prefix="rearguard-modelaudit-") as scratch:
        report = Path(scratch, "report.json")
        try:
            done = subprocess.run(  # our own argument list, no shell
                [
                    str(command),
                    "scan",
                    "--format",
                    "json",
                    "--output",
                    str(report),
                    "--no-cache",
                    "--quiet",
                    "--",
                    *paths,
                ],
                capture_output=True,
                text=True,
                timeout=_MODELAUDIT_TIMEOUT_S,
                env=_modelaudit_environment(),
                check=False,
            )
            parsed: Any = json.loads(report.read_text(encoding="utf-8"))
        except subprocess.TimeoutExpired:
            return _all(files, installed, "error", f"no answer in {_MODELAUDIT_TIMEOUT_S} s")
        except (OSError, ValueError) as exc:
            return _all(files, installed, "error", f"no report: {exc}"[:200])
    issues = parsed.get("issues") if isinstance(parsed, dict) else None
    if done.returncode not in (0, 1, 2) or not isinstance(issues, list):
        tail = (done.stderr.strip().splitlines() or [""])[-1]
        return _all(files, installed, "error", f"exit {done.returncode}: {tail}"[:200])
    flagged: dict[str, list[str]] = {path: [] for path in paths}
    for issue in issues:
        if not isinstance(issue, dict) or issue.get("severity") not in _MODELAUDIT_FLAGS:
            continue
        owner = _owner(str(issue.get("location") or ""), paths)
        for path in [owner] if owner is not None else paths:
            flagged[path].append(str(issue.get("message") or ""))
    # Exit 2: an operational error or an inconclusive scan; what it did not flag is unknown.
    unflagged: Verdict = "error" if done.returncode == 2 else "clean"
    return [
        Opinion(
            "modelaudit",
            installed,
            shown,
            "flagged" if flagged[path] else unflagged,
            "; ".join(dict.fromkeys(flagged[path]))[:200]
            if flagged[path]
            else ("inconclusive (modelaudit exit 2)" if unflagged == "error" else ""),
        )
        for path, (_, shown) in zip(paths, files, strict=True)
    ]


def _owner(location: str, paths: Sequence[str]) -> str | None:
    """The scanned file an issue's location names: ``PATH``, ``PATH (pos N)``, ``PATH:MEMBER``."""
    owners = [
        path for path in paths if location == path or location.startswith((f"{path} ", f"{path}:"))
    ]
    return max(owners, key=len) if owners else None


def _all(
    files: Sequence[tuple[Path, str]], installed: str, verdict: Verdict, detail: str
) -> list[Opinion]:
    return [Opinion("modelaudit", installed, shown, verdict, detail) for _, shown in files]
