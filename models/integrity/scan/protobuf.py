"""A small, bounded reader of the protobuf wire format, for the SavedModel and ONNX scanners.

It knows no schema: a scanner walks the fields of a message and descends into the
length-delimited ones whose field numbers it knows (``NodeDef.op`` is field 2 of a node, field 1
of a ``GraphDef``...). Messages are read from a seekable stream by offset (through a
:class:`~rearguard.models.integrity.scan.reading.ByteSource`), so the bytes of a tensor are
skipped, never read: memory is bounded by the nesting depth, not the file's size.
A length that runs past its enclosing message, a varint longer than ten bytes, a group (no
format scanned here uses them) or nesting deeper than :data:`MAX_DEPTH` raise
:class:`~rearguard.models.integrity.scan.reading.MalformedInput`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from rearguard.models.integrity.scan.reading import ByteSource, MalformedInput

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
# A tag and a varint (or a tag and a fixed 8-byte value) fit in this many bytes.
_MAX_HEADER_BYTES = 2 * _MAX_VARINT_BYTES


class Field(NamedTuple):
    """One field of a message (a named tuple: a large graph has millions).

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


def whole(source: ByteSource) -> Span:
    """The span of the message that is the whole stream."""
    return Span(0, source.size)


def _varint(chunk: bytes, index: int, *, offset: int, cut_by_message: bool) -> tuple[int, int]:
    """Decode the varint at ``chunk[index:]``; return it and the index just past it.

    Args:
        chunk: bytes read at ``offset``.
        index: where the varint starts in ``chunk``.
        offset: the stream offset of ``chunk``, for errors.
        cut_by_message: whether ``chunk`` ends where its message ends (else the stream ended).
    """
    value = 0
    for shift, position in enumerate(range(index, min(len(chunk), index + _MAX_VARINT_BYTES))):
        byte = chunk[position]
        value |= (byte & 0x7F) << (7 * shift)
        if not byte & 0x80:
            return value, position + 1
    if len(chunk) - index >= _MAX_VARINT_BYTES:
        raise MalformedInput("varint longer than ten bytes", offset=offset + index)
    where = "its message" if cut_by_message else "the end"
    raise MalformedInput(f"truncated: varint runs past {where}", offset=offset + index)


def iter_fields(source: ByteSource, span: Span) -> Iterator[Field]:
    """The fields of the message in ``span``, in the order they are written.

    Raises:
        MalformedInput: a tag, varint or length runs past the message, or a field uses a group
            or an unknown wire type.
    """
    position = span.start
    while position < span.end:
        wanted = min(_MAX_HEADER_BYTES, span.end - position)
        chunk = source.read_at(position, wanted)
        cut = len(chunk) == wanted
        if chunk and chunk[0] < 0x80:  # nearly every tag is one byte
            tag, index = chunk[0], 1
        else:
            tag, index = _varint(chunk, 0, offset=position, cut_by_message=cut)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise MalformedInput("field number 0", offset=position)
        if wire_type == VARINT:
            value, index = _varint(chunk, index, offset=position, cut_by_message=cut)
            field = Field(number, wire_type, position, value)
            after = position + index
        elif wire_type == LEN:
            if index < len(chunk) and chunk[index] < 0x80:
                length, index = chunk[index], index + 1
            else:
                length, index = _varint(chunk, index, offset=position, cut_by_message=cut)
            start = position + index
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
            if len(chunk) < index + size:
                raise MalformedInput(
                    f"truncated: field {number} runs past its message", offset=position
                )
            value = int.from_bytes(chunk[index : index + size], "little")
            field = Field(number, wire_type, position, value)
            after = position + index + size
        else:
            raise MalformedInput(
                f"field {number} has wire type {wire_type} (groups are not used here)",
                offset=position,
            )
        yield field
        position = after


def read_text(source: ByteSource, field: Field, *, limit: int = 64 * 1024) -> str:
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
    data = source.read_at(field.value, field.length)
    if len(data) != field.length:
        raise MalformedInput(f"truncated: string field {field.number}", offset=field.offset)
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
        for field in iter_fields(ByteSource(io.BytesIO(head)), unbounded):
            fields.append(field)
            if len(fields) >= limit:
                break
    return fields
