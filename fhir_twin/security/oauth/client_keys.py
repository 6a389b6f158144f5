"""A private_key_jwt client's registered public keys (SMART client-confidential-asymmetric.html,
"Registering a client"): a JWK Set (RFC 7517 section 5) given at registration, kept in the
database. The server makes no outbound requests, so a JWK Set URL (``jwks_uri``, ``jku``) is not
taken: a client rotating keys registers its current and next keys together, or is registered again."""

from __future__ import annotations

import json
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

# The signing algorithms SMART names (RS384, ES384) and the key type and curve each needs.
KEY_TYPES = {"RS384": "RSA", "ES384": "EC"}
_CURVE = "P-384"
_MIN_RSA_BITS = 2048
_PRIVATE = ("d", "p", "q", "dp", "dq", "qi", "oth")


def parse(text: str) -> str:
    """The JWK Set in ``text``, checked and compacted for storage; ValueError naming what is wrong.

    Each key is an RSA key of 2048 bits or more (for RS384) or an EC P-384 key (for ES384), public
    only, with a ``kid`` unique in the set (client-confidential-asymmetric.html: "each JWK SHALL
    represent an asymmetric key by including kty and kid properties")."""
    try:
        document = json.loads(text)
    except ValueError:
        raise ValueError("the JWK Set is not JSON") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError('a JWK Set is a JSON object with a non-empty "keys" array')
    kids: set[str] = set()
    for key in keys:
        _check(key, kids)
    return json.dumps({"keys": keys}, separators=(",", ":"))


def _check(key: Any, kids: set[str]) -> None:
    if not isinstance(key, dict):
        raise ValueError("each key of the JWK Set is a JSON object")
    kid = key.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError("each key needs a kid")
    if kid in kids:
        raise ValueError(f"two keys have the kid {kid!r}")
    kids.add(kid)
    if any(part in key for part in _PRIVATE):
        raise ValueError(f"key {kid!r} holds a private key: register only the public half")
    kty = key.get("kty")
    if kty not in KEY_TYPES.values():
        raise ValueError(f"key {kid!r} has kty {kty!r}: RSA (for RS384) or EC (for ES384)")
    if kty == "EC" and key.get("crv") != _CURVE:
        raise ValueError(f"key {kid!r} is not on the curve P-384 that ES384 signs with")
    # Counted before the import, which warns about a short key rather than refusing it.
    if kty == "RSA" and len(str(key.get("n", ""))) * 6 < _MIN_RSA_BITS - 6:
        raise ValueError(f"key {kid!r} has fewer than {_MIN_RSA_BITS} bits")
    try:
        RSAKey.import_key(key) if kty == "RSA" else ECKey.import_key(key)
    except (JoseError, ValueError, TypeError) as error:
        raise ValueError(f"key {kid!r} is not a valid {kty} key: {error}") from None


def select(jwks: str, kid: str, alg: str) -> RSAKey | ECKey | None:
    """The one key of the set whose ``kid`` matches and whose type fits ``alg``; None when no key,
    or more than one, does (client-confidential-asymmetric.html, "Signature Verification", step 3)."""
    wanted = KEY_TYPES.get(alg)
    found = [key for key in json.loads(jwks)["keys"] if key.get("kid") == kid and key.get("kty") == wanted]
    if len(found) != 1:
        return None
    return RSAKey.import_key(found[0]) if wanted == "RSA" else ECKey.import_key(found[0])
