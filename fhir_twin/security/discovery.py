"""How clients learn to authenticate: ``/.well-known/smart-configuration`` (SMART App Launch v2,
conformance.html) and ``CapabilityStatement.rest.security`` (R4 capabilitystatement.html)."""

from __future__ import annotations

from typing import Any

from fhir_twin.config import Config
from fhir_twin.security.scopes import PERMISSIONS

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
_SCOPES = [
    f"{level}/*.{letters}" for level in ("patient", "user", "system") for letters in ("read", "write", PERMISSIONS)
]
# Both scope syntaxes, at the patient and user levels (SMART v2 conformance.html, "Capabilities").
_PERMISSIONS = ["permission-v1", "permission-v2", "permission-patient", "permission-user"]


# What this server's own authorization server (``tokens`` mode, api/smart_auth.py) does.
_OWN_CAPABILITIES = [
    "launch-standalone",
    "launch-ehr",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-standalone-patient",
    "context-ehr-patient",
    "context-ehr-encounter",
    "sso-openid-connect",
    "permission-offline",
    "permission-online",
]
_OWN_SCOPES = ["openid", "fhirUser", "launch", "launch/patient", "launch/encounter", "offline_access", "online_access"]


def own_endpoints(base: str) -> dict[str, str]:
    """The endpoints of this server's authorization server, for the FHIR base URL ``base``."""
    root = base.rstrip("/").removesuffix("/fhir")
    return {
        name: f"{root}/auth/{path}"
        for name, path in (
            ("authorization_endpoint", "authorize"),
            ("token_endpoint", "token"),
            ("revocation_endpoint", "revoke"),
            ("introspection_endpoint", "introspect"),
            ("jwks_uri", "jwks"),
        )
    }


def smart_configuration(config: Config, base: str) -> dict[str, Any]:
    """The discovery document: in ``tokens`` mode, this server's own authorization server (at
    ``base`` without ``/fhir``); in ``jwt`` mode, the external one's endpoints when configured."""
    document: dict[str, Any] = {
        "capabilities": list(_PERMISSIONS),
        "scopes_supported": _SCOPES,
    }
    if config.auth_mode == "tokens":
        document.update(own_endpoints(base))
        document["issuer"] = base.rstrip("/")
        document["capabilities"] = [*_OWN_CAPABILITIES, *_PERMISSIONS]
        document["scopes_supported"] = [*_OWN_SCOPES, *_SCOPES]
        document["response_types_supported"] = ["code"]
        document["grant_types_supported"] = ["authorization_code", "refresh_token", "client_credentials"]
        document["code_challenge_methods_supported"] = ["S256"]
        document["token_endpoint_auth_methods_supported"] = ["client_secret_basic", "private_key_jwt", "none"]
        # What a private_key_jwt client signs with (client-confidential-asymmetric.html).
        document["token_endpoint_auth_signing_alg_values_supported"] = ["RS384", "ES384"]
        return document
    if config.auth_mode == "jwt":
        # SMART Backend Services: a client authenticates to the authorization server with a
        # signed JWT and gets an access token by the client_credentials grant.
        document["capabilities"] = ["client-confidential-asymmetric", *_PERMISSIONS]
        document["token_endpoint_auth_methods_supported"] = ["private_key_jwt"]
        document["grant_types_supported"] = ["client_credentials"]
    if config.jwt_issuer:
        document["issuer"] = config.jwt_issuer
    if config.jwks.startswith(("https://", "http://")):
        document["jwks_uri"] = config.jwks
    if config.smart_token_endpoint:
        document["token_endpoint"] = config.smart_token_endpoint
    if config.smart_authorization_endpoint:
        document["authorization_endpoint"] = config.smart_authorization_endpoint
    return document


def rest_security(config: Config, base: str) -> dict[str, Any]:
    """``CapabilityStatement.rest.security``: SMART-on-FHIR bearer tokens, CORS as configured."""
    security: dict[str, Any] = {
        "cors": bool(config.cors_origins),
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 bearer tokens with SMART App Launch scopes",
            }
        ],
        "description": _DESCRIPTIONS[config.auth_mode],
    }
    token, authorize = config.smart_token_endpoint, config.smart_authorization_endpoint
    if config.auth_mode == "tokens":
        own = own_endpoints(base)
        token, authorize = own["token_endpoint"], own["authorization_endpoint"]
    uris = [{"url": name, "valueUri": url} for name, url in (("token", token), ("authorize", authorize)) if url]
    if config.auth_mode == "tokens":
        own = own_endpoints(base)
        uris += [
            {"url": "revoke", "valueUri": own["revocation_endpoint"]},
            {"url": "introspect", "valueUri": own["introspection_endpoint"]},
        ]
    if uris:
        security["extension"] = [{"url": OAUTH_URIS, "extension": uris}]
    return security


_DESCRIPTIONS = {
    "tokens": "Every request but the CapabilityStatement and SMART discovery needs 'Authorization: Bearer <token>' "
    "with an API token made by 'fhir-twin token create' or issued by this server's SMART App Launch "
    "authorization server (/auth: standalone and EHR launch), where backend services (SMART Backend Services: "
    "client_credentials, private_key_jwt signed RS384 or ES384) get system/ scopes. Scopes are SMART v1 or v2 "
    "resource scopes; v2 ones may be narrowed by a search of their type (patient/Observation.rs?category=...).",
    "jwt": "Every request but the CapabilityStatement and SMART discovery needs 'Authorization: Bearer <JWT>' "
    "issued by the configured authorization server (RS256 or ES256). Scopes are SMART v1 or v2 resource scopes; "
    "v2 ones may be narrowed by a search of their type (patient/Observation.rs?category=...).",
    "none": "Authentication is switched off on this server (development only).",
}
