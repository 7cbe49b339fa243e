"""Text fit for a terminal or a log line: no control characters, no recognisable secret.

A summary, a label or a note comes from outside; printed raw, an ESC sequence in it clears the
screen, retitles the window or forges a line of output, and a carriage return hides what came
before it. Everything rearguard prints to a terminal or writes to a log passes through
:func:`printable`: the CLI's consoles are :class:`SafeConsole`, the console channel calls it,
and every log handler rearguard installs formats with :class:`SafeFormatter`, which also
redacts.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from rich.console import Console
from rich.text import Text

from rearguard.models.audit.redaction import redact_text

# C0 controls but tab and newline, DEL, C1 controls (CSI is U+009B), and the bidirectional
# overrides and isolates that make a line read other than it is.
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def printable(text: str, *, newlines: bool = True) -> str:
    """Return a text without the control characters a terminal would act on.

    Args:
        text: what is about to be printed.
        newlines: keep line breaks (and tabs); False replaces them with a space, for a text
            shown on one line.

    Returns:
        The text, each control character replaced by U+FFFD (so a reader sees something was
        there); line breaks kept or spaced out.
    """
    if not newlines:
        text = text.replace("\r\n", " ").replace("\n", " ").replace("\t", " ")
    return _CONTROL_RE.sub("\ufffd", text)


class SafeFormatter(logging.Formatter):
    """A log formatter whose lines hold no control character and no recognisable secret."""

    def __init__(self, fmt: str = LOG_FORMAT, datefmt: str = LOG_DATE_FORMAT) -> None:
        super().__init__(fmt=fmt, datefmt=datefmt)

    def format(self, record: logging.LogRecord) -> str:
        """Format as usual, then redact and strip what a terminal would act on."""
        return printable(redact_text(super().format(record)))


def safe_log_handler(level: int = logging.NOTSET) -> logging.Handler:
    """A standard-error handler formatting with :class:`SafeFormatter`."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter())
    handler.setLevel(level)
    return handler


def safe_log_config(level: str = "WARNING") -> dict[str, object]:
    """A :func:`logging.config.dictConfig` for a long-running process (``serve``): uvicorn's
    loggers and rearguard's to standard error through :class:`SafeFormatter`."""
    logger = {"handlers": ["stderr"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"safe": {"()": f"{__name__}.SafeFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "safe",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {"uvicorn": logger, "rearguard": logger},
    }


class SafeConsole(Console):
    """A rich console that passes every string it renders through :func:`printable`.

    Rich strips only a few control codes (BEL, BS, VT, FF, CR) and lets ESC through, so a
    summary's ``ESC [2J`` would clear the screen. Its own styling escapes are produced after
    this point, so they are unaffected.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        """Render as rich does, the text first made printable."""
        return super().render_str(printable(text), **kwargs)
