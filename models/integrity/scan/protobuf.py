"""A small, bounded reader of the protobuf wire format, for the SavedModel and ONNX scanners.

It knows no schema: a scanner walks the fields of a message and descends into the
length-delimited ones whose field numbers it knows (``NodeDef.op`` is field 2 of a node, field 1
of a ``GraphDef``...). Messages are read from a seekable stream by offset, so the bytes of a
tensor are skipped, never read: memory is bounded by the nesting depth, not the file's size.
A length that runs past its enclosing message, a varint longer than ten bytes, a group (no
format scanned here uses them) or nesting deeper than :data:`MAX_DEPTH` raise
:class:`~rearguard.models.integrity.scan.reading.MalformedInput`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from rearguard.models.integrity.scan.reading import MalformedInput, stream_size

__all__ = [
    "I32",
    "I64",
    "LEN",
    "MAX_DEPTH",
    "VARINT",
    "Field",
    "Span",
    "head_fields",
    "iter_fields",
    "read_text",
    "whole",
]

VARINT = 0
I64 = 1
LEN = 2
I32 = 5
_FIXED_SIZES = {I64: 8, I32: 4}

MAX_DEPTH = 100
"""Deepest nesting followed (the C++ protobuf parser's default recursion limit)."""

_MAX_VARINT_BYTES = 10


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message.

    Attributes:
        number: the field number.
        wire_type: :data:`VARINT`, :data:`I64`, :data:`LEN` or :data:`I32`.
        offset: where its tag starts.
        value: the value of a varint or fixed field; for a :data:`LEN` field, where its
            payload starts.
        length: the payload's length of a :data:`LEN` field, else 0.
    """

    number: int
    wire_type: int
    offset: int
    value: int
    length: int = 0


@dataclass(frozen=True, slots=True)
class Span:
    """The bytes of one message in the stream, and how deep it is nested.

    Attributes:
        start: offset of its first byte.
        end: offset just past its last byte.
        depth: 0 for the outermost message.
    """

    start: int
    end: int
    depth: int = 0

    def child(self, field: Field) -> Span:
        """The span of the message held by a length-delimited ``field`` of this one.

        Raises:
            MalformedInput: the field is not length-delimited, or nesting passes
                :data:`MAX_DEPTH`.
        """
        if field.wire_type != LEN:
            raise MalformedInput(
                f"field {field.number} should be a message but has wire type {field.wire_type}",
                offset=field.offset,
            )
        if self.depth >= MAX_DEPTH:
            raise MalformedInput(f"messages nested deeper than {MAX_DEPTH}", offset=field.offset)
        return Span(field.value, field.value + field.length, self.depth + 1)


def whole(stream: BinaryIO) -> Span:
    """The span of the message that is the whole stream."""
    return Span(0, stream_size(stream))


def _read_varint(stream: BinaryIO, end: int) -> int:
    offset = stream.tell()
    value = 0
    for index in range(_MAX_VARINT_BYTES):
        if offset + index >= end:
            raise MalformedInput("truncated: varint runs past its message", offset=offset)
        byte = stream.read(1)
        if not byte:
            raise MalformedInput("truncated: varint runs past the end", offset=offset)
        value |= (byte[0] & 0x7F) << (7 * index)
        if not byte[0] & 0x80:
            return value
    raise MalformedInput("varint longer than ten bytes", offset=offset)


def iter_fields(stream: BinaryIO, span: Span) -> Iterator[Field]:
    """The fields of the message in ``span``, in the order they are written.

    The caller may read or seek the stream between two fields: the iterator keeps its own
    position.

    Raises:
        MalformedInput: a tag, varint or length runs past the message, or a field uses a group
            or an unknown wire type.
    """
    position = span.start
    while position < span.end:
        stream.seek(position)
        tag = _read_varint(stream, span.end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise MalformedInput("field number 0", offset=position)
        if wire_type == VARINT:
            value = _read_varint(stream, span.end)
            field = Field(number, wire_type, position, value)
            after = stream.tell()
        elif wire_type == LEN:
            length = _read_varint(stream, span.end)
            start = stream.tell()
            if length > span.end - start:
                raise MalformedInput(
                    f"truncated: field {number} declares {length} bytes, "
                    f"{span.end - start} are left in its message",
                    offset=position,
                )
            field = Field(number, wire_type, position, start, length)
            after = start + length
        elif wire_type in _FIXED_SIZES:
            size = _FIXED_SIZES[wire_type]
            start = stream.tell()
            data = stream.read(size) if start + size <= span.end else b""
            if len(data) != size:
                raise MalformedInput(
                    f"truncated: field {number} runs past its message", offset=position
                )
            field = Field(number, wire_type, position, int.from_bytes(data, "little"))
            after = start + size
        else:
            raise MalformedInput(
                f"field {number} has wire type {wire_type} (groups are not used here)",
                offset=position,
            )
        yield field
        position = after


def read_text(stream: BinaryIO, field: Field, *, limit: int = 64 * 1024) -> str:
    """The UTF-8 string held by a length-delimited field (a name, an op, a path).

    Raises:
        MalformedInput: the field is not length-delimited, is longer than ``limit`` bytes or is
            not UTF-8.
    """
    if field.wire_type != LEN:
        raise MalformedInput(
            f"field {field.number} should be a string but has wire type {field.wire_type}",
            offset=field.offset,
        )
    if field.length > limit:
        raise MalformedInput(
            f"string field {field.number} is {field.length} bytes long (limit {limit})",
            offset=field.offset,
        )
    stream.seek(field.value)
    data = stream.read(field.length)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise MalformedInput(
            f"string field {field.number} is not UTF-8", offset=field.offset
        ) from None


def head_fields(head: bytes, *, limit: int = 16) -> list[Field]:
    """The first fields of the message that starts a file, for a cheap sniff.

    Parsing stops quietly where ``head`` is cut off or stops parsing, so a file longer than its
    head still sniffs.

    Args:
        head: the first bytes of the file.
        limit: at most this many fields are returned.
    """
    fields: list[Field] = []
    # No end is known: a length-delimited field may run past the head, as in any large file.
    unbounded = Span(0, 1 << 70)  # past any length a ten-byte varint can hold
    # OverflowError: the field after a huge one would start past what a seek can reach.
    with contextlib.suppress(MalformedInput, OverflowError):
        for field in iter_fields(io.BytesIO(head), unbounded):
            fields.append(field)
            if len(fields) >= limit:
                break
    return fields
