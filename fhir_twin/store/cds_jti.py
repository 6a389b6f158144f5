"""The JWT ids seen (``cds_jti``), per issuer: CDS Hooks 2.0 "Trusting CDS Clients" gives each CDS
client JWT a ``jti`` "used to protect against replay attacks", and so does RFC 7523 section 3 each
client assertion of a ``private_key_jwt`` client (its issuer the client_id; SMART
client-confidential-asymmetric.html). Kept in the database, so a JWT replayed to another server
process, or another server on the same database, is refused there too.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import cds_jti


def first_use(repository: Repository, issuer: str, jti: str, expires: datetime, now: datetime) -> bool:
    """Record ``issuer``'s ``jti`` until ``expires``; False when it was recorded before (a replay).

    One insert that does nothing on a taken key: of two processes inserting the same jti at once,
    the database lets one in and tells the other it inserted nothing. Rows whose token expired
    before ``now`` are deleted first: such a token is refused for its ``exp`` before its jti is looked up.
    """
    key = hashlib.sha256(f"{issuer}\0{jti}".encode()).hexdigest()
    dialect = postgresql if repository.engine.dialect.name == "postgresql" else sqlite
    with repository.transaction(write=True) as tx:
        tx.connection.execute(delete(cds_jti).where(cds_jti.c.expires < now))
        # RETURNING, not rowcount: psycopg leaves rowcount -1 here on PostgreSQL.
        inserted = tx.connection.execute(
            dialect.insert(cds_jti)
            .values(key=key, expires=expires)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(cds_jti.c.key)
        ).first()
    return inserted is not None
