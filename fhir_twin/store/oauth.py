"""The authorization server's rows: clients, users, authorization codes and grants.

Secrets are never stored: clients' and codes' and refresh tokens' as SHA-256 hashes, passwords as
Argon2 hashes made by the caller. Issuing a token writes its ``api_token`` row and its grant in
one transaction; revoking marks both, so the FHIR API refuses the token from then on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update

from fhir_twin.fhir.instant import now
from fhir_twin.store import tokens
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import (
    api_token,
    oauth_client,
    oauth_code,
    oauth_grant,
    oauth_user,
    resource,
    resource_version,
)
from fhir_twin.store.tokens import StoredToken
from fhir_twin.store.version import CURRENT


@dataclass(frozen=True)
class StoredClient:
    client_id: str
    name: str
    secret_hash: str | None
    redirect_uris: str
    scope: str
    created: datetime
    jwks: str | None = None
    launch_uri: str | None = None


@dataclass(frozen=True)
class StoredUser:
    username: str
    password_hash: str
    fhir_user: str | None
    created: datetime


@dataclass(frozen=True)
class StoredCode:
    code_hash: str
    client_id: str
    username: str
    redirect_uri: str
    scope: str
    patient_id: str | None
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    auth_time: int
    expires: datetime
    launch_context: str | None = None


@dataclass(frozen=True)
class StoredGrant:
    token_id: str
    client_id: str
    username: str
    scope: str
    patient_id: str | None
    refresh_hash: str | None
    issued: datetime
    expires: datetime
    refresh_expires: datetime | None
    revoked: datetime | None
    launch_context: str | None = None


def add_client(repository: Repository, client: StoredClient) -> None:
    with repository.transaction(write=True) as tx:
        tx.connection.execute(insert(oauth_client).values(**client.__dict__))


def client(repository: Repository, client_id: str) -> StoredClient | None:
    with repository.transaction() as tx:
        row = tx.connection.execute(select(oauth_client).where(oauth_client.c.client_id == client_id)).first()
    return StoredClient(*row) if row is not None else None


def clients(repository: Repository) -> list[StoredClient]:
    with repository.transaction() as tx:
        rows = tx.connection.execute(select(oauth_client).order_by(oauth_client.c.created)).all()
    return [StoredClient(*row) for row in rows]


def delete_client(repository: Repository, client_id: str) -> bool:
    """Remove a client and revoke every token issued to it; whether it existed."""
    with repository.transaction(write=True) as tx:
        ids = select(oauth_grant.c.token_id).where(oauth_grant.c.client_id == client_id)
        tx.connection.execute(update(api_token).where(api_token.c.token_id.in_(ids)).values(revoked=now()))
        tx.connection.execute(update(oauth_grant).where(oauth_grant.c.client_id == client_id).values(revoked=now()))
        tx.connection.execute(delete(oauth_code).where(oauth_code.c.client_id == client_id))
        found = tx.connection.execute(delete(oauth_client).where(oauth_client.c.client_id == client_id)).rowcount
    tokens.forget_cached()
    return bool(found)


def add_user(repository: Repository, user: StoredUser) -> None:
    with repository.transaction(write=True) as tx:
        tx.connection.execute(insert(oauth_user).values(**user.__dict__))


def user(repository: Repository, username: str) -> StoredUser | None:
    with repository.transaction() as tx:
        row = tx.connection.execute(select(oauth_user).where(oauth_user.c.username == username)).first()
    return StoredUser(*row) if row is not None else None


def add_code(repository: Repository, code: StoredCode) -> None:
    with repository.transaction(write=True) as tx:
        tx.connection.execute(insert(oauth_code).values(**code.__dict__))


def code(repository: Repository, code_hash: str, client_id: str) -> StoredCode | None:
    """A live code issued to ``client_id``."""
    with repository.transaction() as tx:
        row = tx.connection.execute(
            select(oauth_code)
            .where(oauth_code.c.code_hash == code_hash, oauth_code.c.client_id == client_id)
            .where(oauth_code.c.expires > now())
        ).first()
    return StoredCode(*row) if row is not None else None


def take_code(repository: Repository, code_hash: str) -> bool:
    """Remove a code once exchanged; False when another request took it first (single use)."""
    with repository.transaction(write=True) as tx:
        return bool(tx.connection.execute(delete(oauth_code).where(oauth_code.c.code_hash == code_hash)).rowcount)


def add_grant(repository: Repository, grant: StoredGrant, token: StoredToken, access_hash: str) -> None:
    """The access token (an API token the FHIR API accepts) and the grant behind it, together."""
    with repository.transaction(write=True) as tx:
        tokens.add(repository, token, access_hash)  # joins this transaction
        tx.connection.execute(insert(oauth_grant).values(**grant.__dict__))


def grant_by_refresh(repository: Repository, refresh_hash: str) -> StoredGrant | None:
    with repository.transaction() as tx:
        row = tx.connection.execute(select(oauth_grant).where(oauth_grant.c.refresh_hash == refresh_hash)).first()
    return StoredGrant(*row) if row is not None else None


def grant_by_access(repository: Repository, access_hash: str) -> StoredGrant | None:
    with repository.transaction() as tx:
        row = tx.connection.execute(
            select(oauth_grant)
            .join(api_token, api_token.c.token_id == oauth_grant.c.token_id)
            .where(api_token.c.secret_hash == access_hash)
        ).first()
    return StoredGrant(*row) if row is not None else None


def revoke_grant(repository: Repository, token_id: str) -> None:
    """Revoke a grant's access and refresh tokens."""
    with repository.transaction(write=True) as tx:
        tx.connection.execute(
            update(oauth_grant)
            .where(oauth_grant.c.token_id == token_id, oauth_grant.c.revoked.is_(None))
            .values(revoked=now())
        )
        tx.connection.execute(
            update(api_token)
            .where(api_token.c.token_id == token_id, api_token.c.revoked.is_(None))
            .values(revoked=now())
        )
    tokens.forget_cached()


def patients(repository: Repository, limit: int) -> list[tuple[str, str]]:
    """The first ``limit`` live Patients by id, each with its stored JSON, for the patient picker."""
    with repository.transaction() as tx:
        rows = tx.connection.execute(
            select(resource.c.res_id, resource_version.c.body)
            .select_from(CURRENT)
            .where(resource.c.res_type == "Patient", resource.c.deleted.is_(False))
            .order_by(resource.c.res_id)
            .limit(limit)
        ).all()
    return [(row[0], row[1]) for row in rows]


def patient_exists(repository: Repository, patient_id: str) -> bool:
    """Whether a live Patient has this id."""
    with repository.transaction() as tx:
        found = tx.connection.execute(
            select(resource.c.res_id).where(
                resource.c.res_type == "Patient", resource.c.res_id == patient_id, resource.c.deleted.is_(False)
            )
        ).first()
    return found is not None
