"""ONNX: external data outside the model's directory and custom op domains are found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from format_writers import bytes_field, int_field, message, scan_bytes, severities
from onnx import TensorProto, helper, numpy_helper

from rearguard.models.integrity.scan import onnx as onnx_scan
from rearguard.models.integrity.scan import savedmodel
from rearguard.models.integrity.scan.findings import Finding, Severity
from rearguard.models.integrity.scan.protobuf import head_fields


def weights(name: str, shape: tuple[int, ...] = (4, 4)) -> TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)


def external(tensor: TensorProto, location: str) -> TensorProto:
    """Point a tensor's data at a file, as onnx's external data helper does."""
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def model(
    *extra_nodes: onnx.NodeProto,
    initializers: tuple[TensorProto, ...] = (),
    functions: tuple[onnx.FunctionProto, ...] = (),
    branch: onnx.GraphProto | None = None,
) -> onnx.ModelProto:
    """A small model with standard, ML and ONNX Runtime ops, and an If with subgraphs."""
    then_branch = branch or helper.make_graph(
        [helper.make_node("Relu", ["y"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["y"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])],
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["y"]),
        helper.make_node("FusedMatMul", ["y", "w"], ["f"], domain="com.microsoft"),
        helper.make_node("Normalizer", ["y"], ["n"], domain="ai.onnx.ml", norm="L2"),
        helper.make_node("ReduceSum", ["y"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["c"]),
        helper.make_node("If", ["c"], ["out"], then_branch=then_branch, else_branch=else_branch),
        *extra_nodes,
    ]
    graph = helper.make_graph(
        nodes,
        "main",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])],
        initializer=[
            weights("w"),
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
            *initializers,
        ],
    )
    return helper.make_model(
        graph,
        producer_name="pytorch",
        producer_version="2.4.0",
        opset_imports=[
            helper.make_opsetid("", 17),
            helper.make_opsetid("ai.onnx.ml", 3),
            helper.make_opsetid("com.microsoft", 1),
        ],
        functions=list(functions),
    )


def scan(proto: onnx.ModelProto) -> list[Finding]:
    data = proto.SerializeToString()
    assert onnx_scan.sniff(data[:65536])
    assert not savedmodel.sniff(data[:65536])
    return scan_bytes(onnx_scan, data, "model.onnx")


def test_a_benign_model_has_no_findings() -> None:
    assert scan(model()) == []


def test_a_model_saved_with_external_data_beside_it_has_no_findings(tmp_path: Path) -> None:
    proto = model(initializers=(weights("big", (64, 64)),))
    (tmp_path / "data").mkdir()
    onnx.save_model(
        proto,
        tmp_path / "model.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="data/model.onnx.data",
        size_threshold=0,
    )
    data = (tmp_path / "model.onnx").read_bytes()
    assert b"data/model.onnx.data" in data
    assert scan_bytes(onnx_scan, data) == []


@pytest.mark.parametrize(
    "location",
    [
        "../../../../etc/passwd",
        "/etc/passwd",
        "data/../../secret.bin",
        "C:\\Windows\\win.ini",
        "..\\..\\secret.bin",
    ],
)
def test_external_data_outside_the_directory_is_dangerous(location: str) -> None:
    findings = scan(model(initializers=(external(weights("leak"), location),)))
    assert [(f.construct, f.severity) for f in findings] == [
        (f"external data {location!r}", Severity.DANGEROUS)
    ]
    assert "tensor 'leak'" in findings[0].reason


def test_external_data_in_a_subgraph_and_a_constant_attribute_is_found() -> None:
    constant = helper.make_node(
        "Constant", [], ["k"], value=external(weights("const"), "/etc/shadow")
    )
    branch = helper.make_graph(
        [helper.make_node("Relu", ["y"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])],
        initializer=[external(weights("inner"), "../inner.bin")],
    )
    findings = scan(model(constant, branch=branch))
    assert {f.construct for f in findings} == {
        "external data '../inner.bin'",
        "external data '/etc/shadow'",
    }


def test_a_custom_op_domain_is_unknown_once_per_op() -> None:
    nodes = [helper.make_node("Backdoor", ["y"], [f"b{i}"], domain="com.evil") for i in range(3)]
    findings = scan(model(*nodes))
    assert [(f.construct, f.severity) for f in findings] == [
        ("com.evil::Backdoor", Severity.UNKNOWN)
    ]
    assert "(3 nodes)" in findings[0].reason


def test_a_function_defined_in_the_model_is_not_a_custom_op() -> None:
    body = [helper.make_node("Relu", ["a"], ["b"])]
    function = helper.make_function(
        "local.functions", "MyRelu", ["a"], ["b"], body, [helper.make_opsetid("", 17)]
    )
    call = helper.make_node("MyRelu", ["y"], ["r"], domain="local.functions")
    assert scan(model(call, functions=(function,))) == []


def test_a_custom_op_inside_a_function_is_unknown() -> None:
    body = [helper.make_node("Hook", ["a"], ["b"], domain="com.evil")]
    function = helper.make_function(
        "local.functions", "Wrapped", ["a"], ["b"], body, [helper.make_opsetid("com.evil", 1)]
    )
    call = helper.make_node("Wrapped", ["y"], ["r"], domain="local.functions")
    findings = scan(model(call, functions=(function,)))
    assert [f.construct for f in findings] == ["com.evil::Hook"]


def test_truncations_inside_the_graph_are_malformed() -> None:
    data = model(initializers=(external(weights("leak"), "/etc/passwd"),)).SerializeToString()
    graph = next(f for f in head_fields(data) if f.number == 7)
    for cut in range(graph.value, graph.value + graph.length, 11):
        findings = scan_bytes(onnx_scan, data[:cut])
        assert Severity.MALFORMED in severities(findings), cut


def test_subgraphs_nested_past_the_limit_are_malformed() -> None:
    graph = message(bytes_field(1, message(bytes_field(4, "Relu"))))
    for _ in range(200):
        attribute = message(bytes_field(1, "then_branch"), bytes_field(6, graph))
        graph = message(bytes_field(1, message(bytes_field(4, "If"), bytes_field(5, attribute))))
    data = int_field(1, 9) + bytes_field(2, "x") + bytes_field(7, graph)
    findings = scan_bytes(onnx_scan, data)
    assert [f.severity for f in findings] == [Severity.MALFORMED]
    assert "nested deeper" in findings[0].reason


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\x08\x01\x12\x04\x0a\x02\x08\x01",  # a SavedModel
        b"\x08\x09\x12\x03\x00\xff\x01",  # producer name not text
        b"\x08\x09\x7a\x00",  # field 15 is not ModelProto's
        b"GGUF",
    ],
)
def test_sniff_rejects_what_is_not_an_onnx_model(head: bytes) -> None:
    assert not onnx_scan.sniff(head)
