"""Benchmark ``assets rescan`` when every scan record is current: it must read no file.

Registers ``--assets`` assets of ``--versions`` versions each (one small pickle per version) in a
fresh SQLite home, then times, in-process, best of ``--repeat``:

- ``rescan_current``: ``plan_rescan`` + ``run_rescan`` over every asset, all records current
  (what a scheduled ``assets rescan --all`` costs on a day nothing changed);
- ``floor``: one SQL query reading every version's status with its scan record's scanner
  version and fingerprint (the least a rescan must read to know it has nothing to do);
- ``rescan_forced``: the same with ``force=True`` (every version re-hashed and scanned), for
  scale.

Prints one JSON line per figure: ``{"bench": "rescan", "method", "versions", "seconds",
"ratio_to_floor"}``.

Run: ``.venv/bin/python bench/bench_rescan.py --assets 20 --versions 25``
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from rearguard.models.assets.versions import register_version
from rearguard.models.config.settings import load_settings
from rearguard.models.enums import AssetKind
from rearguard.models.integrity.rescan import plan_rescan, run_rescan
from rearguard.models.runtime import Runtime

FLOOR_QUERY = text(
    "SELECT v.id, v.status, s.scanner_version, s.allow_fingerprint, s.verdict "
    "FROM asset_version v LEFT JOIN version_scan s ON s.version_id = v.id"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=20, help="assets (20)")
    parser.add_argument("--versions", type=int, default=25, help="versions per asset (25)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method, best kept (3)")
    args = parser.parse_args()
    if min(args.assets, args.versions, args.repeat) < 1:
        parser.error("--assets, --versions and --repeat must be at least 1")
    with tempfile.TemporaryDirectory(prefix="rearguard-bench-rescan-") as scratch:
        home = Path(scratch, "home")
        runtime = Runtime.from_settings(load_settings(home=home))
        try:
            populate(runtime, Path(scratch, "sources"), args.assets, args.versions)
            run(runtime, args.assets * args.versions, args.repeat)
        finally:
            runtime.db.dispose()


def populate(runtime: Runtime, sources: Path, assets: int, versions: int) -> None:
    print(f"registering {assets * versions} versions...", file=sys.stderr)
    for a in range(assets):
        for v in range(versions):
            folder = sources / f"a{a}" / f"v{v}"
            folder.mkdir(parents=True)
            (folder / "model.pkl").write_bytes(pickle.dumps({"asset": a, "w": [v] * 64}))
            register_version(
                db=runtime.db,
                registry=runtime.registry,
                name=f"asset-{a}",
                source=folder,
                label=f"v{v}",
                kind=AssetKind.MODEL,
                actor="bench",
            )


def best(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def run(runtime: Runtime, versions: int, repeat: int) -> None:
    def floor() -> None:
        with runtime.db.read_session() as session:
            list(session.execute(FLOOR_QUERY))

    def rescan(force: bool) -> None:
        plan = plan_rescan(runtime=runtime, force=force)
        result = run_rescan(runtime=runtime, plan=plan, actor="bench")
        expected = versions if force else 0
        if len(result.rescanned) != expected:
            raise SystemExit(f"rescanned {len(result.rescanned)}, expected {expected}")

    floor_s = best(floor, repeat)
    figures = {
        "floor": floor_s,
        "rescan_current": best(lambda: rescan(False), repeat),
        "rescan_forced": best(lambda: rescan(True), 1),
    }
    for method, seconds in figures.items():
        line = {
            "bench": "rescan",
            "method": method,
            "versions": versions,
            "seconds": round(seconds, 4),
            "ratio_to_floor": round(seconds / floor_s, 1),
        }
        print(json.dumps(line))
    print(
        f"{versions} versions: rescan with every record current {figures['rescan_current']:.3f} s "
        f"(floor {floor_s:.4f} s), forced {figures['rescan_forced']:.2f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
