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
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

REDACTED = "[REDACTED:{kind}]"

# A value already replaced is left alone, so that redacting twice changes nothing.
_NOT_DONE = r"""(?!\s*(?:\\?["'])?\[REDACTED:[a-z-]+(?:#p?[0-9]+)?\](?:\\?["']|[\s,;&@]|$))"""
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

# (kind, triggers, pattern): a pattern is tried only on a text whose lower-case form holds one
# of its triggers (the literals it cannot match without), so an ordinary text costs a few
# ``in`` tests, not a regex pass per pattern. Where a pattern has groups named "s", only the
# one that matched is replaced. Applied in this order: specific tokens first, then headers,
# URLs and assignments, which leave an earlier marker alone.
_PATTERNS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "private-key",
        ("private key",),
        r"(?s:-{4,5} ?BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}.*?"
        r"(?:-{4,5} ?END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}|\Z))",
    ),
    ("slack-token", ("xox",), r"\bxox[abeoprs]-[A-Za-z0-9-]{8,}"),
    ("slack-token", ("xapp-",), r"\bxapp-[0-9]-[A-Za-z0-9-]{8,}"),
    (
        "slack-webhook",
        ("hooks.slack.com",),
        r"https://hooks\.slack\.com/(?:services|workflows|triggers|commands|actions)/[A-Za-z0-9/_-]+",
    ),
    (
        "aws-access-key",
        tuple(prefix.lower() for prefix in _AWS_ID_PREFIXES),
        r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[0-9A-Z]{16}\b",
    ),
    (
        "github-token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})",
    ),
    (
        "gitlab-token",
        ("glpat-", "gldt-", "glrt-", "glptt-", "glcbt-"),
        r"\bgl(?:pat|dt|rt|ptt|cbt)-[A-Za-z0-9_-]{16,}",
    ),
    ("huggingface-token", ("hf_",), r"\bhf_[A-Za-z0-9]{24,}"),
    ("npm-token", ("npm_",), r"\bnpm_[A-Za-z0-9]{30,}"),
    ("sendgrid-key", ("sg.",), r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),
    ("api-key", ("sk-",), r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,}"),
    ("google-api-key", ("aiza",), r"\bAIza[0-9A-Za-z_-]{35}"),
    ("jwt", ("eyj",), r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    # An Authorization header of any scheme but Bearer (the next pattern): its credential.
    (
        "authorization",
        ("authorization",),
        r"(?i:\b(?:proxy-)?authorization)" + _ASSIGN + r"(?!(?i:bearer)\s)"
        r"""(?:[A-Za-z][A-Za-z0-9-]*\s+(?=[^\s"']))?""" + _NOT_DONE + r"""(?P<s>[^\s"']++)"""
        r"(?!\s+\[REDACTED)",
    ),
    (
        "bearer-token",
        ("bearer",),
        r"(?i:\bbearer)\s+" + _NOT_DONE + r"(?P<s>[A-Za-z0-9._~+/-]{8,}=*)",
    ),
    # A cookie header: all of it, to the end of the line.
    (
        "cookie",
        ("cookie",),
        r"(?i:\b(?:set-)?cookie)" + _ASSIGN + _NOT_DONE + r"""(?P<s>[^\r\n"']+)""",
    ),
    # user:password@ in a URL, the user possibly empty (redis://:pw@host); the password runs
    # to the last @ before the host, so an @ in it does not cut it short.
    ("url-password", ("://",), r"""://[^/\s:@"']*:""" + _NOT_DONE + r"""(?P<s>[^/\s"']+)@"""),
    # A passphrase has spaces: the rest of the line, unless quoted.
    (
        "password",
        ("passphrase",),
        r"(?i:\bpassphrase)(?:" + _ASSIGN + r"|\s+(?:(?:is|was)\s+)?)" + _NOT_DONE + "(?:"
        r"""(?=["'\\])""" + _VALUE + r"""|(?P<s>[^\r\n"',;]+))""",
    ),
    (
        "password",
        ("pass", "pw", "token", "secret", "credential", "private", "api", "access", "auth"),
        r"(?:(?i:" + _STRONG_WORDS + r")|" + _WEAK_WORDS + r")" + _ASSIGN + _VALUE,
    ),
    # "password hunter2", "passphrase is ...": the word after the word itself.
    ("password", ("pass",), r"(?i:\b(?:password|passwd|passphrase)\s+(?:(?:is|was)\s+)?)" + _VALUE),
)
# A bare AWS secret access key (40 characters of base64, both cases) is only recognisable
# next to its access key id: it is redacted when the same text holds one.
_AWS_SECRET_RE = re.compile(
    r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])"
    r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
)
_AWS_ID_MARK = "[REDACTED:aws-access-key"
_PROVISIONAL_RE = re.compile(r"\[REDACTED:([a-z-]+)#p([0-9]+)\]")


def _number_groups(pattern: str) -> str:
    """Named groups must be unique in one regex: each ``s`` becomes ``s<n>``."""
    count = iter(range(100))
    return re.sub(r"\(\?P<s>", lambda _m: f"(?P<s{next(count)}>", pattern)


@dataclass(frozen=True)
class _Rule:
    kind: str
    triggers: tuple[str, ...]
    regex: re.Pattern[str]
    secret_groups: tuple[str, ...]


def _rule(kind: str, triggers: tuple[str, ...], pattern: str) -> _Rule:
    regex = re.compile(_number_groups(pattern))
    return _Rule(kind, triggers, regex, tuple(name for name in regex.groupindex))


_RULES = tuple(_rule(*pattern) for pattern in _PATTERNS)


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
# What a key named like a secret holds, lower-cased, whatever its case style.
_KEY_TRIGGERS = (*_SECRET_KEY_PARTS[:7], "key", *_SECRET_KEY_LAST_WORDS)
_KEY_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# The keys of a JSON text (for the quick test of a stored event's data).
_JSON_KEY_RE = re.compile(r'"((?:[^"\\]|\\.){1,200})"\s*:')


def _rules_for(text: str) -> list[_Rule]:
    """The rules whose triggers the text holds: those that may match it."""
    lower = text.lower()
    return [rule for rule in _RULES if any(trigger in lower for trigger in rule.triggers)]


def _replace(
    rule: _Rule, match: re.Match[str], marker_for: Callable[[str, str], str] | None
) -> str:
    text = match.group(0)
    for name in rule.secret_groups:
        if match.group(name) is not None:
            start, end = match.span(name)
            offset = match.start()
            secret = text[start - offset : end - offset]
            marker = _marker(rule.kind, secret, marker_for)
            return text[: start - offset] + marker + text[end - offset :]
    return _marker(rule.kind, text, marker_for)


def _marker(kind: str, secret: str, marker_for: Callable[[str, str], str] | None) -> str:
    return marker_for(kind, secret) if marker_for else REDACTED.format(kind=kind)


def _redact(
    text: str, rules: list[_Rule], marker_for: Callable[[str, str], str] | None = None
) -> str:
    for rule in rules:
        text = rule.regex.sub(partial(_replace, rule, marker_for=marker_for), text)
    # The key id may have been redacted by an earlier pass (a field redacted before it was
    # joined into this text): its marker still says the secret beside it is one.
    if _AWS_ID_MARK in text:
        text = _AWS_SECRET_RE.sub(lambda m: _marker("aws-secret-key", m.group(0), marker_for), text)
    return text


def redact_text(text: str) -> str:
    """Return a text with every secret-looking part replaced by ``[REDACTED:<kind>]``."""
    rules = _rules_for(text) if text else []
    return _redact(text, rules) if rules else text


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
    provisional: dict[str, int] = {}

    def marker_for(kind: str, secret: str) -> str:
        number = provisional.setdefault(secret, len(provisional) + 1)
        return f"[REDACTED:{kind}#p{number}]"

    redacted = [_redact(text, _rules_for(text), marker_for) if text else text for text in texts]
    # The rules run one after the other: number by where each secret first appears instead.
    final: dict[str, int] = {}

    def renumber(match: re.Match[str]) -> str:
        number = final.setdefault(match.group(2), len(final) + 1)
        return f"[REDACTED:{match.group(1)}#{number}]"

    return [_PROVISIONAL_RE.sub(renumber, text) for text in redacted]


@lru_cache(maxsize=4096)  # the same few keys come back in every event
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
    if any(rule.regex.search(text) for rule in _rules_for(text)):
        return True
    lower = text.lower()
    if not any(word in lower for word in _KEY_TRIGGERS):
        return False
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
