"""The key the authorization server signs id_tokens with (RS256, OpenID Connect Core 1.0 section
2): generated at the first start into ``smart_signing_key_file`` (mode 0600), outside the
database, and published as a JWK Set at ``/auth/jwks`` so clients can check the signature."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey


def load(path: Path) -> RSAKey:
    """The key kept at ``path``, made there first if there is none; if two processes make one at
    once, the first written is kept by both."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = RSAKey.generate_key(2048, private=True).as_pem(private=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(pem)
                out.flush()
                os.fsync(out.fileno())
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    key = RSAKey.import_key(path.read_bytes())
    key.ensure_kid()
    return key


def public_jwks(key: RSAKey) -> dict[str, Any]:
    """The JWK Set of the public half (RFC 7517 section 5)."""
    public = key.as_dict(private=False)
    return {"keys": [{**public, "use": "sig", "alg": "RS256"}]}
