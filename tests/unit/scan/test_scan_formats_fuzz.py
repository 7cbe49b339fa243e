"""Every format scanner turns any bytes into findings: never an exception, never a hang."""

from __future__ import annotations

import io
import json
from types import ModuleType

import pytest
from format_writers import (
    bytes_field,
    graph_def,
    int_field,
    keras_metadata,
    llama_gguf,
    message,
    node_def,
    saved_model,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras_configs import keras2_lambda_layer, keras3_lambda_layer, keras3_model

from rearguard.models.integrity.scan import (
    chat_template,
    gguf,
    json_document,
    onnx,
    savedmodel,
)
from rearguard.models.integrity.scan.findings import Finding, Location, Severity

TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] }}"
    "{% if loop.last %}{{ x|attr('__cla' ~ 'ss__') }}{% endif %}{% endfor %}"
)
CUSTOM_NODE = message(
    bytes_field(1, "x"), bytes_field(2, "y"), bytes_field(4, "Backdoor"), bytes_field(7, "com.evil")
)
SAMPLES: dict[str, tuple[ModuleType, bytes]] = {
    "gguf": (gguf, llama_gguf(TEMPLATE)),
    "savedmodel": (
        savedmodel,
        saved_model(graph_def([node_def("x", "Placeholder"), node_def("p", "PyFunc", ["x"])])),
    ),
    "keras_metadata": (
        savedmodel,
        keras_metadata([("root", "_tf_keras_layer", json.dumps(keras2_lambda_layer()))]),
    ),
    "onnx": (
        onnx,
        int_field(1, 9)
        + bytes_field(2, "pytorch")
        + bytes_field(7, message(bytes_field(1, CUSTOM_NODE), bytes_field(2, "main")))
        + bytes_field(8, message(int_field(2, 17))),
    ),
    "json": (json_document, json.dumps(keras3_model(keras3_lambda_layer())).encode()),
    "template": (chat_template, TEMPLATE.encode()),
}


def scan(module: ModuleType, data: bytes) -> list[Finding]:
    findings = module.scan(io.BytesIO(data), location=Location("fuzzed"))
    assert all(isinstance(f.severity, Severity) for f in findings)
    return findings


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_sample_is_flagged(name: str) -> None:
    module, data = SAMPLES[name]
    assert module.sniff(data[:65536])
    assert scan(module, data)


@pytest.mark.parametrize("name", sorted(SAMPLES))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_samples_never_raise(name: str, data: st.DataObject) -> None:
    module, sample = SAMPLES[name]
    mutated = bytearray(sample)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    scan(module, bytes(mutated[:cut]))


@settings(max_examples=200, deadline=None)
@given(tail=st.binary(max_size=300))
def test_random_bytes_after_a_valid_start_never_raise(tail: bytes) -> None:
    for module, sample in SAMPLES.values():
        scan(module, sample[:24] + tail)


KEYS = st.sampled_from(
    [
        "class_name",
        "config",
        "module",
        "registered_name",
        "function",
        "function_type",
        "name",
        "auto_map",
        "chat_template",
        "template",
        "custom_pipelines",
        "impl",
    ]
)
WORDS = st.sampled_from(
    ["Lambda", "__lambda__", "function", "keras", "os", "a>b", "load_model", "{{ x }}", "{%", ""]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | WORDS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(document=JSON_VALUES)
def test_any_json_shape_is_judged_without_errors(document: object) -> None:
    data = json.dumps(document).encode()
    findings = scan(json_document, data)
    assert all(f.file == "fuzzed" for f in findings)
