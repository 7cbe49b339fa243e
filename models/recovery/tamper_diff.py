"""What tampering changed: a unified diff between a restored and a tampered version, redacted.

The prompt- and config-tampering playbooks record it in the timeline after the rollback, so
the review shows what an attacker altered (Code of Practice 8.3: log prompt and config
changes). Secrets on either side are redacted by pattern before diffing, with numbered markers
so that a changed secret still shows as a changed line. The diff is bounded; binary or
non-UTF-8 files and files too large to diff are named with their SHA-256 on each side.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from pathlib import Path

from rearguard.models.audit.redaction import redact_text, redact_texts_consistently
from rearguard.models.errors import NotFoundError
from rearguard.models.incidents.service import get_incident
from rearguard.models.recovery.results import ChangedFile, DiffText, Skipped, TamperDiff
from rearguard.models.recovery.targets import incident_asset
from rearguard.models.runtime import Runtime

MAX_DIFF_CHARS = 16_000
"""At most this many characters of diff go into the timeline; the rest is cut with a marker."""
MAX_TEXT_BYTES = 512 * 1024
"""Larger files are not diffed (difflib is quadratic in the worst case); their hashes are."""
_CONTEXT_LINES = 3


def diff_versions(
    *,
    restored: dict[str, Path],
    tampered: dict[str, Path],
    restored_name: str,
    tampered_name: str,
    max_chars: int = MAX_DIFF_CHARS,
) -> DiffText:
    """Diff two versions' files, restored (``a/``) against tampered (``b/``), secrets redacted.

    Args:
        restored: the restored version's files, by relative path.
        tampered: the tampered version's files as found now, by relative path.
        restored_name: the restored side's name in the headers (e.g. its label).
        tampered_name: the tampered side's name in the headers.
        max_chars: the bound on the diff text.

    Returns:
        The changed files and the diff text; a file's ``change`` is ``modified``, ``added``
        (only in the tampered version), ``removed``, ``binary``, ``too large`` or ``not a
        regular file`` (a link is named, never followed). Identical files are left out.
    """
    files: list[ChangedFile] = []
    notes: dict[str, str] = {}  # path -> what is said instead of a text diff
    text_pairs: list[tuple[str, str, str]] = []  # (path, restored text, tampered text)
    for path in sorted(set(restored) | set(tampered)):
        before, after = restored.get(path), tampered.get(path)
        shown = redact_text(path)
        odd = [p for p in (before, after) if p is not None and (p.is_symlink() or not p.is_file())]
        if odd:
            # A planted link could point anywhere (/etc/shadow): say where, never read it.
            files.append(ChangedFile(path=shown, change="not a regular file"))
            notes[shown] = "not a regular file: " + ", ".join(_describe_odd(p) for p in odd)
            continue
        if _size(before) > MAX_TEXT_BYTES or _size(after) > MAX_TEXT_BYTES:
            digests = _sha256(before), _sha256(after)
            if digests[0] != digests[1]:
                files.append(ChangedFile(path=shown, change="too large"))
                notes[shown] = f"too large to diff, sha256 {digests[0]} -> {digests[1]}"
            continue
        a, b = _read(before), _read(after)
        if a == b:
            continue
        texts = _text(a), _text(b)
        if texts[0] is None or texts[1] is None:
            files.append(ChangedFile(path=shown, change="binary"))
            notes[shown] = f"binary, sha256 {_sha256(before)} -> {_sha256(after)}"
            continue
        change = "added" if before is None else "removed" if after is None else "modified"
        files.append(ChangedFile(path=shown, change=change))
        text_pairs.append((shown, texts[0], texts[1]))
    # One numbering across every file: a secret that moved between files keeps its number.
    redacted = iter(redact_texts_consistently([t for _, a, b in text_pairs for t in (a, b)]))
    diffs: dict[str, str] = {}
    for shown, _, _ in text_pairs:
        old, new = next(redacted), next(redacted)
        lines = list(
            difflib.unified_diff(
                old.splitlines(),
                new.splitlines(),
                fromfile=f"a/{restored_name}/{shown}",
                tofile=f"b/{tampered_name}/{shown}",
                n=_CONTEXT_LINES,
                lineterm="",
            )
        )
        diffs[shown] = "\n".join(lines) + "\n" if lines else ""
        if not lines:
            notes[shown] = "differs only in line endings or the final newline"
    text = "".join(diffs.get(f.path) or f"{f.path}: {notes[f.path]}\n" for f in files)
    truncated = len(text) > max_chars
    if truncated:
        text = text[:max_chars] + (
            f"\n[diff truncated: {len(text) - max_chars} more characters; "
            "the incident's evidence directory holds the tampered files]\n"
        )
    return DiffText(files=tuple(files), diff=text, truncated=truncated)


def _describe_odd(path: Path) -> str:
    if path.is_symlink():
        return "symbolic link to " + redact_text(os.readlink(path)) + " (not followed)"
    return "a directory" if path.is_dir() else "a special file"


def _size(path: Path | None) -> int:
    return path.stat().st_size if path is not None else 0


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def _text(content: bytes | None) -> str | None:
    """The text of a file, "" for a missing one, None when it is binary or not UTF-8."""
    if content is None:
        return ""
    if b"\x00" in content:
        return None
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _sha256(path: Path | None) -> str:
    if path is None:
        return "(absent)"
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            hasher.update(chunk)
    return hasher.hexdigest()


def record_diff(*, runtime: Runtime, incident_id: int, label: str) -> TamperDiff | Skipped:
    """Diff the restored version ``label`` against the tampered one, as found on disk now.

    The tampered version is the one in production when the incident opened; quarantine keeps
    its content in place, so it is still there to read. Read-only: a rerun gives the same diff.

    Returns:
        The diff, from the tampered label to ``label``; skipped when no version was in
        production when the incident opened.
    """
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
        asset = incident_asset(session, incident).name
        tampered_label = incident.state.get("compromised")
    if not tampered_label:
        return Skipped(skipped="no version was in production when the incident opened")
    try:
        found = runtime.registry.version_files(asset=asset, label=tampered_label)
    except NotFoundError:  # the tampered content is gone: every file shows as removed
        found = {}
    restored = runtime.registry.version_files(asset=asset, label=label)
    diff = diff_versions(
        restored=restored,
        tampered=found,
        restored_name=label,
        tampered_name=tampered_label,
    )
    return TamperDiff(
        from_=tampered_label,
        to=label,
        files=diff.files,
        diff=diff.diff,
        truncated=diff.truncated,
    )
