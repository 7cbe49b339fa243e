"""Opcode scanning of pickle-based files: real malicious pickles are found, none is ever loaded."""

from __future__ import annotations

import base64
import bz2
import collections
import gzip
import lzma
import os
import pickle
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from rearguard.models.integrity.scan.engine import scan_file
from rearguard.models.integrity.scan.findings import Finding, Severity
from rearguard.models.integrity.scan.pickle_globals import DANGEROUS_MODULES

SYSTEM = {"os.system", "posix.system", "nt.system"}


class Payload:
    """Pickles to a call of os.system that would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def short_unicode(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def callables(findings: list[Finding]) -> set[str]:
    return {f.construct for f in findings if f.severity != Severity.MALFORMED}


def scan_pickle_file(path: Path, *, display_path: str | None = None) -> list[Finding]:
    return scan_file(path, display=display_path)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_reduce_to_os_system_is_found_and_not_run(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    data = pickle.dumps({"weights": [1.0, 2.0], "x": Payload(marker)}, protocol=protocol)
    path = write(tmp_path / "model.pkl", data)

    findings = scan_pickle_file(path)

    assert len(findings) == 1
    finding = findings[0]
    assert finding.construct in SYSTEM
    assert finding.file == str(path)
    assert finding.member is None
    assert data[finding.offset] in (ord("c"), 0x93)  # GLOBAL or STACK_GLOBAL
    assert "denied module" in finding.reason
    assert finding.severity == Severity.DANGEROUS
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_benign_pickle_has_no_findings(tmp_path: Path, protocol: int) -> None:
    value = {
        "lists": [[1, 2, 3], ["a", "b"]],
        "ordered": collections.OrderedDict(b=2, a=1),
        "nested": {"t": (1, 2.5, None, True), "s": {1, 2}, "f": frozenset({3})},
        "big": 2**100,
        "text": "x" * 5000,
        "blob": b"\x00" * 100_000,
    }
    path = write(tmp_path / "benign.pkl", pickle.dumps(value, protocol=protocol))

    assert scan_pickle_file(path) == []


def test_display_path_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "m.pkl", pickle.dumps(Payload(tmp_path / "m"), protocol=2))

    findings = scan_pickle_file(path, display_path="models/m.pkl")

    assert [finding.file for finding in findings] == ["models/m.pkl"]


def test_zip_archive_member_is_scanned_without_extracting(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(Payload(marker), protocol=2))
        archive.writestr("archive/data/0", os.urandom(4096))
        archive.writestr("archive/version", "3\n")

    findings = scan_pickle_file(path, display_path="v1/model.pt")

    assert len(findings) == 1
    assert findings[0].member == "archive/data.pkl"
    assert findings[0].file == "v1/model.pt"
    assert findings[0].construct in SYSTEM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


class _TorchLikePickler(pickle.Pickler):
    """Writes tensors as persistent ids, as torch.save does."""

    def persistent_id(self, obj: object) -> object:
        if isinstance(obj, bytes):
            return ("storage", "FloatStorage", "0", "cpu", len(obj))
        return None


def test_zip_with_persistent_ids_and_bin_suffix_is_clean(tmp_path: Path) -> None:
    import io

    buffer = io.BytesIO()
    _TorchLikePickler(buffer, protocol=2).dump(
        collections.OrderedDict(weight=b"\x00" * 16, bias=b"\x01" * 4)
    )
    path = tmp_path / "pytorch_model.bin"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/data/0", b"\x00" * 16)

    assert scan_pickle_file(path) == []


def _stack_global_with_memo(module: bytes, name: bytes) -> bytes:
    """``module`` and ``name`` are memoized, dropped, then fetched back for STACK_GLOBAL."""
    return (
        b"\x80\x04"
        + module
        + b"\x94"  # MEMOIZE -> 0
        + b"0"  # POP
        + name
        + b"q\x07"  # BINPUT 7
        + b"0"
        + b"N0" * 3  # unrelated pushes and pops in between
        + b"h\x00"  # BINGET 0
        + b"j\x07\x00\x00\x00"  # LONG_BINGET 7
        + b"\x93"  # STACK_GLOBAL
        + short_unicode("id")
        + b"\x85R."  # TUPLE1 REDUCE STOP
    )


@pytest.mark.parametrize(
    "encode",
    [
        short_unicode,
        lambda text: b"X" + struct.pack("<I", len(text)) + text.encode(),  # BINUNICODE
        lambda text: b"\x8d" + struct.pack("<Q", len(text)) + text.encode(),  # BINUNICODE8
        lambda text: b"V" + text.encode() + b"\n",  # UNICODE
        lambda text: b"S'" + text.encode() + b"'\n",  # STRING
        lambda text: b"T" + struct.pack("<i", len(text)) + text.encode(),  # BINSTRING
        lambda text: b"U" + bytes([len(text)]) + text.encode(),  # SHORT_BINSTRING
    ],
    ids=["SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "U"],
)
def test_stack_global_operands_are_resolved_through_the_memo(tmp_path: Path, encode) -> None:
    data = _stack_global_with_memo(encode("subprocess"), encode("Popen"))
    path = write(tmp_path / "p.pkl", data)

    findings = scan_pickle_file(path)

    assert callables(findings) == {"subprocess.Popen"}
    assert data[findings[0].offset] == 0x93


def test_text_memo_opcodes_are_followed(tmp_path: Path) -> None:
    data = b"Vbuiltins\np0\n0Veval\np1\n0g0\ng1\n\x93(V1\ntR."  # PUT/GET, protocol 0 style

    assert callables(scan_pickle_file(write(tmp_path / "t.pkl", data))) == {"builtins.eval"}


def test_python2_names_are_mapped_like_the_unpickler(tmp_path: Path) -> None:
    data = b"c__builtin__\neval\n(S'1'\ntRccommands\ngetoutput\n(S'id'\ntR0."

    findings = scan_pickle_file(write(tmp_path / "py2.pkl", data))

    assert callables(findings) == {"__builtin__.eval", "commands.getoutput"}


@pytest.mark.parametrize(
    ("module", "name"),
    [("posixpath", "os.system"), ("tempfile", "_os.system"), ("copyreg", "__builtins__.eval")],
)
def test_dotted_names_reaching_dangerous_objects_are_found(
    tmp_path: Path, module: str, name: str
) -> None:
    data = b"\x80\x04" + short_unicode(module) + short_unicode(name) + b"\x93N\x85R."

    findings = scan_pickle_file(write(tmp_path / "dotted.pkl", data))

    assert callables(findings) == {f"{module}.{name}"}


def test_computed_global_name_is_reported(tmp_path: Path) -> None:
    # builtins.str(b"os", "ascii") == "os": harmless alone, but feeds STACK_GLOBAL.
    computed = b"cbuiltins\nstr\nC\x02os" + short_unicode("ascii") + b"\x86R"
    data = b"\x80\x04" + computed + short_unicode("system") + b"\x93" + short_unicode("id")
    data += b"\x85R."

    findings = scan_pickle_file(write(tmp_path / "computed.pkl", data))

    assert callables(findings) == {"?.system"}
    assert "cannot be checked" in findings[0].reason


def test_nothing_named_in_a_pickle_is_imported(tmp_path: Path) -> None:
    data = b"\x80\x02crearguard_canary_module\nboom\n)R."

    findings = scan_pickle_file(write(tmp_path / "canary.pkl", data))

    assert [(f.construct, f.severity) for f in findings] == [
        ("rearguard_canary_module.boom", Severity.UNKNOWN)
    ]
    assert "rearguard_canary_module" not in sys.modules


def test_deny_list_covers_the_usual_suspects() -> None:
    for module in ("os", "posix", "nt", "subprocess", "runpy", "socket", "shutil", "pty", "code"):
        assert module in DANGEROUS_MODULES


@pytest.mark.parametrize(
    ("global_", "expected"),
    [
        (b"subprocess\ncheck_output", "subprocess.check_output"),
        (b"os\nexecv", "os.execv"),
        (b"os\nspawnlp", "os.spawnlp"),
        (b"builtins\ngetattr", "builtins.getattr"),
        (b"builtins\n__import__", "builtins.__import__"),
        (b"importlib\nimport_module", "importlib.import_module"),
        (b"runpy\nrun_path", "runpy.run_path"),
        (b"pty\nspawn", "pty.spawn"),
        (b"webbrowser\nopen", "webbrowser.open"),
        (b"code\nInteractiveInterpreter", "code.InteractiveInterpreter"),
        (b"pickle\nloads", "pickle.loads"),
        (b"marshal\nloads", "marshal.loads"),
        (b"shutil\nrmtree", "shutil.rmtree"),
        (b"socket\ncreate_connection", "socket.create_connection"),
        (b"sys\nmodules", "sys.modules"),
        (b"operator\nattrgetter", "operator.attrgetter"),
    ],
)
def test_denied_globals(tmp_path: Path, global_: bytes, expected: str) -> None:
    data = b"\x80\x02c" + global_ + b"\n."

    assert callables(scan_pickle_file(write(tmp_path / "g.pkl", data))) == {expected}


def test_allowed_globals_are_not_reported(tmp_path: Path) -> None:
    data = (
        b"\x80\x02ccollections\nOrderedDict\n)Rcbuiltins\nset\n)Rcnumpy.core.multiarray\n"
        b"_reconstruct\n0ctorch._utils\n_rebuild_tensor_v2\n0c_codecs\nencode\n0\x86."
    )

    assert scan_pickle_file(write(tmp_path / "ok.pkl", data)) == []


@pytest.mark.parametrize(
    "name", ["model.safetensors", "config.json", "notes.txt", "model", "m.sav", "m.pickle5"]
)
def test_content_decides_not_the_name(tmp_path: Path, name: str) -> None:
    evil = pickle.dumps(Payload(tmp_path / "m"))

    assert callables(scan_pickle_file(write(tmp_path / name, evil))) & SYSTEM


def test_second_of_concatenated_pickles_is_scanned(tmp_path: Path) -> None:
    first = pickle.dumps({"a": [1, 2, 3]}, protocol=4)
    data = first + pickle.dumps(Payload(tmp_path / "m"), protocol=4)

    findings = scan_pickle_file(write(tmp_path / "multi.joblib", data))

    assert callables(findings) & SYSTEM
    assert findings[0].offset > len(first)


def test_trailing_raw_bytes_after_a_pickle_are_not_malformed(tmp_path: Path) -> None:
    data = pickle.dumps([1, 2], protocol=2) + b"\x00\x10\x00\x00" + os.urandom(64)

    assert scan_pickle_file(write(tmp_path / "legacy.pt", data)) == []


def test_truncated_pickle_is_reported_malformed_without_crashing(tmp_path: Path) -> None:
    data = pickle.dumps({"a": list(range(100))}, protocol=4)

    findings = scan_pickle_file(write(tmp_path / "cut.pkl", data[: len(data) // 2]))

    # The FRAME announces more bytes than remain, and the pickle breaks off.
    assert {f.severity for f in findings} == {Severity.MALFORMED}
    assert [f.construct for f in findings] == ["FRAME", "pickle"]


def test_truncated_malicious_pickle_keeps_its_finding(tmp_path: Path) -> None:
    data = pickle.dumps(Payload(tmp_path / "m"), protocol=2)

    findings = scan_pickle_file(write(tmp_path / "cut.pkl", data[:-3]))

    assert callables(findings) & SYSTEM
    assert any(f.severity == Severity.MALFORMED for f in findings)


def test_storage_bytes_that_start_with_a_frame_opcode_are_not_malformed(tmp_path: Path) -> None:
    # One tensor storage in 256 starts with 0x95 (FRAME) and a length past the end: raw data,
    # not a pickle, in a checkpoint of hundreds of storages.
    storage = b"\x95" + struct.pack("<Q", 1 << 40) + b"\x00\x00\x80\x3f" * 1024

    assert scan_pickle_file(write(tmp_path / "0", storage)) == []


def test_file_that_is_not_a_pickle_at_all_is_not_malformed(tmp_path: Path) -> None:
    assert scan_pickle_file(write(tmp_path / "empty.pkl", b"")) == []
    assert scan_pickle_file(write(tmp_path / "text.pkl", b"\x00\x01 not a pickle")) == []


def test_bin_files_are_sniffed(tmp_path: Path) -> None:
    raw = write(tmp_path / "raw.bin", b"\x00\x00\x80\x3f" * 256)
    pickled = write(tmp_path / "pickled.bin", pickle.dumps(Payload(tmp_path / "m"), protocol=2))
    broken = write(tmp_path / "broken.bin", b"\x80\x02]q\x00(K\x01")

    assert scan_pickle_file(raw) == []
    assert callables(scan_pickle_file(pickled)) & SYSTEM
    # It says it is a pickle (PROTO 2), whatever its name: a loader would read it.
    assert [f.severity for f in scan_pickle_file(broken)] == [Severity.MALFORMED]


def _npy(descr: str, body: bytes) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}".encode("latin-1")
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


def test_npy_object_array_is_scanned_and_numeric_npy_is_not(tmp_path: Path) -> None:
    evil = pickle.dumps([Payload(tmp_path / "m")], protocol=3)
    objects = write(tmp_path / "objects.npy", _npy("|O", evil))
    numbers = write(tmp_path / "numbers.npy", _npy("<f8", evil))

    findings = scan_pickle_file(objects)

    assert callables(findings) & SYSTEM
    assert findings[0].offset > len(_npy("|O", b""))
    assert scan_pickle_file(numbers) == []


@pytest.mark.parametrize(
    "compress",
    [
        gzip.compress,
        zlib.compress,
        bz2.compress,
        lzma.compress,
        lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
    ],
    ids=["gzip", "zlib", "bz2", "xz", "lzma"],
)
def test_compressed_joblib_stream_is_scanned(tmp_path: Path, compress) -> None:
    data = pickle.dumps({"model": Payload(tmp_path / "m")}, protocol=4)

    findings = scan_pickle_file(write(tmp_path / "model.joblib", compress(data)))

    assert callables(findings) & SYSTEM


def _joblib_wrapper(count: int, dtype: str = "f8", *, aligned: bool = False) -> bytes:
    """The opcodes joblib writes for a NumpyArrayWrapper, ending with its BUILD."""
    dtype_state = b"(K\x03" + short_unicode("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
    alignment = short_unicode("numpy_array_alignment_bytes") + b"K\x10" if aligned else b""
    return (
        b"cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81}("
        + short_unicode("subclass")
        + b"cnumpy\nndarray\n"
        + short_unicode("shape")
        + b"J"
        + struct.pack("<i", count)
        + b"\x85"
        + short_unicode("order")
        + short_unicode("C")
        + short_unicode("dtype")
        + b"cnumpy\ndtype\n"
        + short_unicode(dtype)
        + b"\x89\x88\x87R"
        + dtype_state
        + b"b"
        + alignment
        + b"ub"
    )


def test_joblib_raw_array_data_is_skipped(tmp_path: Path) -> None:
    array = struct.pack("<6d", 0.0, 1.0, 2.5, -3.0, 1e300, 7.0)
    data = (
        b"\x80\x04}"
        + short_unicode("w")
        + _joblib_wrapper(6, aligned=True)
        + b"\x03\xff\xff\xff"  # padding length, padding
        + array
        + b"s"
        + short_unicode("i")
        + _joblib_wrapper(2)
        + struct.pack("<2d", 0.5, 0.25)
        + b"s."
    )

    assert scan_pickle_file(write(tmp_path / "clean.joblib", data)) == []


def test_joblib_payload_after_array_data_is_found(tmp_path: Path) -> None:
    payload = pickle.dumps(Payload(tmp_path / "m"), protocol=2)[2:-1]  # without PROTO and STOP
    data = (
        b"\x80\x04}"
        + short_unicode("w")
        + _joblib_wrapper(2)
        + struct.pack("<2d", 1.0, 2.0)
        + b"s"
        + short_unicode("x")
        + payload
        + b"s."
    )

    assert callables(scan_pickle_file(write(tmp_path / "late.joblib", data))) & SYSTEM


def test_joblib_object_array_nested_pickle_is_scanned(tmp_path: Path) -> None:
    nested = pickle.dumps([Payload(tmp_path / "m")], protocol=5)
    data = b"\x80\x04}" + short_unicode("o") + _joblib_wrapper(1, "O8") + nested + b"s."

    assert callables(scan_pickle_file(write(tmp_path / "objects.joblib", data))) & SYSTEM


@pytest.mark.parametrize("filler", [0, 70_000], ids=["in-window", "past-window"])
@pytest.mark.parametrize("container", ["plain", "gzip", "zip"])
def test_forged_joblib_wrapper_cannot_hide_a_payload(
    tmp_path: Path, filler: int, container: str
) -> None:
    # pickle.load runs these bytes; joblib would skip them as the wrapper's array data.
    payload = b"N0" * filler + b"0cposix\nsystem\n" + short_unicode("touch m") + b"\x85Rs."
    while len(payload) % 8:
        payload = b"N0" + payload if (8 - len(payload) % 8) % 2 == 0 else b"K\x000" + payload
    data = b"\x80\x04}" + short_unicode("w") + _joblib_wrapper(len(payload) // 8) + payload + b"s."
    path = tmp_path / "forged.pt"
    if container == "zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("archive/data.pkl", data)
    else:
        path.write_bytes(gzip.compress(data) if container == "gzip" else data)

    findings = scan_pickle_file(path)

    assert [(f.construct, f.offset) for f in findings] == [("posix.system", data.index(b"cposix"))]


def test_big_payloads_are_skipped_not_read(tmp_path: Path) -> None:
    data = pickle.dumps([b"\x00" * (64 * 1024 * 1024), "tail"], protocol=4)
    path = write(tmp_path / "blob.pkl", data)
    del data

    assert scan_pickle_file(path) == []


def _nested(inner: bytes, how: str) -> object:
    if how == "bytes":
        return inner
    if how == "bytearray":
        return bytearray(inner)
    if how == "base64":
        return base64.b64encode(inner).decode()
    if how == "base64-lines":
        return base64.encodebytes(inner).decode()
    if how == "urlsafe-base64":
        return base64.urlsafe_b64encode(inner).decode()
    return inner.hex()


@pytest.mark.parametrize(
    "how", ["bytes", "bytearray", "base64", "base64-lines", "urlsafe-base64", "hex"]
)
@pytest.mark.parametrize("padding", [0, 4000], ids=["short", "long"])
def test_a_pickle_nested_in_a_value_is_scanned(tmp_path: Path, how: str, padding: int) -> None:
    # A second stage (pickle.loads of a field) runs it; modelaudit's nested-pickle shapes.
    marker = tmp_path / "pwned"
    inner = pickle.dumps({"pad": "x" * padding, "run": Payload(marker)}, protocol=4)
    data = pickle.dumps({"weights": [1.0, 2.0], "meta": _nested(inner, how)}, protocol=5)

    findings = scan_pickle_file(write(tmp_path / "model.pkl", data))

    assert callables(findings) & SYSTEM
    assert all("in a pickle" in f.reason for f in findings)
    assert not marker.exists()


def test_a_pickle_nested_two_levels_deep_is_scanned(tmp_path: Path) -> None:
    inner = pickle.dumps(Payload(tmp_path / "pwned"), protocol=4)
    middle = pickle.dumps({"stage2": inner}, protocol=4)
    data = pickle.dumps({"stage1": middle, "encoded": base64.b64encode(middle).decode()})

    findings = scan_pickle_file(write(tmp_path / "model.pkl", data))

    assert len(findings) == 2
    assert {f.construct for f in findings} <= SYSTEM


def test_benign_nested_pickles_and_bytes_that_start_like_one_are_clean(tmp_path: Path) -> None:
    benign = pickle.dumps({"a": [1, 2, 3], "b": collections.OrderedDict(x=1)}, protocol=4)
    value = {
        "nested": benign,
        "encoded": base64.b64encode(benign).decode(),
        "hex": benign.hex(),
        # Raw data whose first bytes read as PROTO 4 + an opcode, then break.
        "storage": b"\x80\x04\x95" + bytes(range(256)) * 20,
        "text": "gASV is how a base64 pickle starts, but this is prose",
    }
    path = write(tmp_path / "model.pkl", pickle.dumps(value, protocol=4))

    assert scan_pickle_file(path) == []


def test_bytes_starting_with_an_opcode_that_cannot_start_a_pickle_are_not_one(
    tmp_path: Path,
) -> None:
    # REDUCE, STOP, MEMOIZE, BINGET... need a stack or memo that a fresh unpickler lacks: it
    # fails on the first byte, so nothing is scanned; INST names its class first, so it is.
    for first in (b"R", b".", b"\x94", b"h", b"t"):
        path = write(tmp_path / "raw.bin", first + b"cos\nsystem\n(S'id'\ntR.")
        assert scan_pickle_file(path) == [], first
    path = write(tmp_path / "inst.bin", b"ios\nsystem\n")
    assert callables(scan_pickle_file(path)) == {"os.system"}


def test_a_pickle_announced_by_proto_that_breaks_at_once_is_malformed(tmp_path: Path) -> None:
    # PROTO 4, then TUPLE without a MARK (fickling's crash case): the unpickler refuses it.
    findings = scan_pickle_file(write(tmp_path / "m.pkl", b"\x80\x04t."))

    assert [(f.construct, f.severity) for f in findings] == [("pickle", Severity.MALFORMED)]
