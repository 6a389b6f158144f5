"""Client authentication by a signed JWT, ``private_key_jwt`` (RFC 7523 section 2.2 and 3; SMART
client-confidential-asymmetric.html, "Authenticating to the Token endpoint" and "FHIR
Authorization Server Obligations"), as an Authlib client authentication method.

The JWT is signed RS384 or ES384 with the key its ``kid`` names in the client's registered JWK
Set; ``iss`` and ``sub`` are the client_id, ``aud`` the token endpoint URL, ``exp`` at most five
minutes ahead, and its ``jti`` is refused when seen again from the same client (recorded in the
database until the JWT has expired, so any server process refuses the replay). Every failure is
``invalid_client``, answered with 401 and nothing issued."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from joserfc import jws, jwt
from joserfc.errors import JoseError

from fhir_twin.security.oauth import client_keys
from fhir_twin.security.oauth.grants import Client
from fhir_twin.store import cds_jti
from fhir_twin.store.repository import Repository

METHOD = "private_key_jwt"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_LIFETIME_SECONDS = 300  # "no more than five minutes in the future"
LEEWAY_SECONDS = 60  # for the clocks of client and server to differ


class AssertionRefused(InvalidClientError):
    """``invalid_client`` with 401 (RFC 6749 section 5.2), without the ``WWW-Authenticate: Basic``
    challenge Authlib adds for a client that sent HTTP Basic credentials, which this one did not."""

    def __init__(self, description: str) -> None:
        super().__init__(description=description, status_code=401)

    def get_headers(self) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), ("Cache-Control", "no-store"), ("Pragma", "no-cache")]


class ClientAssertion:
    """Authlib's client authentication method ``private_key_jwt``: the client whose assertion
    this is, None when the request carries no assertion (another method may then apply)."""

    def __init__(self, repository: Repository, token_endpoint: Any) -> None:
        self.repository = repository
        self.token_endpoint = token_endpoint  # a callable: the URL depends on the request's host

    def __call__(self, query_client: Any, request: Any) -> Client | None:
        form = request.form
        assertion = form.get("client_assertion")
        if not assertion:
            return None
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise AssertionRefused(f"client_assertion_type must be {ASSERTION_TYPE}")
        header, claims = _unverified(assertion)
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or claims.get("sub") != issuer:
            raise AssertionRefused("iss and sub must both be the client_id")
        if form.get("client_id") not in (None, issuer):
            raise AssertionRefused("client_id is not the client_assertion's iss")
        client: Client | None = query_client(issuer)
        if client is None:
            raise AssertionRefused(f"no client has the id {issuer!r}")
        if client.stored.jwks is None:
            raise AssertionRefused("this client authenticates with a secret, not with private_key_jwt")
        key = _key(client.stored.jwks, header)
        try:
            verified = jwt.decode(assertion, key, algorithms=[header["alg"]]).claims
        except JoseError:
            raise AssertionRefused("the client_assertion's signature does not verify") from None
        self._check(verified)
        return client

    def _check(self, claims: dict[str, Any]) -> None:
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        endpoint = self.token_endpoint()
        if endpoint not in audiences:
            raise AssertionRefused(f"aud must be the token endpoint, {endpoint}")
        expires, now = claims.get("exp"), time.time()
        if not isinstance(expires, int | float) or isinstance(expires, bool) or not math.isfinite(expires):
            raise AssertionRefused("exp must be a number of seconds since the epoch")
        if expires < now - LEEWAY_SECONDS:
            raise AssertionRefused("the client_assertion has expired")
        if expires > now + MAX_LIFETIME_SECONDS + LEEWAY_SECONDS:
            raise AssertionRefused("exp must be no more than five minutes in the future")
        not_before = claims.get("nbf")
        if isinstance(not_before, int | float) and not_before > now + LEEWAY_SECONDS:
            raise AssertionRefused("the client_assertion is not valid yet (nbf)")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AssertionRefused("jti is required: a new one for each client_assertion")
        # Kept past exp by the leeway, so it outlives the assertion it guards.
        until = datetime.fromtimestamp(expires, UTC).replace(tzinfo=None) + timedelta(seconds=LEEWAY_SECONDS)
        if not cds_jti.first_use(self.repository, claims["iss"], jti, until, datetime.now(UTC).replace(tzinfo=None)):
            raise AssertionRefused("this jti was used before: sign a new client_assertion for each request")


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims, read to find the client and its key before the signature is checked."""
    try:
        compact = jws.extract_compact(assertion.encode("ascii"))
        claims = json.loads(compact.payload)
    except (JoseError, ValueError):
        raise AssertionRefused("client_assertion is not a signed JWT") from None
    if not isinstance(claims, dict):
        raise AssertionRefused("client_assertion's payload is not a JSON object")
    return compact.headers(), claims


def _key(jwks: str, header: dict[str, Any]) -> Any:
    """The registered key that verifies this assertion: ``alg`` RS384 or ES384, no ``jku`` (no JWK
    Set URL is registered here), and the one key of the set with the ``kid`` and a fitting type."""
    alg = header.get("alg")
    if alg not in client_keys.KEY_TYPES:
        raise AssertionRefused(f"alg must be one of {', '.join(client_keys.KEY_TYPES)}")
    if "jku" in header:
        raise AssertionRefused("jku is not taken: the keys are the JWK Set registered with the client")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise AssertionRefused("the client_assertion's header needs the kid of its key")
    key = client_keys.select(jwks, kid, alg)
    if key is None:
        raise AssertionRefused(f"the client's JWK Set has no {client_keys.KEY_TYPES[alg]} key with kid {kid!r}")
    return key
