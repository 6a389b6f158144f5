"""CDS clients that authenticate as CDS Hooks 2.0 describes ("Trusting CDS Clients"): each call
bears a JWT the client signed, naming it (``iss``), the service called (``aud``), when it was
made (``iat``, ``exp``) and a one-time id (``jti``); the keys are the client's JWK Set, found by
the ``jku`` header only when that URL is the one registered for the issuer (the allow list,
setting ``cds_clients``, read by ``cds_registration``).

A ``jti`` is remembered in the database until its token expires (``store.cds_jti``), so a replay
is refused by every process of a multi-process server and every server on the same database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from fhir_twin.errors import Unauthorized
from fhir_twin.security.bearer import ALGORITHMS, LEEWAY_SECONDS, KeySet, diagnostics, signed_header
from fhir_twin.security.cds_registration import Registration
from fhir_twin.security.principal import Principal
from fhir_twin.store import cds_jti
from fhir_twin.store.repository import Repository

# CDS Hooks 2.0: the JWT's exp SHALL be no more than 5 minutes after iat.
MAX_LIFETIME_SECONDS = 300


class CdsClients:
    """The registered CDS clients; ``scope`` is what each may read here (they act for the EHR)."""

    def __init__(self, clients: dict[str, Registration], scope: str, repository: Repository) -> None:
        self.clients = clients
        self.scope = scope
        self.repository = repository
        self._keys = {url: KeySet(url) for url in {client.jwks for client in clients.values()}}

    def issuer_of(self, token: str) -> str | None:
        """The registered issuer a JWT names (unverified: it only chooses the check), else None."""
        if not self.clients or token.count(".") != 2:
            return None
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return None
        return issuer if isinstance(issuer, str) and issuer in self.clients else None

    def principal(self, token: str, issuer: str, audience: str) -> Principal:
        """The client, once its JWT is verified for the service at ``audience``; else Unauthorized."""
        header = signed_header(token)
        registered = self.clients[issuer].jwks
        jku = header.get("jku")
        if jku is not None and jku != registered:
            raise Unauthorized(f"The JWT's jku is not the key set registered for {issuer}")
        key = self._keys[registered].signing_key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=audience,
                issuer=issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.PyJWTError as error:
            raise Unauthorized(diagnostics(error, token, issuer)) from error
        if not isinstance(claims["exp"], int | float) or not isinstance(claims["iat"], int | float):
            raise Unauthorized("The JWT's exp and iat must be numbers")
        if claims["exp"] - claims["iat"] > MAX_LIFETIME_SECONDS:
            raise Unauthorized("The JWT lives longer than the 5 minutes CDS Hooks allows")
        self._once(issuer, str(claims["jti"]), float(claims["exp"]))
        return Principal(issuer, scope=self.scope, kind="cds-client")

    def _once(self, issuer: str, jti: str, expires: float) -> None:
        """Refuse a ``jti`` seen before from ``issuer`` (CDS Hooks: "used to protect against replay attacks")."""
        now = datetime.now(UTC).replace(tzinfo=None)
        # Kept past ``exp`` by the leeway the expiry check allows, so it outlives the token it guards.
        try:
            until = datetime.fromtimestamp(expires, UTC).replace(tzinfo=None) + timedelta(seconds=LEEWAY_SECONDS)
        except (OverflowError, OSError, ValueError):
            raise Unauthorized("The JWT's exp is no time a clock shows") from None
        if not cds_jti.first_use(self.repository, issuer, jti, until, now):
            raise Unauthorized("The JWT's jti was used before: a CDS client signs a new JWT for each call")
