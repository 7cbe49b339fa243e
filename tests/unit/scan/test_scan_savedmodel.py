"""SavedModels, frozen graphs and keras_metadata.pb: dangerous ops are found in the protobuf."""

from __future__ import annotations

import json

import pytest
from format_writers import (
    bytes_field,
    function_def,
    graph_def,
    int_field,
    keras_metadata,
    node_def,
    saved_model,
    scan_bytes,
    severities,
    user_object,
)
from keras_configs import keras2_lambda_layer, keras2_model

from rearguard.models.integrity.scan import onnx, savedmodel
from rearguard.models.integrity.scan.findings import Finding, Severity

# What every TF2 SavedModel holds: variables, a restore function and a save function whose path
# is the caller's (a function argument), through StringJoin and ShardedFilename.
SAVE_FUNCTION = function_def(
    "__inference__traced_save_1234",
    [
        node_def("StringJoin", "StringJoin", ["file_prefix", "Const:output:0"]),
        node_def("Const", "Const"),
        node_def("ShardedFilename", "ShardedFilename", ["StringJoin:output:0", "num_shards"]),
        node_def(
            "SaveV2",
            "SaveV2",
            ["ShardedFilename:filename:0", "names", "slices", "dense/kernel"],
        ),
        node_def("MergeV2Checkpoints", "MergeV2Checkpoints", ["prefixes", "file_prefix"]),
    ],
)
RESTORE_FUNCTION = function_def(
    "__inference__traced_restore_1250",
    [node_def("RestoreV2", "RestoreV2", ["file_prefix", "names", "slices"])],
)
# TF1's saver: the path is a PlaceholderWithDefault over a Const, which a caller may feed.
TF1_SAVER = [
    node_def("save/filename/input", "Const"),
    node_def("save/filename", "PlaceholderWithDefault", ["save/filename/input"]),
    node_def("save/Const", "PlaceholderWithDefault", ["save/filename"]),
    node_def("save/SaveV2", "SaveV2", ["save/Const", "names", "slices", "w"]),
]
SERVING_NODES = [
    node_def("serving_default_x", "Placeholder"),
    node_def("dense/kernel", "VarHandleOp"),
    node_def("dense/MatMul", "MatMul", ["serving_default_x", "dense/kernel"]),
    node_def("StatefulPartitionedCall", "StatefulPartitionedCall", ["serving_default_x"]),
]


def benign_graph(*extra_nodes: bytes, functions: tuple[bytes, ...] = ()) -> bytes:
    return graph_def(
        [*SERVING_NODES, *TF1_SAVER, *extra_nodes],
        [SAVE_FUNCTION, RESTORE_FUNCTION, *functions],
    )


def scan(data: bytes) -> list[Finding]:
    assert savedmodel.sniff(data[:65536])
    assert not onnx.sniff(data[:65536])
    return scan_bytes(savedmodel, data, "saved_model.pb")


def test_a_benign_saved_model_has_no_findings() -> None:
    assert scan(saved_model(benign_graph())) == []


@pytest.mark.parametrize("op", ["PyFunc", "PyFuncStateless", "EagerPyFunc"])
def test_py_func_in_the_graph_is_dangerous(op: str) -> None:
    data = saved_model(benign_graph(node_def("evil", op, ["serving_default_x"])))
    findings = scan(data)
    assert [(f.construct, f.severity) for f in findings] == [(op, Severity.DANGEROUS)]
    assert "node 'evil'" in findings[0].reason
    offset = findings[0].offset
    assert offset is not None
    assert data[offset : offset + 6] == bytes_field(1, "evil")[:6]


def test_py_func_in_a_library_function_is_dangerous() -> None:
    function = function_def(
        "__inference_serve_99",
        [node_def("x", "Identity", ["a"]), node_def("py", "EagerPyFunc", ["x:output:0"])],
    )
    findings = scan(saved_model(benign_graph(functions=(function,))))
    assert [f.construct for f in findings] == ["EagerPyFunc"]
    assert "function '__inference_serve_99'" in findings[0].reason


@pytest.mark.parametrize("op", ["WriteFile", "ReadFile", "MatchingFiles", "ImmutableConst"])
def test_file_ops_are_dangerous(op: str) -> None:
    findings = scan(saved_model(benign_graph(node_def("f", op, ["path", "contents"]))))
    assert [(f.construct, f.severity) for f in findings] == [(op, Severity.DANGEROUS)]


@pytest.mark.parametrize(("op", "position"), [("SaveV2", 0), ("MergeV2Checkpoints", 1)])
def test_a_checkpoint_written_to_a_constant_path_is_dangerous(op: str, position: int) -> None:
    inputs = ["a", "b", "c"]
    inputs[position] = "evil_path:0"
    function = function_def(
        "__inference_serve_7", [node_def("evil_path", "Const"), node_def("w", op, inputs)]
    )
    findings = scan(saved_model(benign_graph(functions=(function,))))
    assert [(f.construct, f.severity) for f in findings] == [(op, Severity.DANGEROUS)]
    assert "path fixed in the model" in findings[0].reason


def test_an_old_tf1_saver_path_the_saver_def_feeds_is_not_reported() -> None:
    # TensorFlow 1 before 1.4: the saver's path is a plain Const the caller feeds at save time.
    saver = [node_def("save/Const", "Const"), node_def("save/SaveV2", "SaveV2", ["save/Const"])]
    graph = graph_def([*SERVING_NODES, *saver])
    assert scan(saved_model(graph, saver_filename="save/Const:0")) == []
    findings = scan(saved_model(graph))
    assert [(f.construct, f.severity) for f in findings] == [("SaveV2", Severity.DANGEROUS)]


def test_a_frozen_graph_is_scanned() -> None:
    data = graph_def([node_def("input", "Placeholder"), node_def("evil", "PyFunc", ["input"])])
    assert [f.construct for f in scan(data)] == ["PyFunc"]


def test_keras_metadata_with_a_lambda_is_dangerous_once() -> None:
    lambda_layer = keras2_lambda_layer()
    model = keras2_model(lambda_layer)
    data = keras_metadata(
        [
            ("root", "_tf_keras_sequential", json.dumps(model)),
            ("root.layer-0", "_tf_keras_layer", json.dumps({"class_name": "Dense", "config": {}})),
            ("root.layer-1", "_tf_keras_layer", json.dumps(lambda_layer)),
        ]
    )
    findings = scan(data)
    assert [(f.construct, f.severity) for f in findings] == [
        ("Lambda layer 'lambda'", Severity.DANGEROUS)
    ]


def test_keras_metadata_in_the_object_graph_is_scanned() -> None:
    objects = [
        user_object("_tf_keras_layer", json.dumps(keras2_lambda_layer())),
        user_object("trackable_list_wrapper", ""),
    ]
    findings = scan(saved_model(benign_graph(), objects))
    assert [f.construct for f in findings] == ["Lambda layer 'lambda'"]


def test_keras_metadata_that_is_not_json_is_malformed() -> None:
    findings = scan(keras_metadata([("root", "_tf_keras_model", "{oops")]))
    assert severities(findings) == {Severity.MALFORMED}


def test_findings_before_a_malformed_node_are_kept() -> None:
    broken = b"\x0b\x00"  # a group: no format read here uses one
    data = saved_model(benign_graph(node_def("evil", "PyFunc"), broken))
    findings = scan(data)
    assert [f.severity for f in findings] == [Severity.DANGEROUS, Severity.MALFORMED]
    assert findings[1].offset == data.index(broken)


def test_every_truncation_is_malformed() -> None:
    data = saved_model(benign_graph())
    for cut in range(40, len(data), 5):
        findings = scan_bytes(savedmodel, data[:cut])
        assert severities(findings) == {Severity.MALFORMED}, cut


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            int_field(1, 1) + b"\x12" + b"\xff" * 9 + b"\x01" + b"\x0a\x00", id="huge length"
        ),
        pytest.param(int_field(1, 1) + b"\x12\x04\x0a\x05ab", id="length past its message"),
        pytest.param(int_field(1, 1) + b"\x12\x04\x12\x02\x0b\x00", id="group wire type"),
        pytest.param(
            int_field(1, 1) + b"\x12\x0f\x12\x0d\x0a\x0b" + b"\x80" * 11, id="long varint"
        ),
    ],
)
def test_hostile_protobuf_is_malformed(data: bytes) -> None:
    findings = scan_bytes(savedmodel, data)
    assert [f.severity for f in findings] == [Severity.MALFORMED]


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\x08\x07\x12\x07pytorch\x1a\x032.1",  # ONNX
        b"\x08\x02\x12\x04\x0a\x02ab",  # schema version 2
        b"GGUF\x03\x00\x00\x00",
        b'{"class_name": "Sequential"}',
        b"\x0a\x05hello\x12\x05world",  # field 1 string, field 2 string: not a NodeDef
    ],
)
def test_sniff_rejects_other_protobufs_and_formats(head: bytes) -> None:
    assert not savedmodel.sniff(head)
