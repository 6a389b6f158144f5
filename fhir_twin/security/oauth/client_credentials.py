"""SMART Backend Services (backend-services.html): the client credentials grant (RFC 6749
section 4.4) for a client registered with ``--backend``, authenticated by ``private_key_jwt``
alone, for the ``system/`` scopes it was registered with.

Each asked scope must be a ``system/`` scope within those the client was registered with
(``system/*.rs`` covers ``system/Patient.r``; "Evaluate Requested Access": the scope requested
must be "within the scope pre-authorized to the client"), or the request is ``invalid_scope`` and
nothing is issued; the token has the scopes asked. The access token lives five minutes
(``expires_in`` 300, the value SMART recommends) and comes without a refresh token; it is an API
token, so the FHIR API's Guard enforces its scopes (``system/`` reaches every patient)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import InvalidScopeError, grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator

from fhir_twin.fhir.instant import now
from fhir_twin.security import tokens
from fhir_twin.security.oauth.client_assertion import METHOD, AssertionRefused
from fhir_twin.security.oauth.grants import Client
from fhir_twin.security.scopes import parse_scope, parse_scopes, within
from fhir_twin.store import oauth
from fhir_twin.store.oauth import StoredGrant
from fhir_twin.store.repository import Repository
from fhir_twin.store.tokens import StoredToken

GRANT_TYPE = "client_credentials"
ACCESS_SECONDS = 300


class SystemGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [METHOD]

    def authenticate_token_endpoint_client(self) -> Client:
        """The client by its assertion; a request without one is ``invalid_client`` (401) too."""
        if not self.request.form.get("client_assertion"):
            raise AssertionRefused("a backend service authenticates with a client_assertion (private_key_jwt)")
        client: Client = super().authenticate_token_endpoint_client()
        return client

    def validate_requested_scope(self) -> None:
        asked = (self.request.payload.scope or "").split()
        client: Client = self.request.client
        registered = parse_scopes(client.stored.scope)
        if not asked:
            raise InvalidScopeError("scope is required: the system/ scopes wanted")
        for text in asked:
            scope = parse_scope(text)
            if scope is None or scope.level != "system":
                raise InvalidScopeError(f"{text!r} is not a system/ scope: a backend service asks for system/ scopes")
            if not within(scope, registered):
                raise InvalidScopeError(f"{text!r} is not within the scopes this client is registered for")


class SystemBearerToken(BearerTokenGenerator):
    """Opaque bearer tokens of five minutes that ``tokens`` auth mode accepts, never with a refresh
    token ("Refresh tokens SHOULD NOT be issued"), for the scopes asked (``SystemGrant`` has
    checked they are within the client's)."""

    def __init__(self) -> None:
        super().__init__(
            lambda **_: tokens.PREFIX + secrets.token_urlsafe(32), None, lambda client, grant_type: ACCESS_SECONDS
        )

    @staticmethod
    def get_allowed_scope(client: Client, scope: str) -> str:
        return scope


def save_token(repository: Repository, token: dict[str, Any], client: Client) -> None:
    """Store the access token as an API token with its grant (the client stands as the grant's
    subject: no user takes part), so deleting the client revokes it."""
    issued = now()
    expires = issued + timedelta(seconds=token["expires_in"])
    token_id = secrets.token_hex(8)
    scope = token["scope"]
    oauth.add_grant(
        repository,
        StoredGrant(token_id, client.client_id, client.client_id, scope, None, None, issued, expires, None, None),
        StoredToken(token_id, client.stored.name[: tokens.NAME_LENGTH], scope, None, issued, expires, None),
        tokens.secret_hash(token["access_token"]),
    )
