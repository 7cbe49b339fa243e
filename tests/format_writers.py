"""Writers of the bytes of model files, for the format scanners' tests.

Each writer emits the wire format byte by byte (protobuf for TensorFlow and ONNX, GGUF), so a
test can build a hostile file no library would write: a truncated field, a huge length, a
custom op. Nothing here loads a model.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Sequence
from types import ModuleType

from rearguard.models.integrity.scan.findings import Finding, Location, Severity

# --- protobuf wire format ---------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def int_field(number: int, value: int) -> bytes:
    return tag(number, 0) + varint(value)


def bytes_field(number: int, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return tag(number, 2) + varint(len(raw)) + raw


def message(*fields: bytes) -> bytes:
    return b"".join(fields)


# --- TensorFlow ---------------------------------------------------------------------------------


def node_def(name: str, op: str, inputs: Sequence[str] = ()) -> bytes:
    return message(
        bytes_field(1, name),
        bytes_field(2, op),
        *(bytes_field(3, item) for item in inputs),
        bytes_field(4, "/device:CPU:0"),
    )


def function_def(name: str, nodes: Iterable[bytes]) -> bytes:
    signature = message(bytes_field(1, name))
    return message(bytes_field(1, signature), *(bytes_field(3, node) for node in nodes))


def graph_def(nodes: Iterable[bytes], functions: Iterable[bytes] = ()) -> bytes:
    library = message(*(bytes_field(1, function) for function in functions))
    versions = message(int_field(1, 1087), int_field(2, 0))
    return message(
        *(bytes_field(1, node) for node in nodes),
        bytes_field(2, library),
        bytes_field(4, versions),
    )


def user_object(identifier: str, metadata: str) -> bytes:
    """A SavedObject holding a SavedUserObject (Keras metadata in TensorFlow 2.0-2.4)."""
    return message(bytes_field(4, message(bytes_field(1, identifier), bytes_field(3, metadata))))


def saved_model(
    graph: bytes, objects: Iterable[bytes] = (), *, saver_filename: str | None = None
) -> bytes:
    meta_info = message(
        bytes_field(1, ""),
        bytes_field(4, "serve"),
        bytes_field(5, "2.15.0"),
        bytes_field(6, "v2.15.0-rc1"),
    )
    object_graph = message(*(bytes_field(1, item) for item in objects))
    saver = (
        b""
        if saver_filename is None
        else bytes_field(
            3, message(bytes_field(1, saver_filename), bytes_field(2, "save/Identity:0"))
        )
    )
    meta_graph = message(
        bytes_field(1, meta_info), bytes_field(2, graph), saver, bytes_field(7, object_graph)
    )
    return message(int_field(1, 1), bytes_field(2, meta_graph))


def keras_metadata(entries: Iterable[tuple[str, str, str]]) -> bytes:
    """A keras_metadata.pb: (node_path, identifier, metadata JSON) per saved object."""
    nodes = [
        message(
            int_field(1, index) if index else b"",
            bytes_field(2, path),
            bytes_field(3, identifier),
            bytes_field(4, metadata),
            bytes_field(5, message(int_field(1, 1), int_field(2, 1))),
        )
        for index, (path, identifier, metadata) in enumerate(entries)
    ]
    return message(*(bytes_field(1, node) for node in nodes))


# --- GGUF ---------------------------------------------------------------------------------------

GGUF_UINT32 = 4
GGUF_FLOAT32 = 6
GGUF_STRING = 8
GGUF_ARRAY = 9
GGUF_UINT64 = 10


def gguf_string(text: str | bytes, order: str = "<") -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack(order + "Q", len(raw)) + raw


def gguf_value(value_type: int, value: object, order: str = "<") -> bytes:
    """The bytes of one value: an int or float scalar, a str, or (item_type, items) array."""
    if value_type == GGUF_STRING:
        assert isinstance(value, str | bytes)
        return gguf_string(value, order)
    if value_type == GGUF_ARRAY:
        item_type, items = value  # type: ignore[misc]
        body = b"".join(gguf_value(item_type, item, order) for item in items)
        return struct.pack(order + "IQ", item_type, len(items)) + body
    fmt = {GGUF_UINT32: "I", GGUF_FLOAT32: "f", GGUF_UINT64: "Q"}[value_type]
    return struct.pack(order + fmt, value)


def gguf(
    metadata: Sequence[tuple[str, int, object]],
    *,
    version: int = 3,
    order: str = "<",
    tensor_bytes: bytes = b"",
) -> bytes:
    """A GGUF file with these (key, type, value) metadata pairs and no tensors."""
    header = b"GGUF" + struct.pack(order + "IQQ", version, 0, len(metadata))
    pairs = b"".join(
        gguf_string(key, order)
        + struct.pack(order + "I", value_type)
        + gguf_value(value_type, value, order)
        for key, value_type, value in metadata
    )
    return header + pairs + tensor_bytes


def llama_gguf(template: str, **kwargs: object) -> bytes:
    """A GGUF file with the metadata a llama.cpp model has around its chat template."""
    tokens = ["<unk>", "<s>", "</s>", *(f"tok{i}" for i in range(200))]
    return gguf(
        [
            ("general.architecture", GGUF_STRING, "llama"),
            ("general.name", GGUF_STRING, "tiny"),
            ("llama.context_length", GGUF_UINT32, 4096),
            ("llama.rope.freq_base", GGUF_FLOAT32, 10000.0),
            ("tokenizer.ggml.model", GGUF_STRING, "llama"),
            ("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, tokens)),
            ("tokenizer.ggml.scores", GGUF_ARRAY, (GGUF_FLOAT32, [0.0] * len(tokens))),
            ("tokenizer.ggml.bos_token_id", GGUF_UINT32, 1),
            ("tokenizer.chat_template", GGUF_STRING, template),
            ("general.file_type", GGUF_UINT32, 15),
        ],
        **kwargs,  # type: ignore[arg-type]
    )


# --- running a scanner --------------------------------------------------------------------------


def scan_bytes(scanner: ModuleType, data: bytes, name: str = "model") -> list[Finding]:
    """Run a format scanner module (``sniff``/``scan``) on bytes held in memory."""
    return scanner.scan(io.BytesIO(data), location=Location(name))


def severities(findings: Iterable[Finding]) -> set[Severity]:
    return {finding.severity for finding in findings}
