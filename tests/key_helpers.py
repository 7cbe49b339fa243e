"""Key pairs written as a person makes them for rearguard: the private half in PEM, readable by
its owner alone, the public half beside it."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


def write_key_pair(
    key: PrivateKeyTypes, private: Path, public: Path, *, mode: int = 0o600
) -> tuple[Path, Path]:
    """Write ``key`` to ``private`` (PKCS#8 PEM, ``mode``) and its public key to ``public``."""
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(mode)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public
