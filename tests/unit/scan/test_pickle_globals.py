"""The allow-list decides what a pickle may name; the deny-list says which of the rest are
dangerous. FRAME overruns, extension codes and opcode-dense pickles are handled."""

from __future__ import annotations

import pickle
import struct
import tracemalloc
from pathlib import Path

import pytest

from rearguard.models.integrity.scan.engine import scan_file
from rearguard.models.integrity.scan.findings import Finding, Severity
from rearguard.models.integrity.scan.pickle_globals import ALLOWED_GLOBALS, classify_global


def stack_global(module: str, name: str, *, call: bool = True) -> bytes:
    """A protocol 4 pickle that imports ``module.name`` (and calls it with no arguments)."""

    def text(value: str) -> bytes:
        data = value.encode()
        return b"\x8c" + bytes([len(data)]) + data

    return b"\x80\x04" + text(module) + text(name) + b"\x93" + (b")R" if call else b"") + b"."


def scan_bytes(tmp_path: Path, data: bytes, name: str = "f") -> list[Finding]:
    path = tmp_path / name
    path.write_bytes(data)
    return scan_file(path)


def verdicts(findings: list[Finding]) -> set[tuple[str, Severity]]:
    return {(f.construct, f.severity) for f in findings}


GADGETS = [
    ("torch._inductor.codecache", "compile_file"),
    ("torch.serialization", "load"),
    ("torch", "load"),
    ("torch.storage", "_load_from_bytes"),
    ("torch.utils.collect_env", "run"),
    ("torch.jit.unsupported_tensor_ops", "execWrapper"),
    ("torch.utils.data.datapipes.utils.decoder", "basichandlers"),
    ("torch._dynamo.guards.GuardBuilder", "get"),
    ("torch.fx.experimental.symbolic_shapes", "ShapeEnv.evaluate_guards_expression"),
    ("functools", "partial"),
    ("idlelib.pyshell", "ModifiedInterpreter.runcode"),
    ("lib2to3.pgen2.grammar", "Grammar.loads"),
    ("uuid", "_get_command_stdout"),
    ("_pyrepl.pager", "pipe_pager"),
    ("imaplib", "IMAP4_stream"),
    ("logging", "FileHandler"),
    ("logging.config", "listen"),
    ("linecache", "getline"),
    ("_osx_support", "_read_output"),
    ("_aix_support", "_read_cmd_output"),
    ("test.support.script_helper", "assert_python_ok"),
    ("pkgutil", "resolve_name"),
    ("distutils.file_util", "write_file"),
    ("numpy.f2py.crackfortran", "getlincoef"),
    ("numpy.testing._private.utils", "runstring"),
    ("types", "CodeType"),
    ("types", "FunctionType"),
    ("marshal", "loads"),
    ("cloudpickle.cloudpickle", "_make_function"),
    ("ssl", "get_server_certificate"),
    ("aiohttp.client", "ClientSession"),
    ("poplib", "POP3"),
    ("nntplib", "NNTP"),
    ("_interpreters", "create"),
    ("_xxsubinterpreters", "run_string"),
    ("asyncio.unix_events", "_UnixSubprocessTransport._start"),
    ("pydoc", "locate"),
    ("operator", "methodcaller"),
    ("ctypes", "CDLL"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    ("sklearn.datasets", "fetch_openml"),
    ("joblib", "load"),
    ("numpy", "load"),
    ("dill._dill", "_create_code"),
]


@pytest.mark.parametrize(("module", "name"), GADGETS, ids=[".".join(g) for g in GADGETS])
def test_known_gadgets_are_dangerous(tmp_path: Path, module: str, name: str) -> None:
    findings = scan_bytes(tmp_path, stack_global(module, name))

    assert verdicts(findings) == {(f"{module}.{name}", Severity.DANGEROUS)}


@pytest.mark.parametrize(
    "construct",
    [
        "mypkg.Model",
        "__main__.Net",
        "torch.nn.modules.linear.Linear",
        "torch._utils._rebuild_wrapper_subclass",
        "torch._utils.something_new",
        "numpy.core.multiarray.frombuffer",
        "collections.namedtuple",
        "collections.abc.Iterable.register",
        "sklearn.utils.Bunch",
        "sklearn.linear_model._logistic.some_function",
    ],
)
def test_anything_not_on_the_allow_list_is_unknown(tmp_path: Path, construct: str) -> None:
    module, _, name = construct.rpartition(".")

    findings = scan_bytes(tmp_path, stack_global(module, name))

    assert verdicts(findings) == {(construct, Severity.UNKNOWN)}


def test_the_allow_list_is_exact_not_by_prefix() -> None:
    assert classify_global("torch._utils", "_rebuild_tensor_v2") is None
    assert classify_global("torch._utils", "_rebuild_tensor_v2.__globals__") is not None
    assert classify_global("torch._utils._rebuild_tensor_v2", "x") is not None
    assert classify_global("numpy", "dtype") is None
    assert classify_global("numpy", "dtype.mro") is not None
    assert classify_global("sklearn.linear_model._logistic", "LogisticRegression") is None
    assert classify_global("sklearn.utils._testing", "SomeClass") is not None
    for entry in ALLOWED_GLOBALS:
        module, _, name = entry.rpartition(".")
        assert classify_global(module, name) is None, entry


@pytest.mark.parametrize(
    "construct",
    [
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2",
        "torch.FloatStorage",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "builtins.set",
        "builtins.frozenset",
        "builtins.bytearray",
        "builtins.complex",
        "builtins.slice",
        "builtins.range",
        "datetime.datetime",
        "decimal.Decimal",
        "_codecs.encode",
        "collections.abc.Iterable",
        "collections.abc.Mapping",
    ],
)
def test_data_globals_are_allowed(tmp_path: Path, construct: str) -> None:
    module, _, name = construct.rpartition(".")

    assert scan_bytes(tmp_path, stack_global(module, name)) == []


def test_python2_names_are_judged_as_the_unpickler_imports_them(tmp_path: Path) -> None:
    allowed = b"ccopy_reg\n_reconstructor\n(c__builtin__\nobject\nc__builtin__\nobject\nNtR."
    denied = b"c__builtin__\nfile\n(S'/etc/passwd'\ntR."

    assert scan_bytes(tmp_path, allowed, "a") == []
    assert verdicts(scan_bytes(tmp_path, denied, "b")) == {("__builtin__.file", Severity.DANGEROUS)}


def test_a_global_discarded_by_pop_after_obj_is_still_found(tmp_path: Path) -> None:
    data = b"\x80\x02(cposix\nsystem\nX\x02\x00\x00\x00idoN0N."

    assert verdicts(scan_bytes(tmp_path, data)) == {("posix.system", Severity.DANGEROUS)}


def test_getattr_chain_through_import_is_found(tmp_path: Path) -> None:
    # builtins.getattr(builtins.__import__("os"), "system")("id")
    data = (
        b"\x80\x02cbuiltins\ngetattr\ncbuiltins\n__import__\nX\x02\x00\x00\x00os\x85R"
        b"X\x06\x00\x00\x00system\x86RX\x02\x00\x00\x00id\x85R."
    )

    assert verdicts(scan_bytes(tmp_path, data)) == {
        ("builtins.getattr", Severity.DANGEROUS),
        ("builtins.__import__", Severity.DANGEROUS),
    }


def test_extension_codes_are_unknown(tmp_path: Path) -> None:
    data = b"\x80\x02\x82\x01)R."

    assert verdicts(scan_bytes(tmp_path, data)) == {("extension code 1", Severity.UNKNOWN)}


def test_uncalled_global_in_a_broken_text_stream_is_not_reported(tmp_path: Path) -> None:
    text = b"cfoo\nbar\nThis README starts like a protocol 0 GLOBAL and then is prose.\n"

    assert scan_bytes(tmp_path, text) == []


def test_dangerous_global_in_a_broken_text_stream_is_reported(tmp_path: Path) -> None:
    # The string's length is garbage, so the unpickler fails, but only after importing the
    # module, which runs its code: a module whose import does harm is reported.
    data = b"cantigravity\nx\n(X>\nopen('f', 'a')"

    assert verdicts(scan_bytes(tmp_path, data)) == {("antigravity.x", Severity.DANGEROUS)}


def test_called_global_in_a_broken_protocol_0_stream_is_reported(tmp_path: Path) -> None:
    # No STOP: the unpickler has already run os.system when it fails.
    data = b"cos\nsystem\n(S'id'\ntR"

    assert verdicts(scan_bytes(tmp_path, data)) == {("os.system", Severity.DANGEROUS)}


def framed(body: bytes, declared: int) -> bytes:
    return b"\x80\x05\x95" + struct.pack("<Q", declared) + body + b"."


@pytest.mark.parametrize(
    "payload",
    [
        framed(b"B" + struct.pack("<I", 20) + b"A" * 20 + b"0N", 5),
        framed(b"\x8c\x14" + b"A" * 20 + b"0N", 3),
        framed(b"cos\nsystem\n0N", 7),
        framed(b"J" + struct.pack("<i", 7) + b"0N", 2),
        b"\x80\x05\x95" + struct.pack("<Q", 30) + b"N0\x95" + struct.pack("<Q", 2) + b"N.",
    ],
    ids=["BINBYTES", "SHORT_BINUNICODE", "GLOBAL", "BININT", "frame-in-frame"],
)
def test_opcode_running_past_its_frame_is_malformed(tmp_path: Path, payload: bytes) -> None:
    findings = scan_bytes(tmp_path, payload)

    assert ("FRAME", Severity.MALFORMED) in verdicts(findings)


def test_payload_hidden_past_a_frame_is_flagged(tmp_path: Path) -> None:
    # BINBYTES claims 0x107 bytes in a frame of 2: CPython's reader and a scanner that trusts
    # the length part ways over the buried os.system.
    hidden = b"cos\nsystem\nVecho pwned\n\x85R"
    payload = (
        b"\x80\x05N(\x95"
        + struct.pack("<Q", 2)
        + b"B\x07\x01\x00\x00\x00\x00"
        + (hidden + b"(").ljust(261, b"N")
        + b"1."
    )

    assert Severity.MALFORMED in {f.severity for f in scan_bytes(tmp_path, payload)}


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize(
    "value",
    [[1, 2, 3], b"x" * 100_000, [1, b"y" * 100_000, 2], list(range(200_000)), {"a": [(3, 4)]}],
    ids=["small", "large-bytes", "interleaved", "many-frames", "nested"],
)
def test_well_formed_frames_are_not_flagged(tmp_path: Path, value: object, protocol: int) -> None:
    assert scan_bytes(tmp_path, pickle.dumps(value, protocol=protocol)) == []


def test_memory_is_bounded_by_structure_not_by_memoized_values(tmp_path: Path) -> None:
    # Memoized containers, each holding a text: the memo keeps one byte for each.
    value = [[f"token {i:0>60}", (i, float(i))] for i in range(50_000)]
    path = tmp_path / "dense.pkl"
    path.write_bytes(pickle.dumps(value, protocol=4))
    size = path.stat().st_size

    tracemalloc.start()
    try:
        findings = scan_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert findings == []
    assert peak < size / 4, f"peak {peak} bytes for a {size}-byte pickle"


@pytest.mark.parametrize(
    "text",
    [
        b"instructions:\nbe brief\nand polite (always)\n",
        b"(note\ninstructions: be brief\nthen stop\n",
        b"config = {\nname: x\n}\nRun it.\n",
    ],
)
def test_prose_that_starts_like_opcodes_is_not_a_finding(tmp_path: Path, text: bytes) -> None:
    assert scan_bytes(tmp_path, text) == []
