"""Redaction of secrets: the one function every writer passes outside text through.

Secrets should never reach the timeline in the first place (they come from the environment or
a Prefect Secret block), but free text and labels (an incident summary, an alert's labels and
dedup key, a validation command's output, a resolution note) are typed, pasted or sent by
people and systems. The audit chain redacts every event it appends, the incident row is
redacted when it is written, and the outbox, the channels, the logs and the exports pass what
they write through here too, so a token pasted anywhere does not leave the machine.

Recognised by value: Slack, GitHub, GitLab, Hugging Face, npm, SendGrid, OpenAI- and
Anthropic-style tokens, Google API keys, AWS access key ids (and a bare AWS secret key in the
same text), JSON web tokens, ``Authorization`` headers of any scheme, ``Cookie`` headers, PEM,
OpenSSH and PGP private key blocks, passwords in URLs (``redis://:pw@host`` too), assignments
to a name that says it holds a secret (``password=``, ``DB_PASS=``, ``pw=``, ``private_key=``,
``credential:``..., a quoted value whole: ``PASSWORD="hunter 2"``) and the word after
``password`` or ``passphrase`` (``password hunter2``). And, in structured data, by key: the
string value of any key whose name says it holds a secret, whatever its case style
(``api_key``, ``dbPassword``, ``DB_PASS``, ``client-secret``, ``X-Auth-Token``).

A match is replaced by ``[REDACTED:<kind>]``, keeping the surrounding text (and the name in an
assignment) so that the reader still sees what was there. Redacting twice changes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

REDACTED = "[REDACTED:{kind}]"

# A value already replaced is left alone, so that redacting twice changes nothing.
_NOT_DONE = r"""(?!\s*(?:\\?["'])?\[REDACTED:[a-z-]+(?:#[0-9]+)?\](?:\\?["']|[\s,;&@]|$))"""
# The value of an assignment: double- or single-quoted (spaces and all, so that
# ``PASSWORD="hunter 2"`` goes whole), quoted inside a JSON string, or bare up to a separator.
_VALUE = (
    _NOT_DONE
    + "(?:"
    + r'"(?P<s>[^"\r\n]+)"'
    + "|"
    + r"'(?P<s>[^'\r\n]+)'"
    + "|"
    + r'\\"(?P<s>[^"\\\r\n]+)\\"'
    + "|"
    + r"""(?P<s>[^\s"',;&]+))"""
)
# Words that name a secret wherever they stand (``db_password``, ``dbPassword``, ``MYSECRET``).
_STRONG_WORDS = (
    r"password|passwd|passphrase|secret|credentials?|private[_-]?key|api[_-]?key"
    r"|access[_-]?key|auth[_-]?token"
)
# Short words that count only as a whole word of the name (``DB_PASS``, ``pw``, ``authToken``),
# not inside a longer one (``bypass``, ``tokenizer``).
_WEAK_WORDS = (
    r"(?:(?<![A-Za-z])(?i:pass|pwd|pw|token)|(?<=[a-z])(?:Pass|PASS|Pwd|PWD|Pw|PW|Token|TOKEN))"
    r"(?![a-z])"
)
_ASSIGN = r"""\\?["']?\s*[=:]\s*"""

# (kind, pattern). Where a pattern has groups named "s", only the one that matched is replaced.
_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "private-key",
        r"(?s:-{4,5} ?BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}.*?"
        r"(?:-{4,5} ?END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}|\Z))",
    ),
    ("slack-token", r"\bxox[abeoprs]-[A-Za-z0-9-]{8,}"),
    ("slack-token", r"\bxapp-[0-9]-[A-Za-z0-9-]{8,}"),
    ("slack-webhook", r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+"),
    (
        "aws-access-key",
        r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[0-9A-Z]{16}\b",
    ),
    ("github-token", r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    ("gitlab-token", r"\bgl(?:pat|dt|rt|ptt|cbt)-[A-Za-z0-9_-]{16,}"),
    ("huggingface-token", r"\bhf_[A-Za-z0-9]{24,}"),
    ("npm-token", r"\bnpm_[A-Za-z0-9]{30,}"),
    ("sendgrid-key", r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),
    ("api-key", r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,}"),
    ("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    # An Authorization header of any scheme but Bearer (the next pattern): its credential.
    (
        "authorization",
        r"(?i:\b(?:proxy-)?authorization)" + _ASSIGN + r"(?!(?i:bearer)\s)"
        r"""(?:[A-Za-z][A-Za-z0-9-]*\s+(?=[^\s"']))?""" + _NOT_DONE + r"""(?P<s>[^\s"']++)"""
        r"(?!\s+\[REDACTED)",
    ),
    ("bearer-token", r"(?i:\bbearer)\s+" + _NOT_DONE + r"(?P<s>[A-Za-z0-9._~+/-]{8,}=*)"),
    # A cookie header: all of it, to the end of the line.
    ("cookie", r"(?i:\b(?:set-)?cookie)" + _ASSIGN + _NOT_DONE + r"""(?P<s>[^\r\n"']+)"""),
    # user:password@ in a URL, the user possibly empty (redis://:pw@host); the password runs
    # to the last @ before the host, so an @ in it does not cut it short.
    ("url-password", r"""://[^/\s:@"']*:""" + _NOT_DONE + r"""(?P<s>[^/\s"']+)@"""),
    # A passphrase has spaces: the rest of the line, unless quoted.
    (
        "password",
        r"(?i:\bpassphrase)(?:" + _ASSIGN + r"|\s+(?:(?:is|was)\s+)?)" + _NOT_DONE + "(?:"
        r"""(?=["'\\])""" + _VALUE + r"""|(?P<s>[^\r\n"',;]+))""",
    ),
    ("password", r"(?:(?i:" + _STRONG_WORDS + r")|" + _WEAK_WORDS + r")" + _ASSIGN + _VALUE),
    # "password hunter2", "passphrase is ...": the word after the word itself.
    ("password", r"(?i:\b(?:password|passwd|passphrase)\s+(?:(?:is|was)\s+)?)" + _VALUE),
)
# A bare AWS secret access key (40 characters of base64, both cases) is only recognisable
# next to its access key id: it is redacted when the same text holds one.
_AWS_SECRET_RE = re.compile(
    r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])"
    r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
)
_AWS_ID_MARK = "[REDACTED:aws-access-key"


def _number_groups(index: int, pattern: str) -> str:
    """Named groups must be unique in one regex: each ``s`` becomes ``s<index>_<n>``."""
    count = iter(range(100))
    return re.sub(r"\(\?P<s>", lambda _m: f"(?P<s{index}_{next(count)}>", pattern)


_SECRET_RE = re.compile(
    "|".join(f"(?P<alt{i}>{_number_groups(i, p)})" for i, (_, p) in enumerate(_PATTERNS))
)
_KIND_OF_GROUP = {f"alt{i}": kind for i, (kind, _) in enumerate(_PATTERNS)}
_SECRET_GROUPS_OF = {
    f"alt{i}": tuple(name for name in _SECRET_RE.groupindex if name.startswith(f"s{i}_"))
    for i in range(len(_PATTERNS))
}

# A mapping key names a secret when, its words joined whatever the case style (``db_password``,
# ``dbPassword``, ``DB-PASSWORD``, ``dbpassword``), it holds one of these...
_SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "credential",
    "cookie",
    "authorization",
    "apikey",
    "privatekey",
    "accesskey",
    "sessionkey",
    "signingkey",
)
# ...or ends with one of these words (``DB_PASS``, ``slack_token``, ``X-Auth``; not
# ``max_tokens``, ``token_count`` or ``tokenizer``, which are not secrets).
_SECRET_KEY_LAST_WORDS = frozenset({"pass", "pw", "pwd", "token", "auth", "pat"})
_KEY_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# The keys of a JSON text (for the quick test of a stored event's data).
_JSON_KEY_RE = re.compile(r'"((?:[^"\\]|\\.){1,200})"\s*:')
_AWS_ID_PREFIXES = (
    "AKIA",
    "ASIA",
    "ABIA",
    "ACCA",
    "AGPA",
    "AIDA",
    "AROA",
    "AIPA",
    "ANPA",
    "ANVA",
    "APKA",
)


def _may_hold_secret(text: str) -> bool:
    """False when no pattern can match: the text lacks every literal the patterns need.

    Straight-line ``in`` tests, cheapest first, each group behind a one-character test: a few
    microseconds per event, where running the alternation over every position of a text that
    holds none of them costs a hundred (bench/bench_export.py).
    """
    t = text
    if (
        "----" in t
        or "eyJ" in t
        or "sk-" in t
        or "hooks." in t
        or "SG." in t
        or ("_" in t and ("hf_" in t or "npm_" in t or "gh" in t or "github_pat_" in t))
        or ("x" in t and ("xox" in t or "xapp-" in t))
        or ("gl" in t and "-" in t)
        or ("A" in t and ("AIza" in t or _has_aws_id(t)))
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
        or "pw" in t
        or "://" in t
        or "credential" in t
        or "cookie" in t
    )


def _has_aws_id(text: str) -> bool:
    return any(prefix in text for prefix in _AWS_ID_PREFIXES)


def _replace(match: re.Match[str], marker_for: Callable[[str, str], str] | None = None) -> str:
    group = match.lastgroup
    assert group is not None
    kind = _KIND_OF_GROUP[group]
    text = match.group(0)
    for name in _SECRET_GROUPS_OF[group]:
        if match.group(name) is not None:
            start, end = match.span(name)
            offset = match.start()
            secret = text[start - offset : end - offset]
            marker = marker_for(kind, secret) if marker_for else REDACTED.format(kind=kind)
            return text[: start - offset] + marker + text[end - offset :]
    return marker_for(kind, text) if marker_for else REDACTED.format(kind=kind)


def _redact(text: str, marker_for: Callable[[str, str], str] | None = None) -> str:
    redacted = _SECRET_RE.sub(lambda m: _replace(m, marker_for), text)
    if _AWS_ID_MARK in redacted and _AWS_ID_MARK not in text:
        redacted = _AWS_SECRET_RE.sub(
            lambda m: (
                marker_for("aws-secret-key", m.group(0))
                if marker_for
                else REDACTED.format(kind="aws-secret-key")
            ),
            redacted,
        )
    return redacted


def contains_secret(text: str) -> bool:
    """True when a text holds something that looks like a secret."""
    return _may_hold_secret(text) and _SECRET_RE.search(text) is not None


def redact_text(text: str) -> str:
    """Return a text with every secret-looking part replaced by ``[REDACTED:<kind>]``."""
    if not text or not _may_hold_secret(text) or _SECRET_RE.search(text) is None:
        return text
    return _redact(text)


def redact_optional(text: str | None) -> str | None:
    """:func:`redact_text` for a value that may be absent."""
    return redact_text(text) if text else text


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
        _redact(text, marker_for) if text and _may_hold_secret(text) else text for text in texts
    ]


def is_secret_key(name: str) -> bool:
    """True when a mapping key's name says its value is a secret, whatever its case style
    (``password``, ``api_key``, ``dbPassword``, ``DB_PASS``, ``X-Auth-Token``...)."""
    words = [word.lower() for word in _KEY_WORD_RE.findall(name)]
    if not words:
        return False
    joined = "".join(words)
    if any(part in joined for part in _SECRET_KEY_PARTS):
        return True
    last = words[-1] if not words[-1].isdigit() or len(words) == 1 else words[-2]
    return last in _SECRET_KEY_LAST_WORDS


def redact_value(value: Any) -> Any:
    """Return a copy of a JSON-like value with its secrets redacted.

    Strings (keys included) are redacted by pattern; in mappings, the string value of a key
    named like a secret is replaced whole. Numbers, booleans and None are kept.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            (redact_text(key) if isinstance(key, str) else key): (
                REDACTED.format(kind="secret")
                if isinstance(item, str)
                and item
                and isinstance(key, str)
                and is_secret_key(key)
                and not item.startswith("[REDACTED")
                else redact_value(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


def json_text_may_hold_secret(text: str) -> bool:
    """A quick test on a JSON text: False means :func:`redact_value` would change nothing.

    Every value pattern matches in the JSON text wherever it matches in the parsed value (their
    literals are plain ASCII, and a quote or backslash in a value still leaves a match); a key
    is tested by name. True may be a false alarm; parse and redact to know.
    """
    if not _may_hold_secret(text):
        return False
    if _SECRET_RE.search(text) is not None:
        return True
    return any(is_secret_key(key) for key in _JSON_KEY_RE.findall(text))


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
