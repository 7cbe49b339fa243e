"""GGUF: chat templates in the metadata are checked; hostile headers are malformed, quickly."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf as gguf_library
import numpy as np
import pytest
from format_writers import (
    GGUF_ARRAY,
    GGUF_STRING,
    GGUF_UINT32,
    gguf,
    gguf_string,
    llama_gguf,
    scan_bytes,
    severities,
)

from rearguard.models.integrity.scan import chat_template
from rearguard.models.integrity.scan import gguf as gguf_scan
from rearguard.models.integrity.scan.findings import Severity

BENIGN_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# The shape of CVE-2024-34359's proof of concept: a template reaching os.popen.
PAYLOAD = (
    "{% for x in ().__class__.__base__.__subclasses__() %}{% if 'warning' in x.__name__ %}"
    "{{ x()._module.__builtins__['__import__']('os').popen('touch /tmp/pwned') }}"
    "{% endif %}{% endfor %}"
)


def write_real_gguf(path: Path, templates: dict[str, str]) -> bytes:
    """A GGUF file written by llama.cpp's own Python writer, with a tensor."""
    writer = gguf_library.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_context_length(2048)
    writer.add_token_list(["<unk>", "<s>", "</s>", "hello"])
    writer.add_chat_template([{"name": n, "template": t} for n, t in templates.items()])
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def test_a_benign_gguf_written_by_llama_cpp_has_no_findings(tmp_path: Path) -> None:
    data = write_real_gguf(
        tmp_path / "model.gguf", {"default": BENIGN_TEMPLATE, "rag": BENIGN_TEMPLATE}
    )
    assert gguf_scan.sniff(data[:65536])
    assert scan_bytes(gguf_scan, data) == []


def test_a_malicious_named_template_is_found_at_its_offset(tmp_path: Path) -> None:
    data = write_real_gguf(
        tmp_path / "model.gguf", {"default": BENIGN_TEMPLATE, "tool_use": PAYLOAD}
    )

    findings = scan_bytes(gguf_scan, data, "model.gguf")

    assert severities(findings) == {Severity.DANGEROUS}
    assert {"__class__", "__subclasses__", "__builtins__"} <= {f.construct for f in findings}
    offset = findings[0].offset
    assert offset is not None
    assert data[offset : offset + len(PAYLOAD)] == PAYLOAD.encode()


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("version", [2, 3])
def test_the_cve_2024_34359_template_is_found_in_both_versions_and_byte_orders(
    order: str, version: int
) -> None:
    data = llama_gguf(PAYLOAD, version=version, order=order)
    findings = scan_bytes(gguf_scan, data)
    assert severities(findings) == {Severity.DANGEROUS}
    assert "__subclasses__" in {f.construct for f in findings}


def test_only_chat_template_keys_are_read_as_templates() -> None:
    data = gguf(
        [
            ("general.description", GGUF_STRING, "{{ x.__class__ }}"),
            ("tokenizer.chat_templates", GGUF_ARRAY, (GGUF_STRING, ["{{ x.__class__ }}"])),
            ("tokenizer.chat_template", GGUF_STRING, BENIGN_TEMPLATE),
        ]
    )
    assert scan_bytes(gguf_scan, data) == []


def test_a_template_that_does_not_parse_is_malformed() -> None:
    findings = scan_bytes(gguf_scan, llama_gguf("{% for m in messages %}"))
    assert [(f.construct, f.severity) for f in findings] == [("chat template", Severity.MALFORMED)]


def test_a_template_that_is_not_utf8_is_malformed() -> None:
    data = gguf([("tokenizer.chat_template", GGUF_STRING, b"{{ x }}\xff")])
    assert severities(scan_bytes(gguf_scan, data)) == {Severity.MALFORMED}


def test_another_version_is_not_scanned() -> None:
    findings = scan_bytes(gguf_scan, llama_gguf(PAYLOAD, version=1))
    assert [f.severity for f in findings] == [Severity.NOT_SCANNED]
    assert "version 1" in findings[0].reason


def test_every_truncation_is_malformed() -> None:
    data = llama_gguf(PAYLOAD)
    for cut in range(0, len(data), 7):
        findings = scan_bytes(gguf_scan, data[:cut])
        assert Severity.MALFORMED in severities(findings), cut


def header(kv_count: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, kv_count)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(header(2**63), id="pair count"),
        pytest.param(header(1) + struct.pack("<Q", 2**64 - 1), id="key length"),
        pytest.param(
            header(1) + gguf_string("k") + struct.pack("<IQ", GGUF_STRING, 2**63),
            id="string length",
        ),
        pytest.param(
            header(1) + gguf_string("k") + struct.pack("<IIQ", GGUF_ARRAY, GGUF_UINT32, 2**62),
            id="array count",
        ),
        pytest.param(
            header(1) + gguf_string("k") + struct.pack("<IIQ", GGUF_ARRAY, GGUF_STRING, 2**62),
            id="string array count",
        ),
        pytest.param(
            header(1)
            + gguf_string("k")
            + struct.pack("<I", GGUF_ARRAY)
            + struct.pack("<IQ", GGUF_ARRAY, 1) * 50
            + b"\x00" * 64,
            id="nested arrays",
        ),
        pytest.param(
            header(1) + gguf_string("k") + struct.pack("<I", 99) + b"\x00" * 16,
            id="unknown type",
        ),
        pytest.param(
            header(1) + gguf_string("tokenizer.chat_template") + struct.pack("<IQ", 8, 2**40),
            id="template length",
        ),
    ],
)
def test_hostile_lengths_are_malformed_without_allocating(data: bytes) -> None:
    findings = scan_bytes(gguf_scan, data)
    assert [f.severity for f in findings] == [Severity.MALFORMED]


def test_a_template_past_the_size_limit_is_not_scanned() -> None:
    template = "a" * (chat_template.MAX_TEMPLATE_BYTES + 1)
    findings = scan_bytes(gguf_scan, llama_gguf(template))
    assert [(f.construct, f.severity) for f in findings] == [
        ("tokenizer.chat_template", Severity.NOT_SCANNED)
    ]


@pytest.mark.parametrize("head", [b"", b"GGU", b"\x80\x04GGUF", b'{"GGUF": 1}'])
def test_sniff_needs_the_magic_at_the_start(head: bytes) -> None:
    assert not gguf_scan.sniff(head)


def test_a_template_after_a_large_vocabulary_is_found_at_its_offset() -> None:
    tokens = [f"token{i}" for i in range(30_000)]
    data = gguf(
        [
            ("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, tokens)),
            ("tokenizer.ggml.token_type", GGUF_ARRAY, (GGUF_UINT32, [1] * len(tokens))),
            ("tokenizer.chat_template", GGUF_STRING, PAYLOAD),
        ]
    )
    findings = scan_bytes(gguf_scan, data)
    assert severities(findings) == {Severity.DANGEROUS}
    assert {f.offset for f in findings} == {len(data) - len(PAYLOAD)}
