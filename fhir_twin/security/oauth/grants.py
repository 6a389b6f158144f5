"""The OAuth 2.0 parts SMART App Launch 2.x uses, as Authlib grants and endpoints over the store:
authorization code (RFC 6749 section 4.1) with PKCE S256 only (RFC 7636; SMART app-launch.html
"Considerations for PKCE"), refresh tokens (section 6) for ``offline_access``/``online_access``,
id_tokens for ``openid fhirUser`` (OpenID Connect Core 3.1), revocation (RFC 7009) and
introspection (RFC 7662). Each grant reaches the store through ``self.server`` (an
``AuthorizationServer`` with ``repository``, ``signing_key`` and ``issuer``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode

from fhir_twin.fhir.instant import now
from fhir_twin.security import tokens
from fhir_twin.security.scopes import parse_scope, parse_scopes, within
from fhir_twin.store import oauth, oauth_nonce
from fhir_twin.store.oauth import StoredClient, StoredCode, StoredGrant, StoredUser
from fhir_twin.store.repository import Repository
from fhir_twin.store.tokens import StoredToken

ACCESS_SECONDS = 3600
CODE_SECONDS = 600  # RFC 6749 section 4.1.2: "a maximum authorization code lifetime of 10 minutes"
REFRESH_SECONDS = {"offline_access": 90 * 86400, "online_access": 12 * 3600}
GRANT_TYPES = ("authorization_code", "refresh_token")
# How long a used OpenID nonce is remembered: past the life of the code and of the id_token.
NONCE_SECONDS = 86400


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Consent:
    """Who signed in, and the patient they picked for ``launch/patient`` or the EHR launch set
    (with its encounter): the resource owner."""

    user: StoredUser
    patient: str | None
    encounter: str | None = None

    @classmethod
    def of(cls, user: StoredUser, patient: str | None, launch_context: str | None) -> Consent:
        """As a code or grant stored it (``launch_context`` the JSON of the EHR launch's context)."""
        return cls(user, patient, json.loads(launch_context).get("encounter") if launch_context else None)

    @property
    def launch_context(self) -> str | None:
        return json.dumps({"encounter": self.encounter}) if self.encounter else None

    def get_user_id(self) -> str:
        return self.user.username


class Client(ClientMixin):
    """A registered client: public (PKCE alone), confidential with a secret (client_secret_basic),
    or with a JWK Set (private_key_jwt, ``client_assertion.py``); one with a JWK Set and no
    redirect URI is a backend service, for the client credentials grant alone."""

    def __init__(self, stored: StoredClient) -> None:
        self.stored = stored
        self.client_id = stored.client_id
        self.redirect_uris = stored.redirect_uris.split()

    @property
    def public(self) -> bool:
        return self.stored.secret_hash is None and self.stored.jwks is None

    @property
    def auth_method(self) -> str:
        if self.stored.jwks is not None:
            return "private_key_jwt"
        return "none" if self.public else "client_secret_basic"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """The scopes asked for that the client was registered with, in the order asked: a
        resource scope also when it asks less than a registered one (``patient/Observation.rs?
        category=...`` of a client registered with ``patient/*.rs``)."""
        allowed = set(self.stored.scope.split())
        registered = parse_scopes(self.stored.scope)
        return " ".join(
            part
            for part in (scope or "").split()
            if part in allowed or ((asked := parse_scope(part)) is not None and within(asked, registered))
        )

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.stored.secret_hash is not None and hmac.compare_digest(
            self.stored.secret_hash, digest(client_secret)
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        if self.stored.jwks is not None and not self.redirect_uris:
            return grant_type == "client_credentials"
        return grant_type in GRANT_TYPES


class AuthorizationCode(AuthorizationCodeMixin):
    def __init__(self, stored: StoredCode) -> None:
        self.stored = stored
        self.code_challenge = stored.code_challenge
        self.code_challenge_method = stored.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.stored.redirect_uri

    def get_scope(self) -> str:
        return self.stored.scope

    def get_nonce(self) -> str | None:
        return self.stored.nonce

    def get_auth_time(self) -> int:
        return self.stored.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class Token(TokenMixin):
    """An issued grant, as its access token (``refresh`` False) or its refresh token."""

    def __init__(self, stored: StoredGrant, refresh: bool) -> None:
        self.stored = stored
        self.refresh = refresh

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.stored.client_id

    def get_scope(self) -> str:
        return self.stored.scope

    def get_expires_in(self) -> int:
        return int((self.stored.expires - self.stored.issued).total_seconds())

    def is_expired(self) -> bool:
        ends = self.stored.refresh_expires if self.refresh else self.stored.expires
        return ends is None or ends <= now()

    def is_revoked(self) -> bool:
        return self.stored.revoked is not None


class SmartBearerToken(BearerTokenGenerator):
    """Opaque bearer tokens that ``tokens`` auth mode accepts (their ``ftw_`` prefix); a refresh
    token only when ``offline_access`` or ``online_access`` was granted (SMART
    scopes-and-launch-context.html, "Scopes for requesting a refresh token")."""

    def __init__(self) -> None:
        super().__init__(
            lambda **_: tokens.PREFIX + secrets.token_urlsafe(32),
            lambda **_: secrets.token_urlsafe(48),
            lambda client, grant_type: ACCESS_SECONDS,
        )

    def generate(
        self,
        grant_type: str,
        client: Client,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> Any:
        wanted = bool(set(REFRESH_SECONDS) & set((scope or "").split()))
        return super().generate(grant_type, client, user, scope, expires_in, include_refresh_token and wanted)


def save_token(repository: Repository, token: dict[str, Any], client: Client, consent: Consent) -> None:
    """Store an issued token as an API token (the FHIR API's Guard enforces its scopes and
    patient) and its grant; name the launch patient in the response (SMART app-launch.html,
    "Launch context arrives with your access_token")."""
    scope = token.get("scope", "")
    ehr_launch = "launch" in scope.split()
    patient = consent.patient if ehr_launch or "launch/patient" in scope.split() else None
    issued = now()
    expires = issued + timedelta(seconds=token["expires_in"])
    refresh_for = max((REFRESH_SECONDS[part] for part in scope.split() if part in REFRESH_SECONDS), default=0)
    refresh = token.get("refresh_token")
    token_id = secrets.token_hex(8)
    name = f"{client.stored.name} for {consent.user.username}"[: tokens.NAME_LENGTH]
    oauth.add_grant(
        repository,
        StoredGrant(
            token_id,
            client.client_id,
            consent.user.username,
            scope,
            patient,
            digest(refresh) if refresh else None,
            issued,
            expires,
            issued + timedelta(seconds=refresh_for) if refresh else None,
            None,
            consent.launch_context if ehr_launch else None,
        ),
        StoredToken(
            token_id, name, scope, patient, issued, expires, None, consent.user.fhir_user or consent.user.username
        ),
        tokens.secret_hash(token["access_token"]),
    )
    if patient is not None:
        # SMART app-launch.html, "Launch context arrives with your access_token": this server
        # has no EHR frame of its own around the app, so the app shows the patient banner.
        token["patient"] = patient
        token["need_patient_banner"] = True
    if ehr_launch and consent.encounter is not None:
        token["encounter"] = consent.encounter


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "private_key_jwt", "none"]

    def save_authorization_code(self, code: str, request: Any) -> None:
        consent: Consent = request.user
        payload = request.payload
        nonce = payload.data.get("nonce")
        if nonce and not oauth_nonce.use(
            self.server.repository, request.client.client_id, nonce, now() + timedelta(seconds=NONCE_SECONDS)
        ):
            from authlib.oauth2.rfc6749 import InvalidRequestError

            raise InvalidRequestError("this nonce was already used", redirect_uri=payload.redirect_uri)
        oauth.add_code(
            self.server.repository,
            StoredCode(
                digest(code),
                request.client.client_id,
                consent.user.username,
                payload.redirect_uri or "",
                request.scope,
                consent.patient,
                payload.data.get("nonce"),
                payload.data["code_challenge"],
                payload.data.get("code_challenge_method") or "plain",
                int(time.time()),
                now() + timedelta(seconds=CODE_SECONDS),
                consent.launch_context,
            ),
        )

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        """The code, taken (deleted) as it is found: of two requests racing with one code, only the
        one whose delete removed it goes on (RFC 6749 section 4.1.2, a code is used once). A request
        that then fails its checks (PKCE, redirect_uri) has spent the code too."""
        found = oauth.code(self.server.repository, digest(code), client.client_id)
        if found is None or not oauth.take_code(self.server.repository, found.code_hash):
            return None
        return AuthorizationCode(found)

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing left to do: the code was taken when it was found."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Consent | None:
        stored = authorization_code.stored
        found = oauth.user(self.server.repository, stored.username)
        return Consent.of(found, stored.patient_id, stored.launch_context) if found is not None else None


class RefreshGrant(grants.RefreshTokenGrant):
    """A refresh token is used once: the new response carries a new one (rotation, OAuth 2.0
    Security BCP section 4.14), and the old grant's tokens are revoked."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "private_key_jwt", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        found = oauth.grant_by_refresh(self.server.repository, digest(refresh_token))
        if found is None:
            return None
        token = Token(found, refresh=True)
        return None if token.is_revoked() or token.is_expired() else token

    def authenticate_user(self, refresh_token: Token) -> Consent | None:
        stored = refresh_token.stored
        found = oauth.user(self.server.repository, stored.username)
        return Consent.of(found, stored.patient_id, stored.launch_context) if found is not None else None

    def revoke_old_credential(self, refresh_token: Token) -> None:
        oauth.revoke_grant(self.server.repository, refresh_token.stored.token_id)


class S256Only(CodeChallenge):
    """PKCE is required, and only with S256: ``plain`` (and a challenge with no method, which
    RFC 7636 section 4.3 reads as plain) are refused."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        method = grant.request.payload.data.get("code_challenge_method")
        if method is None:
            from authlib.oauth2.rfc6749 import InvalidRequestError

            raise InvalidRequestError("code_challenge_method must be S256", redirect_uri=redirect_uri)
        super().validate_code_challenge(grant, redirect_uri)


class SmartOpenIDCode(OpenIDCode):
    """An id_token for ``openid``, with the ``fhirUser`` claim for ``fhirUser`` (SMART
    scopes-and-launch-context.html, "Scopes for requesting identity data"), signed RS256."""

    def __init__(self, server: Any) -> None:
        super().__init__(require_nonce=False)
        self.server = server

    def resolve_client_private_key(self, client: Client) -> Any:
        return self.server.signing_key

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": self.server.signing_key.kid}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.server.issuer(), "aud": [client.client_id], "exp": int(time.time()) + ACCESS_SECONDS}

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        """Whether the client already used this nonce (recorded when its code is issued)."""
        return oauth_nonce.used(self.server.repository, request.payload.client_id, nonce)

    def generate_user_info(self, user: Consent, scope: str) -> UserInfo:
        info = UserInfo(sub=user.user.username)
        if "fhirUser" in scope.split() and user.user.fhir_user:
            info["fhirUser"] = f"{self.server.issuer()}/{user.user.fhir_user}"
        return info


def _query(repository: Repository, token: str, hint: str | None) -> Token | None:
    """An access or refresh token's grant (the hint says which to try first, RFC 7009 section 2.1)."""
    order = [False, True] if hint != "refresh_token" else [True, False]
    for refresh in order:
        found = (oauth.grant_by_refresh if refresh else oauth.grant_by_access)(
            repository, digest(token) if refresh else tokens.secret_hash(token)
        )
        if found is not None:
            return Token(found, refresh)
    return None


class Revocation(RevocationEndpoint):
    """Revoking either token of a grant revokes both (RFC 7009 section 2.1 allows it)."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "private_key_jwt", "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return _query(self.server.repository, token_string, token_type_hint)

    def revoke_token(self, token: Token, request: Any) -> None:
        oauth.revoke_grant(self.server.repository, token.stored.token_id)


class Introspection(IntrospectionEndpoint):
    """For confidential clients, about the tokens issued to them."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "private_key_jwt"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return _query(self.server.repository, token_string, token_type_hint)

    def check_permission(self, token: Token, client: Client, request: Any) -> bool:
        return bool(token.check_client(client))

    def introspect_token(self, token: Token) -> dict[str, Any]:
        stored = token.stored
        ends = stored.refresh_expires if token.refresh else stored.expires
        found = oauth.user(self.server.repository, stored.username)
        payload: dict[str, Any] = {
            "active": True,
            "client_id": stored.client_id,
            "scope": stored.scope,
            "sub": stored.username,
            "token_type": "refresh_token" if token.refresh else "Bearer",
            "iat": int(stored.issued.replace(tzinfo=UTC).timestamp()),
            "exp": int(ends.replace(tzinfo=UTC).timestamp()) if ends else None,
        }
        if stored.patient_id:
            payload["patient"] = stored.patient_id
        if found is not None and found.fhir_user:
            payload["fhirUser"] = f"{self.server.issuer()}/{found.fhir_user}"
        return payload
