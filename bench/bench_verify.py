"""Benchmark: ``rearguard assets verify`` throughput against ``openssl dgst -sha256``.

Budget: verifying a 1 GiB version made of several files runs at >= 90% of the throughput of
``openssl dgst -sha256`` on the same stored files, and ahead of it when the files can be hashed
on more than one core (openssl hashes its arguments one after another, on one core).

One version of ``--files`` random files totalling ``--size-mib`` MiB is registered in a
temporary home; the stored files stay in the page cache, so this measures hashing, not the
disk. Every figure is timed once per round, ``--runs`` rounds (at least 2), the figures
interleaved so that a busy moment of a shared machine hits them all alike; each is reported as
its best (and median) time, in GB/s, and as a ratio to openssl's best. One JSON line each:

- ``floor_openssl``: ``openssl dgst -sha256 <stored files>`` (the floor).
- ``openssl_2_processes`` (reference): two openssl processes at once, each on half the files.
- ``cli_verify``: ``rearguard assets verify NAME --json`` as a subprocess (the budget figure:
  includes the interpreter start, the imports and opening the database).
- ``cli_fixed_cost`` (reference): ``rearguard assets list --json``, the same start-up without
  any hashing.
- ``check_versions_workers_1`` / ``check_versions_workers_2``: in process,
  ``rearguard.models.integrity.verification.check_versions`` on the version with 1 and 2 workers.
- ``check_version_workers_2``: ``check_version(workers=2)`` on the same version, i.e. its
  files hashed on two threads.

Run: ``.venv/bin/python bench/bench_verify.py [--size-mib 1024] [--files 4] [--runs 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REARGUARD = Path(sys.executable).with_name("rearguard")
ASSET = "bench-verify"
LABEL = "v1"
BUDGET_RATIO = 0.9
MIB = 1024 * 1024


def emit(figure: str, **fields: Any) -> None:
    """Print one figure as a JSON line on standard output."""
    # The machine's load when the figure was taken: a shared machine makes figures noisy.
    load = round(os.getloadavg()[0], 2)
    record = {"bench": "verify", "figure": figure, **fields, "load_1m": load}
    print(json.dumps(record), flush=True)


def timed(action: Callable[[], object], runs: int) -> list[float]:
    """Wall times of ``runs`` calls of ``action``."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def run_ok(argv: list[str], **kwargs: Any) -> None:
    """Run a command, failing the bench if it fails."""
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, **kwargs)


def openssl_two_processes(files: list[Path]) -> None:
    """Two ``openssl dgst`` processes at once, each on half of the files."""
    halves = [files[0::2], files[1::2]]
    processes = [
        subprocess.Popen(["openssl", "dgst", "-sha256", *map(str, half)], stdout=subprocess.DEVNULL)
        for half in halves
        if half
    ]
    for process in processes:
        if process.wait() != 0:
            raise SystemExit("openssl dgst failed")


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the version (MiB)")
    parser.add_argument("--files", type=int, default=4, help="number of files in the version")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each rearguard figure")
    args = parser.parse_args()
    if shutil.which("openssl") is None:
        raise SystemExit("openssl is not on PATH: it is this bench's floor")

    root = Path(tempfile.mkdtemp(prefix="rearguard-bench-verify-"))
    home = root / "home"
    for name in ("REARGUARD_DATABASE_URL", "REARGUARD_FAILPOINTS"):
        os.environ.pop(name, None)
    os.environ["REARGUARD_HOME"] = str(home)
    os.chdir(root)
    try:
        measure(args, root, home)
    finally:
        shutil.rmtree(root)


def measure(args: argparse.Namespace, root: Path, home: Path) -> None:
    """Register the version, then time openssl and rearguard on its stored files."""
    from rearguard.models.assets.versions import (
        get_asset,
        get_version,
        manifest_of,
        register_version,
    )
    from rearguard.models.config.settings import load_settings
    from rearguard.models.enums import AssetKind
    from rearguard.models.integrity.verification import check_version, check_versions
    from rearguard.models.runtime import Runtime

    source = root / "source"
    source.mkdir()
    per_file = args.size_mib // args.files
    for index in range(args.files):
        with (source / f"model-{index + 1:05d}-of-{args.files:05d}.safetensors").open("wb") as f:
            for _ in range(per_file):
                f.write(os.urandom(MIB))
    rt = Runtime.from_settings(load_settings(home=home))
    register_version(
        db=rt.db,
        registry=rt.registry,
        name=ASSET,
        source=source,
        label=LABEL,
        kind=AssetKind.MODEL,
        actor="bench",
    )
    shutil.rmtree(source)
    with rt.db.read_session() as session:
        asset = get_asset(session=session, name=ASSET)
        manifest = manifest_of(
            session=session, version=get_version(session=session, asset=asset, label=LABEL)
        )
    stored = sorted(rt.registry.version_files(asset=ASSET, label=LABEL).values())
    total = sum(path.stat().st_size for path in stored)
    common = {"files": len(stored), "bytes": total, "cpus": os.cpu_count()}

    def report(figure: str, samples: list[float], floor_s: float | None, **extra: Any) -> float:
        best = min(samples)
        fields: dict[str, Any] = {
            **common,
            "best_s": round(best, 3),
            "median_s": round(statistics.median(samples), 3),
            "runs": len(samples),
            **extra,
        }
        if figure != "cli_fixed_cost":
            fields["gb_per_s"] = round(total / best / 1e9, 3)
        if floor_s is not None:
            fields["ratio_to_openssl"] = round(floor_s / best, 3)
        emit(figure, **fields)
        return best

    items = [(ASSET, LABEL, manifest)]

    def check_with(workers: int) -> Callable[[], None]:
        def check() -> None:
            (result,) = check_versions(registry=rt.registry, items=items, workers=workers)
            if not result.ok:
                raise SystemExit(f"verification failed: {result.summary()}")

        return check

    def check_files_in_parallel() -> None:
        result = check_version(
            registry=rt.registry, asset=ASSET, label=LABEL, manifest=manifest, workers=2
        )
        if not result.ok:
            raise SystemExit(f"verification failed: {result.summary()}")

    openssl = ["openssl", "dgst", "-sha256", *map(str, stored)]
    verify = [str(REARGUARD), "assets", "verify", ASSET, "--json"]
    listing = [str(REARGUARD), "assets", "list", "--json"]
    actions: dict[str, Callable[[], None]] = {
        "floor_openssl": lambda: run_ok(openssl),
        "openssl_2_processes": lambda: openssl_two_processes(stored),
        "cli_verify": lambda: run_ok(verify, cwd=root),
        "cli_fixed_cost": lambda: run_ok(listing, cwd=root),
        "check_versions_workers_1": check_with(1),
        "check_versions_workers_2": check_with(2),
        "check_version_workers_2": check_files_in_parallel,
    }
    run_ok(openssl)  # warm the page cache and the binary
    samples: dict[str, list[float]] = {name: [] for name in actions}
    # Rounds interleave the figures, so that a busy moment of the machine hits them all alike.
    for _ in range(max(2, args.runs)):
        for name, action in actions.items():
            samples[name].extend(timed(action, 1))
    rt.db.dispose()

    floor = report("floor_openssl", samples["floor_openssl"], None)
    best = {"floor_openssl": floor}
    for name in actions:
        if name == "floor_openssl":
            continue
        extra: dict[str, Any] = {}
        if name == "cli_verify":
            extra = {
                "hash_workers": rt.settings.playbooks.hash_workers,
                "budget_ratio": BUDGET_RATIO,
            }
        if name == "cli_fixed_cost":
            extra = {"command": "rearguard assets list --json (no hashing)"}
        best[name] = report(
            name, samples[name], None if name == "cli_fixed_cost" else floor, **extra
        )

    ratio = floor / best["cli_verify"]
    verdict = "ahead of openssl" if ratio > 1 else ("OK" if ratio >= BUDGET_RATIO else "MISSED")

    def rate(name: str) -> str:
        return f"{total / best[name] / 1e9:.2f}"

    print(
        f"verify {total / MIB:.0f} MiB in {len(stored)} files (load {os.getloadavg()[0]:.1f}): "
        f"openssl {rate('floor_openssl')} GB/s; rearguard assets verify {rate('cli_verify')} GB/s "
        f"({ratio:.0%} of openssl, budget >= {BUDGET_RATIO:.0%}: {verdict}; CLI fixed cost "
        f"{best['cli_fixed_cost']:.2f} s); in process check_versions w1/w2 "
        f"{rate('check_versions_workers_1')}/{rate('check_versions_workers_2')} GB/s, "
        f"check_version w2 {rate('check_version_workers_2')} GB/s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
