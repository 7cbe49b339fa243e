"""TensorFlow SavedModels (``saved_model.pb``), frozen graphs, and ``keras_metadata.pb``.

A SavedModel's graph runs when the model is served: its ops are TensorFlow kernels, and a few
of them run Python or touch the file system and the network. The protobuf is walked with
:mod:`~rearguard.models.integrity.scan.protobuf` (``SavedModel.meta_graphs`` ->
``MetaGraphDef.graph_def`` -> ``GraphDef.node`` and ``GraphDef.library.function[].node_def``
-> ``NodeDef.op``), never loaded, and TensorFlow is not needed. Reported, all ``dangerous``:

- ``PyFunc``, ``PyFuncStateless``, ``EagerPyFunc`` (``tf.py_function``/``tf.numpy_function``):
  they call a Python function of the process that runs the graph;
- ops that write files (``WriteFile``, summary writers, dataset savers, debug dumps), read or
  list files (``ReadFile``, ``MatchingFiles``, ``ImmutableConst``, whole-file readers) or open
  network connections (the tf.data service, RPC);
- checkpoint writes (``Save``, ``SaveV2``, ``SaveSlices``, ``MergeV2Checkpoints``) whose path
  is a ``Const`` node of the same graph (other than the one the ``SaverDef`` says the caller
  feeds). Every SavedModel holds save and restore ops, fed the path the caller gives (a
  placeholder or a function argument), so those are not reported; only a path fixed in the
  model lets serving write a file where the model's author chose.

Not detected: custom ops (they need a library the user loads themselves), file paths that reach
a file op through other ops, and restore ops (reading a checkpoint is what loading does).

``keras_metadata.pb`` (Keras in a SavedModel) holds each layer's Keras config as JSON: checked
by :mod:`~rearguard.models.integrity.scan.keras`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from rearguard.models.integrity.scan import keras
from rearguard.models.integrity.scan.findings import Finding, Location, Severity
from rearguard.models.integrity.scan.protobuf import (
    LEN,
    VARINT,
    Field,
    Span,
    head_fields,
    iter_fields,
    read_text,
    whole,
)
from rearguard.models.integrity.scan.reading import (
    MAX_JSON_BYTES,
    ByteSource,
    MalformedInput,
    load_json,
)

__all__ = ["CHECKPOINT_WRITES", "DANGEROUS_OPS", "scan", "sniff"]

_PYTHON = "calls a Python function of the serving process (tf.py_function / tf.numpy_function)"
_WRITES = "writes files on the serving host"
_READS = "reads or lists files on the serving host"
_NETWORK = "opens network connections"

DANGEROUS_OPS: Mapping[str, str] = {
    "PyFunc": _PYTHON,
    "PyFuncStateless": _PYTHON,
    "EagerPyFunc": _PYTHON,
    "WriteFile": _WRITES,
    "DatasetToTFRecord": _WRITES,
    "ExperimentalDatasetToTFRecord": _WRITES,
    "SaveDataset": _WRITES,
    "SaveDatasetV2": _WRITES,
    "CreateSummaryFileWriter": _WRITES,
    "DebugIdentity": _WRITES,
    "DebugIdentityV2": _WRITES,
    "DebugNanCount": _WRITES,
    "DebugNumericSummary": _WRITES,
    "ReadFile": _READS,
    "MatchingFiles": _READS,
    "MatchingFilesDataset": _READS,
    "ExperimentalMatchingFilesDataset": _READS,
    "ImmutableConst": "memory-maps a file named in the graph",
    "WholeFileReader": _READS,
    "WholeFileReaderV2": _READS,
    "DataServiceDataset": _NETWORK,
    "DataServiceDatasetV2": _NETWORK,
    "DataServiceDatasetV3": _NETWORK,
    "DataServiceDatasetV4": _NETWORK,
    "RpcClient": _NETWORK,
    "RpcServer": _NETWORK,
    "RpcCall": _NETWORK,
}
"""Ops reported wherever they appear, with why."""

CHECKPOINT_WRITES: Mapping[str, tuple[int, ...]] = {
    "Save": (0,),
    "SaveV2": (0,),
    "SaveSlices": (0,),
    "MergeV2Checkpoints": (0, 1),
}
"""Checkpoint-writing ops and the positions of their path inputs: reported when a path input is
a ``Const`` node."""

# Field numbers of the messages walked (tensorflow/core/protobuf/*.proto, framework/*.proto).
_SAVED_MODEL_META_GRAPHS = 2
_META_GRAPH_GRAPH_DEF = 2
_GRAPH_NODE = 1
_GRAPH_LIBRARY = 2
_LIBRARY_FUNCTION = 1
_FUNCTION_SIGNATURE = 1
_FUNCTION_NODE_DEF = 3
_OP_DEF_NAME = 1
_NODE_NAME = 1
_NODE_OP = 2
_NODE_INPUT = 3
_META_GRAPH_SAVER_DEF = 3
_SAVER_FILENAME_TENSOR = 1
_META_GRAPH_OBJECT_GRAPH = 7
_OBJECT_GRAPH_NODES = 1
_SAVED_OBJECT_USER_OBJECT = 4
_USER_OBJECT_METADATA = 3
_METADATA_NODES = 1
_SAVED_OBJECT_IDENTIFIER = 3
_SAVED_OBJECT_METADATA = 4

_OP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_>]*")
_KERAS_IDENTIFIER = b"_tf_keras_"
_SNIFF_FIELDS = 4
_HEAD_BYTES = 64 * 1024


@dataclass
class _Graph:
    """The nodes of one graph or function that matter: the names of its ``Const`` nodes, and
    the path inputs of checkpoint writes."""

    label: str
    constants: set[str] = field(default_factory=set)
    writes: list[tuple[str, str, int, list[str]]] = field(default_factory=list)


def _is_node_def(head: bytes) -> bool:
    fields = head_fields(head, limit=2)
    if len(fields) < 2 or [(f.number, f.wire_type) for f in fields] != [(1, LEN), (2, LEN)]:
        return False
    op = head[fields[1].value : fields[1].value + fields[1].length]
    return bool(_OP_NAME.fullmatch(op.decode(errors="replace")))


def _kind(head: bytes) -> str | None:
    """``saved_model``, ``graph``, ``keras_metadata`` or None."""
    # Each kind starts with field 1 (a varint or a message) or field 2 (a message): one tag
    # byte rules out most data before any parsing.
    if head[:1] not in (b"\x08", b"\x0a", b"\x12"):
        return None
    fields = head_fields(head, limit=_SNIFF_FIELDS)
    if not fields:
        return None
    first = fields[0]
    if first.number == 1 and first.wire_type == VARINT:
        if first.value != 1 or len(fields) < 2:
            return None
        first = fields[1]
    if first.number == _SAVED_MODEL_META_GRAPHS and first.wire_type == LEN:
        inner = head_fields(head[first.value :], limit=1)
        if inner and inner[0].number in (1, 2) and inner[0].wire_type == LEN:
            return "saved_model"
        return None
    if first.number == 1 and first.wire_type == LEN and first is fields[0]:
        if _KERAS_IDENTIFIER in head:
            return "keras_metadata"
        if _is_node_def(head[first.value :]):
            return "graph"
    return None


def sniff(head: bytes) -> bool:
    """Whether ``head`` starts a SavedModel, a frozen ``GraphDef`` or a ``keras_metadata.pb``.

    Cheap: a few protobuf tags of the head are parsed. A SavedModel starts with
    ``schema_version`` 1 (or nothing) and a ``MetaGraphDef``, which tells it from an ONNX
    model (``ir_version`` 3 and up, then strings).
    """
    return _kind(head) is not None


def _input_node(name: str) -> str:
    """``^ctrl`` -> ``ctrl``; ``node:1`` and ``node:output:0`` (in functions) -> ``node``."""
    return name.removeprefix("^").partition(":")[0]


def _read_node(
    source: ByteSource, span: Span, graph: _Graph, findings: list[Finding], where: Location
) -> None:
    name = op = ""
    inputs: list[str] = []
    for item in iter_fields(source, span):
        if item.number == _NODE_NAME:
            name = read_text(source, item)
        elif item.number == _NODE_OP:
            op = read_text(source, item)
        elif item.number == _NODE_INPUT and len(inputs) < 2:
            inputs.append(read_text(source, item))
    if op == "Const":
        graph.constants.add(name)
    reason = DANGEROUS_OPS.get(op)
    if reason is not None:
        findings.append(
            where.finding(
                construct=op,
                severity=Severity.DANGEROUS,
                reason=f"{graph.label}, node {name!r}: {reason}",
                offset=span.start,
            )
        )
    if op in CHECKPOINT_WRITES:
        graph.writes.append((name, op, span.start, inputs))


def _judge_writes(graph: _Graph, findings: list[Finding], where: Location) -> None:
    for name, op, offset, inputs in graph.writes:
        for position in CHECKPOINT_WRITES[op]:
            if position < len(inputs) and _input_node(inputs[position]) in graph.constants:
                findings.append(
                    where.finding(
                        construct=op,
                        severity=Severity.DANGEROUS,
                        reason=f"{graph.label}, node {name!r}: writes a checkpoint to a path "
                        "fixed in the model (a Const node), not one the caller gives",
                        offset=offset,
                    )
                )
                break


def _scan_function(
    source: ByteSource, span: Span, findings: list[Finding], where: Location
) -> None:
    # The signature (field 1) is written before the nodes (field 3), so nodes are named by it
    # while the stream is read forward only.
    graph = _Graph("function")
    for item in iter_fields(source, span):
        if item.number == _FUNCTION_SIGNATURE:
            for signature_field in iter_fields(source, span.child(item)):
                if signature_field.number == _OP_DEF_NAME:
                    graph.label = f"function {read_text(source, signature_field)!r}"
        elif item.number == _FUNCTION_NODE_DEF:
            _read_node(source, span.child(item), graph, findings, where)
    _judge_writes(graph, findings, where)


def _scan_graph(source: ByteSource, span: Span, findings: list[Finding], where: Location) -> _Graph:
    """Report the dangerous ops of a graph and its functions; the graph's own checkpoint
    writes are left to the caller, who may know which constant the saver feeds."""
    graph = _Graph("graph")
    for item in iter_fields(source, span):
        if item.number == _GRAPH_NODE:
            _read_node(source, span.child(item), graph, findings, where)
        elif item.number == _GRAPH_LIBRARY:
            library = span.child(item)
            for function in iter_fields(source, library):
                if function.number == _LIBRARY_FUNCTION:
                    _scan_function(source, library.child(function), findings, where)
    return graph


def _scan_saved_model(source: ByteSource, findings: list[Finding], where: Location) -> None:
    top = whole(source)
    for item in iter_fields(source, top):
        if item.number != _SAVED_MODEL_META_GRAPHS:
            continue
        meta_graph = top.child(item)
        graph = _Graph("graph")
        for part in iter_fields(source, meta_graph):
            if part.number == _META_GRAPH_GRAPH_DEF:
                graph = _scan_graph(source, meta_graph.child(part), findings, where)
            elif part.number == _META_GRAPH_SAVER_DEF:
                # TensorFlow 1 savers before 1.4 made their path a Const ("save/Const") that
                # the caller feeds at save time: that one is the caller's path.
                for saver_field in iter_fields(source, meta_graph.child(part)):
                    if saver_field.number == _SAVER_FILENAME_TENSOR:
                        fed = _input_node(read_text(source, saver_field))
                        graph.constants.discard(fed)
            elif part.number == _META_GRAPH_OBJECT_GRAPH:
                _scan_object_graph(source, meta_graph.child(part), findings, where)
        _judge_writes(graph, findings, where)


def _scan_object_graph(
    source: ByteSource, span: Span, findings: list[Finding], where: Location
) -> None:
    """Keras configs kept in the object graph's user objects (TensorFlow 2.0 to 2.4)."""
    seen: set[tuple[str, str]] = set()
    for node in iter_fields(source, span):
        if node.number != _OBJECT_GRAPH_NODES:
            continue
        saved_object = span.child(node)
        for kind in iter_fields(source, saved_object):
            if kind.number != _SAVED_OBJECT_USER_OBJECT:
                continue
            user_object = saved_object.child(kind)
            for part in iter_fields(source, user_object):
                if part.number == _USER_OBJECT_METADATA and part.length:
                    _add_new(_metadata_findings(source, part, where), findings, seen)


def _metadata_findings(source: ByteSource, item: Field, where: Location) -> list[Finding]:
    text = read_text(source, item, limit=MAX_JSON_BYTES)
    try:
        config = load_json(text)
    except ValueError:
        raise MalformedInput("Keras metadata is not JSON", offset=item.offset) from None
    return keras.scan_config(config, location=where, offset=item.offset)


def _scan_keras_metadata(source: ByteSource, findings: list[Finding], where: Location) -> None:
    top = whole(source)
    # The model's config repeats every layer's; one finding per construct is enough.
    seen: set[tuple[str, str]] = set()
    for item in iter_fields(source, top):
        if item.number != _METADATA_NODES:
            continue
        saved_object = top.child(item)
        for part in iter_fields(source, saved_object):
            if part.number != _SAVED_OBJECT_METADATA or not part.length:
                continue
            _add_new(_metadata_findings(source, part, where), findings, seen)


def _add_new(new: list[Finding], findings: list[Finding], seen: set[tuple[str, str]]) -> None:
    for finding in new:
        if (finding.construct, finding.reason) not in seen:
            seen.add((finding.construct, finding.reason))
            findings.append(finding)


def _scan_frozen_graph(source: ByteSource, findings: list[Finding], where: Location) -> None:
    _judge_writes(_scan_graph(source, whole(source), findings, where), findings, where)


_SCANNERS = {
    "saved_model": _scan_saved_model,
    "graph": _scan_frozen_graph,
    "keras_metadata": _scan_keras_metadata,
}


def scan(stream: BinaryIO, *, location: Location) -> list[Finding]:
    """Scan a ``saved_model.pb``, a frozen graph or a ``keras_metadata.pb``.

    Args:
        stream: the file, seekable, at offset 0.
        location: where it comes from.

    Returns:
        One finding per dangerous op (offset: its ``NodeDef``) or Keras construct; a
        ``malformed`` finding when the protobuf does not parse (findings before it are kept);
        none for bytes that are none of the three.
    """
    source = ByteSource(stream)
    kind = _kind(source.read_at(0, _HEAD_BYTES))
    findings: list[Finding] = []
    if kind is None:
        return findings
    try:
        _SCANNERS[kind](source, findings, location)
    except MalformedInput as error:
        findings.append(
            location.finding(
                construct="protobuf",
                severity=Severity.MALFORMED,
                reason=f"{kind.replace('_', ' ')} does not parse: {error.message}",
                offset=error.offset,
            )
        )
    return findings
