"""Forensic evidence: a read-only copy of a version's content as found, with its hashes."""

from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from pathlib import Path

from rearguard.models.errors import NotFoundError
from rearguard.models.recovery.results import Recorded
from rearguard.models.registry.base import ManifestEntry, RegistryBackend
from rearguard.models.registry.local import copy_with_hash

EVIDENCE_FILE = "evidence.json"
# Owner-only and read-only: evidence of a compromise is nobody else's to read or change.
_READ_ONLY_DIR = stat.S_IRUSR | stat.S_IXUSR


class EvidenceFile(Recorded):
    """One file of the evidence: its recorded SHA-256 and, unless missing, what was found."""

    path: str
    sha256_recorded: str | None
    sha256_as_found: str | None = None
    size_as_found: int | None = None
    matches: bool | None = None
    missing: bool = False

    omitted_when_default = frozenset({"sha256_as_found", "size_as_found", "matches", "missing"})


class EvidenceRecord(Recorded):
    """The record kept beside the copied files (``evidence.json``)."""

    asset: str
    version: str
    incident: int
    files: tuple[EvidenceFile, ...] = ()


def preserve_evidence(
    *,
    registry: RegistryBackend,
    asset: str,
    label: str,
    manifest: list[ManifestEntry],
    destination: Path,
    incident_id: int,
) -> EvidenceRecord:
    """Copy a version's files as found into ``destination``, read-only, with their hashes.

    Idempotent: when ``destination`` already holds a complete copy (its ``evidence.json``
    exists), that copy is kept as it is and its record returned. A copy interrupted part-way
    never appears under ``destination``: it is built beside it and renamed into place.

    Returns:
        The evidence record: each file's recorded and as-found SHA-256 and size.
    """
    record_path = destination / EVIDENCE_FILE
    if record_path.is_file():
        return EvidenceRecord.model_validate_json(record_path.read_text())
    recorded = {entry.path: entry for entry in manifest}
    work = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.partial")
    work.mkdir(parents=True)
    files: list[EvidenceFile] = []
    try:
        present = registry.version_files(asset=asset, label=label)
    except NotFoundError:  # the evidence of a vanished version is that it is missing
        present = {}
    for relative, source in sorted(present.items()):
        target = work / "files" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = copy_with_hash(source, target)
        target.chmod(stat.S_IRUSR)
        entry = recorded.get(relative)
        files.append(
            EvidenceFile(
                path=relative,
                sha256_as_found=digest,
                size_as_found=size,
                sha256_recorded=entry.sha256 if entry else None,
                matches=bool(entry and entry.sha256 == digest),
            )
        )
    for missing in sorted(set(recorded) - set(present)):
        entry = recorded[missing]
        files.append(EvidenceFile(path=missing, sha256_recorded=entry.sha256, missing=True))
    record = EvidenceRecord(asset=asset, version=label, incident=incident_id, files=tuple(files))
    (work / EVIDENCE_FILE).write_text(json.dumps(record.recorded(), indent=2, sort_keys=True))
    (work / EVIDENCE_FILE).chmod(stat.S_IRUSR)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists():
        shutil.rmtree(destination)  # an incomplete copy without its record
    work.rename(destination)
    for dirpath, _dirs, _files in os.walk(destination):
        Path(dirpath).chmod(_READ_ONLY_DIR)
    return record
