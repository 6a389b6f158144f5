"""Bearer authentication in the configured mode (``tokens``, ``jwt`` or ``none``).

Failures are 401s with a ``WWW-Authenticate: Bearer`` challenge (RFC 6750 section 3): no error
code when no credential was sent, ``invalid_request`` for a malformed header, ``invalid_token``
for one that is unknown, revoked, expired or fails its checks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fhir_twin.config import Config
from fhir_twin.errors import Unauthorized
from fhir_twin.security import tokens
from fhir_twin.security.principal import ANONYMOUS, Principal
from fhir_twin.store.repository import Repository

if TYPE_CHECKING:
    from fhir_twin.security.bearer import JwtVerifier
    from fhir_twin.security.cds_client import CdsClients

MODES = ("tokens", "jwt", "none")
REALM = 'Bearer realm="fhir-twin"'
log = logging.getLogger("fhir_twin.security")


class Authenticator:
    """Turns an ``Authorization`` header into the principal a request acts for."""

    def __init__(self, config: Config, repository: Repository) -> None:
        """Checks the settings (a ``ValueError`` naming what is wrong) before the database is
        touched; ``repository`` is where API tokens are."""
        if config.auth_mode not in MODES:
            raise ValueError(f"auth_mode must be one of {', '.join(MODES)}, not {config.auth_mode!r}")
        self.mode = config.auth_mode
        self.repository = repository
        self.verifier: JwtVerifier | None = None
        if self.mode == "jwt":
            # PyJWT and cryptography (about 10 MB a process) load only for a server that verifies JWTs.
            from fhir_twin.security.bearer import JwtVerifier

            self.verifier = JwtVerifier(config.jwks, config.jwt_issuer, config.jwt_audience)
        self.cds_clients: CdsClients | None = None
        if config.cds_clients.strip() and self.mode != "none":
            from fhir_twin.security.cds_client import CdsClients
            from fhir_twin.security.cds_registration import parse_clients

            self.cds_clients = CdsClients(parse_clients(config.cds_clients), config.cds_client_scope, repository)
        if self.mode == "none":
            log.warning(
                "AUTHENTICATION IS OFF (auth_mode=none): anyone who can reach this server may read and change "
                "every record. Use this only for local development and tests."
            )

    def authenticate(self, authorization: str | None, cds_service: str | None = None) -> Principal:
        """The principal of ``authorization``; at the CDS Hooks service ``cds_service`` (its URL),
        a JWT of a registered CDS client is verified as CDS Hooks describes, for that service."""
        if self.mode == "none":
            return ANONYMOUS
        if not authorization:
            raise Unauthorized("This server needs a bearer token: Authorization: Bearer <token>", headers=_challenge())
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer":
            # Another scheme (Basic...): the challenge names Bearer, with no error code (RFC 6750
            # section 3.1: none when the request lacks any bearer authentication information).
            raise Unauthorized("This server takes bearer tokens: Authorization: Bearer <token>", headers=_challenge())
        if not credential or " " in credential:
            message = "The Authorization header must be 'Bearer <token>'"
            raise Unauthorized(message, headers=_challenge("invalid_request", message))
        try:
            issuer = self.cds_clients.issuer_of(credential) if self.cds_clients and cds_service else None
            if self.cds_clients is not None and issuer is not None and cds_service is not None:
                return self.cds_clients.principal(credential, issuer, cds_service)
            if self.verifier is not None:
                return self.verifier.principal(credential)
            return tokens.principal(self.repository, credential)
        except Unauthorized as error:
            raise Unauthorized(error.diagnostics, headers=_challenge("invalid_token", error.diagnostics)) from None


def _challenge(error: str | None = None, description: str | None = None) -> dict[str, str]:
    if error is None:
        return {"WWW-Authenticate": REALM}
    # RFC 6750 section 3: error_description holds %x20-21 / %x23-5B / %x5D-7E only; what a token
    # claims (its alg) must not reach a header otherwise.
    quoted = "".join(char if 0x20 <= ord(char) <= 0x7E and char not in '"\\' else "?" for char in description or "")
    return {"WWW-Authenticate": f'{REALM}, error="{error}", error_description="{quoted}"'}
