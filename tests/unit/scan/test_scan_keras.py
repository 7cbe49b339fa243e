"""Keras configs and HDF5 files: Lambda layers and custom objects are found, nothing is loaded."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from format_writers import scan_bytes, severities
from keras_configs import (
    keras2_lambda_layer,
    keras2_model,
    keras3_function_lambda,
    keras3_lambda_layer,
    keras3_model,
)

from rearguard.models.integrity.scan import keras
from rearguard.models.integrity.scan.findings import Finding, Location, Severity

WHERE = Location("model.keras", "config.json")


def scan_config(config: Any) -> list[Finding]:
    return keras.scan_config(config, location=WHERE)


def test_benign_keras3_and_keras2_configs_have_no_findings() -> None:
    assert scan_config(keras3_model()) == []
    assert scan_config(keras2_model()) == []


def test_a_keras_hub_model_is_keras_own() -> None:
    backbone = {
        "module": "keras_hub.src.models.gemma.gemma_backbone",
        "class_name": "GemmaBackbone",
        "config": {"name": "gemma_backbone", "vocabulary_size": 256000, "num_layers": 18},
        "registered_name": "keras_hub>GemmaBackbone",
    }
    assert scan_config(keras3_model(backbone)) == []


def test_a_lambda_with_bytecode_is_dangerous() -> None:
    findings = scan_config(keras3_model(keras3_lambda_layer()))
    assert [(f.construct, f.severity) for f in findings] == [
        ("Lambda layer 'lambda'", Severity.DANGEROUS)
    ]
    assert "marshalled Python bytecode" in findings[0].reason
    assert (findings[0].file, findings[0].member) == ("model.keras", "config.json")


def test_a_keras2_lambda_is_dangerous() -> None:
    findings = scan_config(keras2_model(keras2_lambda_layer()))
    assert [f.severity for f in findings] == [Severity.DANGEROUS]
    assert "marshalled Python bytecode" in findings[0].reason


@pytest.mark.parametrize(
    ("module", "function"),
    [
        ("keras.config", "enable_unsafe_deserialization"),
        ("keras.models", "load_model"),
        ("os", "system"),
    ],
)
def test_a_lambda_calling_a_function_reference_is_dangerous(module: str, function: str) -> None:
    findings = scan_config(keras3_model(keras3_function_lambda(module, function)))
    assert [f.severity for f in findings] == [Severity.DANGEROUS]
    assert f"calls {module}.{function}" in findings[0].reason


def test_a_keras_gadget_function_outside_a_lambda_is_dangerous() -> None:
    layer = keras3_function_lambda("keras.utils", "get_file")["config"]["function"]
    findings = scan_config(keras3_model({"class_name": "Activation", "config": layer}))
    assert [(f.construct, f.severity) for f in findings] == [
        ("keras.utils.get_file", Severity.DANGEROUS)
    ]


@pytest.mark.parametrize(
    ("layer", "construct"),
    [
        (
            {"module": "my_package.layers", "class_name": "Attention", "config": {}},
            "my_package.layers.Attention",
        ),
        (
            {"module": "subprocess", "class_name": "Popen", "config": {"args": ["id"]}},
            "subprocess.Popen",
        ),
        (
            {"module": "helpers", "class_name": "function", "config": "swish2"},
            "helpers.swish2",
        ),
        (
            {
                "module": None,
                "class_name": "Attention",
                "config": {},
                "registered_name": "MyPackage>Attention",
            },
            "MyPackage>Attention",
        ),
    ],
)
def test_custom_objects_are_unknown(layer: dict[str, Any], construct: str) -> None:
    findings = scan_config(keras3_model(layer))
    assert [(f.construct, f.severity) for f in findings] == [(construct, Severity.UNKNOWN)]


@pytest.mark.parametrize("class_name", ["TFSMLayer", "TorchModuleWrapper"])
def test_layers_that_load_other_files_are_dangerous(class_name: str) -> None:
    layer = {
        "module": "keras.layers",
        "class_name": class_name,
        "config": {"name": "x", "filepath": "/tmp/other"},
    }
    assert severities(scan_config(keras3_model(layer))) == {Severity.DANGEROUS}


@pytest.mark.parametrize(
    "odd",
    [
        {"class_name": "function", "config": {"not": "a name"}, "module": "keras.ops"},
        {"class_name": "Lambda", "config": ["not", "a", "dict"]},
        {"class_name": "Dense", "config": None, "registered_name": 5, "module": 7},
    ],
)
def test_odd_shapes_are_judged_without_errors(odd: dict[str, Any]) -> None:
    scan_config(keras3_model(odd))


def test_a_nested_model_is_walked_and_deep_configs_do_not_recurse() -> None:
    inner = keras3_model(keras3_lambda_layer())
    nested: Any = keras3_model(inner)
    for _ in range(5000):
        nested = {"wrapped": [nested]}
    assert [f.construct for f in scan_config(nested)] == ["Lambda layer 'lambda'"]


def write_h5(path: Path, config: object | None, **attrs: object) -> bytes:
    with h5py.File(path, "w", **attrs) as file:
        if config is not None:
            file.attrs["model_config"] = json.dumps(config).encode()
            file.attrs["keras_version"] = "2.15.0"
        weights = file.create_group("model_weights/dense")
        weights.create_dataset("kernel:0", data=np.zeros((8, 4), dtype=np.float32))
    return path.read_bytes()


def test_a_benign_h5_model_has_no_findings(tmp_path: Path) -> None:
    data = write_h5(tmp_path / "model.h5", keras2_model())
    assert keras.sniff(data[:65536])
    assert scan_bytes(keras, data) == []


def test_an_h5_lambda_is_dangerous(tmp_path: Path) -> None:
    data = write_h5(tmp_path / "model.h5", keras2_model(keras2_lambda_layer()))
    findings = scan_bytes(keras, data, "model.h5")
    assert [(f.file, f.construct, f.severity) for f in findings] == [
        ("model.h5", "Lambda layer 'lambda'", Severity.DANGEROUS)
    ]


def test_an_h5_with_a_user_block_is_sniffed_and_scanned(tmp_path: Path) -> None:
    data = write_h5(tmp_path / "model.h5", keras2_model(keras2_lambda_layer()), userblock_size=1024)
    assert data[:8] != keras.HDF5_MAGIC
    assert keras.sniff(data[:65536])
    assert severities(scan_bytes(keras, data)) == {Severity.DANGEROUS}


def test_an_hdf5_file_without_a_model_config_has_no_findings(tmp_path: Path) -> None:
    assert scan_bytes(keras, write_h5(tmp_path / "data.h5", None)) == []


def test_an_h5_config_that_is_not_json_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as file:
        file.attrs["model_config"] = b"{not json"
    assert severities(scan_bytes(keras, path.read_bytes())) == {Severity.MALFORMED}


def test_a_truncated_or_corrupt_h5_is_malformed(tmp_path: Path) -> None:
    data = write_h5(tmp_path / "model.h5", keras2_model(keras2_lambda_layer()))
    corrupt = data[:8] + b"\xff" * 200 + data[208:]
    for broken in (data[:100], data[: len(data) // 2], corrupt):
        assert Severity.MALFORMED in severities(scan_bytes(keras, broken))


def test_without_h5py_an_hdf5_file_is_not_scanned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_h5(tmp_path / "model.h5", keras2_model())
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if the keras extra were not installed
    findings = scan_bytes(keras, data)
    assert [(f.severity, f.reason) for f in findings] == [
        (Severity.NOT_SCANNED, "not scanned: install rearguard[keras]")
    ]


@pytest.mark.parametrize(
    "head", [b"", b"\x89HDF", b"x" * 512 + b"\x89HDF\r\n\x1a\n", b"x" * 100 + b"\x89HDF\r\n\x1a\n"]
)
def test_sniff_needs_the_signature_at_a_power_of_two_offset(head: bytes) -> None:
    assert keras.sniff(head) == head.startswith(b"x" * 512)
