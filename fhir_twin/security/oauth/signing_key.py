"""The key the authorization server signs id_tokens with (RS256, OpenID Connect Core 1.0 section
2): generated at the first start into ``smart_signing_key_file`` (mode 0600), outside the
database, and published as a JWK Set at ``/auth/jwks`` so clients can check the signature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey

from fhir_twin.security import key_file


def load(path: Path) -> RSAKey:
    """The key kept at ``path``, made there first if there is none; if two processes make one at
    once, the first written is kept by both."""
    if not path.is_file():
        key_file.create(path, RSAKey.generate_key(2048, private=True).as_pem(private=True))
    key = RSAKey.import_key(path.read_bytes())
    key.ensure_kid()
    return key


def public_jwks(key: RSAKey) -> dict[str, Any]:
    """The JWK Set of the public half (RFC 7517 section 5)."""
    public = key.as_dict(private=False)
    return {"keys": [{**public, "use": "sig", "alg": "RS256"}]}
