"""Signed artifacts: ``[signing]``, whose OpenSSF model signatures (OMS) rearguard trusts.

```toml
[signing]
require = false                                   # every asset needs a trusted signature
trusted_public_keys = ["/etc/rearguard/publisher.pub.pem"]   # ECDSA P-256/P-384/P-521, PEM
trusted_certificates = ["/etc/rearguard/signing-ca.pem"]     # CA certificates, PEM
identity = "release@example.com"                  # Sigstore: who signed (needs network)
oidc_issuer = "https://accounts.google.com"       # Sigstore: who vouched for that identity

[assets.fraud-model]
require_signature = true                          # this asset, whatever [signing] require says
```

The files are read when a signature is checked, so a missing one is an error of the command
that needs it, naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from rearguard.models.config.base import ConcernSettings, comma_list

PathList = Annotated[list[Path], NoDecode, BeforeValidator(comma_list)]


class SigningSettings(ConcernSettings):
    """The ``[signing]`` settings (``REARGUARD_SIGNING_*``)."""

    toml_table: ClassVar[str] = "signing"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_SIGNING_", extra="ignore")

    require: bool = Field(
        default=False,
        description="every asset's versions need a trusted signature to be approved, promoted "
        "or restored ([assets.NAME] require_signature overrides it per asset)",
    )
    trusted_public_keys: PathList = Field(
        default_factory=list, description="public keys (PEM) whose signatures are trusted"
    )
    trusted_certificates: PathList = Field(
        default_factory=list,
        description="CA certificates (PEM) a signing certificate's chain must lead to",
    )
    identity: str | None = Field(
        default=None, description="the Sigstore identity (e-mail, workflow URI) that signs"
    )
    oidc_issuer: str | None = Field(
        default=None, description="the OpenID Connect issuer that vouched for the identity"
    )

    @model_validator(mode="after")
    def _complete(self) -> SigningSettings:
        if (self.identity is None) != (self.oidc_issuer is None):
            raise ValueError("identity and oidc_issuer go together (a Sigstore signer is both)")
        if self.require and not self.trusts_anyone:
            raise ValueError(
                "require = true needs trusted_public_keys, trusted_certificates or identity"
            )
        return self

    @property
    def trusts_anyone(self) -> bool:
        """True when some key, certificate or identity is trusted."""
        return bool(self.trusted_public_keys or self.trusted_certificates or self.identity)
