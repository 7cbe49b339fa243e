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

Run: ``.venv/bin/python bench/bench_selection.py [--runs 5]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from rearguard.models.assets.denylist import versions_with_digest
from rearguard.models.assets.lineage import (
    last_clean_dataset_version,
    suspect_dataset_versions,
    tainted_versions,
)
from rearguard.models.db.engine import Database
from rearguard.models.db.tables import Alias, Asset, AssetVersion, VersionFile

DATASET_VERSIONS = 10_000
MODELS, MODEL_VERSIONS = 10, 100
FILES_PER_VERSION = 100
EVIL = hashlib.sha256(b"evil").hexdigest()
BUDGET_POISONING_S, BUDGET_DIGEST_S = 2.0, 0.050


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
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
