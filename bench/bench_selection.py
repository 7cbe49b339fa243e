"""Benchmark: the set queries the data_poisoning and supply_chain playbooks decide from.

Budgets: data_poisoning selection over 1,000 model versions and 10,000 dataset versions <= 2 s;
supply_chain digest lookup across 100,000 stored files <= 50 ms.

Rows are bulk-inserted straight into a fresh SQLite database (migrated by alembic, so the
indexes are the real ones): one dataset with 10,000 versions; 10 models of 100 versions each,
each version trained on a random dataset version, the newest in production; 100 files per
model version (100,000 ``version_file`` rows), five of them holding the looked-for digest.
Nothing is registered through the store: this measures the queries, not copying files.

Figures (best of ``--runs``, one JSON line each):

- ``poisoning_selection``: ``suspect_dataset_versions`` + ``tainted_versions`` +
  ``last_clean_dataset_version`` (rearguard.models.assets.lineage) through a SQLModel session, with
  ``since`` at the dataset's median version (5,000 suspect, ~500 tainted model versions).
- ``floor_poisoning_sql``: the same three SQL statements issued by hand with ``sqlite3``.
- ``digest_lookup``: ``versions_with_digest`` (rearguard.models.assets.denylist).
- ``floor_digest_sql``: the same SQL by hand with ``sqlite3``.

Known-good selection with trust from evidence (``--known-good``, instead of the above): one
model asset of 1,000 versions, each registered (two small files) and approved through the real
services into a fresh home, so that the audit chain holds 2,000 evidence events; a 1,001st
version unapproved in production; one ``model_compromise`` incident. Each round runs the two
selections back to back, in alternating order, then the evidence alone:

- ``known_good_selection``: ``select_known_good`` as it is: the asset's evidence read in one
  indexed query (2,001 events), each event's hash and link verified and replayed, then each
  known-good row it reaches, newest first, judged against it before it is re-hashed and chosen.
- ``floor_known_good_no_evidence``: the same call with the evidence check stubbed out (the
  evidence loader replaced by one that reads nothing and doubts nothing): what selection cost
  before.
- ``load_evidence``: the asset's evidence alone, in a read session of its own.

Budget: ``known_good_selection`` at most 10% above the floor (the ratio of the medians, and
the median of each round's own ratio, ``paired_overhead_median``).

Run: ``.venv/bin/python bench/bench_selection.py [--runs 5]``, or
``.venv/bin/python bench/bench_selection.py --known-good [--runs 15] [--versions 1000]
[--database-url postgresql://...]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from rearguard.models.assets.denylist import versions_with_digest
from rearguard.models.assets.evidence import load_evidence
from rearguard.models.assets.lineage import (
    last_clean_dataset_version,
    suspect_dataset_versions,
    tainted_versions,
)
from rearguard.models.assets.versions import approve_version, promote_version, register_version
from rearguard.models.config.settings import load_settings
from rearguard.models.db.engine import Database
from rearguard.models.db.tables import Alias, Asset, AssetVersion, VersionFile
from rearguard.models.enums import AssetKind
from rearguard.models.incidents.service import open_incident
from rearguard.models.recovery import selection
from rearguard.models.runtime import Runtime

DATASET_VERSIONS = 10_000
MODELS, MODEL_VERSIONS = 10, 100
FILES_PER_VERSION = 100
EVIL = hashlib.sha256(b"evil").hexdigest()
BUDGET_POISONING_S, BUDGET_DIGEST_S = 2.0, 0.050
BUDGET_EVIDENCE_RATIO = 1.10
ASSET = "bench-model"


def emit(figure: str, **fields: Any) -> None:
    """Print one figure as a JSON line."""
    load = round(os.getloadavg()[0], 2)
    print(json.dumps({"bench": "selection", "figure": figure, **fields, "load_1m": load}))


def best(action: Callable[[], object], runs: int) -> tuple[float, object]:
    """Best wall time of ``runs`` calls, and the last result."""
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return min(times), result


def seed(db: Database) -> datetime:
    """Bulk-insert the rows; return the ``since`` of the poisoning."""
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with db.transaction() as connection:
        connection.execute(
            insert(Asset),
            [{"id": 1, "name": "corpus", "kind": "dataset", "created_at": start}]
            + [
                {"id": 2 + m, "name": f"model-{m}", "kind": "model", "created_at": start}
                for m in range(MODELS)
            ],
        )
        version = lambda vid, asset, label, at, trained=None: {  # noqa: E731
            "id": vid, "asset_id": asset, "label": label, "status": "known_good",
            "digest": "0" * 64, "total_size": 0, "file_count": 0, "trained_on_id": trained,
            "registered_by": "bench", "registered_at": at,
        }  # fmt: skip
        connection.execute(
            insert(AssetVersion),
            [
                version(i + 1, 1, f"d{i}", start + timedelta(minutes=i))
                for i in range(DATASET_VERSIONS)
            ],
        )
        models, files, aliases = [], [], []
        vid = DATASET_VERSIONS
        evil_left = set(rng.sample(range(MODELS * MODEL_VERSIONS), 5))
        for m in range(MODELS):
            for v in range(MODEL_VERSIONS):
                vid += 1
                trained = rng.randint(1, DATASET_VERSIONS)
                models.append(version(vid, 2 + m, f"v{v}", start + timedelta(minutes=v), trained))
                n = m * MODEL_VERSIONS + v
                for f in range(FILES_PER_VERSION):
                    digest = EVIL if (f == 0 and n in evil_left) else f"{vid:032x}{f:032x}"
                    files.append({"version_id": vid, "path": f"f{f}", "sha256": digest, "size": 1})
            aliases.append(
                {"asset_id": 2 + m, "name": "production", "version_id": vid,
                 "moved_at": start, "moved_by": "bench"}
            )  # fmt: skip
        connection.execute(insert(AssetVersion), models)
        connection.execute(insert(VersionFile), files)
        connection.execute(insert(Alias), aliases)
    return start + timedelta(minutes=DATASET_VERSIONS // 2)


class _NoEvidence:
    """The floor's stand-in for the asset's evidence: nothing read, nothing doubted."""

    def doubt(self, **_: object) -> None:
        return None


def known_good_home(root: Path, versions: int, database_url: str | None) -> tuple[Runtime, int]:
    """A home with ``versions`` approved versions and one unapproved in production; the
    runtime and a model_compromise incident on it."""
    settings = load_settings(home=root / "home", database_url=database_url)
    runtime = Runtime.from_settings(settings)
    sources = root / "sources"
    started = time.perf_counter()
    for n in range(versions + 1):
        source = sources / f"v{n}"
        source.mkdir(parents=True)
        (source / "weights.bin").write_bytes(f"weights of v{n}\n".encode() * 64)
        (source / "config.json").write_text(json.dumps({"version": n}))
        label = f"v{n}"
        register_version(
            db=runtime.db,
            registry=runtime.registry,
            name=ASSET,
            source=source,
            label=label,
            kind=AssetKind.MODEL,
            actor="bench",
        )
        if n < versions:
            approve_version(
                db=runtime.db, registry=runtime.registry, name=ASSET, label=label, by="alice"
            )
        if n % 100 == 0:
            print(f"set-up: {n} versions, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    promote_version(
        db=runtime.db,
        registry=runtime.registry,
        name=ASSET,
        label=f"v{versions}",
        alias="production",
        actor="bench",
    )
    with runtime.db.session() as session:
        incident = open_incident(
            session=session,
            type="model_compromise",
            actor="bench",
            asset_name=ASSET,
            state={"compromised": f"v{versions}"},
        )
        assert incident.id is not None
        return runtime, incident.id


def bench_known_good(runs: int, versions: int, database_url: str | None) -> None:
    """Known-good selection with and without the evidence check, rounds alternating."""
    with tempfile.TemporaryDirectory(prefix="rearguard-bench-known-good-") as tmp:
        runtime, incident_id = known_good_home(Path(tmp), versions, database_url)
        real = selection.load_evidence

        def select() -> str:
            return selection.select_known_good(runtime=runtime, incident_id=incident_id).selected

        def floor() -> str:
            # A stub for the floor, not a ChainEvidence: hence the ignore.
            selection.load_evidence = lambda *_, **__: _NoEvidence()  # type: ignore[assignment]
            try:
                return select()
            finally:
                selection.load_evidence = real

        def evidence_alone() -> int:
            with runtime.db.read_session() as session:
                return len(load_evidence(session, asset=ASSET).of(ASSET).versions)

        select(), floor()  # warm-up: caches, the first hashing of the chosen version's files
        rounds = (("floor", floor), ("real", select), ("evidence", evidence_alone))
        times: dict[str, list[float]] = {name: [] for name, _ in rounds}
        chosen: set[str] = set()
        for round_number in range(runs):
            # Which of the pair goes first alternates, so that neither gains from its place.
            ordered = rounds if round_number % 2 == 0 else (rounds[1], rounds[0], rounds[2])
            for name, action in ordered:
                started = time.perf_counter()
                result = action()
                times[name].append(time.perf_counter() - started)
                if name in ("floor", "real"):
                    chosen.add(str(result))
        floor_median = statistics.median(times["floor"])
        real_median = statistics.median(times["real"])
        backend = runtime.db.url.split(":")[0]  # the scheme only: never a credential
        common = {"versions": versions, "runs": runs, "database": backend}
        emit(
            "floor_known_good_no_evidence",
            median_s=round(floor_median, 5),
            min_s=round(min(times["floor"]), 5),
            **common,
        )
        emit(
            "known_good_selection",
            median_s=round(real_median, 5),
            min_s=round(min(times["real"]), 5),
            ratio_to_floor=round(real_median / floor_median, 3),
            # Each round's own pair (the two calls run back to back): steadier on a loaded
            # machine than the ratio of the two medians.
            paired_overhead_median=round(
                statistics.median(
                    (real - low) / low
                    for real, low in zip(times["real"], times["floor"], strict=True)
                ),
                4,
            ),
            budget_ratio=BUDGET_EVIDENCE_RATIO,
            within_budget=real_median <= floor_median * BUDGET_EVIDENCE_RATIO,
            selected=sorted(chosen),
            **common,
        )
        emit(
            "load_evidence",
            median_s=round(statistics.median(times["evidence"]), 5),
            min_s=round(min(times["evidence"]), 5),
            **common,
        )
        print(
            f"select_known_good on {versions} versions: {real_median * 1000:.1f} ms with "
            f"evidence, {floor_median * 1000:.1f} ms without "
            f"({real_median / floor_median:.3f}x; budget {BUDGET_EVIDENCE_RATIO}x)",
            file=sys.stderr,
        )
        runtime.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--known-good", action="store_true", help="known-good selection figures")
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--database-url", default=None, help="--known-good on this database")
    args = parser.parse_args()
    if args.known_good:
        bench_known_good(args.runs or 15, args.versions, args.database_url)
        return
    args.runs = args.runs or 5
    with tempfile.TemporaryDirectory(prefix="rearguard-bench-selection-") as tmp:
        path = Path(tmp) / "bench.db"
        db = Database(f"sqlite:///{path}")
        db.ensure_current(auto_upgrade=True)
        since = seed(db)

        def poisoning() -> int:
            with db.read_session() as session:
                dataset = session.get(Asset, 1)
                assert dataset is not None
                suspect = suspect_dataset_versions(session=session, dataset=dataset, since=since)
                found = tainted_versions(
                    session=session, dataset=dataset, since=since, alias="production"
                )
                last_clean_dataset_version(session=session, dataset=dataset, since=since)
                return len(suspect) + len(found)

        def digest() -> int:
            with db.read_session() as session:
                return len(versions_with_digest(session=session, digest=EVIL))

        # SQLite stores these timestamps as naive UTC text: compare with the same form.
        since_text = since.replace(tzinfo=None).isoformat(sep=" ")
        raw = sqlite3.connect(path)

        def poisoning_sql() -> int:
            suspect = raw.execute(
                "SELECT * FROM asset_version WHERE asset_id = 1 AND registered_at >= ? "
                "ORDER BY registered_at, id",
                (since_text,),
            ).fetchall()
            found = raw.execute(
                "SELECT a.name, t.label, t.status, s.label, al.version_id FROM asset_version t "
                "JOIN asset_version s ON s.id = t.trained_on_id JOIN asset a ON a.id = t.asset_id "
                "LEFT OUTER JOIN alias al ON al.asset_id = t.asset_id AND al.version_id = t.id "
                "AND al.name = 'production' WHERE s.asset_id = 1 AND s.registered_at >= ? "
                "ORDER BY a.name, t.id",
                (since_text,),
            ).fetchall()
            raw.execute(
                "SELECT * FROM asset_version WHERE asset_id = 1 AND registered_at < ? AND status "
                "NOT IN ('suspect', 'quarantined', 'retired') "
                "ORDER BY registered_at DESC, id DESC LIMIT 1",
                (since_text,),
            ).fetchall()
            return len(suspect) + len(found)

        def digest_sql() -> int:
            return len(
                raw.execute(
                    "SELECT a.name, a.kind, v.label, v.status, f.path FROM version_file f "
                    "JOIN asset_version v ON v.id = f.version_id JOIN asset a ON a.id = v.asset_id "
                    "WHERE f.sha256 = ? ORDER BY a.name, v.id, f.path",
                    (EVIL,),
                ).fetchall()
            )

        for figure, action, budget in (
            ("poisoning_selection", poisoning, BUDGET_POISONING_S),
            ("floor_poisoning_sql", poisoning_sql, None),
            ("digest_lookup", digest, BUDGET_DIGEST_S),
            ("floor_digest_sql", digest_sql, None),
        ):
            seconds, rows = best(action, args.runs)
            fields: dict[str, Any] = {"seconds": round(seconds, 5), "rows": rows}
            if budget is not None:
                fields.update(budget_s=budget, within_budget=seconds <= budget)
            emit(figure, **fields)
        raw.close()
        db.dispose()


if __name__ == "__main__":
    main()
