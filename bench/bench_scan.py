"""Benchmark: the artifact scanner's throughput and peak memory, against picklescan and fickling.

Budget (issue 18): on each file, at least as fast as the fastest peer, with at most half its
peak memory. Floor: reading the file's bytes (1 MiB reads) in the same kind of process.

Three files are written to a temporary directory (sizes configurable):

- ``pytorch_zip`` (``--zip-mib``, default 1024): ``torch.save``'s zip layout, built by hand:
  ``archive/data.pkl`` (an ordered dict of tensors by persistent id), ``archive/data/N``
  (stored, uncompressed random storages), ``archive/version``.
- ``raw_pickle`` (``--raw-mib``, default 1024): one protocol 4 pickle of a dict of large
  ``bytes`` values (as a pickled tensor's storage bytes are), written opcode by opcode.
- ``dense_pickle`` (``--dense-mib``, default 50): a protocol 4 pickle of many small memoized
  lists, tuples, dicts and strings (a tokenizer's or an estimator's shape), opcode-dense.

Every engine runs on every file in a fresh subprocess, ``--runs`` times (figures interleaved,
best and median kept); the subprocess reports its wall time for the scan alone (imports
excluded) and its peak resident memory (``VmHWM``); a scan under a second is run again in the
same process (``warm_*``: what a long-running scanner pays per file). One JSON line per engine
and file: ``{"bench": "scan", "file": ..., "engine": ..., "version": ..., "mib": ...,
"best_s": ..., "median_s": ..., "mib_per_s": ..., "peak_rss_mib": ..., "verdict": ...,
"warm_best_s": ..., "warm_median_s": ..., "load_1m": ...}``.
Engines: ``floor`` (reading the bytes), ``rearguard``
(``rearguard.models.integrity.scan.engine.scan_file``), and, when installed (the ``engines``
extra), ``picklescan`` (``scan_file_path``) and ``fickling`` (``is_likely_safe``).

Run: ``.venv/bin/python bench/bench_scan.py [--zip-mib 1024] [--raw-mib 1024] [--dense-mib 50]
[--runs 2] [--timeout 600] [--engines floor,rearguard,picklescan,fickling]
[--files pytorch_zip,raw_pickle,dense_pickle]``; an engine that
takes longer than ``--timeout`` on a file is reported with ``"error": "timeout after N s"``.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import io
import json
import os
import pickle
import statistics
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
ENGINES = ("floor", "rearguard", "picklescan", "fickling")

# Runs in the child: the engine on one file; prints {"seconds", "peak_rss_mib", "verdict"}.
CHILD = r"""
import json, sys, time
engine, path = sys.argv[1], sys.argv[2]
if engine == "floor":
    def run():
        with open(path, "rb") as stream:
            while stream.read(1 << 20):
                pass
        return "read"
elif engine == "rearguard":
    from pathlib import Path
    from rearguard.models.integrity.scan.engine import scan_file
    def run():
        findings = scan_file(Path(path))
        return "flagged" if findings else "clean"
elif engine == "picklescan":
    from picklescan.scanner import scan_file_path
    def run():
        result = scan_file_path(path)
        return "flagged" if result.infected_files or result.scan_err else "clean"
elif engine == "fickling":
    import fickling
    def run():
        return "clean" if fickling.is_likely_safe(path) else "flagged"
start = time.perf_counter()
verdict = run()
seconds = time.perf_counter() - start
# VmHWM, not ru_maxrss: a forked child's ru_maxrss starts at its parent's (the writer's) size.
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
result = {"seconds": seconds, "peak_rss_mib": round(peak, 1), "verdict": verdict}
if seconds < 1:
    # A second scan in the same process: what a long-running scanner pays per file.
    start = time.perf_counter()
    run()
    result["warm_seconds"] = time.perf_counter() - start
print(json.dumps(result))
"""


def write_pytorch_zip(path: Path, size: int) -> None:
    """torch.save's layout: a data.pkl of persistent ids and one stored member per storage."""
    storages = max(1, size // (64 * MIB))
    per = size // storages
    buffer = io.BytesIO()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            if isinstance(obj, str) and obj.startswith("storage:"):
                return ("storage", "FloatStorage", obj.split(":")[1], "cpu", per // 4)
            return None

    state = collections.OrderedDict((f"layer{i}.weight", f"storage:{i}") for i in range(storages))
    Pickler(buffer, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        for index in range(storages):
            with archive.open(f"archive/data/{index}", "w", force_zip64=True) as member:
                _write_random(member, per)
        archive.writestr("archive/version", "3\n")


def write_raw_pickle(path: Path, size: int) -> None:
    """One protocol 4 pickle: {"t0": <bytes>, "t1": <bytes>, ...}, written opcode by opcode."""
    count = max(1, size // (64 * MIB))
    per = size // count
    with path.open("wb") as stream:
        stream.write(b"\x80\x04}(")  # PROTO 4, EMPTY_DICT, MARK
        for index in range(count):
            key = f"t{index}".encode()
            stream.write(b"\x8c" + bytes([len(key)]) + key)  # SHORT_BINUNICODE
            stream.write(b"\x8e" + struct.pack("<Q", per))  # BINBYTES8
            _write_random(stream, per)
        stream.write(b"u.")  # SETITEMS, STOP


def write_dense_pickle(path: Path, size: int) -> None:
    """Many small memoized containers and strings: about ``size`` bytes of opcodes."""

    def rows(count: int) -> list[object]:
        return [[f"token {i:07d}", (i, i + 0.5), {"id": i}] for i in range(count)]

    per_row = len(pickle.dumps(rows(1000), protocol=4)) / 1000
    value = rows(int(size / per_row))
    path.write_bytes(pickle.dumps(value, protocol=4))


def _write_random(stream: Any, size: int) -> None:
    block = os.urandom(MIB)
    written = 0
    while written < size:
        chunk = block[: min(MIB, size - written)]
        stream.write(chunk)
        written += len(chunk)


def engine_version(engine: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    name = {"floor": None, "rearguard": "rearguard"}.get(engine, engine)
    if name is None:
        return None
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def run_child(engine: str, path: Path, timeout: float) -> dict[str, Any]:
    try:
        result = subprocess.run(
            [sys.executable, "-c", CHILD, engine, str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": last}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip-mib", type=int, default=1024)
    parser.add_argument("--raw-mib", type=int, default=1024)
    parser.add_argument("--dense-mib", type=int, default=50)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600, help="per engine and file, in s")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--files", default="pytorch_zip,raw_pickle,dense_pickle")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the files")
    args = parser.parse_args()
    wanted = [e for e in args.engines.split(",") if e]
    engines = [
        e for e in wanted if e in ("floor", "rearguard") or importlib.util.find_spec(e) is not None
    ]
    for missing in sorted(set(wanted) - set(engines)):
        print(
            f"{missing}: not installed (pip install 'rearguard[engines]'), skipped", file=sys.stderr
        )
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        files = {
            "pytorch_zip": (Path(folder, "model.pt"), write_pytorch_zip, args.zip_mib),
            "raw_pickle": (Path(folder, "tensors.pkl"), write_raw_pickle, args.raw_mib),
            "dense_pickle": (Path(folder, "dense.pkl"), write_dense_pickle, args.dense_mib),
        }
        chosen = args.files.split(",")
        for name, (path, writer, mib) in files.items():
            if name not in chosen:
                continue
            print(f"writing {name} ({mib} MiB)", file=sys.stderr)
            writer(path, mib * MIB)
            size = path.stat().st_size
            samples: dict[str, list[dict[str, Any]]] = {engine: [] for engine in engines}
            for _ in range(max(1, args.runs)):
                for engine in engines:
                    samples[engine].append(run_child(engine, path, args.timeout))
            for engine in engines:
                good = [s for s in samples[engine] if "error" in s or "seconds" in s]
                errors = [s["error"] for s in good if "error" in s]
                times = sorted(s["seconds"] for s in good if "seconds" in s)
                record: dict[str, Any] = {
                    "bench": "scan",
                    "file": name,
                    "engine": engine,
                    "version": engine_version(engine),
                    "mib": round(size / MIB, 1),
                }
                warm = sorted(s["warm_seconds"] for s in good if "warm_seconds" in s)
                if times:
                    best = times[0]
                    record.update(
                        best_s=round(best, 6),
                        median_s=round(statistics.median(times), 6),
                        mib_per_s=round(size / MIB / best, 1) if best else None,
                        peak_rss_mib=max(s["peak_rss_mib"] for s in good if "seconds" in s),
                        verdict=next(s["verdict"] for s in good if "seconds" in s),
                    )
                if warm:
                    record.update(
                        warm_best_s=round(warm[0], 6),
                        warm_median_s=round(statistics.median(warm), 6),
                    )
                if errors:
                    record["error"] = errors[0]
                record["load_1m"] = round(os.getloadavg()[0], 2)
                print(json.dumps(record), flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
