"""The SMART App Launch 2.x authorization server (hl7.org/fhir/smart-app-launch), built on Authlib:
clients and users (registered by the CLI), the authorization code grant with PKCE, refresh tokens,
OpenID Connect id_tokens, revocation and introspection. The Flask side is ``api/smart_auth.py``."""
