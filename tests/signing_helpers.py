"""Keys and OpenSSF model signatures for the signed-artifact tests, made with the real
``model_signing`` library (offline: ECDSA keys, no Sigstore)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from key_helpers import write_key_pair
from model_signing import hashing, signing, verifying


def ec_key(directory: Path, name: str) -> tuple[Path, Path]:
    """An ECDSA P-256 key pair in PEM: the private half readable by its owner alone."""
    key = ec.generate_private_key(ec.SECP256R1())
    return write_key_pair(key, directory / f"{name}.pem", directory / f"{name}.pub.pem")


def shown(public: Path) -> str:
    """How rearguard names a key: the first 16 hex digits of the sha256 of its PEM."""
    key = serialization.load_pem_public_key(public.read_bytes())
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"sha256:{hashlib.sha256(pem).hexdigest()[:16]}"


def oms_sign(directory: Path, key: Path) -> Path:
    """Sign a directory as ``model_signing sign key DIR --private_key KEY`` does."""
    signature = directory / "model.sig"
    signing.Config().use_elliptic_key_signer(private_key=key).set_hashing_config(
        hashing.Config().set_ignored_paths(paths=["model.sig"])
    ).sign(directory, signature)
    return signature


def oms_verifies(directory: Path, public: Path) -> bool:
    """What ``model_signing verify key DIR --public_key PUB`` says of a directory."""
    try:
        verifying.Config().use_elliptic_key_verifier(public_key=public).set_hashing_config(
            hashing.Config().set_ignored_paths(paths=["model.sig"])
        ).verify(directory, directory / "model.sig")
    except ValueError:
        return False
    return True
