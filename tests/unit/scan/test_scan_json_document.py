"""JSON documents: chat templates, Keras configs and custom code references are found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from format_writers import scan_bytes, severities
from keras_configs import keras3_lambda_layer, keras3_model

from rearguard.models.integrity.scan import json_document
from rearguard.models.integrity.scan.findings import Finding, Location, Severity
from rearguard.models.integrity.scan.reading import MAX_JSON_BYTES

TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
)
ESCAPE = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"


def tokenizer_config(**extra: object) -> bytes:
    config = {
        "add_bos_token": True,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "model_max_length": 4096,
        "tokenizer_class": "LlamaTokenizer",
        "added_tokens_decoder": {"0": {"content": "<unk>", "special": True}},
        "chat_template": TEMPLATE,
        **extra,
    }
    return json.dumps(config, indent=2).encode()


def scan(data: bytes, name: str = "tokenizer_config.json") -> list[Finding]:
    assert json_document.sniff(data[: json_document.HEAD_SIZE])
    return scan_bytes(json_document, data, name)


def test_a_benign_tokenizer_config_has_no_findings() -> None:
    assert scan(tokenizer_config()) == []
    named = [{"name": "default", "template": TEMPLATE}, {"name": "rag", "template": TEMPLATE}]
    assert scan(tokenizer_config(chat_template=named)) == []


def test_an_escaping_chat_template_is_dangerous() -> None:
    findings = scan(tokenizer_config(chat_template=TEMPLATE + ESCAPE))
    assert severities(findings) == {Severity.DANGEROUS}
    assert "__globals__" in {f.construct for f in findings}
    assert {f.file for f in findings} == {"tokenizer_config.json"}


def test_an_escape_in_a_named_template_is_dangerous() -> None:
    named = [{"name": "default", "template": TEMPLATE}, {"name": "tool_use", "template": ESCAPE}]
    assert severities(scan(tokenizer_config(chat_template=named))) == {Severity.DANGEROUS}


def test_a_chat_template_that_does_not_parse_is_malformed() -> None:
    findings = scan(tokenizer_config(chat_template="{% if %}"))
    assert severities(findings) == {Severity.MALFORMED}


def test_auto_map_entries_are_unknown_and_name_the_module() -> None:
    config = {
        "model_type": "custom",
        "auto_map": {
            "AutoConfig": "configuration_custom.CustomConfig",
            "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM",
            "AutoTokenizer": ["other-org/repo--tokenization_custom.CustomTokenizer", None],
        },
        "custom_pipelines": {"text-tagging": {"impl": "pipeline_custom.TagPipeline"}},
    }
    findings = scan(json.dumps(config).encode(), "config.json")

    assert severities(findings) == {Severity.UNKNOWN}
    reasons = {f.construct: f.reason for f in findings}
    assert (
        "imports modeling_custom.py"
        in reasons["auto_map.AutoModelForCausalLM: modeling_custom.CustomForCausalLM"]
    )
    assert (
        "from repository 'other-org/repo'"
        in reasons["auto_map.AutoTokenizer: other-org/repo--tokenization_custom.CustomTokenizer"]
    )
    assert "custom_pipelines.text-tagging: pipeline_custom.TagPipeline" in reasons
    assert len(findings) == 4


def test_a_keras_config_json_goes_through_keras() -> None:
    benign = json.dumps(keras3_model()).encode()
    assert scan(benign, "config.json") == []
    hostile = json.dumps(keras3_model(keras3_lambda_layer())).encode()
    findings = scan(hostile, "config.json")
    assert [(f.construct, f.severity) for f in findings] == [
        ("Lambda layer 'lambda'", Severity.DANGEROUS)
    ]


def test_a_json_file_with_none_of_these_has_no_findings() -> None:
    data = json.dumps({"vocab": {f"tok{i}": i for i in range(5000)}, "merges": ["a b"]})
    assert scan(b"\xef\xbb\xbf" + data.encode(), "tokenizer.json") == []


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"not json",
        b'{"a": 1',  # a whole file (shorter than the head) that is not JSON
        b'{"a": 1}\n{"b": 2}\n',  # JSON lines
        b'"just a string"',
        b"{{ template }}",
        b"\x80\x04}.",
    ],
)
def test_sniff_rejects_what_is_not_a_json_document(head: bytes) -> None:
    assert not json_document.sniff(head)


def test_a_long_file_is_sniffed_by_its_start() -> None:
    def head(start: bytes) -> bytes:
        return (start + b"a" * json_document.HEAD_SIZE)[: json_document.HEAD_SIZE]

    assert json_document.sniff(head(b'{"chat_template": "'))
    assert json_document.sniff(head(b'[\n  {"a": "'))
    assert not json_document.sniff(head(b'\xff{"a": "'))
    for template in (b"{{ bos_token }}", b"{%- for m in messages %}", b"{# note #}"):
        assert not json_document.sniff(head(template))


def test_a_file_that_turns_out_not_to_be_json_has_no_findings() -> None:
    data = b'{"a": ' + b" " * json_document.HEAD_SIZE + b"oops"
    assert json_document.sniff(data[: json_document.HEAD_SIZE])
    assert scan_bytes(json_document, data) == []


def test_deep_nesting_is_malformed() -> None:
    data = b"[" * 100_000 + b"]" * 100_000
    assert json_document.sniff(data[: json_document.HEAD_SIZE])
    findings = scan_bytes(json_document, data)
    assert [f.severity for f in findings] == [Severity.MALFORMED]


def test_a_file_past_the_size_limit_is_not_scanned(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as file:  # sparse: nothing is written but the last byte
        file.write(b"{")
        file.seek(MAX_JSON_BYTES + 1)
        file.write(b"}")
    with path.open("rb") as stream:
        findings = json_document.scan(stream, location=Location("huge.json"))
    assert [f.severity for f in findings] == [Severity.NOT_SCANNED]
