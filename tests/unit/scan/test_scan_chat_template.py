"""Chat templates: sandbox escapes are found by parsing, benign templates pass, none is rendered."""

from __future__ import annotations

from pathlib import Path

import pytest
from format_writers import scan_bytes, severities

from rearguard.models.integrity.scan import chat_template
from rearguard.models.integrity.scan.findings import Finding, Location, Severity

LLAMA3_STYLE = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" + system_message + "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}
    {{- message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

CHATML_STYLE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

MISTRAL_STYLE = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token }}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported!') }}
    {%- endif %}
{%- endfor %}
"""

TOOLS_STYLE = """{%- set ns = namespace(last_user=0, has_tools=false) %}
{%- if tools %}
    {%- set ns.has_tools = true %}
    {{- '<|im_start|>system\\n# Tools\\n<tools>' }}
    {%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}
    {{- '\\n</tools><|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'user' %}{%- set ns.last_user = loop.index0 %}{%- endif %}
    {%- if message.tool_calls is defined and message.tool_calls %}
        {%- for call in message.tool_calls %}
            {%- if call.function is defined %}{%- set call = call.function %}{%- endif %}
            {{- '<tool_call>\\n{"name": "' ~ call.name ~ '", "arguments": ' }}
            {{- call.arguments | tojson ~ '}\\n</tool_call>' }}
        {%- endfor %}
    {%- elif message.role == 'assistant' %}
        {%- generation %}{{- message.content ~ '<|im_end|>\\n' }}{%- endgeneration %}
    {%- else %}
        {{- '<|im_start|>' ~ message.role ~ '\\n' ~ message.content ~ '<|im_end|>\\n' }}
    {%- endif %}
    {%- if loop.last and message.role == 'tool' %}{% break %}{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
{{- messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(' ') }}
{{- strftime_now('%d %b %Y') }}{# a comment with __class__ in it is not code #}
"""

# Tool calling with dates and builtin tools, in the way Llama 3.1's template does it.
DATED_TOOLS_STYLE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}{%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}{%- set date_string = "26 Jul 2024" %}{%- endif %}
{%- endif %}
{%- set tools_in_user_message = tools_in_user_message | default(true) %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n" }}
{%- endif %}
{{- "Today Date: " + date_string + "\n\n" }}
{%- for message in messages %}
    {%- if message.tool_calls is defined and message.tool_calls | length > 0 %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '{"name": "' + tool_call.name + '", "parameters": ' }}
        {{- tool_call.arguments | tojson }}{{- "}" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}{{- message.content }}{%- endif %}
    {%- else %}
        {{- message['role'] ~ ': ' ~ message['content'] | trim }}
    {%- endif %}
{%- endfor %}
"""

# Reasoning models drop the thinking part of earlier turns with str methods.
REASONING_STYLE = """{% set ns = namespace(is_tool=false, system_prompt='') %}
{%- for message in messages %}{%- if message['role'] == 'system' %}
{%- set ns.system_prompt = ns.system_prompt + message['content'] %}{%- endif %}{%- endfor %}
{{ bos_token }}{{ ns.system_prompt }}
{%- for message in messages %}
    {%- if message['role'] == 'assistant' and message['content'] is not none %}
        {%- set content = message['content'] %}
        {%- if '</think>' in content %}
            {%- set content = content.split('</think>')[-1] %}
        {%- endif %}
        {{- '<|Assistant|>' + content.strip() + '<|end_of_sentence|>' }}
    {%- elif message['role'] == 'user' %}
        {{- '<|User|>' + message['content'].replace('\r\n', '\n') }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|Assistant|><think>\n' }}{% endif %}
"""

BENIGN = {
    "dated_tools": DATED_TOOLS_STYLE,
    "reasoning": REASONING_STYLE,
    "llama3": LLAMA3_STYLE,
    "chatml": CHATML_STYLE,
    "mistral": MISTRAL_STYLE,
    "tools": TOOLS_STYLE,
}


def scan(source: str) -> list[Finding]:
    return chat_template.scan_template(source, location=Location("tokenizer_config.json"))


def constructs(source: str) -> set[str]:
    findings = scan(source)
    assert severities(findings) <= {Severity.DANGEROUS}
    return {finding.construct for finding in findings}


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_benign_chat_templates_have_no_findings(name: str) -> None:
    assert scan(BENIGN[name]) == []


def test_the_cve_2024_34359_payload_is_found_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = (
        "{% for x in ().__class__.__base__.__subclasses__() %}"
        "{% if 'warning' in x.__name__ %}"
        "{{ x()._module.__builtins__['__import__']('os').popen('touch " + str(marker) + "') }}"
        "{% endif %}{% endfor %}"
    )

    findings = scan(LLAMA3_STYLE + payload)

    assert {"__class__", "__base__", "__subclasses__", "__builtins__", "_module"} <= {
        f.construct for f in findings
    }
    assert severities(findings) == {Severity.DANGEROUS}
    assert all(f.reason.startswith("chat template line 16:") for f in findings)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("source", "construct"),
    [
        pytest.param("{{ self._TemplateReference__context }}", "_TemplateReference__context"),
        pytest.param("{{ cycler.__init__.__globals__.os.popen('id') }}", "__globals__"),
        pytest.param("{{ joiner.__init__.__globals__ }}", "__init__"),
        pytest.param("{{ namespace.__init__.__globals__ }}", "__init__"),
        pytest.param("{{ lipsum['__globals__']['os'] }}", "__globals__"),
        pytest.param("{{ x.mro() }}", "mro"),
        pytest.param("{{ f.func_globals }}", "func_globals"),
        pytest.param("{{ g.gi_frame.f_globals }}", "gi_frame"),
        pytest.param("{{ ''|attr('__class__') }}", "__class__"),
        pytest.param("{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}", "__class__"),
        pytest.param("{{ ''|attr('__cla' ~ 'ss__') }}", "__class__"),
        pytest.param("{{ ''|attr('__cla' + 'ss__') }}", "__class__"),
        pytest.param("{{ ''|attr('_' * 2 ~ 'class' ~ '_' * 2) }}", "__class__"),
        pytest.param("{{ ''|attr(['_', '_', 'class', '_', '_']|join) }}", "__class__"),
        pytest.param("{{ ''|attr('%sclass%s'|format('__', '__')) }}", "__class__"),
        pytest.param("{{ ''|attr('%c%cclass%c%c'|format(95, 95, 95, 95)) }}", "__class__"),
        pytest.param("{{ ''|attr('%sclass%s' % ('__', '__')) }}", "__class__"),
        pytest.param("{{ ''|attr('__ssalc__'|reverse) }}", "__class__"),
        pytest.param("{{ ''|attr('XXclassXX'|replace('X', '_')) }}", "__class__"),
        pytest.param("{% set n = '__cla' ~ 'ss__' %}{{ ''[n] }}", "__class__"),
        pytest.param("{% set n %}__globals__{% endset %}{{ cycler.__init__[n] }}", "__globals__"),
        pytest.param("{% set u = '_' * 2 %}{{ x[u ~ 'dict' ~ u] }}", "__dict__"),
        pytest.param("{{ x[y ~ '_private'] }}", "[...] computed from '_private'"),
        pytest.param("{{ x|attr(name) }}", "|attr(...)"),
        pytest.param("{{ messages|map(attribute='__class__')|list }}", "__class__"),
        pytest.param("{{ messages|map('attr', '_x')|list }}", "_x"),
        pytest.param("{{ messages|selectattr('_private')|list }}", "_private"),
        pytest.param("{{ dict(__class__=1)|list }}", "__class__"),
        pytest.param("{{ '{0.__class__}'.format(messages) }}", ".format"),
        pytest.param("{{ '{x}'.format_map(messages) }}", ".format_map"),
        pytest.param("{{ lipsum.x }}", "lipsum.x"),
        pytest.param("{{ range.x }}", "range.x"),
        pytest.param("{% include '/etc/passwd' %}", "{% include %}"),
        pytest.param("{% import 'macros.j2' as m %}", "{% import %}"),
        pytest.param("{% from 'macros.j2' import m %}", "{% from ... import %}"),
        pytest.param("{% extends 'base.j2' %}", "{% extends %}"),
        pytest.param("{% macro m(a='__globals__') %}{% endmacro %}", "__globals__"),
    ],
)
def test_sandbox_escapes_are_dangerous(source: str, construct: str) -> None:
    assert construct in constructs(source)


def test_a_local_variable_named_like_a_template_global_is_not_reported() -> None:
    source = (
        "{% set range = namespace(x=1) %}{{ range.x }}"
        "{% for cycler in messages %}{{ cycler.role }}{% endfor %}"
    )
    assert scan(source) == []


def test_each_finding_names_its_line() -> None:
    findings = scan("line one\n{{ x }}\n{{ y.__class__ }}")
    assert [f.reason.split(":")[0] for f in findings] == ["chat template line 3"]


@pytest.mark.parametrize(
    "source",
    [
        "{% for m in messages %}{{ m }}",
        "{{ x }",
        "{% if %}{% endif %}",
        "{{ " + "(" * 50_000 + "1" + ")" * 50_000 + " }}",
        "{{ " + "[" * 50_000 + "]" * 50_000 + " }}",
    ],
)
def test_a_template_that_does_not_parse_is_malformed(source: str) -> None:
    findings = scan(source)
    assert [f.severity for f in findings] == [Severity.MALFORMED]
    assert findings[0].construct == "chat template"


def test_hostile_folding_does_not_allocate() -> None:
    source = (
        "{{ x|attr('_' * 1000000000) }}{{ x|attr('%0999999999d'|format(1)) }}"
        "{{ x|attr(('_' ~ 'a') * 99999999) }}"
    )
    findings = scan(source)
    assert {f.severity for f in findings} == {Severity.DANGEROUS}


def test_a_long_chain_is_folded_once_per_node() -> None:
    source = (
        "{{ x[" + " ~ ".join(["'a'"] * 50_000) + "] }}{{ x[" + " ~ ".join(["y"] * 50_000) + "] }}"
    )
    assert scan(source) == []


def test_an_expression_too_deep_to_fold_is_malformed() -> None:
    source = "{{ x.__class__ }}{{ x|attr(" + " + ".join(["'a'"] * 20_000) + ") }}"
    findings = scan(source)
    assert [(f.construct, f.severity) for f in findings] == [
        ("__class__", Severity.DANGEROUS),
        ("chat template", Severity.MALFORMED),
    ]


def test_a_template_past_the_size_limit_is_not_scanned() -> None:
    source = "a" * (chat_template.MAX_TEMPLATE_BYTES + 1)
    assert [f.severity for f in scan(source)] == [Severity.NOT_SCANNED]


def test_a_template_file_is_sniffed_and_scanned() -> None:
    data = ("{# chat_template.jinja #}\n" + CHATML_STYLE + "{{ x.__class__ }}").encode()

    assert chat_template.sniff(data)
    findings = scan_bytes(chat_template, data, "chat_template.jinja")
    assert [(f.file, f.construct) for f in findings] == [("chat_template.jinja", "__class__")]


@pytest.mark.parametrize(
    "head",
    [
        b"no template markers here",
        b"\x80\x04\x95{{ binary pickle",
        b"{{ \xff\xfe not utf-8 }}",
        b"PK\x03\x04{{",
    ],
)
def test_sniff_rejects_what_is_not_template_text(head: bytes) -> None:
    assert not chat_template.sniff(head)


def test_a_template_file_that_is_not_utf8_is_malformed() -> None:
    findings = scan_bytes(chat_template, b"{{ x }}\xff\xfe")
    assert [f.severity for f in findings] == [Severity.MALFORMED]


def test_text_with_braces_that_is_no_template_gives_nothing() -> None:
    # A YAML config quoting a template: as a whole it does not parse as Jinja2, and no loader
    # renders the file itself (modelaudit's benign model_config.yaml).
    data = (
        b"chat_template:\n  '{% for message in messages %}{{ message[''role''] }}: "
        b"{{ message[''content'']\n  }}\\n{% endfor %}'\nmodel_name: test-model\n"
    )

    assert chat_template.sniff(data)
    assert scan_bytes(chat_template, data, "model_config.yaml") == []


def test_text_that_does_not_parse_but_names_a_special_attribute_is_malformed() -> None:
    data = b"{{ cycler.__init__.__globals__.os.system('id') }\n{% endfor %}"

    findings = scan_bytes(chat_template, data, "chat_template.jinja")

    assert [(f.construct, f.severity) for f in findings] == [("chat template", Severity.MALFORMED)]
    assert "__init__" in findings[0].reason
