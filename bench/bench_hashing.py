"""Benchmark re-verification hashing against its floor, ``openssl dgst -sha256``.

Creates (or reuses, in ``--dir``) ``--files`` files of random bytes totalling ``--size`` MiB, then
times, on the same files (in the page cache after the first read):

- ``openssl``: ``openssl dgst -sha256 FILES``, one process on one core: the floor;
- ``sha256_file``: `rearguard.models.integrity.hashing.sha256_file` over the files one after
  another;
- ``hash_files``: `rearguard.models.integrity.hashing.hash_files` with ``--workers`` threads.

Each is run ``--repeat`` times, in interleaved rounds, and the best wall time kept. Prints one
JSON line per method: ``{"bench": "verify_hash", "method", "bytes", "seconds", "mb_per_s"
(10**6 bytes per second), "ratio_to_openssl" (throughput relative to openssl; above 1 is
faster)}``. The files are removed at the end unless ``--keep``.

Run: ``.venv/bin/python bench/bench_hashing.py --size 512``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rearguard.models.integrity.hashing import hash_files, sha256_file

MIB = 1024 * 1024
WRITE_CHUNK = 8 * MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="where the files are made (default: a tempdir)")
    parser.add_argument("--size", type=int, default=1024, help="total size in MiB (1024)")
    parser.add_argument("--files", type=int, default=4, help="number of files (4)")
    parser.add_argument("--workers", type=int, default=2, help="threads for hash_files (2)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per method, best kept (2)")
    parser.add_argument("--keep", action="store_true", help="leave the files in place")
    args = parser.parse_args()
    if args.size < 1 or args.files < 1 or args.repeat < 1:
        parser.error("--size, --files and --repeat must be at least 1")
    if shutil.which("openssl") is None:
        parser.error("openssl is not installed: it is this benchmark's floor")

    directory = args.dir or Path(tempfile.mkdtemp(prefix="rearguard-bench-hash-"))
    directory.mkdir(parents=True, exist_ok=True)
    paths = make_files(directory, total=args.size * MIB, count=args.files)
    try:
        run(paths, workers=args.workers, repeat=args.repeat)
    finally:
        if not args.keep:
            for path in paths:
                path.unlink(missing_ok=True)
            if args.dir is None:
                directory.rmdir()


def make_files(directory: Path, *, total: int, count: int) -> list[Path]:
    """Random files of ``total // count`` bytes each (the last takes the remainder)."""
    sizes = [total // count] * count
    sizes[-1] += total - sum(sizes)
    paths = []
    for index, size in enumerate(sizes):
        path = directory / f"verify-hash-{index}.bin"
        if not (path.is_file() and path.stat().st_size == size):
            with open(path, "wb") as out:
                remaining = size
                while remaining:
                    chunk = os.urandom(min(WRITE_CHUNK, remaining))
                    out.write(chunk)
                    remaining -= len(chunk)
        paths.append(path)
    return paths


def run(paths: list[Path], *, workers: int, repeat: int) -> None:
    total = sum(path.stat().st_size for path in paths)
    for path in paths:  # warm the page cache so every method reads the same way
        sha256_file(path)

    openssl_digests: list[str] = []

    def openssl() -> None:
        result = subprocess.run(
            ["openssl", "dgst", "-sha256", *map(str, paths)],
            check=True,
            capture_output=True,
            text=True,
        )
        openssl_digests[:] = [line.rsplit("= ", 1)[1] for line in result.stdout.splitlines()]

    sequential: list[tuple[str, int]] = []
    threaded: list[tuple[str, int]] = []

    def hash_sequentially() -> None:
        sequential[:] = [sha256_file(path) for path in paths]

    def hash_in_threads() -> None:
        threaded[:] = hash_files(paths, workers=workers)

    timings = best_of(
        {
            "openssl": openssl,
            "sha256_file": hash_sequentially,
            f"hash_files_workers_{workers}": hash_in_threads,
        },
        repeat,
    )
    floor = timings["openssl"]
    ours = [digest for digest, _ in sequential]
    if not (ours == openssl_digests == [digest for digest, _ in threaded]):
        raise SystemExit("digests differ between openssl and rearguard")
    for method, seconds in timings.items():
        line = {
            "bench": "verify_hash",
            "method": method,
            "bytes": total,
            "seconds": round(seconds, 4),
            "mb_per_s": round(total / seconds / 1e6, 1),
            "ratio_to_openssl": round(floor / seconds, 3),
        }
        print(json.dumps(line), flush=True)


def best_of(actions: dict[str, Callable[[], None]], repeat: int) -> dict[str, float]:
    """Best wall time of each action; rounds interleave the actions so load hits all alike."""
    best = dict.fromkeys(actions, float("inf"))
    for _ in range(repeat):
        for name, action in actions.items():
            start = time.perf_counter()
            action()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


if __name__ == "__main__":
    main()
