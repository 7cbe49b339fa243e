"""OpenSSF model signatures (OMS): does a version's ``model.sig`` come from a signer that
``[signing]`` trusts, and does it sign exactly the version's files?

A bundle (what ``model_signing sign`` writes) is a DSSE envelope over an in-toto statement that
lists every file of the model with its SHA-256, plus what verifies it: a public key's
fingerprint (signed with a key), a certificate chain (signed with a certificate), or a Sigstore
certificate and transparency-log entry (signed through Sigstore with an OIDC identity).

rearguard checks a bundle in three steps:

1. read it as JSON and name its signer (the key's fingerprint, the certificate's subject, the
   Sigstore identity); anything unreadable is ``malformed``;
2. have ``model_signing`` verify the envelope with the trusted key, against the trusted
   certificates, or through Sigstore (which needs the network); a signer that is not trusted is
   ``untrusted``, an envelope that does not verify under the key it names is ``invalid``;
3. compare the statement's file digests with the version's manifest. The version's files are
   re-hashed against that manifest by the integrity check, so a match means the signed bytes
   are the stored bytes, without reading them a second time (and on any registry, and at
   registration, on the staged files). A file changed, added or removed since signing is a
   ``mismatch``. ``model_signing``'s own ``verify`` re-hashes a directory; its verifiers return
   the signed manifest, which is what this needs, so they are used directly (pinned to 1.1.x).

A signature that is there must hold: ``invalid``, ``mismatch`` and ``malformed`` always block
trust. Where a signature is required (``[signing] require``, ``[assets.NAME]
require_signature``), anything but ``verified`` blocks it, and the message names whose signature
was expected.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from rearguard.models.audit.keys import read_private_key
from rearguard.models.config.settings import Settings
from rearguard.models.errors import (
    ConfigurationError,
    IntegrityViolation,
    NotFoundError,
    UsageError,
)
from rearguard.models.integrity.verification import VersionCheck
from rearguard.models.registry.base import SIGNATURE_FILE, ManifestEntry, RegistryBackend

if TYPE_CHECKING:
    from model_signing.manifest import Manifest

MAX_BUNDLE_BYTES = 64 * 1024 * 1024
"""A bundle lists one digest per file: 64 MiB is hundreds of thousands of files."""

OMS_CURVES = ("secp256r1", "secp384r1", "secp521r1")
"""The curves ``model_signing`` signs and verifies keys of (ECDSA P-256, P-384, P-521)."""

EXTRA_HINT = "install rearguard[signing] (the model-signing package)"
_SAID = 200


def _said(exc: BaseException) -> str:
    """What a library's exception says, on one line of at most 200 characters (a validation
    error spans several lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _SAID else text[: _SAID - 1] + "…"


class SignatureResult(StrEnum):
    """What checking a version's signature found."""

    VERIFIED = "verified"
    UNSIGNED = "unsigned"
    UNTRUSTED = "untrusted"
    INVALID = "invalid"
    MISMATCH = "mismatch"
    MALFORMED = "malformed"
    UNCHECKED = "unchecked"


ALWAYS_BLOCK = (SignatureResult.INVALID, SignatureResult.MISMATCH, SignatureResult.MALFORMED)


@dataclass(frozen=True)
class TrustedKey:
    """A public key ``[signing]`` trusts, and its fingerprint as OMS bundles name it."""

    path: Path
    fingerprint: str

    @property
    def shown(self) -> str:
        """How messages name it."""
        return f"key {short_fingerprint(self.fingerprint)} ({self.path})"


def short_fingerprint(fingerprint: str) -> str:
    """A key's fingerprint as shown: ``sha256:`` and its first 16 hex digits."""
    return f"sha256:{fingerprint[:16]}"


def fingerprint_of(public: ec.EllipticCurvePublicKey) -> str:
    """The sha256 of a public key's PEM (SubjectPublicKeyInfo): the ``hint`` OMS records."""
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


def load_trusted_key(path: Path) -> TrustedKey:
    """Read one of ``[signing] trusted_public_keys``.

    Raises:
        ConfigurationError: the file cannot be read or is not an ECDSA P-256/P-384/P-521
            public key in PEM (the keys OMS signs with).
    """
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the trusted public key {path}: {exc.strerror}",
            hint="fix [signing] trusted_public_keys",
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError(f"the trusted public key {path} is not a PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in OMS_CURVES:
        raise ConfigurationError(
            f"the trusted public key {path} is not an ECDSA P-256, P-384 or P-521 key",
            hint="OpenSSF model signing signs with those curves only",
        )
    return TrustedKey(path, fingerprint_of(key))


@dataclass(frozen=True)
class SigningPolicy:
    """Whose signatures one asset's versions need, and whether they need one at all."""

    required: bool = False
    trusted_public_keys: tuple[Path, ...] = ()
    trusted_certificates: tuple[Path, ...] = ()
    identity: str | None = None
    oidc_issuer: str | None = None
    requirement: str = "[signing] require"

    @property
    def trusts_anyone(self) -> bool:
        """True when some key, certificate or identity is trusted."""
        return bool(self.trusted_public_keys or self.trusted_certificates or self.identity)

    def trusted_keys(self) -> list[TrustedKey]:
        """The trusted public keys, read now.

        Raises:
            ConfigurationError: one cannot be read or is not a key OMS signs with.
        """
        return [load_trusted_key(path) for path in self.trusted_public_keys]

    def expected(self) -> str:
        """Whose signature would be trusted, for messages."""
        who = [key.shown for key in self.trusted_keys()]
        who += [f"a certificate issued under {path}" for path in self.trusted_certificates]
        if self.identity:
            who.append(f"Sigstore identity {self.identity} (issuer {self.oidc_issuer})")
        return (
            " or ".join(who) if who else "nobody: [signing] trusts no key, certificate or identity"
        )


def signing_policy(settings: Settings, asset: str) -> SigningPolicy:
    """The signing policy of ``asset``, from ``[signing]`` and ``[assets.NAME]``.

    Raises:
        ConfigurationError: the asset requires a signature and ``[signing]`` trusts nobody.
    """
    signing = settings.signing
    options = settings.hooks.assets.get(asset)
    own = options.require_signature if options is not None else None
    required = signing.require if own is None else own
    requirement = "[signing] require" if own is None else f"[assets.{asset}] require_signature"
    if required and not signing.trusts_anyone:
        raise ConfigurationError(
            f"{requirement} needs [signing] trusted_public_keys, trusted_certificates or identity"
        )
    return SigningPolicy(
        required=required,
        trusted_public_keys=tuple(signing.trusted_public_keys),
        trusted_certificates=tuple(signing.trusted_certificates),
        identity=signing.identity,
        oidc_issuer=signing.oidc_issuer,
        requirement=requirement,
    )


@dataclass(frozen=True)
class SignatureVerdict:
    """What checking one version's signature found, and whether it blocks trust."""

    result: SignatureResult
    reason: str
    required: bool = False
    signer: str | None = None
    method: str | None = None
    bundle_sha256: str | None = None
    key: str | None = None

    @property
    def blocks(self) -> bool:
        """True when the version may not be approved, promoted or restored because of it."""
        return self.result in ALWAYS_BLOCK or (
            self.required and self.result != SignatureResult.VERIFIED
        )

    @property
    def suspicious(self) -> bool:
        """True when the signature says the files or the bundle were altered after signing."""
        return self.result in (SignatureResult.INVALID, SignatureResult.MISMATCH)

    def describe(self) -> str:
        """One line for the user."""
        return f"signature {self.result}: {self.reason}"

    def record(self) -> dict[str, object]:
        """What the timeline keeps of it."""
        return {
            "result": str(self.result),
            "signer": self.signer,
            "method": self.method,
            "bundle_sha256": self.bundle_sha256,
            "key": self.key,
            "required": self.required,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class _Bundle:
    """What a bundle says about itself before anything is verified."""

    method: str
    signer: str
    key_hint: str | None = None


def check_signature(
    *, bundle: Path | None, manifest: Sequence[ManifestEntry], policy: SigningPolicy
) -> SignatureVerdict:
    """Check a version's OMS bundle against the trusted signers and the version's manifest.

    Args:
        bundle: the version's ``model.sig``, or None when it has none.
        manifest: the version's files (re-hashed against it by the integrity check).
        policy: whose signatures are trusted, and whether one is required.

    Returns:
        The verdict; its ``blocks`` says whether trust in the version is refused.

    Raises:
        ConfigurationError: a trusted key or certificate file cannot be used, or a signature
            must be checked and the ``signing`` extra is not installed.
    """
    if bundle is None:
        if policy.required:
            reason = f"none, and {policy.requirement} expects one by {policy.expected()}"
        else:
            reason = f"no {SIGNATURE_FILE}"
        return SignatureVerdict(SignatureResult.UNSIGNED, reason, policy.required)
    try:
        data = _read_bundle(bundle)
        claimed = _describe_bundle(data)
    except UsageError as exc:
        return SignatureVerdict(
            SignatureResult.MALFORMED,
            f"not an OMS signature bundle: {_said(exc)}",
            policy.required,
        )
    digest = hashlib.sha256(data).hexdigest()

    def verdict(
        result: SignatureResult, reason: str, signer: str | None = None
    ) -> SignatureVerdict:
        return SignatureVerdict(
            result,
            reason,
            policy.required,
            signer or claimed.signer,
            claimed.method,
            digest,
            claimed.key_hint,
        )

    if not policy.trusts_anyone:
        return verdict(
            SignatureResult.UNTRUSTED,
            f"signed by {claimed.signer}; [signing] trusts no key, certificate or identity",
        )
    try:
        import model_signing  # noqa: F401  # lazy: the signing extra, and 0.6 s to import
    except ImportError as exc:
        if policy.required:
            raise ConfigurationError(
                f"{policy.requirement} is set, and checking signatures needs the model-signing "
                "package, which is not installed",
                hint=EXTRA_HINT,
            ) from exc
        return verdict(SignatureResult.UNCHECKED, f"not checked: {EXTRA_HINT}")
    verify = {"key": _verify_key, "certificate": _verify_certificate, "sigstore": _verify_sigstore}
    outcome = verify[claimed.method](bundle, claimed, policy)
    if isinstance(outcome, tuple):
        return verdict(*outcome)
    return verdict(*_compare(outcome.manifest, manifest, outcome.signer), signer=outcome.signer)


def check_stored_signature(
    *,
    settings: Settings,
    registry: RegistryBackend,
    asset: str,
    label: str,
    manifest: Sequence[ManifestEntry],
) -> SignatureVerdict:
    """Check the signature a stored version carries now, under its asset's policy.

    For callers that did not just run the integrity check (which finds the bundle on its way).

    Raises:
        ConfigurationError: as :func:`check_signature`, or the asset's policy is incomplete.
    """
    bundle: Path | None = None
    if all(entry.path != SIGNATURE_FILE for entry in manifest):
        try:
            bundle = registry.version_files(asset=asset, label=label).get(SIGNATURE_FILE)
        except NotFoundError:
            bundle = None  # the content is gone: the integrity check says so
    return check_signature(bundle=bundle, manifest=manifest, policy=signing_policy(settings, asset))


def signature_verdicts(
    *,
    settings: Settings,
    checks: Sequence[VersionCheck],
    manifests: Sequence[Sequence[ManifestEntry]],
) -> list[SignatureVerdict | None]:
    """The signature verdict of each version an integrity check just re-hashed, under its
    asset's policy: None where there is nothing to say (no signature, and none required).

    Args:
        settings: the run's settings ([signing], [assets.NAME]).
        checks: the integrity checks (each found its version's ``model.sig``, if any).
        manifests: each check's manifest, in the same order.

    Raises:
        ConfigurationError: as :func:`check_signature`, or an asset's policy is incomplete.
    """
    verdicts: list[SignatureVerdict | None] = []
    for check, manifest in zip(checks, manifests, strict=True):
        policy = signing_policy(settings, check.asset)
        if check.signature_file is None and not policy.required:
            verdicts.append(None)
        else:
            verdicts.append(
                check_signature(bundle=check.signature_file, manifest=manifest, policy=policy)
            )
    return verdicts


# -- reading a bundle ---------------------------------------------------------------------------


def _read_bundle(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise UsageError(f"larger than {MAX_BUNDLE_BYTES // (1024 * 1024)} MiB")
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read it: {exc.strerror}") from exc


def _describe_bundle(data: bytes) -> _Bundle:
    """The signing method and signer a bundle names (Sigstore bundle format, v0.1 to v0.3)."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"not JSON ({_said(exc)})") from exc
    material = document.get("verificationMaterial") if isinstance(document, dict) else None
    envelope = document.get("dsseEnvelope") if isinstance(document, dict) else None
    if not isinstance(material, dict) or not isinstance(envelope, dict):
        raise UsageError("no verificationMaterial and dsseEnvelope")
    if not isinstance(envelope.get("payload"), str) or not envelope.get("signatures"):
        raise UsageError("the envelope holds no payload or no signature")
    public_key = material.get("publicKey")
    if isinstance(public_key, dict):
        hint = public_key.get("hint")
        if hint is not None and not isinstance(hint, str):
            raise UsageError("the public key hint is not a string")
        signer = f"key {short_fingerprint(hint)}" if hint else "a key it does not name"
        return _Bundle("key", signer, hint)
    chain = material.get("x509CertificateChain")
    certificates = chain.get("certificates") if isinstance(chain, dict) else None
    single = material.get("certificate")
    if isinstance(single, dict):
        leaf = single.get("rawBytes")
    elif isinstance(certificates, list) and certificates and isinstance(certificates[0], dict):
        leaf = certificates[0].get("rawBytes")
    else:
        raise UsageError("no public key or certificate to verify it with")
    certificate = _certificate(leaf)
    # Sigstore's certificates are short-lived and logged; a PKI chain without log entries is
    # OMS's certificate signing.
    if isinstance(single, dict) or material.get("tlogEntries"):
        return _Bundle("sigstore", f"Sigstore identity {_identity(certificate)}")
    return _Bundle("certificate", f"certificate {certificate.subject.rfc4514_string()}")


def _certificate(raw: Any) -> x509.Certificate:
    if not isinstance(raw, str):
        raise UsageError("a certificate without rawBytes")
    try:
        return x509.load_der_x509_certificate(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise UsageError(f"an unreadable certificate ({_said(exc)})") from exc


def _identity(certificate: x509.Certificate) -> str:
    """The identity a Sigstore (Fulcio) certificate was issued to: its SAN."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return certificate.subject.rfc4514_string() or "(no identity)"
    values = [str(name.value) for name in names.value]
    return ", ".join(values) or "(no identity)"


# -- verifying with model_signing ---------------------------------------------------------------

Failed = tuple[SignatureResult, str]


@dataclass(frozen=True)
class _Verified:
    """A bundle whose envelope verified: the manifest it signs, and who signed it."""

    manifest: Manifest
    signer: str


def _verify_key(path: Path, claimed: _Bundle, policy: SigningPolicy) -> _Verified | Failed:
    from model_signing._signing import (  # lazy: the signing extra
        sign_ec_key,
        sign_sigstore_pb,
    )

    keys = policy.trusted_keys()
    candidates = (
        [k for k in keys if k.fingerprint == claimed.key_hint] if claimed.key_hint else keys
    )
    if not candidates:
        return SignatureResult.UNTRUSTED, (
            f"signed by {claimed.signer}, which is not trusted; expected {policy.expected()}"
        )
    try:
        signature = sign_sigstore_pb.Signature.read(path)
    except (ValueError, KeyError, TypeError) as exc:
        return SignatureResult.MALFORMED, f"not an OMS key bundle: {_said(exc)}"
    for key in candidates:
        verifier = sign_ec_key.Verifier(key.path)
        try:
            if claimed.key_hint:
                return _Verified(verifier.verify(signature), claimed.signer)
            # model_signing prints a warning to stdout about bundles of its older format (no
            # key hint), and stdout is the command's output (--json).
            with contextlib.redirect_stdout(io.StringIO()):
                return _Verified(
                    verifier.verify(signature), f"key {short_fingerprint(key.fingerprint)}"
                )
        except (InvalidSignature, ValueError, KeyError, binascii.Error):
            continue
    if claimed.key_hint:
        return SignatureResult.INVALID, (
            f"it names {candidates[0].shown} but does not verify with it: forged or corrupted"
        )
    return SignatureResult.UNTRUSTED, (
        f"it verifies with no trusted key; expected {policy.expected()}"
    )


def _verify_certificate(path: Path, claimed: _Bundle, policy: SigningPolicy) -> _Verified | Failed:
    if not policy.trusted_certificates:
        return SignatureResult.UNTRUSTED, (
            f"signed with {claimed.signer}, and [signing] trusted_certificates is empty; "
            f"expected {policy.expected()}"
        )
    from model_signing._signing import (  # lazy: the signing extra
        sign_certificate,
        sign_sigstore_pb,
    )
    from OpenSSL.crypto import X509StoreContextError  # lazy: the signing extra

    try:
        verifier = sign_certificate.Verifier(list(policy.trusted_certificates))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot use [signing] trusted_certificates: {_said(exc)}",
            hint="give PEM files of CA certificates",
        ) from exc
    try:
        signature = sign_sigstore_pb.Signature.read(path)
    except (ValueError, KeyError, TypeError) as exc:
        return (
            SignatureResult.MALFORMED,
            f"not an OMS certificate bundle: {_said(exc)}",
        )
    try:
        return _Verified(verifier.verify(signature), claimed.signer)
    except InvalidSignature:
        return SignatureResult.INVALID, (
            f"it does not verify with the key of {claimed.signer}: forged or corrupted"
        )
    except (X509StoreContextError, ValueError) as exc:
        return SignatureResult.UNTRUSTED, (
            f"{claimed.signer} is not trusted ({_said(exc)}); expected {policy.expected()}"
        )


def _verify_sigstore(path: Path, claimed: _Bundle, policy: SigningPolicy) -> _Verified | Failed:
    if not (policy.identity and policy.oidc_issuer):
        return SignatureResult.UNTRUSTED, (
            f"signed through Sigstore by {claimed.signer.removeprefix('Sigstore identity ')}, "
            f"and [signing] names no identity; expected {policy.expected()}"
        )
    from model_signing._signing import sign_sigstore  # lazy: the signing extra
    from sigstore.errors import Error as SigstoreError  # lazy: the signing extra

    try:
        signature = sign_sigstore.Signature.read(path)
    except (ValueError, SigstoreError) as exc:
        return SignatureResult.MALFORMED, f"not a Sigstore bundle: {_said(exc)}"
    try:
        # Fetches Sigstore's trust root (TUF) and checks the certificate, the identity, the
        # issuer and the transparency log's inclusion proof.
        verifier = sign_sigstore.Verifier(identity=policy.identity, oidc_issuer=policy.oidc_issuer)
    except Exception as exc:  # a network library's many ways to be unreachable
        return SignatureResult.UNCHECKED, (
            f"Sigstore's trust root could not be fetched (verifying an identity needs the "
            f"network): {_said(exc)}"
        )
    try:
        return _Verified(verifier.verify(signature), claimed.signer)
    except (SigstoreError, ValueError) as exc:
        return SignatureResult.UNTRUSTED, (
            f"not signed by {policy.identity} (issuer {policy.oidc_issuer}): {_said(exc)}"
        )


# -- comparing the signed files with the version's ------------------------------------------------


def _compare(signed: Manifest, manifest: Sequence[ManifestEntry], signer: str) -> Failed:
    """Whether the signed manifest is the version's: every signed file there with its digest,
    and every other file of the version one the signer chose to leave out."""
    serialization_type = signed.serialization_type
    method, algorithm = serialization_type.get("method"), serialization_type.get("hash_type")
    if method != "files" or algorithm != "sha256":
        return SignatureResult.MISMATCH, (
            f"signed by {signer} as {method} digests with {algorithm}; rearguard compares "
            "SHA-256 file digests: sign with model_signing's default serialization"
        )
    ours = {e.path: e.sha256 for e in manifest if e.path != SIGNATURE_FILE}
    theirs = {rd.identifier: rd.digest.digest_hex for rd in signed.resource_descriptors()}
    if list(theirs) == ["."] and len(ours) == 1:  # a single file signed on its own
        theirs = {next(iter(ours)): theirs["."]}
    ignored = [str(p).rstrip("/") for p in serialization_type.get("ignore_paths", [])]
    problems = [
        f"{path} changed after signing"
        for path in sorted(ours)
        if path in theirs and theirs[path] != ours[path]
    ]
    problems += [
        f"{path} was signed but is not in the version"
        for path in sorted(theirs)
        if path not in ours
    ]
    problems += [
        f"{path} is not covered by the signature"
        for path in sorted(ours)
        if path not in theirs and not any(path == i or path.startswith(i + "/") for i in ignored)
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return SignatureResult.MISMATCH, f"signed by {signer}, but " + "; ".join(
            problems[:3]
        ) + more
    return SignatureResult.VERIFIED, f"signed by {signer}"


# -- signing ---------------------------------------------------------------------------------


def load_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load a private key to sign versions with, refusing one others can read.

    Raises:
        ConfigurationError: the file is missing, readable by its group or others, or not an
            unencrypted ECDSA P-256, P-384 or P-521 private key in PEM.
    """
    private = read_private_key(
        path,
        what="the private key",
        hint="openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out KEY.pem",
    )
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name not in OMS_CURVES:
        raise ConfigurationError(
            f"the private key {path} is not an ECDSA P-256, P-384 or P-521 key",
            hint="OpenSSF model signing signs with those curves only",
        )
    return private


def sign_files(*, directory: Path, manifest: Sequence[ManifestEntry], key: Path, out: Path) -> None:
    """Sign a version's directory with an ECDSA private key into an OMS bundle at ``out``.

    ``model_signing`` hashes the directory itself (leaving out ``model.sig``); the bundle is
    then checked against ``manifest`` with the key's own public half, so a file that changed
    while it was hashed is never signed.

    Args:
        directory: the version's files.
        manifest: the version's manifest, verified against those files just before.
        key: the private key (PEM, unencrypted, readable by its owner alone).
        out: where the bundle is written (outside ``directory``).

    Raises:
        ConfigurationError: the key file is readable by others, or is not an ECDSA P-256,
            P-384 or P-521 private key; the ``signing`` extra is not installed.
        IntegrityViolation: the signed files are not the manifest's.
    """
    private = load_signing_key(key)
    try:
        from model_signing import hashing, signing  # lazy: the signing extra
    except ImportError as exc:
        raise ConfigurationError(
            "signing a version needs the model-signing package, which is not installed",
            hint=EXTRA_HINT,
        ) from exc
    # The signature must not sign itself when a version is signed again.
    files = hashing.Config().set_ignored_paths(paths=[SIGNATURE_FILE])  # type: ignore[no-untyped-call]  # model_signing's Config() is unannotated
    signer = signing.Config().use_elliptic_key_signer(private_key=key)  # type: ignore[no-untyped-call]  # as above
    signer.set_hashing_config(files).sign(directory, out)
    public = out.with_name(f"{out.name}.pub.pem")
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    own = SigningPolicy(trusted_public_keys=(public,))
    verdict = check_signature(bundle=out, manifest=manifest, policy=own)
    if verdict.result != SignatureResult.VERIFIED:
        raise IntegrityViolation(f"the new signature does not hold: {verdict.reason}")
