"""Opaque API tokens (auth mode ``tokens``): made by ``fhir-twin token create``, shown once,
kept only as a SHA-256 hash, so neither the database nor a backup gives a usable credential."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from fhir_twin.errors import Unauthorized
from fhir_twin.fhir.instant import now
from fhir_twin.security.principal import Principal
from fhir_twin.store import tokens
from fhir_twin.store.repository import Repository
from fhir_twin.store.tokens import StoredToken

PREFIX = "ftw_"
# As the api_token table holds it.
NAME_LENGTH = 128


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create(
    repository: Repository, name: str, scope: str, patient_id: str | None, expires: datetime | None
) -> tuple[str, StoredToken]:
    """A new token: its secret (to hand to the client, never stored) and its stored record."""
    if not 0 < len(name) <= NAME_LENGTH:
        raise ValueError(f"a token's name is 1 to {NAME_LENGTH} characters")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = StoredToken(secrets.token_hex(8), name, scope, patient_id, now(), expires, None)
    tokens.add(repository, token, secret_hash(secret))
    return secret, token


def principal(repository: Repository, secret: str) -> Principal:
    """Who ``secret`` stands for; 401 for an unknown, revoked or expired token."""
    found = tokens.by_hash(repository, secret_hash(secret)) if secret.startswith(PREFIX) else None
    if found is None:
        # A token made with `fhir-twin token create` against another database is the usual cause.
        hint = (
            "; tokens live in the server's database: create it with the same --database or "
            "FHIR_TWIN_DATABASE_URL as the server"
            if secret.startswith(PREFIX)
            else ""
        )
        raise Unauthorized("The bearer token is not known to this server" + hint)
    if found.revoked is not None:
        raise Unauthorized("The bearer token was revoked")
    if found.expires is not None and found.expires <= now():
        raise Unauthorized("The bearer token has expired")
    return Principal(found.name, found.scope, found.patient_id, user=found.acting_user, kind="token")
