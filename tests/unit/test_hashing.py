"""Streaming SHA-256 of files, alone and on a thread pool."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from rearguard.models.integrity.hashing import CHUNK_SIZE, hash_files, sha256_file


def expected(data: bytes) -> tuple[str, int]:
    return hashlib.sha256(data).hexdigest(), len(data)


@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 12345],
    ids=["empty", "one-byte", "chunk-1", "chunk", "chunk+1", "multi-chunk"],
)
def test_sha256_file_matches_hashlib(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "blob"
    path.write_bytes(data)

    assert sha256_file(path) == expected(data)


def test_sha256_file_reports_progress_per_chunk(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 7)
    path = tmp_path / "blob"
    path.write_bytes(data)
    calls: list[int] = []

    sha256_file(path, progress=calls.append)

    assert calls == [CHUNK_SIZE, CHUNK_SIZE, 7]


def test_hash_files_keeps_input_order_across_workers(tmp_path: Path) -> None:
    # Largest first, so later (smaller) files finish first on other threads.
    blobs = [os.urandom(size) for size in (3 * CHUNK_SIZE, 2 * CHUNK_SIZE, 10, 0, CHUNK_SIZE + 1)]
    paths = []
    for index, data in enumerate(blobs):
        path = tmp_path / f"f{index}"
        path.write_bytes(data)
        paths.append(path)

    for workers in (None, 1, 2, 4, 16):
        assert hash_files(paths, workers=workers) == [expected(data) for data in blobs]


def test_hash_files_progress_totals_equal_sizes(tmp_path: Path) -> None:
    sizes = [5 * CHUNK_SIZE + 3, CHUNK_SIZE, 0, 1]
    paths = []
    for index, size in enumerate(sizes):
        path = tmp_path / f"f{index}"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    lock = threading.Lock()
    total = 0
    threads: set[str] = set()

    def progress(nbytes: int) -> None:
        nonlocal total
        with lock:
            total += nbytes
            threads.add(threading.current_thread().name)

    results = hash_files(paths, workers=3, progress=progress)

    assert total == sum(sizes) == sum(size for _, size in results)
    assert all(name.startswith("rearguard-hash") for name in threads)


def test_hash_files_of_nothing() -> None:
    assert hash_files([]) == []


def test_unreadable_file_raises_oserror(tmp_path: Path) -> None:
    present = tmp_path / "present"
    present.write_bytes(b"x")

    with pytest.raises(FileNotFoundError):
        hash_files([present, tmp_path / "missing"], workers=2)
    with pytest.raises(IsADirectoryError):
        sha256_file(tmp_path)


def test_files_hashed_ahead_are_reused_only_while_unchanged(tmp_path: Path) -> None:
    from rearguard.models.integrity import prehash

    home = tmp_path / "home"
    version = home / "store" / "assets" / "model-a" / "versions" / "v1"
    version.mkdir(parents=True)
    kept, altered = version / "kept.bin", version / "altered.bin"
    kept.write_bytes(b"k" * 3_000_000)
    altered.write_bytes(b"a" * 3_000_000)
    other = home / "store" / "assets" / "model-b" / "versions" / "v1" / "other.bin"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"o")
    assert prehash.store_files(home, "model-a") == [altered, kept]
    assert prehash.store_files(home, "../model-a") == []

    child = prehash.spawn([kept, altered])  # a real forked child, as `assets verify` starts
    child.finish()
    altered.write_bytes(b"b" * 3_000_000)  # an attacker rewrites a file after it was hashed

    assert child.take(kept) == (hashlib.sha256(b"k" * 3_000_000).hexdigest(), 3_000_000)
    assert child.take(altered) is None  # changed since: the caller hashes what is there now
    assert child.take(other) is None  # never given to the child: the caller hashes it
    assert sha256_file(altered, ahead=child) == (
        hashlib.sha256(b"b" * 3_000_000).hexdigest(),
        3_000_000,
    )
