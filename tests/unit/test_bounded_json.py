"""JSON from outside is parsed with its nesting bounded, without recursing to check it."""

from __future__ import annotations

import pytest

from rearguard.models.bounded_json import MAX_DEPTH, JsonTooDeep, loads


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 100_000])
def test_documents_nested_too_deep_are_refused_as_a_value_error(depth: int) -> None:
    for text in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        with pytest.raises(JsonTooDeep):
            loads(text)
        with pytest.raises(ValueError):
            loads(text.encode())


def test_documents_within_the_bound_parse_as_json_does() -> None:
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads(text) == eval(text)
    assert loads('{"alerts": [{"labels": {"a": "b"}}]}') == {"alerts": [{"labels": {"a": "b"}}]}
