"""Keras model configs, and HDF5 (``.h5``) Keras files: code that loading a model would run.

A Keras model is rebuilt from a JSON config (``config.json`` in a ``.keras`` archive, the
``model_config`` attribute of an HDF5 file, ``keras_metadata.pb`` in a SavedModel). The config
is walked, never deserialised:

- a ``Lambda`` layer is ``dangerous``: its ``function`` is marshalled Python bytecode
  (``__lambda__``, or ``function_type: "lambda"`` in Keras 2) or a reference to any function of
  any module (``function_type: "function"``; the safe-mode bypasses CVE-2025-1550, -8747 and
  -9906 call ``keras.models.load_model`` or ``keras.config.enable_unsafe_deserialization``
  through one). So are ``TFSMLayer`` (loads and runs a SavedModel from a path in the config)
  and ``TorchModuleWrapper`` (holds a ``torch.load`` pickle), and a function reference, outside
  a ``Lambda``, to one of Keras's own functions that load, download or turn safe mode off;
- an object whose ``module`` is not Keras's own (``keras``, ``keras.src...``, ``tf_keras``,
  ``tensorflow.keras``, ``keras_hub``...), or whose ``registered_name`` names another package
  (``pkg>Name``), is ``unknown``: loading imports that user code.

Not detected: Keras 2 configs name no module, so a custom layer there is only its class name;
it loads only with code the user passes in (``custom_objects``) and is not reported.

HDF5 files are read with ``h5py`` (the ``keras`` extra); without it an HDF5 file is reported
"not scanned: install rearguard[keras]", never passed as clean. Note that h5py reads the file
with the native HDF5 library, whose parser is not hardened against hostile files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import BinaryIO

from rearguard.models.integrity.scan.findings import Finding, Location, Severity
from rearguard.models.integrity.scan.reading import MAX_JSON_BYTES, MalformedInput, load_json

__all__ = [
    "HDF5_MAGIC",
    "KERAS_MODULES",
    "looks_like_config",
    "scan",
    "scan_config",
    "sniff",
]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
"""The HDF5 superblock signature: at offset 0, or 512, 1024, 2048... after a user block."""

KERAS_MODULES: tuple[str, ...] = (
    "keras",
    "tf_keras",
    "tensorflow.keras",
    "tensorflow.python.keras",
    "keras_hub",
    "keras_nlp",
    "keras_cv",
)
"""Module prefixes (and ``registered_name`` packages) of Keras and the Keras team's model
libraries: objects from these need no user code."""

_LOADING_LAYERS: Mapping[str, str] = {
    "TFSMLayer": "loads and runs the SavedModel at a path named in the config",
    "TorchModuleWrapper": "holds a PyTorch module that is unpickled (torch.load) on load",
}
# Keras's own functions that a function reference can reach to load, download or unlock more.
_KERAS_GADGETS = frozenset(
    {
        "load_model",
        "load_weights",
        "model_from_json",
        "get_file",
        "enable_unsafe_deserialization",
        "set_global_attribute",
        "deserialize_keras_object",
        "TFSMLayer",
    }
)
_HDF5_ATTRIBUTES = ("model_config", "training_config")


def sniff(head: bytes) -> bool:
    """Whether ``head`` starts an HDF5 file (its signature at 0, 512, 1024, 2048...)."""
    offset = 0
    while offset + len(HDF5_MAGIC) <= len(head):
        if head.startswith(HDF5_MAGIC, offset):
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


def _is_keras_module(module: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in KERAS_MODULES)


def looks_like_config(value: object) -> bool:
    """Whether a parsed JSON value is a Keras object config (``class_name`` and ``config``)."""
    return (
        isinstance(value, dict) and isinstance(value.get("class_name"), str) and "config" in value
    )


def _lambda_reason(config: object) -> str:
    if not isinstance(config, dict):
        return "runs Python code from the config"
    function = config.get("function")
    if isinstance(function, dict) and function.get("class_name") == "__lambda__":
        return "holds marshalled Python bytecode that runs when the model loads"
    if isinstance(function, dict) and function.get("class_name") == "function":
        target = f"{function.get('module')}.{function.get('config')}"
        return f"calls {target} with arguments from the config"
    function_type = config.get("function_type")
    if function_type == "lambda":
        return "holds marshalled Python bytecode that runs when the model loads"
    if function_type == "function":
        return f"calls {config.get('module')}.{function} with arguments from the config"
    return "runs Python code from the config"


def _judge(obj: dict[str, object], *, location: Location, offset: int | None) -> Finding | None:
    class_name = str(obj["class_name"])
    module = obj.get("module")
    registered = obj.get("registered_name")
    config = obj.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    label = f"{class_name} layer {name!r}" if isinstance(name, str) else class_name
    if class_name == "Lambda":
        return location.finding(
            construct=label,
            severity=Severity.DANGEROUS,
            reason=f"Lambda layer: {_lambda_reason(config)}",
            offset=offset,
        )
    if class_name == "__lambda__":
        return location.finding(
            construct="__lambda__",
            severity=Severity.DANGEROUS,
            reason="marshalled Python bytecode that runs when the model loads",
            offset=offset,
        )
    if class_name in _LOADING_LAYERS:
        return location.finding(
            construct=label,
            severity=Severity.DANGEROUS,
            reason=_LOADING_LAYERS[class_name],
            offset=offset,
        )
    if isinstance(module, str) and not _is_keras_module(module):
        target = f"{module}.{config}" if class_name == "function" else f"{module}.{class_name}"
        return location.finding(
            construct=target,
            severity=Severity.UNKNOWN,
            reason=f"custom object: loading the model imports module {module!r}",
            offset=offset,
        )
    if class_name == "function" and isinstance(config, str) and config in _KERAS_GADGETS:
        return location.finding(
            construct=f"{module}.{config}",
            severity=Severity.DANGEROUS,
            reason="function reference to a Keras function that loads, downloads or "
            "disables safe mode",
            offset=offset,
        )
    if (
        isinstance(registered, str)
        and ">" in registered
        and not _is_keras_module(registered.partition(">")[0])
    ):
        return location.finding(
            construct=registered,
            severity=Severity.UNKNOWN,
            reason="custom object registered by user code (register_keras_serializable)",
            offset=offset,
        )
    return None


def scan_config(config: object, *, location: Location, offset: int | None = None) -> list[Finding]:
    """Find Lambda layers and custom objects in a parsed Keras config.

    Every nested object is judged (layers of nested models, initializers, losses in a
    ``compile_config``...). The subtree of a reported object is not walked further: the
    object already blocks trust.

    Args:
        config: the parsed JSON (any value; non-configs give no finding).
        location: where the config comes from.
        offset: where the config starts in the stream, when known.

    Returns:
        One finding per reported object, in the order they appear.
    """
    findings: list[Finding] = []
    pending: list[object] = [config]
    while pending:
        value = pending.pop()
        if isinstance(value, list):
            pending.extend(reversed(value))
        elif isinstance(value, dict):
            if isinstance(value.get("class_name"), str):
                finding = _judge(value, location=location, offset=offset)
                if finding is not None:
                    findings.append(finding)
                    continue
            pending.extend(reversed(list(value.values())))
    return findings


def _attribute_text(raw: object) -> str | bytes | None:
    if isinstance(raw, str | bytes):
        return raw
    # h5py returns a one-element array for a string written as an array.
    tolist = getattr(raw, "tolist", None)
    value = tolist() if callable(tolist) else None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, str | bytes) else None


def scan(stream: BinaryIO, *, location: Location) -> list[Finding]:
    """Scan an HDF5 file's Keras ``model_config`` and ``training_config`` attributes.

    Args:
        stream: the file, seekable, at offset 0.
        location: where it comes from.

    Returns:
        The findings of :func:`scan_config` on each attribute; ``not_scanned`` without h5py;
        ``malformed`` when the file or an attribute does not parse.
    """
    try:
        import h5py  # lazy: optional extra rearguard[keras]
    except ImportError:
        return [
            location.finding(
                construct="HDF5 file",
                severity=Severity.NOT_SCANNED,
                reason="not scanned: install rearguard[keras]",
            )
        ]
    findings: list[Finding] = []
    try:
        with h5py.File(stream, "r") as file:
            for name in _HDF5_ATTRIBUTES:
                if name not in file.attrs:
                    continue
                size = file.attrs.get_id(name).get_storage_size()
                if size > MAX_JSON_BYTES:
                    findings.append(
                        location.finding(
                            construct=f"HDF5 attribute {name}",
                            severity=Severity.NOT_SCANNED,
                            reason=f"not scanned: {size} bytes, past the {MAX_JSON_BYTES} limit",
                        )
                    )
                    continue
                text = _attribute_text(file.attrs[name])
                if text is None:
                    raise MalformedInput(f"attribute {name} is not a string")
                try:
                    config = load_json(text)
                except ValueError:
                    raise MalformedInput(f"attribute {name} is not JSON") from None
                findings.extend(scan_config(config, location=location))
    except MalformedInput as error:
        findings.append(
            location.finding(
                construct="HDF5 file",
                severity=Severity.MALFORMED,
                reason=error.message,
                offset=error.offset,
            )
        )
    # h5py raises OSError, KeyError, ValueError or RuntimeError on a corrupt file; any of them
    # means a file that does not parse, which must fail closed.
    except Exception as error:
        findings.append(
            location.finding(
                construct="HDF5 file",
                severity=Severity.MALFORMED,
                reason=f"does not parse as HDF5: {type(error).__name__}: {error}",
            )
        )
    return findings
