"""Signing a registered version with OpenSSF model signing (``rearguard assets sign``), for teams
that sign at approval rather than at publication.

The version is re-verified first (its files re-hash to its manifest, its scan holds), so only the
bytes rearguard recorded are ever signed; the bundle is checked against the manifest with the
key's own public half before it is kept, then judged as any other signature: whether the
asset's ``[signing]`` policy trusts the key is part of what is recorded.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rearguard.models.assets.versions import get_asset, get_version, manifest_of, verified
from rearguard.models.audit.chain import append_event
from rearguard.models.db.engine import Database
from rearguard.models.enums import EventKind, VersionStatus
from rearguard.models.errors import ConflictError, UsageError
from rearguard.models.integrity.scan.policy import ScanPolicy
from rearguard.models.integrity.signatures import (
    SignatureVerdict,
    SigningPolicy,
    check_signature,
    load_signing_key,
    sign_files,
)
from rearguard.models.registry.base import SIGNATURE_FILE, RegistryBackend

SIGNABLE = (VersionStatus.CANDIDATE, VersionStatus.KNOWN_GOOD)


def sign_version(
    *,
    db: Database,
    registry: RegistryBackend,
    name: str,
    label: str,
    key: Path,
    by: str,
    signing: SigningPolicy,
    replace: bool = False,
    workers: int = 1,
    policy: ScanPolicy | None = None,
) -> SignatureVerdict:
    """Sign a stored version with an ECDSA private key and keep the bundle as its ``model.sig``.

    Args:
        db: the database.
        registry: the store (the local store: MLflow's model versions cannot change).
        name: the asset.
        label: the version.
        key: the private key (PEM, unencrypted, readable by its owner alone).
        by: the person signing.
        signing: the asset's signing policy, which judges the new signature.
        replace: sign a version that carries a signature already, replacing it.
        workers: hashing threads for the re-verification.
        policy: which scan findings block trust.

    Returns:
        The new signature's verdict under ``signing`` (``untrusted`` when the policy does not
        trust the key: the signature is kept, but does not meet a requirement).

    Raises:
        NotFoundError: unknown asset or version.
        UsageError: the version is neither candidate nor known_good; the registry cannot keep
            a signature; the key file is readable by others or not an ECDSA key OMS signs with.
        ConflictError: the version carries a signature and ``replace`` is not set.
        IntegrityViolation: the version fails re-verification, or its files changed while
            they were being signed.
    """
    load_signing_key(key)  # a key that cannot sign is refused before anything is hashed
    with db.session() as session:
        asset = get_asset(session=session, name=name)
        version = get_version(session=session, asset=asset, label=label)
        if version.status not in SIGNABLE:
            raise UsageError(f"{name}@{label} is {version.status} and cannot be signed")
        check = verified(
            session,
            registry=registry,
            asset=asset,
            version=version,
            workers=workers,
            policy=policy,
            consequence=", so it is not signed",
        )
        if check.signature_file is not None and not replace:
            raise ConflictError(
                f"{name}@{label} carries a signature already ({SIGNATURE_FILE})",
                hint="pass --replace to sign it again in its place",
            )
        manifest = manifest_of(session=session, version=version)
        with tempfile.TemporaryDirectory(prefix="rearguard-sign-") as work:
            bundle = Path(work) / SIGNATURE_FILE
            sign_files(
                directory=registry.version_location(asset=name, label=label),
                manifest=manifest,
                key=key,
                out=bundle,
            )
            verdict = check_signature(bundle=bundle, manifest=manifest, policy=signing)
            registry.attach_signature(asset=name, label=label, bundle=bundle)
        append_event(
            session,
            kind=EventKind.DECISION,
            action="version.signed",
            actor=by,
            asset=name,
            version=label,
            data={
                "digest": version.digest,
                "replaced": check.signature_file is not None,
                **verdict.record(),
            },
        )
        return verdict
