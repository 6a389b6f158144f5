"""Access tokens from an external authorization server (SMART App Launch v2 "Backend Services") are signed
JWTs (RFC 7519): each is checked against that server's published keys (a JWK Set, RFC 7517) before it is trusted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt

from fhir_twin.errors import ServiceUnavailable, Unauthorized
from fhir_twin.security.principal import Principal

ALGORITHMS = ["RS256", "ES256"]
LEEWAY_SECONDS = 30
_UNREACHABLE = "The authorization server's keys could not be fetched"
# A key set that cannot be fetched says nothing about the token (RFC 6750 section 3.1 keeps
# invalid_token for the token's own faults): 503, and the client tries again with the same token.
_RETRY = {"Retry-After": "30"}


class JwtVerifier:
    """Turns a bearer JWT into the Principal its claims name, or raises Unauthorized saying what is wrong."""

    def __init__(self, jwks: str, issuer: str, audience: str) -> None:
        if not issuer or not audience:
            raise ValueError("JWT authentication needs both an issuer and an audience")
        self.issuer = issuer
        self.audience = audience
        self.keys = KeySet(jwks)

    def principal(self, token: str) -> Principal:
        key = self.keys.signing_key(signed_header(token).get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise Unauthorized(diagnostics(error, token, self.issuer)) from error
        return _principal(claims)


class KeySet:
    """The signing keys of a JWK Set (RFC 7517): a file, or an http(s) URL fetched on the first
    token, then again after five minutes or for an unknown key id."""

    def __init__(self, jwks: str) -> None:
        self._jwks: jwt.PyJWKClient | jwt.PyJWKSet
        if jwks.startswith(("https://", "http://")):
            self._jwks = jwt.PyJWKClient(jwks, lifespan=300, timeout=10)
        else:
            self._jwks = _load_jwks(jwks)

    def signing_key(self, kid: str | None) -> jwt.PyJWK:
        """The signing key the token's ``kid`` names; with no kid, the JWK Set's only key."""
        keys = [key for key in self._key_set().keys if key.public_key_use != "enc"]
        if kid is None:
            if len(keys) == 1:
                return keys[0]
            raise Unauthorized("The bearer token names no key id, and the authorization server has several keys")
        for key in keys:
            if key.key_id == kid:
                return key
        if isinstance(self._jwks, jwt.PyJWKClient):
            # Perhaps the server has rotated its keys; PyJWKClient refetches at most every 30 s.
            try:
                return self._jwks.get_signing_key(kid)
            except jwt.PyJWKClientConnectionError as error:
                raise ServiceUnavailable(_UNREACHABLE, headers=_RETRY) from error
            except (jwt.PyJWTError, ValueError):
                pass
        raise Unauthorized("The bearer token names an unknown key id")

    def _key_set(self) -> jwt.PyJWKSet:
        if isinstance(self._jwks, jwt.PyJWKSet):
            return self._jwks
        try:
            return self._jwks.get_jwk_set()
        except (jwt.PyJWTError, ValueError) as error:  # ValueError: the response is not JSON
            raise ServiceUnavailable(_UNREACHABLE, headers=_RETRY) from error


def signed_header(token: str) -> dict[str, Any]:
    """The JOSE header of a token signed with an algorithm this server accepts, else Unauthorized."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise Unauthorized("The bearer token is not a well-formed JWT") from error
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise Unauthorized(f"The bearer token uses algorithm {_shown(algorithm)}; this server accepts RS256 and ES256")
    return header


def diagnostics(error: jwt.PyJWTError, token: str, issuer: str) -> str:
    """What is wrong with a signed token, in words."""
    if isinstance(error, jwt.ExpiredSignatureError):
        return "The bearer token has expired"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "The bearer token is not valid yet"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"The bearer token has no {error.claim} claim"
    if isinstance(error, jwt.InvalidIssuerError):
        # Claims are checked after the signature, so the issuer read here is the signed one.
        signed = jwt.decode(token, options={"verify_signature": False}).get("iss")
        return f"The bearer token was issued by {_shown(signed)}, not this server's issuer {issuer}"
    if isinstance(error, jwt.InvalidAudienceError):
        return "The bearer token is not for this audience"
    if isinstance(error, jwt.InvalidSignatureError):
        return "The bearer token's signature is not valid"
    if isinstance(error, jwt.InvalidAlgorithmError):
        return "The bearer token's algorithm does not match its key"
    if isinstance(error, jwt.DecodeError):
        return "The bearer token is not a well-formed JWT"
    return "The bearer token is not valid"


def _load_jwks(path: str) -> jwt.PyJWKSet:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        return jwt.PyJWKSet.from_dict(document)
    except (OSError, ValueError, jwt.PyJWTError) as error:
        raise ValueError(f"Cannot read the JWKS file {path}: {error}") from error


def _principal(claims: dict[str, Any]) -> Principal:
    name = _text(claims, "client_id") or _text(claims, "azp") or _text(claims, "sub")
    if name is None:
        raise Unauthorized("The bearer token names no client (client_id, azp or sub)")
    scp = claims.get("scp")
    scope = _text(claims, "scope") or (" ".join(s for s in scp if isinstance(s, str)) if isinstance(scp, list) else "")
    sub = _text(claims, "sub")
    user = _text(claims, "fhirUser") or (sub if sub != name else None)
    return Principal(name, scope=scope, patient=_text(claims, "patient"), user=user, kind="jwt")


def _text(claims: dict[str, Any], name: str) -> str | None:
    """A claim that is a non-empty string, else None."""
    value = claims.get(name)
    return value if isinstance(value, str) and value else None


def _shown(value: object) -> str:
    """A token's value, cut short, for a diagnostic."""
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
