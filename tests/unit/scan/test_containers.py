"""Containers are identified by their bytes and opened member by member, within limits, and a
container that does not parse cleanly fails closed."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import struct
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from rearguard.models.integrity.scan.engine import Limits, scan_file
from rearguard.models.integrity.scan.findings import Finding, Severity

SYSTEM = {"os.system", "posix.system", "nt.system"}
# Protocol 0: plain text, no PROTO opcode; os.system("true") when loaded.
EVIL_P0 = b"cos\nsystem\n(S'true'\ntR."
EVIL_P2 = b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00trueq\x00\x85q\x01Rq\x02."


def kinds(findings: list[Finding]) -> set[tuple[str | None, str, Severity]]:
    return {(f.member, f.construct, f.severity) for f in findings}


def severities(findings: list[Finding]) -> set[Severity]:
    return {f.severity for f in findings}


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def zip_bytes(members: dict[str, bytes], *, compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["archive/data.pkl", "archive/extra", "x/y/z.bin", "README"])
def test_every_zip_member_is_scanned_whatever_its_name(tmp_path: Path, name: str) -> None:
    data = zip_bytes({name: EVIL_P0, "archive/version": b"3\n"}, compression=zipfile.ZIP_DEFLATED)

    findings = scan_file(write(tmp_path / "model.pt", data))

    assert kinds(findings) == {(name, "os.system", Severity.DANGEROUS)}


def test_zip_inside_zip_inside_tar_gz(tmp_path: Path) -> None:
    inner = zip_bytes({"data.pkl": EVIL_P2})
    outer = zip_bytes({"nested.npz": inner})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("bundle/outer.zip")
        info.size = len(outer)
        archive.addfile(info, io.BytesIO(outer))

    findings = scan_file(write(tmp_path / "bundle.tgz", buffer.getvalue()))

    assert kinds(findings) == {
        ("bundle/outer.zip!nested.npz!data.pkl", "posix.system", Severity.DANGEROUS)
    }


def with_a_bad_crc(member: bytes) -> bytes:
    """A zip of one stored member whose CRC-32 is wrong in both its headers."""
    data = bytearray(zip_bytes({"archive/data.pkl": member}))
    # The CRC-32 of the member, in its local header (offset 14) and central directory entry.
    crc = struct.pack("<I", zipfile.crc32(member))
    central = data.index(b"PK\x01\x02")
    data[14:18] = data[central + 16 : central + 20] = bytes(b ^ 0xFF for b in crc)
    return bytes(data)


def test_bad_crc_fails_closed_and_the_payload_is_still_found(tmp_path: Path) -> None:
    findings = scan_file(write(tmp_path / "model.pt", with_a_bad_crc(EVIL_P2)))

    assert ("archive/data.pkl", "posix.system", Severity.DANGEROUS) in kinds(findings)
    assert any(f.severity == Severity.MALFORMED and "CRC" in f.reason for f in findings)


def test_bad_crc_of_a_clean_member_is_malformed(tmp_path: Path) -> None:
    data = bytearray(zip_bytes({"archive/data/0": b"\x00" * 64}))
    central = data.index(b"PK\x01\x02")
    data[14] ^= 0xFF
    data[central + 16] ^= 0xFF

    assert severities(scan_file(write(tmp_path / "m.pt", bytes(data)))) == {Severity.MALFORMED}


def test_encrypted_flag_bit_fails_closed(tmp_path: Path) -> None:
    data = bytearray(zip_bytes({"archive/data.pkl": pickle.dumps([1, 2], protocol=2)}))
    central = data.index(b"PK\x01\x02")
    data[6] |= 0x01
    data[central + 8] |= 0x01

    findings = scan_file(write(tmp_path / "m.pt", bytes(data)))

    assert any(f.severity == Severity.MALFORMED and "encrypted" in f.reason for f in findings)


def zipcrypto(plain: bytes, password: bytes) -> bytes:
    """Traditional PKWARE encryption (APPNOTE 6.1): a 12-byte header, then the data."""
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    keys = [0x12345678, 0x23456789, 0x34567890]

    def crc_step(crc: int, byte: int) -> int:
        return (crc >> 8) ^ table[(crc ^ byte) & 0xFF]

    def update(byte: int) -> None:
        keys[0] = crc_step(keys[0], byte)
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = crc_step(keys[2], keys[1] >> 24)

    for byte in password:
        update(byte)
    # Fixed, not random, so that the ciphertext (and the test) is the same on every run.
    header = bytes(range(1, 12)) + bytes([zlib.crc32(plain) >> 24])
    out = bytearray()
    for byte in header + plain:
        temp = (keys[2] | 2) & 0xFFFF
        out.append(byte ^ (((temp * (temp ^ 1)) >> 8) & 0xFF))
        update(byte)
    return bytes(out)


def encrypted_zip(name: str, plain: bytes, password: bytes) -> bytes:
    """A zip whose one stored member is really encrypted, as `zip -P` writes it."""
    data = bytearray(zip_bytes({name: zipcrypto(plain, password)}))
    central = data.index(b"PK\x01\x02")
    for flags_at, crc_at, size_at in ((6, 14, 22), (central + 8, central + 16, central + 24)):
        data[flags_at] |= 0x01
        struct.pack_into("<I", data, crc_at, zlib.crc32(plain))
        struct.pack_into("<I", data, size_at, len(plain))
    return bytes(data)


def test_a_really_encrypted_member_is_not_a_finding(tmp_path: Path) -> None:
    # Ciphertext runs nothing in any loader: one that honours the mark asks for the password,
    # one that ignores it reads noise.
    path = write(tmp_path / "notes.zip", encrypted_zip("notes.txt", b"just some notes", b"pw"))
    with zipfile.ZipFile(path) as archive:
        assert archive.read("notes.txt", pwd=b"pw") == b"just some notes"

    assert scan_file(path) == []


def test_an_encryption_mark_over_plain_pickle_bytes_is_scanned(tmp_path: Path) -> None:
    # The mark alone, over plain bytes: torch's reader ignores it and loads the pickle.
    data = bytearray(zip_bytes({"archive/data.pkl": EVIL_P2}))
    central = data.index(b"PK\x01\x02")
    data[6] |= 0x01
    data[central + 8] |= 0x01

    findings = scan_file(write(tmp_path / "m.pt", bytes(data)))

    assert {Severity.MALFORMED, Severity.DANGEROUS} <= severities(findings)
    assert SYSTEM & {f.construct.split(" ")[0] for f in findings}


def test_raw_bytes_that_start_like_zlib_are_not_a_finding(tmp_path: Path) -> None:
    # One tensor storage in 16,384 starts with a zlib header; not a byte of it decompresses.
    storage = b"\x78\x9c" + b"\xff" * 4096

    assert scan_file(write(tmp_path / "0", storage)) == []


def test_a_compressed_stream_that_breaks_after_its_start_is_malformed(tmp_path: Path) -> None:
    whole = zlib.compress(b"some data " * 10_000)

    findings = scan_file(write(tmp_path / "cut.z", whole[: len(whole) // 2] + b"\xff" * 64))

    assert Severity.MALFORMED in severities(findings)


def test_unknown_flag_bits_fail_closed(tmp_path: Path) -> None:
    data = bytearray(zip_bytes({"a.pkl": pickle.dumps([1], protocol=2)}))
    central = data.index(b"PK\x01\x02")
    data[central + 9] |= 0x20  # bit 13: masked local header

    assert Severity.MALFORMED in severities(scan_file(write(tmp_path / "m.zip", bytes(data))))


def test_local_and_central_names_that_differ_fail_closed(tmp_path: Path) -> None:
    # The central directory says version; the local header (what a streaming reader sees)
    # says data.pkl. Same length, so every offset stays valid.
    data = bytearray(zip_bytes({"archive/data.pkl": EVIL_P2}))
    central = data.index(b"PK\x01\x02")
    name_at = central + 46
    data[name_at : name_at + 16] = b"archive/versionX"

    findings = scan_file(write(tmp_path / "m.pt", bytes(data)))

    assert any(f.severity == Severity.MALFORMED and "local header" in f.reason for f in findings)


def test_overlapping_members_fail_closed(tmp_path: Path) -> None:
    data = bytearray(zip_bytes({"a.pkl": EVIL_P2, "b.pkl": pickle.dumps([1], protocol=2)}))
    # Point the second central entry at the first member's local header.
    second = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)
    data[second + 42 : second + 46] = struct.pack("<I", 0)
    data[second + 46 : second + 51] = b"a.pkl"

    findings = scan_file(write(tmp_path / "m.zip", bytes(data)))

    assert Severity.MALFORMED in severities(findings)
    assert any("overlaps" in f.reason or "duplicate" in f.reason for f in findings)


def test_pickle_with_a_zip_appended_is_scanned_both_ways(tmp_path: Path) -> None:
    data = EVIL_P0 + zip_bytes({"archive/data.pkl": pickle.dumps({"a": 1}, protocol=2)})

    findings = scan_file(write(tmp_path / "polyglot.bin", data))

    assert (None, "os.system", Severity.DANGEROUS) in kinds(findings)


def test_legacy_pytorch_tar_is_opened(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in (
            ("sys_info", pickle.dumps({"protocol_version": 1001}, protocol=2)),
            ("pickle", EVIL_P2),
            ("storages", pickle.dumps(1, protocol=2) + b"\x00" * 64),
            ("tensors", pickle.dumps(0, protocol=2)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

    findings = scan_file(write(tmp_path / "legacy.pt", buffer.getvalue()))

    assert kinds(findings) == {("pickle", "posix.system", Severity.DANGEROUS)}


@pytest.mark.parametrize(
    "compress",
    [
        gzip.compress,
        bz2.compress,
        lzma.compress,
        lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
    ],
    ids=["gzip", "bz2", "xz", "lzma"],
)
@pytest.mark.parametrize("payload", [EVIL_P0, EVIL_P2], ids=["protocol0", "protocol2"])
def test_compressed_streams_are_opened(tmp_path: Path, compress, payload: bytes) -> None:
    findings = scan_file(write(tmp_path / "model.p", compress(payload)))

    assert {f.construct for f in findings} & SYSTEM


def test_zstd_and_lz4_streams_are_opened(tmp_path: Path) -> None:
    import lz4.frame
    import zstandard

    zst = write(tmp_path / "a", zstandard.ZstdCompressor().compress(EVIL_P2))
    lz4_file = write(tmp_path / "b", lz4.frame.compress(EVIL_P2))

    assert {f.construct for f in scan_file(zst)} == {"posix.system"}
    assert {f.construct for f in scan_file(lz4_file)} == {"posix.system"}


def test_7z_members_are_opened(tmp_path: Path) -> None:
    import py7zr

    path = tmp_path / "bundle.7z"
    with py7zr.SevenZipFile(path, "w") as archive:
        archive.writestr(EVIL_P2, "model/weights.dat")
        archive.writestr(b"just text\n", "README")

    assert kinds(scan_file(path)) == {("model/weights.dat", "posix.system", Severity.DANGEROUS)}


@pytest.mark.parametrize("module", ["py7zr", "zstandard"])
def test_formats_needing_a_missing_library_are_not_scanned_never_clean(
    tmp_path: Path, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if module == "py7zr":
        import py7zr

        path = tmp_path / "a.7z"
        with py7zr.SevenZipFile(path, "w") as archive:
            archive.writestr(EVIL_P2, "m.pkl")
    else:
        import zstandard

        path = write(tmp_path / "a.zst", zstandard.ZstdCompressor().compress(EVIL_P2))
    monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed

    findings = scan_file(path)

    assert [(f.severity, f.reason) for f in findings] == [
        (Severity.NOT_SCANNED, "not scanned: install rearguard[archives]")
    ]


def test_numpy_npz_object_member_is_scanned(tmp_path: Path) -> None:
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + EVIL_P2
    data = zip_bytes({"weights.npy": npy, "bias.npy": npy[:10]})

    findings = scan_file(write(tmp_path / "arrays.npz", data))

    assert ("weights.npy", "posix.system", Severity.DANGEROUS) in kinds(findings)


def test_decompression_bomb_is_malformed_not_out_of_memory(tmp_path: Path) -> None:
    bomb = gzip.compress(b"\x00" * (8 * 1024 * 1024))

    findings = scan_file(
        write(tmp_path / "bomb.gz", bomb), limits=Limits(max_expanded_bytes=1024 * 1024)
    )

    assert [f.severity for f in findings] == [Severity.MALFORMED]
    assert "expands past" in findings[0].reason


def test_zip_bomb_by_declared_sizes_is_malformed(tmp_path: Path) -> None:
    data = zip_bytes(
        {f"m{i}": b"\x00" * (1024 * 1024) for i in range(4)}, compression=zipfile.ZIP_DEFLATED
    )

    findings = scan_file(
        write(tmp_path / "b.zip", data), limits=Limits(max_expanded_bytes=2 * 1024 * 1024)
    )

    assert Severity.MALFORMED in severities(findings)


def test_too_many_members_is_malformed(tmp_path: Path) -> None:
    data = zip_bytes({f"m{i}": b"x" for i in range(20)})

    findings = scan_file(write(tmp_path / "many.zip", data), limits=Limits(max_members=10))

    assert [f.severity for f in findings] == [Severity.MALFORMED]


def test_nesting_past_the_depth_limit_is_malformed(tmp_path: Path) -> None:
    data = EVIL_P2
    for _ in range(6):
        data = gzip.compress(data)

    findings = scan_file(write(tmp_path / "deep.gz", data), limits=Limits(max_depth=4))

    assert [f.severity for f in findings] == [Severity.MALFORMED]
    assert "nested deeper" in findings[0].reason


def test_truncated_gzip_is_malformed(tmp_path: Path) -> None:
    data = gzip.compress(pickle.dumps(list(range(1000)), protocol=2))

    findings = scan_file(write(tmp_path / "cut.gz", data[: len(data) // 2]))

    assert Severity.MALFORMED in severities(findings)


def test_raw_bytes_and_text_are_not_findings(tmp_path: Path) -> None:
    # safetensors: an 8-byte header length, a JSON header, raw tensor bytes.
    header = b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    safetensors = struct.pack("<Q", len(header)) + header + os.urandom(16)
    text = b"copyright\nfoo\nThese lines start like a protocol 0 GLOBAL opcode.\n"

    for name, data in (("m.safetensors", safetensors), ("LICENSE", text), ("r.bin", b"\0" * 99)):
        assert scan_file(write(tmp_path / name, data)) == [], name


def _long_pickle_then(payload: bytes, length: int = 200_000) -> bytes:
    """A protocol 2 pickle whose payload comes after a long string (past a member's head)."""
    return b"\x80\x02X" + struct.pack("<I", length) + b"x" * length + b"0" + payload[2:]


def test_a_stored_member_is_read_past_its_first_bytes_and_its_crc_checked(tmp_path: Path) -> None:
    data = with_a_bad_crc(_long_pickle_then(EVIL_P2))

    findings = scan_file(write(tmp_path / "model.pt", data))

    assert ("archive/data.pkl", "posix.system", Severity.DANGEROUS) in kinds(findings)
    assert any(f.severity == Severity.MALFORMED and "CRC" in f.reason for f in findings)


@pytest.mark.parametrize("container", ["file", "zip"])
def test_text_is_read_on_past_the_binary_head(tmp_path: Path, container: str) -> None:
    # JSON may hold a DEL (0x7f) and a template may be long: what a text scanner would parse
    # is not cut at the head that identifies binary formats.
    template = "{{ cycler.__init__.__globals__.os.system('id') }}"
    config = '{"note": "\x7f", "pad": "' + "a" * 40_000 + '", "chat_template": "' + template + '"}'
    text = "{# " + "b" * 40_000 + " #}" + template
    files = {"tokenizer_config.json": config.encode(), "chat_template.jinja": text.encode()}
    if container == "zip":
        files = {"model.zip": zip_bytes(files)}
    for name, data in files.items():
        write(tmp_path / name, data)

    findings = [f for name in files for f in scan_file(tmp_path / name)]

    assert len({(f.file, f.member) for f in findings}) == 2
    assert {f.severity for f in findings} == {Severity.DANGEROUS}
