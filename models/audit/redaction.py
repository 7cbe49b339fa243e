"""Redaction of secrets from anything rearguard writes out: exports, notifications, notes.

Secrets should never reach the timeline in the first place (they come from the environment or
a Prefect Secret block), but free text such as an incident summary, a validation command's
output or a resolution note is typed or pasted by people. Everything rearguard exports passes
through here, so a token pasted into a summary does not leave the machine in a review document.

Recognised by pattern: Slack tokens and webhook URLs, AWS access key ids (AKIA, ASIA...),
GitHub, OpenAI- and Anthropic-style API keys, Google API keys, JSON web tokens, ``Bearer``
credentials, PEM private keys, passwords in URLs, and ``password=...``-style assignments; and,
in structured data, the string value of any key whose name says it holds a secret
(``password``, ``token``, ``api_key``...). A match is replaced by ``[REDACTED:<kind>]``,
keeping the surrounding text (and the name in an assignment) so that the reader still sees what
was there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

REDACTED = "[REDACTED:{kind}]"

# (kind, pattern). For kinds with a named group "secret", only that group is replaced.
_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "private-key",
        r"(?s:-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z))",
    ),
    ("slack-token", r"\bxox[abeoprs]-[A-Za-z0-9-]{8,}"),
    ("slack-token", r"\bxapp-[0-9]-[A-Za-z0-9-]{8,}"),
    ("slack-webhook", r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+"),
    ("aws-access-key", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    ("github-token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
    ("api-key", r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,}"),
    ("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ("bearer-token", r"(?i:\bbearer)\s+(?P<secret>[A-Za-z0-9._~+/-]{8,}=*)"),
    ("url-password", r"://[^/\s:@]+:(?P<secret>[^/\s@]+)@"),
    (
        "password",
        r"(?i:(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key"
        r"|secret[_-]?key|client[_-]?secret|auth[_-]?token))"
        r"[\"']?\s*[=:]\s*(?P<quote>[\"']?)(?P<secret>[^\s\"',;&]{2,})",
    ),
)

# Named groups must be unique in one pattern: number them per alternative.
_ALTERNATIVES = [
    (kind, pattern.replace("(?P<secret>", f"(?P<secret{i}>").replace("(?P<quote>", f"(?P<q{i}>"))
    for i, (kind, pattern) in enumerate(_PATTERNS)
]
_SECRET_RE = re.compile(
    "|".join(f"(?P<alt{i}>{pattern})" for i, (_, pattern) in enumerate(_ALTERNATIVES))
)
_KIND_OF_GROUP = {f"alt{i}": kind for i, (kind, _) in enumerate(_ALTERNATIVES)}

# A key names a secret when one of these words is the whole key or one of its parts
# (slack_token, client-secret, db.password), not a part of a longer word (max_tokens, tokenizer).
_SENSITIVE_KEY_WORDS = (
    r"password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|credentials?|authorization|cookie"
)
_SECRET_KEY_RE = re.compile(rf"(?i)(?:^|[_.-])(?:{_SENSITIVE_KEY_WORDS})(?:$|[_.-])")
# A JSON text that names such a key with a string value: the quick test of redact_json_text.
_SECRET_KEY_IN_JSON_RE = re.compile(
    rf'(?i)"(?:[^"\\]*[_.-])?(?:{_SENSITIVE_KEY_WORDS})(?:[_.-][^"\\]*)?"\s*:\s*"'
)


def _may_hold_secret(text: str) -> bool:
    """False when no pattern can match: the text lacks every literal the patterns need.

    Straight-line ``in`` tests, cheapest first, each group behind a one-character test: a few
    microseconds per event, where running the alternation over every position of a text that
    holds none of them costs a hundred (bench/bench_export.py).
    """
    t = text
    if (
        "-----" in t
        or "eyJ" in t
        or "sk-" in t
        or "hooks." in t
        or ("x" in t and ("xox" in t or "xapp-" in t))
        or ("A" in t and ("AKIA" in t or "ASIA" in t or "ABIA" in t or "ACCA" in t or "AIza" in t))
        or (
            "gh" in t
            and (
                "ghp_" in t
                or "gho_" in t
                or "ghu_" in t
                or "ghs_" in t
                or "ghr_" in t
                or "github_pat_" in t
            )
        )
    ):
        return True
    t = text.lower()
    return (
        "pass" in t
        or "secret" in t
        or "token" in t
        or "key" in t
        or "auth" in t
        or "bearer" in t
        or "pwd" in t
        or "://" in t
        or "credential" in t
        or "cookie" in t
    )


def _replace(match: re.Match[str], marker_for: Callable[[str, str], str] | None = None) -> str:
    group = match.lastgroup
    assert group is not None
    kind = _KIND_OF_GROUP[group]
    index = group[3:]
    secret_group = f"secret{index}"
    if secret_group in (match.re.groupindex or {}) and match.group(secret_group) is not None:
        start, end = match.span(secret_group)
        text = match.group(0)
        offset = match.start()
        secret = text[start - offset : end - offset]
        marker = marker_for(kind, secret) if marker_for else REDACTED.format(kind=kind)
        return text[: start - offset] + marker + text[end - offset :]
    return marker_for(kind, match.group(0)) if marker_for else REDACTED.format(kind=kind)


def contains_secret(text: str) -> bool:
    """True when a text holds something that looks like a secret."""
    return _may_hold_secret(text) and _SECRET_RE.search(text) is not None


def redact_text(text: str) -> str:
    """Return a text with every secret-looking part replaced by ``[REDACTED:<kind>]``."""
    if not text or not _may_hold_secret(text) or _SECRET_RE.search(text) is None:
        return text
    return _SECRET_RE.sub(_replace, text)


def redact_texts_consistently(texts: Sequence[str]) -> list[str]:
    """Redact several texts so that equal secrets get equal markers and different ones differ.

    Markers are ``[REDACTED:<kind>#<n>]``, numbered by first appearance across all the texts.
    A diff of the redacted texts then still shows that a secret changed (``#1`` became
    ``#2``), or that it did not, without showing either value.

    Args:
        texts: the texts, e.g. the two sides of a diff.

    Returns:
        The redacted texts, in order.
    """
    numbers: dict[str, int] = {}

    def marker_for(kind: str, secret: str) -> str:
        number = numbers.setdefault(secret, len(numbers) + 1)
        return f"[REDACTED:{kind}#{number}]"

    return [
        _SECRET_RE.sub(lambda m: _replace(m, marker_for), text)
        if text and _may_hold_secret(text)
        else text
        for text in texts
    ]


def is_secret_key(name: str) -> bool:
    """True when a mapping key's name says its value is a secret (``password``, ``api_key``...)."""
    return _SECRET_KEY_RE.search(name) is not None


def redact_value(value: Any) -> Any:
    """Return a copy of a JSON-like value with its secrets redacted.

    Strings are redacted by pattern; in mappings, the string value of a key named like a secret
    is replaced whole. Keys themselves, numbers, booleans and None are kept.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: (
                REDACTED.format(kind="secret")
                if isinstance(item, str) and item and isinstance(key, str) and is_secret_key(key)
                else redact_value(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


def json_text_may_hold_secret(text: str) -> bool:
    """A quick test on a JSON text: False means :func:`redact_value` would change nothing.

    Every secret pattern is plain ASCII without quotes or backslashes around its secret part,
    so it shows in the JSON text as it would in the parsed value; a key named like a secret
    shows as ``"password":"``. True may be a false alarm; parse and redact to know.
    """
    if not _may_hold_secret(text):
        return False
    return _SECRET_RE.search(text) is not None or _SECRET_KEY_IN_JSON_RE.search(text) is not None


def redact_json_text(text: str) -> tuple[Any, bool]:
    """Parse a JSON text and redact it.

    Returns:
        The parsed, redacted value and whether anything was redacted.
    """
    value = json.loads(text)
    if not json_text_may_hold_secret(text):
        return value, False
    redacted = redact_value(value)
    return redacted, redacted != value
