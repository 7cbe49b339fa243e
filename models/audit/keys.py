"""Keys: private keys read from files only their owner can read, Ed25519 public keys as people
paste them (``ssh-ed25519 AAAA...`` or PEM), and the fingerprints that name them.

Every private key rearguard signs with is read by :func:`read_private_key`: the checkpoints'
signing key (``[audit] signing_key``) and an approver's key (``rearguard approve --key``), both
Ed25519 (:func:`load_private_key`), and the ECDSA key of ``rearguard assets sign``. An
approver's registered public key (``[approvals.keys]``) is parsed here too.
"""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from rearguard.models.errors import ConfigurationError

_OPENSSH_PRIVATE = b"-----BEGIN OPENSSH PRIVATE KEY-----"


def read_private_key(path: Path, *, what: str, hint: str) -> PrivateKeyTypes:
    """Read an unencrypted private key (PEM or OpenSSH), refusing a file others can read.

    Args:
        path: the key file.
        what: how messages name the key ("the signing key", "the approver key").
        hint: what to do when the file is missing or not such a key.

    Raises:
        ConfigurationError: the file is missing, readable (or writable) by its group or others,
            encrypted, or not a private key.
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
    key: PrivateKeyTypes
    try:
        if data.lstrip().startswith(_OPENSSH_PRIVATE):
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # TypeError: the key is encrypted (no password given).
        raise ConfigurationError(
            f"{what} {path} is not an unencrypted private key (PEM or OpenSSH)", hint=hint
        ) from exc
    return key


def load_private_key(path: Path, *, what: str, hint: str) -> Ed25519PrivateKey:
    """Load an unencrypted Ed25519 private key (see :func:`read_private_key`).

    Raises:
        ConfigurationError: as :func:`read_private_key`, or the key is not Ed25519.
    """
    key = read_private_key(path, what=what, hint=hint)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{what} {path} is not an Ed25519 key", hint=hint)
    return key


def parse_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key as pasted: an OpenSSH line (``ssh-ed25519 AAAA... comment``) or PEM.

    Raises:
        ValueError: the text is neither, or the key is not Ed25519 (the message says which).
    """
    data = text.strip().encode()
    key: object
    try:
        if data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_ssh_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(
            'not a public key: give an OpenSSH line ("ssh-ed25519 AAAA...") or a PEM block'
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 key (ssh-keygen -t ed25519 makes one)")
    return key


def fingerprint(public: Ed25519PublicKey) -> str:
    """The key's OpenSSH fingerprint, as ``ssh-keygen -lf`` prints it: ``SHA256:<base64>``."""
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
