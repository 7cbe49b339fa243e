"""The bounded protobuf reader: what it reads, and the hostile bytes it refuses."""

from __future__ import annotations

import io
import struct

import pytest
from format_writers import bytes_field, int_field, message, tag, varint

from rearguard.models.integrity.scan.protobuf import (
    I32,
    I64,
    LEN,
    MAX_DEPTH,
    VARINT,
    Span,
    head_fields,
    iter_fields,
    read_text,
    whole,
)
from rearguard.models.integrity.scan.reading import ByteSource, MalformedInput


def source(data: bytes) -> ByteSource:
    return ByteSource(io.BytesIO(data))


def fields_of(data: bytes) -> list[tuple[int, int, int]]:
    stream = source(data)
    return [(f.number, f.wire_type, f.value) for f in iter_fields(stream, whole(stream))]


def test_every_wire_type_is_read_and_payloads_are_skipped() -> None:
    data = message(
        int_field(1, 2**63 + 5),
        tag(2, I64) + struct.pack("<q", -2),
        bytes_field(3, b"x" * 1000),
        tag(4, I32) + struct.pack("<I", 7),
        int_field(536870911, 1),  # the largest field number
    )
    assert fields_of(data) == [
        (1, VARINT, 2**63 + 5),
        (2, I64, 2**64 - 2),
        (3, LEN, data.index(b"x" * 1000)),
        (4, I32, 7),
        (536870911, VARINT, 1),
    ]


def test_the_caller_may_read_between_fields() -> None:
    data = message(bytes_field(1, "first"), bytes_field(2, "second"))
    stream = source(data)
    texts = [read_text(stream, item) for item in iter_fields(stream, whole(stream))]
    assert texts == ["first", "second"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x08", "truncated: varint"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "longer than ten bytes"),
        (b"\x12\x05abc", "declares 5 bytes"),
        (b"\x12" + varint(2**64 - 1), "declares"),
        (b"\x0b", "wire type 3"),
        (b"\x0e", "wire type 6"),
        (b"\x00\x01", "field number 0"),
        (tag(1, I64) + b"\x00" * 4, "truncated"),
    ],
)
def test_hostile_bytes_raise_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedInput, match=reason):
        fields_of(data)


def test_a_child_cannot_nest_past_the_limit() -> None:
    inner = bytes_field(1, b"")
    field = next(iter_fields(source(inner), Span(0, len(inner))))
    assert Span(0, 2, MAX_DEPTH - 1).child(field).depth == MAX_DEPTH
    with pytest.raises(MalformedInput, match="nested deeper"):
        Span(0, 2, MAX_DEPTH).child(field)
    varint_field = next(iter_fields(source(b"\x08\x01"), Span(0, 2)))
    with pytest.raises(MalformedInput, match="should be a message"):
        Span(0, 2).child(varint_field)


def test_read_text_refuses_long_non_utf8_and_non_string_fields() -> None:
    data = message(bytes_field(1, b"a" * 100), bytes_field(2, b"\xff\xfe"), int_field(3, 1))
    stream = source(data)
    long, binary, number = list(iter_fields(stream, whole(stream)))
    with pytest.raises(MalformedInput, match="100 bytes long"):
        read_text(stream, long, limit=99)
    with pytest.raises(MalformedInput, match="not UTF-8"):
        read_text(stream, binary)
    with pytest.raises(MalformedInput, match="should be a string"):
        read_text(stream, number)


def test_head_fields_read_what_the_head_holds() -> None:
    data = message(int_field(1, 1), bytes_field(2, b"m" * 100_000), int_field(3, 3))
    head = data[:64]
    assert [(f.number, f.length) for f in head_fields(head)] == [(1, 0), (2, 100_000)]
    assert head_fields(b"\x12" + varint(2**64 - 1) + b"\x08\x01") != []
    assert head_fields(b"\xff" * 20) == []


def test_the_byte_source_reads_what_the_stream_holds_across_its_window() -> None:
    data = bytes(range(256)) * 1024
    window = ByteSource.WINDOW
    reads = [(0, 10), (window - 3, 10), (window + 5, 3), (10, 20), (3, window + 100)]
    reads += [(len(data) - 4, 10), (len(data) + 10, 4), (2 * window - 1, 2)]
    byte_source = source(data)
    for offset, size in reads:
        assert byte_source.read_at(offset, size) == data[offset : offset + size], (offset, size)
    assert byte_source.size == len(data)
