"""ONNX models: external data that leaves the model's directory, and custom op domains.

The ``ModelProto`` is walked, reading forward only, with
:mod:`~rearguard.models.integrity.scan.protobuf` (the ``onnx`` package is not needed): the
main graph, every subgraph held by a node's attributes (``If``, ``Loop``, ``Scan``), the
training graphs and the model's local functions. Reported:

- ``dangerous``: a tensor whose ``external_data`` ``location`` is absolute or climbs out of the
  model's directory (``..``): loading reads that file into the model (CVE-2022-25882,
  CVE-2024-27318), so a served model can leak any file the server can read;
- ``unknown``: a node whose op domain is not one of ONNX's or ONNX Runtime's own
  (:data:`STANDARD_DOMAINS`) and is not a function defined in the model: running it needs a
  custom op library, native code loaded with the model. One finding per (domain, op).

Not detected: external data that reaches outside through a symbolic link inside the model's
directory (the file tree, not the model, says so).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from rearguard.models.integrity.scan.findings import Finding, Location, Severity
from rearguard.models.integrity.scan.protobuf import (
    LEN,
    VARINT,
    Span,
    head_fields,
    iter_fields,
    read_text,
    whole,
)
from rearguard.models.integrity.scan.reading import ByteSource, MalformedInput

__all__ = ["STANDARD_DOMAINS", "scan", "sniff"]

STANDARD_DOMAINS = frozenset(
    {
        "",
        "ai.onnx",
        "ai.onnx.ml",
        "ai.onnx.training",
        "ai.onnx.preview.training",
        "com.microsoft",
        "com.microsoft.nchwc",
        "com.microsoft.experimental",
    }
)
"""Op domains implemented by ONNX itself or built into ONNX Runtime."""

# Field numbers (onnx/onnx.proto3).
_MODEL_GRAPH = 7
_MODEL_TRAINING_INFO = 20
_MODEL_FUNCTIONS = 25
_TRAINING_GRAPHS = (1, 2)
_GRAPH_NODE = 1
_GRAPH_INITIALIZER = 5
_GRAPH_SPARSE_INITIALIZER = 15
_NODE_OP_TYPE = 4
_NODE_ATTRIBUTE = 5
_NODE_DOMAIN = 7
_ATTRIBUTE_TENSOR = 5
_ATTRIBUTE_GRAPH = 6
_ATTRIBUTE_TENSORS = 10
_ATTRIBUTE_GRAPHS = 11
_ATTRIBUTE_SPARSE_TENSOR = 22
_ATTRIBUTE_SPARSE_TENSORS = 23
_SPARSE_PARTS = (1, 2)
_TENSOR_NAME = 8
_TENSOR_EXTERNAL_DATA = 13
_ENTRY_KEY = 1
_ENTRY_VALUE = 2
_FUNCTION_NAME = 1
_FUNCTION_NODE = 7
_FUNCTION_DOMAIN = 10

# ModelProto's fields and their wire types, for the sniff.
_MODEL_FIELDS = {
    1: VARINT,
    2: LEN,
    3: LEN,
    4: LEN,
    5: VARINT,
    6: LEN,
    7: LEN,
    8: LEN,
    14: LEN,
    20: LEN,
    25: LEN,
    26: LEN,
}
_TEXT_FIELDS = (2, 3, 4)
_MAX_IR_VERSION = 100
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")


def sniff(head: bytes) -> bool:
    """Whether ``head`` starts an ONNX ``ModelProto``.

    Cheap: the first tags of the head are parsed. A model starts with ``ir_version``, then
    fields of ``ModelProto`` only, with readable producer and domain strings (which tells it
    from a SavedModel, whose second field is a message).
    """
    if head[:1] != b"\x08":  # the tag of ir_version, field 1, a varint
        return False
    fields = head_fields(head, limit=8)
    if len(fields) < 2 or fields[0].number != 1 or fields[0].wire_type != VARINT:
        return False
    if not 1 <= fields[0].value <= _MAX_IR_VERSION:
        return False
    for item in fields[1:]:
        if _MODEL_FIELDS.get(item.number) != item.wire_type:
            return False
        if item.number in _TEXT_FIELDS:
            text = head[item.value : item.value + item.length]
            if not text.isascii() or not text.decode().isprintable():
                return False
    return True


@dataclass
class _Model:
    """What the walk collects: custom-domain nodes, the model's functions, escaping paths."""

    custom_nodes: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    """(domain, op) -> (offset of its first node, number of nodes)."""
    functions: set[tuple[str, str]] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)


def _children(source: ByteSource, span: Span, numbers: tuple[int, ...]) -> Iterator[Span]:
    for item in iter_fields(source, span):
        if item.number in numbers:
            yield span.child(item)


def _escape(path: str) -> str | None:
    """Why an external data location is outside the model's directory, or None."""
    normalized = path.replace("\\", "/")
    if normalized.startswith("/") or _WINDOWS_DRIVE.match(normalized):
        return "an absolute path"
    if ".." in normalized.split("/"):
        return "a path that climbs out of the model's directory"
    return None


def _tensor(source: ByteSource, span: Span, model: _Model, where: Location) -> None:
    name = ""
    for item in iter_fields(source, span):
        if item.number == _TENSOR_NAME:
            name = read_text(source, item)
        elif item.number == _TENSOR_EXTERNAL_DATA:
            _external_data(source, span.child(item), name, item.offset, model, where)


def _external_data(
    source: ByteSource, span: Span, tensor: str, offset: int, model: _Model, where: Location
) -> None:
    key = value = ""
    for part in iter_fields(source, span):
        if part.number == _ENTRY_KEY:
            key = read_text(source, part)
        elif part.number == _ENTRY_VALUE:
            value = read_text(source, part)
    reason = _escape(value) if key == "location" else None
    if reason is not None:
        model.findings.append(
            where.finding(
                construct=f"external data {value!r}",
                severity=Severity.DANGEROUS,
                reason=f"tensor {tensor!r} reads its data from {reason}: loading the model "
                "reads that file",
                offset=offset,
            )
        )


def _sparse_tensor(source: ByteSource, span: Span, model: _Model, where: Location) -> None:
    for part in _children(source, span, _SPARSE_PARTS):
        _tensor(source, part, model, where)


def _attribute(source: ByteSource, span: Span, model: _Model, where: Location) -> None:
    for item in iter_fields(source, span):
        if item.number in (_ATTRIBUTE_TENSOR, _ATTRIBUTE_TENSORS):
            _tensor(source, span.child(item), model, where)
        elif item.number in (_ATTRIBUTE_SPARSE_TENSOR, _ATTRIBUTE_SPARSE_TENSORS):
            _sparse_tensor(source, span.child(item), model, where)
        elif item.number in (_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS):
            _graph(source, span.child(item), model, where)


def _node(source: ByteSource, span: Span, model: _Model, where: Location) -> None:
    op_type = domain = ""
    for item in iter_fields(source, span):
        if item.number == _NODE_OP_TYPE:
            op_type = read_text(source, item)
        elif item.number == _NODE_DOMAIN:
            domain = read_text(source, item)
        elif item.number == _NODE_ATTRIBUTE:
            _attribute(source, span.child(item), model, where)
    if domain not in STANDARD_DOMAINS:
        first, count = model.custom_nodes.get((domain, op_type), (span.start, 0))
        model.custom_nodes[(domain, op_type)] = (first, count + 1)


def _graph(source: ByteSource, span: Span, model: _Model, where: Location) -> None:
    for item in iter_fields(source, span):
        if item.number == _GRAPH_NODE:
            _node(source, span.child(item), model, where)
        elif item.number == _GRAPH_INITIALIZER:
            _tensor(source, span.child(item), model, where)
        elif item.number == _GRAPH_SPARSE_INITIALIZER:
            _sparse_tensor(source, span.child(item), model, where)


def _function(source: ByteSource, span: Span, model: _Model, where: Location) -> None:
    name = domain = ""
    for item in iter_fields(source, span):
        if item.number == _FUNCTION_NAME:
            name = read_text(source, item)
        elif item.number == _FUNCTION_DOMAIN:
            domain = read_text(source, item)
        elif item.number == _FUNCTION_NODE:
            _node(source, span.child(item), model, where)
    model.functions.add((domain, name))


def _walk(source: ByteSource, model: _Model, where: Location) -> None:
    top = whole(source)
    for item in iter_fields(source, top):
        if item.number == _MODEL_GRAPH:
            _graph(source, top.child(item), model, where)
        elif item.number == _MODEL_TRAINING_INFO:
            for graph in _children(source, top.child(item), _TRAINING_GRAPHS):
                _graph(source, graph, model, where)
        elif item.number == _MODEL_FUNCTIONS:
            _function(source, top.child(item), model, where)


def scan(stream: BinaryIO, *, location: Location) -> list[Finding]:
    """Scan an ONNX model for external data outside its directory and custom op domains.

    Args:
        stream: the ``.onnx`` file, seekable, at offset 0.
        location: where it comes from.

    Returns:
        External data findings in file order, then one ``unknown`` finding per custom
        (domain, op) at its first node; a ``malformed`` finding when the protobuf does not
        parse (findings before it are kept).
    """
    model = _Model()
    malformed: list[Finding] = []
    try:
        _walk(ByteSource(stream), model, location)
    except MalformedInput as error:
        malformed.append(
            location.finding(
                construct="protobuf",
                severity=Severity.MALFORMED,
                reason=f"ONNX model does not parse: {error.message}",
                offset=error.offset,
            )
        )
    findings = model.findings
    for (domain, op_type), (first, count) in model.custom_nodes.items():
        if (domain, op_type) in model.functions:
            continue
        nodes = f" ({count} nodes)" if count > 1 else ""
        findings.append(
            location.finding(
                construct=f"{domain}::{op_type}",
                severity=Severity.UNKNOWN,
                reason=f"custom op domain {domain!r}{nodes}: running it needs a custom op "
                "library (native code) loaded with the model",
                offset=first,
            )
        )
    return findings + malformed
