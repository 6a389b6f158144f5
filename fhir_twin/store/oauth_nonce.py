"""The OpenID ``nonce`` values each client has used, so none is accepted twice (OpenID Connect
Core 1.0 section 3.1.2.1: the nonce mitigates replay attacks)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from fhir_twin.fhir.instant import now
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import oauth_nonce


def used(repository: Repository, client_id: str, nonce: str) -> bool:
    with repository.transaction() as tx:
        row = tx.connection.execute(
            select(oauth_nonce.c.nonce).where(oauth_nonce.c.client_id == client_id, oauth_nonce.c.nonce == nonce)
        ).first()
    return row is not None


def use(repository: Repository, client_id: str, nonce: str, until: datetime) -> bool:
    """Record a nonce as used until ``until`` (forgetting those past theirs); False when it already
    was. One insert that does nothing on a taken key, so of two racing requests one wins."""
    dialect = postgresql if repository.engine.dialect.name == "postgresql" else sqlite
    with repository.transaction(write=True) as tx:
        tx.connection.execute(delete(oauth_nonce).where(oauth_nonce.c.expires <= now()))
        # RETURNING, not rowcount: psycopg leaves rowcount -1 here on PostgreSQL.
        inserted = tx.connection.execute(
            dialect.insert(oauth_nonce)
            .values(client_id=client_id, nonce=nonce, expires=until)
            .on_conflict_do_nothing(index_elements=["client_id", "nonce"])
            .returning(oauth_nonce.c.nonce)
        ).first()
    return inserted is not None
