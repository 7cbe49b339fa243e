"""``rearguard scan PATH...``: the artifact scanner on files and directories, nothing registered."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from rearguard.flows.cli.context import JsonOption, byte_progress, emit_json, err, out
from rearguard.models.errors import EXIT_INTEGRITY, UsageError


def scan(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or directories (every file under it).")
    ],
    json_output: JsonOption = False,
) -> None:
    """Scan files by their content for code that would run on load, without loading them.

    Every file is identified by its bytes, whatever its name: pickles of any protocol,
    containers (zip, tar, 7z, compressed streams, PyTorch and numpy archives) opened member by
    member. One line per finding: where (file!member @offset), severity, construct, reason.
    Exits 3 when a finding blocks trust ([scanning] block), 0 when clean, 2 when an input is
    missing or unreadable. Engines named in [scanning] engines give a second opinion on each
    file, shown beside (never instead of) rearguard's findings.
    """
    from rearguard.models.config.settings import load_settings
    from rearguard.models.integrity.scan.engine import iter_files, scan_file
    from rearguard.models.integrity.scan.findings import Finding
    from rearguard.models.integrity.scan.opinions import Opinion, second_opinions
    from rearguard.models.integrity.scan.policy import policy_for
    from rearguard.models.integrity.verification import finding_dict

    files: list[tuple[Path, int]] = []
    for root in paths:
        try:
            files += [(path, path.stat().st_size) for path in iter_files(root)]
        except OSError as exc:
            raise UsageError(f"cannot read {root}: {exc.strerror or exc}") from exc
    policy = policy_for(load_settings(), "")
    findings: list[Finding] = []
    opinions: list[Opinion] = []
    with byte_progress("scanning", sum(size for _, size in files)) as progress:
        for path, size in files:
            try:
                findings += scan_file(path, limits=policy.limits)
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
            if progress is not None:
                progress(size)
    if policy.engines:
        opinions = second_opinions([(path, str(path)) for path, _ in files], engines=policy.engines)
    blocking = [finding for finding in findings if policy.blocks(finding)]
    if json_output:
        emit_json(
            {
                "ok": not blocking,
                "files": len(files),
                "findings": [
                    {**finding_dict(finding), "blocks": policy.blocks(finding)}
                    for finding in findings
                ],
                "opinions": [opinion.as_dict() for opinion in opinions],
            }
        )
    else:
        for finding in findings:
            out.print(escape(finding.describe()))
        for opinion in opinions:
            err.print(
                escape(
                    f"second opinion: {opinion.engine} {opinion.version or ''} on {opinion.file}: "
                    f"{opinion.verdict}" + (f" ({opinion.detail})" if opinion.detail else "")
                )
            )
        err.print(
            f"{len(files)} file(s) scanned, {len(findings)} finding(s), "
            f"{len(blocking)} blocking trust"
        )
    if blocking:
        raise typer.Exit(EXIT_INTEGRITY)
