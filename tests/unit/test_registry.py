"""The asset registry: registration into the local store, approval, promotion, verification.

Every test runs against the real store on disk and the real database (SQLite, and PostgreSQL
when configured).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from scenarios import tamper
from sqlalchemy import func
from sqlmodel import col, select

from rearguard.models.assets.versions import (
    approve_version,
    get_asset,
    get_version,
    manifest_of,
    promote_version,
    register_version,
    set_status,
    verify_one,
)
from rearguard.models.db.tables import Alias, Asset, AssetVersion, TimelineEvent, VersionFile
from rearguard.models.enums import AssetKind, VersionStatus
from rearguard.models.errors import (
    ConflictError,
    IntegrityViolation,
    NotFoundError,
    UnsafePathError,
    UsageError,
)
from rearguard.models.integrity.verification import VersionCheck
from rearguard.models.registry.base import ManifestEntry
from rearguard.models.runtime import Runtime


def register(
    runtime: Runtime,
    name: str,
    source: Path,
    label: str,
    *,
    kind: AssetKind | None = AssetKind.MODEL,
    trained_on: str | None = None,
) -> list[ManifestEntry]:
    """Register a version as ``tester`` and return its manifest."""
    result = register_version(
        db=runtime.db,
        registry=runtime.registry,
        name=name,
        source=source,
        label=label,
        kind=kind,
        actor="tester",
        trained_on=trained_on,
    )
    return result.files


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, computed independently of rearguard."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def event_count(runtime: Runtime) -> int:
    """How many timeline events are stored."""
    with runtime.db.read_session() as session:
        return session.exec(select(func.count()).select_from(TimelineEvent)).one()


def version_rows(runtime: Runtime, name: str) -> list[tuple[str, str, str]]:
    """(label, status, digest) of every stored version of an asset."""
    with runtime.db.read_session() as session:
        rows = session.exec(
            select(AssetVersion.label, AssetVersion.status, AssetVersion.digest)
            .join(Asset, col(Asset.id) == AssetVersion.asset_id)
            .where(Asset.name == name)
            .order_by(col(AssetVersion.id))
        )
        return [(label, str(status), digest) for label, status, digest in rows]


def file_rows(runtime: Runtime) -> list[tuple[int, str, str, int]]:
    """Every manifest row stored, in a stable order."""
    with runtime.db.read_session() as session:
        rows = session.exec(
            select(
                VersionFile.version_id, VersionFile.path, VersionFile.sha256, VersionFile.size
            ).order_by(col(VersionFile.version_id), col(VersionFile.path))
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """The relative paths and contents of every file under a directory."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def assert_nothing_recorded(runtime: Runtime, name: str, *, events_before: int) -> None:
    """No asset row, no version directory, no event, no staging leftovers for ``name``."""
    with runtime.db.read_session() as session:
        assert session.exec(select(Asset).where(Asset.name == name)).first() is None
    versions = runtime.registry.assets / name / "versions"
    assert not versions.exists() or not any(versions.iterdir())
    assert event_count(runtime) == events_before
    staging = runtime.registry.staging
    assert not staging.exists() or not any(staging.iterdir())


def malicious_pickle() -> bytes:
    """A pickle that would run ``echo x`` through os.system if it were ever loaded (it is not)."""

    class RunsCommand:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo x",))

    return pickle.dumps(RunsCommand())


# -- registration ------------------------------------------------------------------------------


def test_register_directory_manifest_matches_source_bytes(runtime: Runtime, make_version) -> None:
    files = {
        "weights.bin": b"W" + os.urandom(70_000),
        "config/model.json": b'{"layers": 12}',
        "tokenizer/vocab.txt": "naïve\nwörter\n".encode(),
    }
    source = make_version("v1", files)

    manifest = register(runtime, "classifier", source, "v1")

    expected = sorted(
        (
            ManifestEntry(rel, hashlib.sha256(data).hexdigest(), len(data))
            for rel, data in files.items()
        ),
        key=lambda entry: entry.path,
    )
    assert manifest == expected
    with runtime.db.read_session() as session:
        asset = get_asset(session=session, name="classifier")
        version = get_version(session=session, asset=asset, label="v1")
        stored = manifest_of(session=session, version=version)
    assert {(e.path, e.sha256, e.size) for e in stored} == {
        (rel, sha256_of(source / rel), (source / rel).stat().st_size) for rel in files
    }
    assert version.status == VersionStatus.CANDIDATE
    assert version.registered_by == "tester"
    assert version.file_count == 3
    assert version.total_size == sum(len(d) for d in files.values())
    location = runtime.registry.version_location(asset="classifier", label="v1")
    assert tree_snapshot(location) == files


def test_register_single_file(runtime: Runtime, tmp_path: Path) -> None:
    source = tmp_path / "system-prompt.txt"
    source.write_text("You are a careful assistant.\n")

    manifest = register(runtime, "prompt", source, "2024-06-01", kind=AssetKind.PROMPT)

    assert manifest == [
        ManifestEntry("system-prompt.txt", sha256_of(source), source.stat().st_size)
    ]
    location = runtime.registry.version_location(asset="prompt", label="2024-06-01")
    assert tree_snapshot(location) == {"system-prompt.txt": source.read_bytes()}


def test_stored_files_are_read_only(runtime: Runtime, make_version) -> None:
    source = make_version("v1", {"a.bin": b"alpha", "nested/b.bin": b"beta"})

    manifest = register(runtime, "model", source, "v1")

    location = runtime.registry.version_location(asset="model", label="v1")
    for entry in manifest:
        for path in (location / entry.path, runtime.registry.object_path(entry.sha256)):
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o222 == 0, f"{path} is writable: {oct(mode)}"


def test_identical_content_is_stored_once(runtime: Runtime, make_version) -> None:
    shared = b"W" + os.urandom(4096)
    first = make_version("v1", {"weights.bin": shared, "readme.txt": b"first"})
    second = make_version("v2", {"weights.bin": shared, "readme.txt": b"second"})

    register(runtime, "model", first, "v1")
    register(runtime, "model", second, "v2")

    store = runtime.registry
    one = store.version_location(asset="model", label="v1") / "weights.bin"
    two = store.version_location(asset="model", label="v2") / "weights.bin"
    obj = store.object_path(hashlib.sha256(shared).hexdigest())
    assert os.path.samefile(one, obj)
    assert os.path.samefile(two, obj)
    objects = [p for p in store.objects.rglob("*") if p.is_file()]
    assert len(objects) == 3  # weights once, two different readmes


def test_same_label_twice_conflicts_and_changes_nothing(runtime: Runtime, make_version) -> None:
    register(runtime, "model", make_version("first", {"w.bin": b"original"}), "v1")
    location = runtime.registry.version_location(asset="model", label="v1")
    before_tree = tree_snapshot(location)
    before_versions = version_rows(runtime, "model")
    before_files = file_rows(runtime)
    before_events = event_count(runtime)

    with pytest.raises(ConflictError, match="already registered"):
        register(runtime, "model", make_version("second", {"w.bin": b"impostor"}), "v1")

    assert tree_snapshot(location) == before_tree == {"w.bin": b"original"}
    assert version_rows(runtime, "model") == before_versions
    assert len(before_versions) == 1
    assert file_rows(runtime) == before_files
    assert event_count(runtime) == before_events


def test_racing_registration_of_same_label_leaves_the_winner_intact(
    runtime: Runtime, make_version
) -> None:
    """Two registrations of one label that both pass the up-front check: one wins, whole.

    The loser is paused in the middle of copying (through its progress callback) while the
    winner registers completely, as a second process would.
    """
    loser_source = make_version("loser", {"w.bin": b"L" * (3 * 1024 * 1024)})
    winner_source = make_version("winner", {"w.bin": b"winner content"})
    raced = False

    def run_winner(_: int) -> None:
        nonlocal raced
        if not raced:
            raced = True
            register(runtime, "model", winner_source, "v1")

    with pytest.raises(ConflictError):
        register_version(
            db=runtime.db,
            registry=runtime.registry,
            name="model",
            source=loser_source,
            label="v1",
            kind=AssetKind.MODEL,
            actor="loser",
            progress=run_winner,
        )

    assert raced
    location = runtime.registry.version_location(asset="model", label="v1")
    assert tree_snapshot(location) == {"w.bin": b"winner content"}
    with runtime.db.read_session() as session:
        asset = get_asset(session=session, name="model")
        version = get_version(session=session, asset=asset, label="v1")
        assert version.registered_by == "tester"
        check = verify_one(session=session, registry=runtime.registry, asset=asset, version=version)
    assert check.ok, check.problems


@pytest.mark.parametrize("ref", ["nosuch@v1", "data@v9", "no-at-sign"])
def test_unknown_or_malformed_trained_on_writes_nothing(
    runtime: Runtime, make_version, ref: str
) -> None:
    register(
        runtime, "data", make_version("d1", {"rows.csv": b"a,b\n"}), "v1", kind=AssetKind.DATASET
    )
    events_before = event_count(runtime)

    with pytest.raises(UsageError):
        register(runtime, "model", make_version("m1"), "v1", trained_on=ref)

    assert_nothing_recorded(runtime, "model", events_before=events_before)


def test_trained_on_a_non_dataset_is_refused(runtime: Runtime, make_version) -> None:
    register(runtime, "base-model", make_version("b1"), "v1", kind=AssetKind.MODEL)
    events_before = event_count(runtime)

    with pytest.raises(UsageError, match="dataset"):
        register(runtime, "model", make_version("m1"), "v1", trained_on="base-model@v1")

    assert_nothing_recorded(runtime, "model", events_before=events_before)


def test_trained_on_a_dataset_records_lineage(runtime: Runtime, make_version) -> None:
    register(
        runtime, "data", make_version("d1", {"rows.csv": b"a,b\n"}), "v1", kind=AssetKind.DATASET
    )
    register(runtime, "model", make_version("m1"), "v1", trained_on="data@v1")

    with runtime.db.read_session() as session:
        data = get_version(
            session=session, asset=get_asset(session=session, name="data"), label="v1"
        )
        model = get_version(
            session=session, asset=get_asset(session=session, name="model"), label="v1"
        )
    assert model.trained_on_id == data.id


@pytest.mark.parametrize("target", ["absolute", "sibling-file", "sibling-dir"])
def test_symlink_escaping_the_source_is_refused(
    runtime: Runtime, make_version, tmp_path: Path, target: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    source = make_version("v1", {"weights.bin": b"weights"})
    link = source / "escape"
    if target == "absolute":
        os.symlink("/etc/hostname", link)
    elif target == "sibling-file":
        os.symlink("../../outside/secret.txt", link)
    else:
        os.symlink(outside, link)
    events_before = event_count(runtime)

    with pytest.raises(UnsafePathError):
        register(runtime, "model", source, "v1")

    assert_nothing_recorded(runtime, "model", events_before=events_before)


def test_symlink_inside_the_source_is_stored_as_its_target(runtime: Runtime, make_version) -> None:
    source = make_version("v1", {"weights.bin": b"weights"})
    os.symlink("weights.bin", source / "latest.bin")

    manifest = register(runtime, "model", source, "v1")

    digest = hashlib.sha256(b"weights").hexdigest()
    assert {(e.path, e.sha256) for e in manifest} == {
        ("latest.bin", digest),
        ("weights.bin", digest),
    }


@pytest.mark.parametrize(
    ("name", "label"),
    [("..", "v1"), ("a/b", "v1"), ("", "v1"), ("model", ".."), ("model", "../v1"), ("model", "")],
)
def test_unsafe_names_are_refused(runtime: Runtime, make_version, name: str, label: str) -> None:
    events_before = event_count(runtime)

    with pytest.raises(UsageError, match="invalid"):
        register(runtime, name, make_version("v1"), label)

    assert event_count(runtime) == events_before
    with runtime.db.read_session() as session:
        assert session.exec(select(func.count()).select_from(Asset)).one() == 0
    assert not runtime.registry.assets.exists() or not any(runtime.registry.assets.iterdir())


def test_missing_path_is_not_found(runtime: Runtime, tmp_path: Path) -> None:
    events_before = event_count(runtime)

    with pytest.raises(NotFoundError, match="does not exist"):
        register(runtime, "model", tmp_path / "nowhere", "v1")

    assert_nothing_recorded(runtime, "model", events_before=events_before)


def test_empty_directory_is_refused(runtime: Runtime, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "only" / "subdirs").mkdir(parents=True)
    events_before = event_count(runtime)

    with pytest.raises(UsageError, match="no files") as raised:
        register(runtime, "model", empty, "v1")

    assert not isinstance(raised.value, NotFoundError)
    assert_nothing_recorded(runtime, "model", events_before=events_before)


def _fifo(directory: Path) -> str:
    os.mkfifo(directory / "queue")
    return "queue is a FIFO"


def _socket(directory: Path) -> str:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(directory / "agent.sock"))
    listener.close()  # the socket file stays
    return "agent.sock is a socket"


def _fifo_in_subdirectory(directory: Path) -> str:
    (directory / "sub").mkdir()
    os.mkfifo(directory / "sub" / "queue")
    return "sub/queue is a FIFO"


def _symlink_to_a_fifo(directory: Path) -> str:
    os.mkfifo(directory / "queue")
    os.symlink("queue", directory / "link")
    return "is a FIFO"


def _dangling_symlink(directory: Path) -> str:
    os.symlink("missing.bin", directory / "link")
    return "link is a symlink to"


def _name_not_utf8(directory: Path) -> str:
    descriptor = os.open(os.fsencode(directory) + b"/weights-\xff.bin", os.O_CREAT | os.O_WRONLY)
    os.close(descriptor)
    return "weights-\\xff.bin: the name is not valid UTF-8"


def _directory_not_utf8(directory: Path) -> str:
    os.mkdir(os.fsencode(directory) + b"/shard-\xfe")
    (Path(os.fsdecode(os.fsencode(directory) + b"/shard-\xfe")) / "a.bin").write_bytes(b"a")
    return "shard-\\xfe: the name is not valid UTF-8"


@pytest.mark.parametrize(
    "plant",
    [
        _fifo,
        _socket,
        _fifo_in_subdirectory,
        _symlink_to_a_fifo,
        _dangling_symlink,
        _name_not_utf8,
        _directory_not_utf8,
    ],
)
def test_an_entry_that_cannot_be_stored_faithfully_is_refused_naming_it(
    runtime: Runtime, make_version, plant
) -> None:
    source = make_version("v1", {"weights.bin": b"weights"})
    needle = plant(source)
    events_before = event_count(runtime)

    with pytest.raises(UsageError) as raised:
        register(runtime, "model", source, "v1")

    assert raised.value.exit_code == 2 and needle in raised.value.message, raised.value.message
    assert_nothing_recorded(runtime, "model", events_before=events_before)
    assert not runtime.registry.staging.exists() or not any(runtime.registry.staging.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads whatever the permissions say")
@pytest.mark.parametrize("what", ["file", "directory"])
def test_an_unreadable_entry_is_refused_naming_it(runtime: Runtime, make_version, what) -> None:
    source = make_version("v1", {"weights.bin": b"weights", "sub/a.bin": b"a"})
    entry = source / ("weights.bin" if what == "file" else "sub")
    entry.chmod(0)
    try:
        with pytest.raises(UsageError, match=f"cannot read the {what} .*{entry.name}"):
            register(runtime, "model", source, "v1")
    finally:
        entry.chmod(0o755)
    assert not runtime.registry.staging.exists() or not any(runtime.registry.staging.iterdir())


# -- approval and promotion --------------------------------------------------------------------


def test_approve_records_approver_and_time(runtime: Runtime, make_version) -> None:
    register(runtime, "model", make_version("v1"), "v1")
    before = datetime.now(UTC)

    approve_version(db=runtime.db, registry=runtime.registry, name="model", label="v1", by="alice")

    after = datetime.now(UTC)
    with runtime.db.read_session() as session:
        version = get_version(
            session=session, asset=get_asset(session=session, name="model"), label="v1"
        )
        events = list(session.exec(select(TimelineEvent).order_by(col(TimelineEvent.seq))))
    assert version.status == VersionStatus.KNOWN_GOOD
    assert version.approved_by == "alice"
    assert version.approved_at is not None
    assert before <= version.approved_at <= after
    last = events[-1]
    assert (last.action, last.actor, last.asset, last.version) == (
        "version.known_good",
        "alice",
        "model",
        "v1",
    )


def test_approve_of_a_tampered_version_is_refused(runtime: Runtime, make_version) -> None:
    register(runtime, "model", make_version("v1"), "v1")
    tamper(runtime.registry.version_location(asset="model", label="v1") / "weights.bin")
    events_before = event_count(runtime)

    with pytest.raises(IntegrityViolation, match="sha256 mismatch"):
        approve_version(
            db=runtime.db, registry=runtime.registry, name="model", label="v1", by="alice"
        )

    with runtime.db.read_session() as session:
        version = get_version(
            session=session, asset=get_asset(session=session, name="model"), label="v1"
        )
    assert version.status == VersionStatus.CANDIDATE
    assert version.approved_by is None and version.approved_at is None
    assert event_count(runtime) == events_before


def test_approve_needs_a_name(runtime: Runtime, make_version) -> None:
    register(runtime, "model", make_version("v1"), "v1")

    with pytest.raises(UsageError, match="--by"):
        approve_version(db=runtime.db, registry=runtime.registry, name="model", label="v1", by=" ")


def production(runtime: Runtime, name: str) -> tuple[Path, str | None]:
    """Where the production symlink resolves, and the label the Alias row names."""
    link = runtime.registry.alias_location(asset=name, alias="production")
    with runtime.db.read_session() as session:
        asset = get_asset(session=session, name=name)
        row = session.get(Alias, (asset.id, "production"))
        label = session.get(AssetVersion, row.version_id).label if row else None
    return Path(link).resolve(), label


def test_promote_moves_symlink_and_alias_row(runtime: Runtime, make_version) -> None:
    register(runtime, "model", make_version("v1", {"w.bin": b"one"}), "v1")
    register(runtime, "model", make_version("v2", {"w.bin": b"two"}), "v2")
    store = runtime.registry

    first = promote_version(
        db=runtime.db, registry=store, name="model", label="v1", alias="production", actor="bob"
    )
    assert first is None
    target, label = production(runtime, "model")
    assert label == "v1"
    assert target == store.version_location(asset="model", label="v1").resolve()
    link = Path(store.alias_location(asset="model", alias="production"))
    assert link.is_symlink()
    assert (link / "w.bin").read_bytes() == b"one"

    previous = promote_version(
        db=runtime.db, registry=store, name="model", label="v2", alias="production", actor="bob"
    )
    assert previous == "v1"
    target, label = production(runtime, "model")
    assert label == "v2"
    assert target == store.version_location(asset="model", label="v2").resolve()
    assert (link / "w.bin").read_bytes() == b"two"
    with runtime.db.read_session() as session:
        moved = session.exec(
            select(TimelineEvent)
            .where(TimelineEvent.action == "alias.moved")
            .order_by(col(TimelineEvent.seq))
        ).all()
    assert [(e.version, e.actor) for e in moved] == [("v1", "bob"), ("v2", "bob")]


def test_promote_of_a_quarantined_version_is_refused(runtime: Runtime, make_version) -> None:
    store = runtime.registry
    register(runtime, "model", make_version("v1", {"w.bin": b"one"}), "v1")
    register(runtime, "model", make_version("v2", {"w.bin": b"two"}), "v2")
    promote_version(
        db=runtime.db, registry=store, name="model", label="v1", alias="production", actor="bob"
    )
    with runtime.db.session() as session:
        asset = get_asset(session=session, name="model")
        set_status(
            session=session,
            registry=store,
            asset=asset,
            version=get_version(session=session, asset=asset, label="v2"),
            status=VersionStatus.QUARANTINED,
            actor="tester",
            reason="test",
        )

    with pytest.raises(UsageError, match="quarantined"):
        promote_version(
            db=runtime.db, registry=store, name="model", label="v2", alias="production", actor="b"
        )

    target, label = production(runtime, "model")
    assert label == "v1"
    assert target == store.version_location(asset="model", label="v1").resolve()


def test_promote_of_a_tampered_version_is_refused(runtime: Runtime, make_version) -> None:
    store = runtime.registry
    register(runtime, "model", make_version("v1", {"w.bin": b"one"}), "v1")
    register(runtime, "model", make_version("v2", {"w.bin": b"two"}), "v2")
    promote_version(
        db=runtime.db, registry=store, name="model", label="v1", alias="production", actor="bob"
    )
    tamper(store.version_location(asset="model", label="v2") / "w.bin")

    with pytest.raises(IntegrityViolation):
        promote_version(
            db=runtime.db, registry=store, name="model", label="v2", alias="production", actor="b"
        )

    assert production(runtime, "model")[1] == "v1"


# -- verification ------------------------------------------------------------------------------


def check(runtime: Runtime, name: str, label: str) -> VersionCheck:
    """Verify one stored version now."""
    with runtime.db.read_session() as session:
        asset = get_asset(session=session, name=name)
        version = get_version(session=session, asset=asset, label=label)
        return verify_one(session=session, registry=runtime.registry, asset=asset, version=version)


def test_untouched_version_verifies(runtime: Runtime, make_version) -> None:
    register(runtime, "model", make_version("v1", {"a.bin": b"a", "b/c.txt": b"c"}), "v1")

    result = check(runtime, "model", "v1")

    assert result.ok and not result.tampered and not result.scan_blocked
    assert (result.files, result.bytes) == (2, 2)


def test_verification_detects_a_flipped_byte(runtime: Runtime, make_version) -> None:
    data = bytearray(b"W" + os.urandom(10_000))
    register(runtime, "model", make_version("v1", {"weights.bin": bytes(data)}), "v1")
    stored = runtime.registry.version_location(asset="model", label="v1") / "weights.bin"
    data[5000] ^= 0x01
    tamper(stored, data=bytes(data))

    result = check(runtime, "model", "v1")

    assert not result.ok and result.tampered
    assert result.problems == [result.problems[0]]
    assert result.problems[0].startswith("weights.bin: sha256 mismatch")


def test_verification_detects_a_deleted_file(runtime: Runtime, make_version) -> None:
    register(runtime, "model", make_version("v1", {"a.bin": b"a", "b.bin": b"b"}), "v1")
    (runtime.registry.version_location(asset="model", label="v1") / "b.bin").unlink()

    result = check(runtime, "model", "v1")

    assert result.tampered
    assert result.problems == ["b.bin: missing"]


def test_verification_detects_an_added_file(runtime: Runtime, make_version) -> None:
    register(runtime, "model", make_version("v1", {"a.bin": b"a"}), "v1")
    (runtime.registry.version_location(asset="model", label="v1") / "backdoor.py").write_text(
        "import os\n"
    )

    result = check(runtime, "model", "v1")

    assert result.tampered
    assert len(result.problems) == 1
    assert result.problems[0].startswith("backdoor.py: unexpected file")


def test_verification_detects_a_deleted_version_directory(runtime: Runtime, make_version) -> None:
    register(runtime, "model", make_version("v1", {"a.bin": b"a"}), "v1")
    location = runtime.registry.version_location(asset="model", label="v1")
    (location / "a.bin").unlink()
    location.rmdir()

    result = check(runtime, "model", "v1")

    assert result.tampered and not result.ok
    assert "missing" in result.problems[0]


def test_verification_flags_a_malicious_pickle_without_loading_it(
    runtime: Runtime, make_version
) -> None:
    payload = malicious_pickle()
    assert b"system" in payload
    register(runtime, "model", make_version("v1", {"model.pkl": payload}), "v1")

    result = check(runtime, "model", "v1")

    assert result.scan_blocked
    assert not result.tampered  # the bytes are what was registered; the content is the danger
    assert not result.ok
    assert any(
        "os.system" in problem or "posix.system" in problem for problem in result.problems
    ), result.problems
    assert all(problem.startswith("model.pkl") for problem in result.problems)
    with pytest.raises(IntegrityViolation, match="system"):
        approve_version(
            db=runtime.db, registry=runtime.registry, name="model", label="v1", by="alice"
        )
