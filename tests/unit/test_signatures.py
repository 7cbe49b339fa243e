"""Signed artifacts: OpenSSF model signatures checked at registration, approval, promotion and
known-good selection, against real bundles made with the real ``model_signing`` library,
offline, with ECDSA keys and a test certificate authority generated here."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from model_signing import hashing, signing
from scenarios import configure, tamper
from signing_helpers import ec_key, oms_sign, oms_verifies, shown
from sqlmodel import col, select

from rearguard.models.assets.mlflow_import import import_versions
from rearguard.models.assets.signing import sign_version
from rearguard.models.assets.versions import (
    approve_version,
    get_asset,
    get_version,
    promote_version,
    register_version,
)
from rearguard.models.audit.chain import verify_stored_chain
from rearguard.models.config.settings import load_settings
from rearguard.models.db.tables import Asset, TimelineEvent
from rearguard.models.enums import AssetKind, VersionStatus
from rearguard.models.errors import (
    ConfigurationError,
    ConflictError,
    IntegrityViolation,
    UsageError,
)
from rearguard.models.incidents.service import open_incident
from rearguard.models.integrity.signatures import (
    SignatureResult,
    SigningPolicy,
    check_signature,
    signing_policy,
)
from rearguard.models.integrity.verification import check_versions
from rearguard.models.recovery.selection import select_known_good
from rearguard.models.registry.base import ManifestEntry
from rearguard.models.runtime import Runtime

ASSET = "fraud-model"


# -- keys, certificates and bundles -----------------------------------------------------------


def source(root: Path, label: str, **extra: bytes) -> Path:
    """A model directory: weights and a config, distinct per label."""
    folder = root / "sources" / label
    folder.mkdir(parents=True)
    files = {
        "model.safetensors": f"weights of {label}".encode() * 32,
        "config.json": json.dumps({"label": label}).encode(),
        **extra,
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def trust(runtime: Runtime, home: Path, public: Path, *, required: bool = True) -> None:
    """Trust one public key; the asset requires a signature unless told not to."""
    configure(
        runtime,
        home,
        f'[signing]\ntrusted_public_keys = ["{public}"]\n\n'
        f"[assets.{ASSET}]\nrequire_signature = {'true' if required else 'false'}\n",
    )


def register(runtime: Runtime, folder: Path, label: str, *, signature: Path | None = None):  # type: ignore[no-untyped-def]
    return register_version(
        db=runtime.db,
        registry=runtime.registry,
        name=ASSET,
        source=folder,
        label=label,
        kind=AssetKind.MODEL,
        actor="publisher",
        signature=signature,
        signing=signing_policy(runtime.settings, ASSET),
    )


def approve(runtime: Runtime, label: str) -> None:
    approve_version(
        db=runtime.db,
        registry=runtime.registry,
        name=ASSET,
        label=label,
        by="alice",
        signing=signing_policy(runtime.settings, ASSET),
    )


def promote(runtime: Runtime, label: str) -> None:
    promote_version(
        db=runtime.db,
        registry=runtime.registry,
        name=ASSET,
        label=label,
        alias="production",
        actor="bob",
        signing=signing_policy(runtime.settings, ASSET),
    )


def status(runtime: Runtime, label: str) -> VersionStatus:
    with runtime.db.read_session() as session:
        asset = get_asset(session=session, name=ASSET)
        return VersionStatus(get_version(session=session, asset=asset, label=label).status)


def events(runtime: Runtime, action: str) -> list[dict[str, object]]:
    with runtime.db.read_session() as session:
        rows = session.exec(
            select(TimelineEvent)
            .where(TimelineEvent.action == action)
            .order_by(col(TimelineEvent.seq))
        )
        return [{"version": r.version, "actor": r.actor, **json.loads(r.data)} for r in rows]


def open_case(runtime: Runtime) -> int:
    with runtime.db.session() as session:
        incident = open_incident(
            session=session, type="model_compromise", actor="oncall", asset_name=ASSET
        )
        assert incident.id is not None
        return incident.id


# -- the product rules --------------------------------------------------------------------------


def test_a_signed_version_is_stored_with_its_signature_outside_its_manifest_and_is_trusted(
    runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    private, public = ec_key(tmp_path, "publisher")
    trust(runtime, home, public)
    for label in ("v1", "v2"):
        folder = source(tmp_path, label)
        oms_sign(folder, private)
        registered = register(runtime, folder, label)
        assert registered.signature is not None
        assert registered.signature.result == SignatureResult.VERIFIED
        assert sorted(e.path for e in registered.files) == ["config.json", "model.safetensors"]
        approve(runtime, label)
    promote(runtime, "v1")

    stored = runtime.registry.version_location(asset=ASSET, label="v2")
    assert (stored / "model.sig").is_file()
    assert oms_verifies(stored, public)  # what the store holds verifies with OMS's own tool
    registered_events = events(runtime, "asset.registered")
    assert [e["signature"]["result"] for e in registered_events] == ["verified", "verified"]  # type: ignore[index]
    checked = events(runtime, "signature.checked")
    assert [(e["version"], e["actor"], e["signer"]) for e in checked] == [
        ("v1", "alice", f"key {shown(public)}"),
        ("v2", "alice", f"key {shown(public)}"),
        ("v1", "bob", f"key {shown(public)}"),
    ]
    selection = select_known_good(runtime=runtime, incident_id=open_case(runtime))
    assert selection.selected == "v2"
    with runtime.db.read_session() as session:
        assert verify_stored_chain(session).ok


def test_an_unsigned_version_of_an_asset_that_requires_one_is_refused_naming_the_signer(
    runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    _, public = ec_key(tmp_path, "publisher")
    trust(runtime, home, public)
    registered = register(runtime, source(tmp_path, "v1"), "v1")
    assert registered.status == VersionStatus.CANDIDATE  # unsigned is not suspicious

    for refused in (approve, promote):
        with pytest.raises(IntegrityViolation) as caught:
            refused(runtime, "v1")
        assert caught.value.exit_code == 3
        assert caught.value.message == (
            f"{ASSET}@v1: signature unsigned: none, and [assets.{ASSET}] require_signature "
            f"expects one by key {shown(public)} ({public})"
        )
    assert status(runtime, "v1") == VersionStatus.CANDIDATE
    assert events(runtime, "signature.checked") == []


def test_known_good_selection_passes_over_a_version_the_requirement_now_refuses(
    runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    private, public = ec_key(tmp_path, "publisher")
    trust(runtime, home, public, required=False)
    signed = source(tmp_path, "v1")
    oms_sign(signed, private)
    register(runtime, signed, "v1")
    register(runtime, source(tmp_path, "v2"), "v2")  # unsigned: fine while not required
    approve(runtime, "v1")
    approve(runtime, "v2")
    trust(runtime, home, public, required=True)

    selection = select_known_good(runtime=runtime, incident_id=open_case(runtime))

    assert selection.selected == "v1"
    (rejection,) = selection.rejected
    assert rejection.version == "v2"
    assert rejection.reason.startswith("signature unsigned: none, and ")
    assert shown(public) in rejection.reason
    assert status(runtime, "v2") == VersionStatus.KNOWN_GOOD  # refused, not made suspect


def test_a_version_signed_by_a_key_that_is_not_trusted_is_refused(
    runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    _, trusted = ec_key(tmp_path, "publisher")
    stranger, stranger_public = ec_key(tmp_path, "stranger")
    trust(runtime, home, trusted)
    folder = source(tmp_path, "v1")
    oms_sign(folder, stranger)

    registered = register(runtime, folder, "v1")

    assert registered.signature is not None
    assert registered.signature.result == SignatureResult.UNTRUSTED
    assert registered.status == VersionStatus.CANDIDATE
    with pytest.raises(IntegrityViolation) as caught:
        approve(runtime, "v1")
    assert caught.value.message == (
        f"{ASSET}@v1: signature untrusted: signed by key {shown(stranger_public)}, which is not "
        f"trusted; expected key {shown(trusted)} ({trusted})"
    )


def test_files_changed_or_added_after_signing_make_the_version_suspect(
    runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    private, public = ec_key(tmp_path, "publisher")
    trust(runtime, home, public, required=False)  # a signature that is there must hold
    folder = source(tmp_path, "v1")
    oms_sign(folder, private)
    (folder / "config.json").write_text('{"label": "swapped"}')
    (folder / "extra.pkl").write_bytes(b"N.")

    registered = register(runtime, folder, "v1")

    assert registered.status == VersionStatus.SUSPECT
    assert registered.signature is not None
    assert registered.signature.result == SignatureResult.MISMATCH
    assert registered.signature.reason == (
        f"signed by key {shown(public)}, but config.json changed after signing; "
        "extra.pkl is not covered by the signature"
    )
    with pytest.raises(UsageError, match="is suspect and cannot be promoted"):
        promote(runtime, "v1")


def test_a_forged_signature_under_a_trusted_key_is_invalid(
    runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    private, public = ec_key(tmp_path, "publisher")
    trust(runtime, home, public)
    folder = source(tmp_path, "v1")
    bundle = json.loads(oms_sign(folder, private).read_text())
    # The attacker rewrites the signed statement (a digest of their own) and keeps the rest.
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (folder / "model.sig").write_text(json.dumps(bundle))

    registered = register(runtime, folder, "v1")

    assert registered.signature is not None
    assert registered.signature.result == SignatureResult.INVALID
    assert registered.status == VersionStatus.SUSPECT


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\x89PNG not json", "not JSON"),
        (b'{"mediaType": "x"}', "no verificationMaterial and dsseEnvelope"),
        (
            b'{"verificationMaterial": {}, '
            b'"dsseEnvelope": {"payload": "e30=", "signatures": [{}]}}',
            "no public key or certificate",
        ),
    ],
)
def test_a_malformed_bundle_registers_nothing(
    runtime: Runtime, home: Path, tmp_path: Path, content: bytes, why: str
) -> None:
    _, public = ec_key(tmp_path, "publisher")
    trust(runtime, home, public, required=False)
    bundle = tmp_path / "bundle.sig"
    bundle.write_bytes(content)

    with pytest.raises(UsageError) as caught:
        register(runtime, source(tmp_path, "v1"), "v1", signature=bundle)

    assert caught.value.exit_code == 2
    assert caught.value.message.startswith(f"{bundle}: not an OMS signature bundle: ")
    assert why in caught.value.message and "\n" not in caught.value.message
    with runtime.db.read_session() as session:
        assert session.exec(select(Asset)).first() is None
    assert not list((home / "store" / "staging").iterdir())


def test_assets_sign_signs_the_stored_version_so_that_it_can_be_approved(
    runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    private, public = ec_key(tmp_path, "approver")
    trust(runtime, home, public)
    register(runtime, source(tmp_path, "v1"), "v1")
    policy = signing_policy(runtime.settings, ASSET)

    def sign(*, replace: bool = False):  # type: ignore[no-untyped-def]
        return sign_version(
            db=runtime.db,
            registry=runtime.registry,
            name=ASSET,
            label="v1",
            key=private,
            by="carol",
            signing=policy,
            replace=replace,
        )

    verdict = sign()

    assert verdict.result == SignatureResult.VERIFIED
    stored = runtime.registry.version_location(asset=ASSET, label="v1")
    assert oms_verifies(stored, public)
    approve(runtime, "v1")
    assert status(runtime, "v1") == VersionStatus.KNOWN_GOOD
    (signed,) = events(runtime, "version.signed")
    assert signed["actor"] == "carol" and signed["result"] == "verified"
    assert signed["key"] == hashlib.sha256(public.read_bytes()).hexdigest()
    with pytest.raises(ConflictError, match="carries a signature already"):
        sign()
    assert sign(replace=True).result == SignatureResult.VERIFIED
    assert [e["replaced"] for e in events(runtime, "version.signed")] == [False, True]


def test_assets_sign_refuses_altered_files_and_keys_that_cannot_sign(
    runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    private, public = ec_key(tmp_path, "approver")
    trust(runtime, home, public)
    register(runtime, source(tmp_path, "v1"), "v1")
    stored = runtime.registry.version_location(asset=ASSET, label="v1")
    loose = tmp_path / "loose.pem"
    loose.write_bytes(private.read_bytes())
    loose.chmod(0o644)
    edwards = tmp_path / "ed25519.pem"
    edwards.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    edwards.chmod(0o600)

    def sign(key: Path) -> None:
        sign_version(
            db=runtime.db,
            registry=runtime.registry,
            name=ASSET,
            label="v1",
            key=key,
            by="carol",
            signing=signing_policy(runtime.settings, ASSET),
        )

    with pytest.raises(ConfigurationError, match=r"readable by others \(mode 644\)"):
        sign(loose)
    with pytest.raises(ConfigurationError, match="not an ECDSA P-256, P-384 or P-521 key"):
        sign(edwards)
    tamper(stored / "model.safetensors")
    with pytest.raises(IntegrityViolation, match="fails verification, so it is not signed"):
        sign(private)
    assert not (stored / "model.sig").exists()
    assert events(runtime, "version.signed") == []


def _certificate(
    subject: str, public: ec.EllipticCurvePublicKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.Certificate:
    now = datetime.now(UTC)
    is_ca = subject == issuer[0]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(issuer[1], hashes.SHA256())


def test_a_certificate_signature_is_trusted_only_under_a_trusted_authority(
    runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    authority = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test Signing CA", authority.public_key(), ("Test Signing CA", authority))
    private, _ = ec_key(tmp_path, "release")
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    leaf = _certificate("Release Signing", key.public_key(), ("Test Signing CA", authority))
    ca_pem, leaf_pem = tmp_path / "ca.pem", tmp_path / "leaf.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    folder = source(tmp_path, "v1")
    signing.Config().use_certificate_signer(
        private_key=private, signing_certificate=leaf_pem, certificate_chain=[ca_pem]
    ).set_hashing_config(hashing.Config().set_ignored_paths(paths=["model.sig"])).sign(
        folder, folder / "model.sig"
    )
    manifest = [
        ManifestEntry(p.name, hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size)
        for p in folder.iterdir()
        if p.name != "model.sig"
    ]
    other_authority = ec.generate_private_key(ec.SECP256R1())
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(
        _certificate(
            "Other CA", other_authority.public_key(), ("Other CA", other_authority)
        ).public_bytes(serialization.Encoding.PEM)
    )

    def verdict(*authorities: Path) -> tuple[SignatureResult, str]:
        found = check_signature(
            bundle=folder / "model.sig",
            manifest=manifest,
            policy=SigningPolicy(required=True, trusted_certificates=authorities),
        )
        return found.result, found.reason

    assert verdict(ca_pem) == (
        SignatureResult.VERIFIED,
        "signed by certificate CN=Release Signing",
    )
    result, reason = verdict(other_ca)
    assert result == SignatureResult.UNTRUSTED
    assert reason.startswith("certificate CN=Release Signing is not trusted")


def test_a_sigstore_signature_without_a_configured_identity_names_who_signed_it(
    tmp_path: Path,
) -> None:
    # Verifying a Sigstore identity needs the network; what the bundle claims does not.
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sigstore-intermediate")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(minutes=10))
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name("release@example.com")]), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    bundle = tmp_path / "model.sig"
    bundle.write_text(
        json.dumps(
            {
                "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                "verificationMaterial": {
                    "certificate": {
                        "rawBytes": base64.b64encode(
                            certificate.public_bytes(serialization.Encoding.DER)
                        ).decode()
                    },
                    "tlogEntries": [{"logIndex": "1"}],
                },
                "dsseEnvelope": {"payload": "e30=", "signatures": [{"sig": "AA=="}]},
            }
        )
    )
    _, public = ec_key(tmp_path, "publisher")

    found = check_signature(
        bundle=bundle,
        manifest=[ManifestEntry("w.bin", "0" * 64, 1)],
        policy=SigningPolicy(required=True, trusted_public_keys=(public,)),
    )

    assert (found.result, found.method) == (SignatureResult.UNTRUSTED, "sigstore")
    assert found.reason.startswith(
        "signed through Sigstore by release@example.com, and [signing] names no identity"
    )
    assert found.blocks


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[signing]\nidentity = "release@example.com"\n',
            "invalid setting signing: Value error, identity and oidc_issuer go together",
        ),
        (
            "[signing]\nrequire = true\n",
            "invalid setting signing: Value error, require = true needs trusted_public_keys",
        ),
        (
            f"[assets.{ASSET}]\nrequire_signature = true\n",
            f"[assets.{ASSET}] require_signature needs [signing] trusted_public_keys",
        ),
        (
            '[signing]\ntrusted_public_keys = ["/nonexistent/key.pem"]\nrequire = true\n',
            "cannot read the trusted public key /nonexistent/key.pem",
        ),
    ],
)
def test_an_incomplete_signing_configuration_is_one_clear_error(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, message: str
) -> None:
    monkeypatch.chdir(home)
    (home / "rearguard.toml").write_text(toml)

    with pytest.raises(ConfigurationError) as caught:
        policy = signing_policy(load_settings(home=home), ASSET)
        check_signature(bundle=None, manifest=[], policy=policy)

    assert caught.value.message.startswith(message)


def test_trusted_keys_come_from_the_environment_too(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(home)
    _, first = ec_key(tmp_path, "first")
    _, second = ec_key(tmp_path, "second")
    monkeypatch.setenv("REARGUARD_SIGNING_TRUSTED_PUBLIC_KEYS", f"{first},{second}")
    monkeypatch.setenv("REARGUARD_SIGNING_REQUIRE", "true")

    policy = signing_policy(load_settings(home=home), ASSET)

    assert policy.required and policy.requirement == "[signing] require"
    assert policy.expected() == f"key {shown(first)} ({first}) or key {shown(second)} ({second})"


def test_without_the_signing_extra_a_required_signature_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private, public = ec_key(tmp_path, "publisher")
    folder = source(tmp_path, "v1")
    bundle = oms_sign(folder, private)
    manifest = [ManifestEntry("config.json", "0" * 64, 1)]
    monkeypatch.setitem(sys.modules, "model_signing", None)  # as if it were not installed

    with pytest.raises(ConfigurationError) as caught:
        check_signature(
            bundle=bundle,
            manifest=manifest,
            policy=SigningPolicy(required=True, trusted_public_keys=(public,)),
        )
    optional = check_signature(
        bundle=bundle, manifest=manifest, policy=SigningPolicy(trusted_public_keys=(public,))
    )

    assert caught.value.hint == "install rearguard[signing] (the model-signing package)"
    assert (optional.result, optional.blocks) == (SignatureResult.UNCHECKED, False)


def test_a_version_whose_manifest_holds_model_sig_still_verifies_as_registered(
    runtime: Runtime, tmp_path: Path
) -> None:
    """Versions registered before signatures were kept apart list model.sig among their files;
    it stays one of their files (here: a lone file of that name)."""
    private, _ = ec_key(tmp_path, "publisher")
    folder = source(tmp_path, "v1")
    register_version(
        db=runtime.db,
        registry=runtime.registry,
        name=ASSET,
        source=oms_sign(folder, private),
        label="v1",
        kind=AssetKind.MODEL,
        actor="publisher",
    )

    (check,) = check_versions(
        registry=runtime.registry,
        items=[(ASSET, "v1", [ManifestEntry("model.sig", *digest(folder / "model.sig"))])],
    )

    assert check.ok, check.problems
    assert check.signature_file is None


def digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size


def test_mlflow_keeps_the_signature_with_a_version_and_import_honours_the_requirement(
    mlflow_runtime: Runtime, home: Path, tmp_path: Path
) -> None:
    runtime = mlflow_runtime
    private, public = ec_key(tmp_path, "publisher")
    trust(runtime, home, public)
    # Registered through rearguard: MLflow holds model.sig among the version's artifacts.
    signed = source(tmp_path, "v1")
    oms_sign(signed, private)
    register(runtime, signed, "v1")
    approve(runtime, "v1")
    # Versions a team registered in MLflow itself, one with its signature among the artifacts.
    for label, sign in (("v2", True), ("v3", False)):
        folder = source(tmp_path, label)
        staged = runtime.registry.stage_version(source=folder)
        if sign:
            shutil.copyfile(oms_sign(folder, private), staged.work / "version" / "model.sig")
        runtime.registry.publish_version(staged, asset=ASSET, label=label, kind="model")
        runtime.registry.discard_staged(staged)

    adopted = import_versions(
        db=runtime.db,
        registry=runtime.registry,
        name=ASSET,
        kind=None,
        actor="carol",
        alias="production",
        status=VersionStatus.KNOWN_GOOD,
        signing=signing_policy(runtime.settings, ASSET),
    )

    assert [(v["version"], v["status"]) for v in adopted.imported] == [
        ("v2", "known_good"),
        ("v3", "candidate"),
    ]
    assert [e["signature"]["result"] for e in events(runtime, "asset.imported")] == [  # type: ignore[index]
        "verified",
        "unsigned",
    ]
    with runtime.db.read_session() as session:
        v2 = get_version(session=session, asset=get_asset(session=session, name=ASSET), label="v2")
        assert v2.file_count == 2  # model.sig is not one of its files
    with pytest.raises(UsageError, match="an MLflow model version, whose artifacts cannot change"):
        sign_version(
            db=runtime.db,
            registry=runtime.registry,
            name=ASSET,
            label="v3",
            key=private,
            by="carol",
            signing=signing_policy(runtime.settings, ASSET),
        )
