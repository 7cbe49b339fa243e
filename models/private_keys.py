"""Private keys rearguard signs with (audit checkpoints, model signatures): read only from a
file nobody but its owner can read, so that a key others could copy never signs anything."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from rearguard.models.errors import ConfigurationError


def load_private_key(path: Path, *, what: str, hint: str) -> PrivateKeyTypes:
    """Load an unencrypted PEM private key, refusing a file its group or others can read.

    Args:
        path: the key file.
        what: what the key is, for messages ("the signing key").
        hint: how to make a suitable key (shown when the file is missing or not a key).

    Raises:
        ConfigurationError: the file is missing, readable by its group or others, or not an
            unencrypted PEM private key.
    """
    try:
        info = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}", hint=hint) from exc
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"{what} {path} is readable by others (mode {stat.S_IMODE(info.st_mode):o})",
            hint=f"chmod 600 {path}",
        )
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError(
            f"{what} {path} is not an unencrypted PEM private key", hint=hint
        ) from exc
