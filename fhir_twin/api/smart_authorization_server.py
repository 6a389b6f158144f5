"""Authlib's Flask authorization server as fhir-twin configures it (``api/smart_auth.py`` builds
it on the first ``/auth`` request, so a server nobody signs in to never loads Authlib)."""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from flask import Flask, request
from itsdangerous import URLSafeTimedSerializer

from fhir_twin.config import Config
from fhir_twin.security.discovery import own_endpoints
from fhir_twin.security.oauth import client_credentials, signing_key
from fhir_twin.security.oauth.client_assertion import METHOD, ClientAssertion
from fhir_twin.security.oauth.client_credentials import GRANT_TYPE, SystemBearerToken, SystemGrant
from fhir_twin.security.oauth.grants import (
    Client,
    CodeGrant,
    Introspection,
    RefreshGrant,
    Revocation,
    S256Only,
    SmartBearerToken,
    SmartOpenIDCode,
    save_token,
)
from fhir_twin.store import oauth
from fhir_twin.store.repository import Repository


class SmartServer(AuthorizationServer):
    """Authlib's Flask server with what the grants read from it: the store, the id_token key and
    the issuer (the FHIR base URL, which is also the ``aud`` a client must name)."""

    def __init__(self, app: Flask, repository: Repository, config: Config) -> None:
        super().__init__()
        self.repository = repository
        self.config = config
        self.signing_key = signing_key.load(config.resolved_smart_signing_key_file)
        self.init_app(app, query_client=self._client, save_token=self._save)
        self.register_token_generator("default", SmartBearerToken())
        self.register_grant(CodeGrant, [S256Only(required=True), SmartOpenIDCode(self)])
        self.register_grant(RefreshGrant)
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)
        self.register_client_auth_method(METHOD, ClientAssertion(repository, self.token_endpoint))
        self.register_grant(SystemGrant)
        self.register_token_generator(GRANT_TYPE, SystemBearerToken())
        # The sign-in ticket (who signed in, for which request) between the two forms.
        self.tickets = URLSafeTimedSerializer(self.signing_key.as_pem(private=True), salt="fhir-twin sign-in")

    def issuer(self) -> str:
        return self.config.base_url.rstrip("/") if self.config.base_url else request.url_root.rstrip("/") + "/fhir"

    def token_endpoint(self) -> str:
        """The token endpoint's URL, the ``aud`` a client assertion names (RFC 7523 section 3)."""
        return own_endpoints(self.issuer())["token_endpoint"]

    def _client(self, client_id: str) -> Client | None:
        found = oauth.client(self.repository, client_id)
        return Client(found) if found is not None else None

    def _save(self, token: dict[str, Any], oauth_request: Any) -> None:
        if oauth_request.payload.grant_type == GRANT_TYPE:
            client_credentials.save_token(self.repository, token, oauth_request.client)
            return
        save_token(self.repository, token, oauth_request.client, oauth_request.user)
