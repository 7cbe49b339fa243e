"""``rearguard scan`` and the registry commands, through the real ``rearguard`` command."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
from conftest import run_cli

EVIL = b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00id\x85R."
UNKNOWN_CLASS = b"\x80\x02cmypkg\nModel\n)R."


@pytest.fixture
def env(home: Path, database_url: str) -> dict[str, str]:
    """A ``rearguard`` environment on the test's home and database (no Prefect needed)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REARGUARD_")}
    return {
        **clean,
        "REARGUARD_HOME": str(home),
        "REARGUARD_DATABASE_URL": database_url,
        "REARGUARD_USER": "operator",
    }


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    (folder / "nested").mkdir(parents=True)
    (folder / "clean.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=4))
    (folder / "README.md").write_text("# a model\n")
    (folder / "nested" / "notes.txt").write_bytes(gzip.compress(EVIL))
    with zipfile.ZipFile(folder / "model.pt", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps([1, 2], protocol=2))
        archive.writestr("archive/extra", UNKNOWN_CLASS)
    return folder


def test_scan_lists_every_finding_and_exits_3(corpus: Path, env: dict[str, str]) -> None:
    result = run_cli("scan", str(corpus), env=env, cwd=corpus)

    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert any("notes.txt @" in line and "dangerous posix.system" in line for line in lines)
    assert any(
        "model.pt!archive/extra @" in line and "unknown mypkg.Model" in line for line in lines
    )
    assert "4 file(s) scanned, 2 finding(s), 2 blocking trust" in result.stderr
    assert "Traceback" not in result.stderr


def test_scan_json(corpus: Path, env: dict[str, str]) -> None:
    result = run_cli("scan", "--json", str(corpus / "model.pt"), env=env)

    assert result.returncode == 3
    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert document["findings"] == [
        {
            "file": str(corpus / "model.pt"),
            "member": "archive/extra",
            "offset": 2,
            "construct": "mypkg.Model",
            "severity": "unknown",
            "reason": "not on the allow-list",
            "blocks": True,
        }
    ]


def test_scan_of_clean_files_exits_0(corpus: Path, env: dict[str, str]) -> None:
    result = run_cli("scan", str(corpus / "clean.pkl"), str(corpus / "README.md"), env=env)

    assert (result.returncode, result.stdout) == (0, "")


def test_scan_of_a_missing_path_is_one_line_and_exits_2(
    tmp_path: Path, env: dict[str, str]
) -> None:
    result = run_cli("scan", str(tmp_path / "nope"), env=env)

    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot read")
    assert len(result.stderr.strip().splitlines()) == 1


def test_scan_of_an_unreadable_file_exits_2(tmp_path: Path, env: dict[str, str]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "locked.pkl"
    path.write_bytes(EVIL)
    path.chmod(0)

    assert run_cli("scan", str(path), env=env).returncode == 2


def test_register_makes_a_flagged_version_suspect_and_verify_exits_3(
    tmp_path: Path, env: dict[str, str]
) -> None:
    source = tmp_path / "v1"
    source.mkdir()
    (source / "model.sav").write_bytes(EVIL)  # no pickle suffix: content decides

    registered = run_cli(
        "assets", "register", "m", str(source), "--version", "v1", "--kind", "model", env=env
    )
    verified = run_cli("assets", "verify", "m", env=env)
    approved = run_cli("assets", "approve", "m", "v1", "--by", "alice", env=env)

    assert registered.returncode == 3, registered.stderr
    assert "status suspect" in registered.stdout
    assert "posix.system" in registered.stderr
    assert verified.returncode == 3
    assert "model.sav" in verified.stdout and "posix.system" in verified.stdout
    assert approved.returncode == 3
    assert approved.stderr.startswith("error:") and "posix.system" in approved.stderr


def test_scan_reads_other_formats_by_content_inside_containers(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The engine hands every member to the format scanners whatever its name: a Keras
    archive's Lambda layer, a tokenizer config's template escape, a bare template file."""
    from keras_configs import keras3_lambda_layer, keras3_model

    folder = tmp_path / "model"
    folder.mkdir()
    with zipfile.ZipFile(folder / "classifier.bin", "w") as archive:
        archive.writestr("config.json", json.dumps(keras3_model(keras3_lambda_layer())))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.4.1"}))
    escape = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"
    (folder / "settings").write_text(json.dumps({"chat_template": escape}))
    (folder / "prompt.txt").write_text(escape)
    benign = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": benign}))

    result = run_cli("scan", str(folder), "--json", env=env, cwd=tmp_path)

    assert result.returncode == 3, result.stderr
    flagged = {Path(f["file"]).name for f in json.loads(result.stdout)["findings"]}
    assert flagged == {"classifier.bin", "settings", "prompt.txt"}
