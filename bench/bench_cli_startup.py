"""Benchmark: how long ``rearguard --help`` takes, against the interpreter's own start.

Budget: ``rearguard --help`` in at most 0.4 s (median).

Figures, one JSON line each on standard output: the installed console script
(``<venv>/bin/rearguard --help``) and two floors measured in the same run, ``python -c pass``
and ``python -c "import typer"``; each is timed ``--runs`` times after one warm-up run. On
standard error: the ten imports with the largest cumulative time under
``python -X importtime -c "import rearguard.flows.cli.main"``, then a one-line summary.

Run: ``.venv/bin/python bench/bench_cli_startup.py [--runs 10]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REARGUARD = Path(sys.executable).with_name("rearguard")
BUDGET_S = 0.4


def emit(figure: str, **fields: object) -> None:
    """Print one figure as a JSON line on standard output."""
    # The machine's load when the figure was taken: a shared machine makes figures noisy.
    load = round(os.getloadavg()[0], 2)
    record = {"bench": "cli_startup", "figure": figure, **fields, "load_1m": load}
    print(json.dumps(record), flush=True)


def time_command(argv: list[str], *, runs: int, env: dict[str, str], cwd: Path) -> list[float]:
    """Wall time of a command, ``runs`` times after one untimed warm-up run."""
    samples: list[float] = []
    for index in range(runs + 1):
        started = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
        if index:
            samples.append(time.perf_counter() - started)
    return samples


def import_times(env: dict[str, str], cwd: Path) -> list[tuple[int, int, str]]:
    """(cumulative us, self us, module) for every import of the CLI's main module."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import rearguard.flows.cli.main"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|", 2)
        rows.append((int(cumulative), int(own), name.rstrip()))
    return rows


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("REARGUARD_")}
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="rearguard-bench-cli-") as tmp:
        cwd = Path(tmp)  # no rearguard.toml, nothing on sys.path from the caller's directory
        env["REARGUARD_HOME"] = str(cwd / "home")
        figures = {
            "rearguard_help": [str(REARGUARD), "--help"],
            "floor_python_pass": [python, "-c", "pass"],
            "floor_import_typer": [python, "-c", "import typer"],
        }
        results = {}
        for figure, argv in figures.items():
            samples = time_command(argv, runs=args.runs, env=env, cwd=cwd)
            results[figure] = samples
            fields: dict[str, object] = {
                "median_s": round(statistics.median(samples), 4),
                "min_s": round(min(samples), 4),
                "samples_s": [round(s, 4) for s in samples],
                "command": " ".join([Path(argv[0]).name, *argv[1:]]),
            }
            if figure == "rearguard_help":
                fields["budget_s"] = BUDGET_S
                fields["within_budget"] = statistics.median(samples) <= BUDGET_S
            emit(figure, **fields)
        rows = import_times(env, cwd)

    total = max(rows)[0] if rows else 0
    print(
        f"# top 10 cumulative imports of rearguard.flows.cli.main (total {total / 1e6:.3f} s):",
        file=sys.stderr,
    )
    for cumulative, own, name in sorted(rows, reverse=True)[:10]:
        print(
            f"#   {cumulative / 1000:8.1f} ms cumulative {own / 1000:7.1f} ms self  {name}",
            file=sys.stderr,
        )
    emit(
        "import_rearguard_cli_main",
        cumulative_s=round(total / 1e6, 4),
        top=[
            {"module": name.strip(), "cumulative_ms": round(c / 1000, 1)}
            for c, _, name in sorted(rows, reverse=True)[:10]
        ],
    )
    heavy = sorted(
        {"sqlalchemy", "sqlmodel", "prefect", "pydantic", "pydantic_settings", "alembic"}
        & {name.strip().split(".")[0] for _, _, name in rows}
    )
    if heavy:
        print(f"# heavy packages imported by --help: {', '.join(heavy)}", file=sys.stderr)

    help_median = statistics.median(results["rearguard_help"])
    verdict = "OK" if help_median <= BUDGET_S else "MISSED"
    print(
        f"rearguard --help median {help_median:.3f} s (min {min(results['rearguard_help']):.3f}); "
        f"floors: python -c pass {statistics.median(results['floor_python_pass']):.3f} s, "
        f"import typer {statistics.median(results['floor_import_typer']):.3f} s; "
        f"budget {BUDGET_S} s: {verdict}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
