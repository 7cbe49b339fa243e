"""Which globals a pickle may name: an exact allow-list, and a deny-list that names the danger.

Everything a pickle names is imported by the unpickler, and most of it can be called. The
allow-list holds the exact ``module.name`` pairs that the common formats need (PyTorch state
dicts and checkpoints, numpy arrays, scikit-learn and joblib estimators, plain data types);
anything else is a finding. The deny-list does not decide whether a global is allowed: it says
why one is ``dangerous`` (runs code, touches files, opens sockets, imports modules) rather than
merely ``unknown``. It is matched by module prefix, so ``subprocess`` covers ``subprocess.Popen``.

Nothing under torch, numpy or sklearn is allowed by prefix where a name could be a gadget:
torch and numpy names are listed one by one; scikit-learn classes (CapWords names) are allowed
in the estimator packages only, never in ``sklearn.datasets`` (downloads), ``sklearn.externals``
or ``sklearn.utils`` (testing helpers), and no scikit-learn function is allowed unless listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from rearguard.models.integrity.scan.findings import Severity

__all__ = [
    "ALLOWED_GLOBALS",
    "DANGEROUS_MODULES",
    "DANGEROUS_NAMES",
    "classify_global",
]


def _names(module: str, names: str) -> set[str]:
    return {f"{module}.{name}" for name in names.split()}


_TORCH_DTYPES = (
    "float32 float float64 double float16 half bfloat16 complex32 complex64 cfloat complex128 "
    "cdouble uint8 uint16 uint32 uint64 int8 int16 short int32 int int64 long bool qint8 quint8 "
    "qint32 quint4x2 quint2x4 float8_e4m3fn float8_e5m2 float8_e4m3fnuz float8_e5m2fnuz"
)
_TORCH_STORAGES = (
    "FloatStorage DoubleStorage HalfStorage BFloat16Storage LongStorage IntStorage ShortStorage "
    "CharStorage ByteStorage BoolStorage ComplexFloatStorage ComplexDoubleStorage QInt8Storage "
    "QUInt8Storage QInt32Storage QUInt4x2Storage QUInt2x4Storage UntypedStorage TypedStorage"
)

ALLOWED_GLOBALS: frozenset[str] = frozenset(
    {
        # PyTorch: tensors, parameters, storages, dtypes, devices, sizes (torch.save layout).
        *_names(
            "torch._utils",
            "_rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter "
            "_rebuild_parameter_with_state _rebuild_qtensor _rebuild_sparse_tensor "
            "_rebuild_meta_tensor_no_storage _rebuild_device_tensor_from_numpy "
            "_rebuild_nested_tensor",
        ),
        "torch._tensor._rebuild_from_type_v2",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        *_names("torch", _TORCH_STORAGES),
        *_names("torch", _TORCH_DTYPES),
        *_names(
            "torch",
            "Size device Tensor strided sparse_coo sparse_csr contiguous_format channels_last "
            "channels_last_3d preserve_format per_tensor_affine per_channel_affine",
        ),
        "torch.nn.parameter.Parameter",
        # numpy: arrays, scalars, dtypes, masked arrays, random states.
        *_names("numpy.core.multiarray", "_reconstruct scalar"),
        *_names("numpy._core.multiarray", "_reconstruct scalar"),
        *_names("numpy.core.numeric", "_frombuffer"),
        *_names("numpy._core.numeric", "_frombuffer"),
        *_names("numpy", "ndarray dtype"),
        # Scalar types, referenced as estimators' dtype parameters.
        *_names(
            "numpy",
            "float16 float32 float64 longdouble int8 int16 int32 int64 uint8 uint16 uint32 "
            "uint64 intc uintc intp uintp bool_ complex64 complex128 object_ str_ bytes_ "
            "datetime64 timedelta64",
        ),
        *_names("numpy.ma.core", "_mareconstruct MaskedArray"),
        *_names("numpy.random._pickle", "__randomstate_ctor __bit_generator_ctor __generator_ctor"),
        "numpy.random._mt19937.MT19937",
        *_names("numpy.random._pcg64", "PCG64 PCG64DXSM"),
        "numpy.random._philox.Philox",
        "numpy.random._sfc64.SFC64",
        "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator",
        *_names(
            "numpy.dtypes",
            "Float64DType Float32DType Float16DType Int64DType Int32DType Int16DType Int8DType "
            "UInt64DType UInt32DType UInt16DType UInt8DType BoolDType Complex64DType "
            "Complex128DType StrDType BytesDType ObjectDType",
        ),
        # joblib's arrays.
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
        # scipy sparse matrices (scikit-learn's vectorisers and one-hot encoders).
        *_names("scipy.sparse._csr", "csr_matrix csr_array"),
        *_names("scipy.sparse._csc", "csc_matrix csc_array"),
        *_names("scipy.sparse._coo", "coo_matrix coo_array"),
        *_names("scipy.sparse.csr", "csr_matrix"),
        *_names("scipy.sparse.csc", "csc_matrix"),
        # scikit-learn functions that estimators hold by default.
        *_names("sklearn.feature_selection._univariate_selection", "f_classif f_regression chi2"),
        *_names("sklearn.feature_selection._mutual_info", "mutual_info_classif"),
        # Pure data from the standard library.
        *_names(
            "builtins",
            "set frozenset bytearray bytes complex slice range dict list tuple int float str bool "
            "object Ellipsis NotImplemented len abs min max sum round divmod pow sorted reversed "
            "enumerate zip repr chr ord hex oct bin all any",
        ),
        *_names("collections", "OrderedDict defaultdict Counter deque"),
        # The abstract base classes (type checks, annotations kept on objects): classes that
        # cannot be instantiated, or views over a mapping.
        *_names(
            "collections.abc",
            "AsyncGenerator AsyncIterable AsyncIterator Awaitable ByteString Callable Collection "
            "Container Coroutine Generator Hashable ItemsView Iterable Iterator KeysView Mapping "
            "MappingView MutableMapping MutableSequence MutableSet Reversible Sequence Set Sized "
            "ValuesView",
        ),
        "copyreg._reconstructor",
        "_codecs.encode",
        "__future__.annotations",
        *_names("datetime", "datetime date time timedelta timezone"),
        "decimal.Decimal",
        "fractions.Fraction",
        "uuid.UUID",
        "argparse.Namespace",
        "types.SimpleNamespace",
        *_names("pathlib", "PosixPath PurePosixPath WindowsPath PureWindowsPath Path"),
        "re._compile",
    }
)
"""Exact ``module.name`` pairs that load as data and run nothing of the file's choosing."""

# scikit-learn packages whose classes are estimators, transformers and their parts.
_SKLEARN_DENIED_PACKAGES = ("sklearn.datasets", "sklearn.externals", "sklearn.utils")

_OS = "operating-system access: runs commands, changes files and the environment"
_EXEC = "executes arbitrary Python code"
_NET = "network access"
_FILES = "reads or writes files"
_NESTED = "deserialises a nested pickle or model"
_IMPORT = "imports arbitrary modules"

DANGEROUS_MODULES: Mapping[str, str] = MappingProxyType(
    {
        "os": _OS,
        "posix": _OS,
        "nt": _OS,
        "subprocess": "runs programs",
        "_posixsubprocess": "runs programs",
        "_winapi": "runs programs",
        "commands": "runs shell commands (Python 2)",
        "popen2": "runs programs (Python 2)",
        "pty": "spawns programs on a pseudo-terminal",
        "platform": "runs programs (platform.popen)",
        "multiprocessing": "starts processes",
        "concurrent": "starts processes and threads",
        "threading": "runs callables in threads",
        "_thread": "runs callables in threads",
        "atexit": "registers callables to run at exit",
        "signal": "installs signal handlers",
        "asyncio": "starts processes and network connections",
        "runpy": _EXEC,
        "code": _EXEC,
        "codeop": "compiles Python code",
        "timeit": _EXEC,
        "profile": _EXEC,
        "cProfile": _EXEC,
        "trace": _EXEC,
        "doctest": _EXEC,
        "pdb": _EXEC,
        "bdb": _EXEC,
        "idlelib": _EXEC,
        "lib2to3": "reads, rewrites and runs Python files",
        "_pyrepl": "runs a pager command or a REPL",
        "pydoc": "pipes text through a shell command",
        "test": "CPython's test helpers run scripts and commands",
        "importlib": _IMPORT,
        "imp": _IMPORT,
        "pkgutil": _IMPORT,
        "modulefinder": _IMPORT,
        "zipimport": _IMPORT,
        "site": _IMPORT,
        "_interpreters": "runs code in a subinterpreter",
        "_xxsubinterpreters": "runs code in a subinterpreter",
        "interpreters": "runs code in a subinterpreter",
        "marshal": "loads code objects",
        "pickle": _NESTED,
        "_pickle": _NESTED,
        "cPickle": _NESTED,
        "shelve": _NESTED,
        "dill": _NESTED,
        "cloudpickle": "recreates functions from code objects",
        "joblib.load": _NESTED,
        "ctypes": "calls native code",
        "_ctypes": "calls native code",
        "sys": "reaches interpreter internals (sys.modules, hooks)",
        "gc": "reaches every object of the interpreter",
        "inspect": "reaches frames, globals and source files",
        "shutil": "copies, moves and deletes files",
        "tempfile": "creates files",
        "glob": "lists files",
        "fileinput": _FILES,
        "linecache": _FILES,
        "tarfile": _FILES,
        "zipfile": _FILES,
        "gzip": _FILES,
        "bz2": _FILES,
        "lzma": _FILES,
        "sqlite3": _FILES,
        "dbm": _FILES,
        "mmap": _FILES,
        "distutils": "writes files and runs compilers",
        "setuptools": "writes files and runs compilers",
        "_osx_support": "runs compiler commands",
        "_aix_support": "runs compiler commands",
        "socket": _NET,
        "_socket": _NET,
        "ssl": _NET,
        "select": _NET,
        "selectors": _NET,
        "socketserver": _NET,
        "urllib": _NET,
        "http": _NET,
        "ftplib": _NET,
        "smtplib": _NET,
        "smtpd": _NET,
        "poplib": _NET,
        "imaplib": "network access, and IMAP4_stream runs a command",
        "nntplib": _NET,
        "telnetlib": _NET,
        "xmlrpc": _NET,
        "wsgiref": _NET,
        "requests": _NET,
        "httpx": _NET,
        "aiohttp": _NET,
        "urllib3": _NET,
        "webbrowser": "opens URLs",
        "antigravity": "opens a web browser when imported",
        "turtle": "opens windows and runs event loops",
        "tkinter": "opens windows and runs event loops",
        "pip": "installs packages",
        "ensurepip": "installs packages",
        "venv": "creates environments and installs packages",
        "functools": "composes calls of other callables (functools.partial)",
        "logging.config": "reads configuration that imports and calls (and listens on a socket)",
        "logging.handlers": "writes files and opens sockets",
        "yaml": "constructs arbitrary objects from YAML",
        "jinja2": "renders templates that can run code",
        "torch._inductor": "compiles and loads code",
        "torch._dynamo": "compiles and runs code",
        "torch.hub": "downloads and runs code",
        "torch.jit": "compiles and loads code",
        "torch.package": _NESTED,
        "torch.serialization": _NESTED,
        "torch.load": _NESTED,
        "torch.save": _FILES,
        "torch.storage._load_from_bytes": _NESTED,
        "torch.utils.cpp_extension": "compiles and loads native code",
        "torch.utils.collect_env": "runs programs",
        "torch.utils.data": "runs callables in worker processes",
        "torch.utils.bottleneck": _EXEC,
        "torch.distributed": "remote procedure calls and network access",
        "torch.multiprocessing": "starts processes",
        "torch.fx": "generates and runs code",
        "torch.export": _NESTED,
        "torch.compiler": "compiles and runs code",
        "torch.library": "registers and runs operators",
        "torch.ops": "calls registered operators",
        "torch._ops": "calls registered operators",
        "torch._C": "calls native code",
        "torch.testing": _EXEC,
        "torch.onnx": _FILES,
        "torch.cuda": "loads native code",
        "numpy.f2py": "compiles and runs code",
        "numpy.distutils": "runs compilers",
        "numpy.testing": _EXEC,
        "numpy.ctypeslib": "loads native libraries",
        "numpy.lib.npyio": _NESTED,
        "numpy.lib.format": _NESTED,
        "numpy.load": _NESTED,
        "numpy.save": _FILES,
        "numpy.savez": _FILES,
        "numpy.fromfile": _FILES,
        "numpy.memmap": _FILES,
        "numpy.loadtxt": _FILES,
        "numpy.genfromtxt": _FILES,
        "pandas.io": _FILES,
        "pandas.read_pickle": _NESTED,
        "pandas.read_csv": "reads files and URLs",
        "tensorflow": "runs graph ops that read and write files",
        "keras": "deserialises layers that run code",
        "sklearn.datasets": "downloads data",
        "sklearn.utils._testing": _EXEC,
    }
)
"""Modules (or dotted names) denied by prefix: the module, any submodule, any name in them."""

_BUILTINS = frozenset(
    {
        "eval",
        "exec",
        "execfile",
        "compile",
        "__import__",
        "open",
        "file",
        "getattr",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "breakpoint",
        "input",
        "apply",
        "reload",
        "exit",
        "quit",
    }
)
_OPENERS = frozenset({"open", "open_code", "FileIO"})

DANGEROUS_NAMES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "builtins": _BUILTINS,
        "__builtin__": _BUILTINS,
        "io": _OPENERS,
        "_io": _OPENERS,
        "codecs": frozenset({"open"}),
        "operator": frozenset({"attrgetter", "methodcaller", "call"}),
        "types": frozenset(
            {"CodeType", "FunctionType", "LambdaType", "MethodType", "ModuleType", "CellType"}
        ),
        "uuid": frozenset({"_get_command_stdout", "_popen"}),
        "logging": frozenset({"FileHandler", "StreamHandler", "basicConfig", "config"}),
        "copyreg": frozenset({"_reconstructor_ex", "__newobj_ex__"}),
        "numpy.testing._private.utils": frozenset({"runstring"}),
        "torch": frozenset({"load", "save", "compile", "from_file"}),
    }
)
"""Single names denied in otherwise harmless modules: code evaluation, dynamic import, attribute
access that reaches arbitrary objects, file opening."""

# Attributes that lead from an object to arbitrary code, globals, or to a module's name (which
# could then feed STACK_GLOBAL); no legitimate pickle references them.
_ATTRIBUTE_ESCAPES = frozenset(
    {
        "__name__",
        "__qualname__",
        "__module__",
        "__file__",
        "__package__",
        "__doc__",
        "__builtins__",
        "__globals__",
        "__subclasses__",
        "__getattribute__",
        "__dict__",
        "__code__",
        "__closure__",
        "__func__",
        "__self__",
        "__class__",
        "__base__",
        "__bases__",
        "__mro__",
        "__loader__",
        "__spec__",
        "__reduce__",
        "__reduce_ex__",
        "__init__",
        "__new__",
        "__call__",
    }
)


def classify_global(module: str, name: str) -> tuple[Severity, str] | None:
    """Say whether a pickle may name ``module.name``, and if not how bad it is.

    Args:
        module: the module as the unpickler imports it (after Python 2 mapping).
        name: the attribute, possibly dotted (protocol 4 resolves it attribute by attribute).

    Returns:
        None when the pair is allowed; otherwise the severity and the reason.
    """
    reason = _deny_reason(module, name)
    if reason is not None:
        return Severity.DANGEROUS, reason
    if f"{module}.{name}" in ALLOWED_GLOBALS or _sklearn_class(module, name):
        return None
    for part in name.split(".")[:-1]:
        # Nested classes are CapWords; a lowercase step is likely a module alias (tempfile._os).
        if part.lstrip("_")[:1].islower():
            return Severity.UNKNOWN, f"attribute path through {part}, possibly a module"
    return Severity.UNKNOWN, "not on the allow-list"


def _sklearn_class(module: str, name: str) -> bool:
    if not module.startswith("sklearn.") or "." in name or not name[:1].isupper():
        return False
    return not any(
        module == package or module.startswith(package + ".")
        for package in _SKLEARN_DENIED_PACKAGES
    )


def _module_reason(module: str) -> str | None:
    parts = module.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if prefix in DANGEROUS_MODULES:
            return f"denied module {prefix}: {DANGEROUS_MODULES[prefix]}"
    return None


def _name_reason(module: str, name: str) -> str | None:
    if name in DANGEROUS_NAMES.get(module, ()):
        return f"denied callable {module}.{name}"
    # Dotted deny entries also name single callables (torch.load, numpy.save).
    return _module_reason(f"{module}.{name}")


def _deny_reason(module: str, name: str) -> str | None:
    """Say why ``module.name`` is dangerous, or None when the deny-list does not name it."""
    parts = name.split(".")
    reason = _module_reason(module) or _name_reason(module, parts[0])
    if reason is not None:
        return reason
    # Protocol 4 resolves "a.b.c" attribute by attribute: "posixpath" + "os.system" is os.system.
    for start in range(len(parts) - 1):
        for stop in range(start + 1, len(parts)):
            owner = ".".join(parts[start:stop])
            reason = _module_reason(owner) or _name_reason(owner, parts[stop])
            if reason is not None:
                return f"{reason} (reached through attribute path {name})"
    escapes = _ATTRIBUTE_ESCAPES.intersection(parts)
    if escapes:
        return f"attribute path through {', '.join(sorted(escapes))}"
    return None
