"""API tokens: stored as SHA-256 hashes of their secrets, looked up by hash, revoked by mark.

A token found is remembered for ``CACHE_SECONDS``, so a busy client does not cost a database
round trip per request; a revocation therefore takes effect within that time in other server
processes, and at once in the process that made it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, or_, select, update

from fhir_twin.fhir.instant import now
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import api_token


@dataclass(frozen=True)
class StoredToken:
    token_id: str
    name: str
    scope: str
    patient_id: str | None
    created: datetime
    expires: datetime | None
    revoked: datetime | None
    # Who a SMART-issued token acts for (its user's fhirUser, else user name); None for the CLI's.
    acting_user: str | None = None


_COLUMNS = (
    api_token.c.token_id,
    api_token.c.name,
    api_token.c.scope,
    api_token.c.patient_id,
    api_token.c.created,
    api_token.c.expires,
    api_token.c.revoked,
    api_token.c.acting_user,
)


def add(repository: Repository, token: StoredToken, secret_hash: str) -> None:
    with repository.transaction(write=True) as tx:
        tx.connection.execute(
            insert(api_token).values(
                token_id=token.token_id,
                name=token.name,
                secret_hash=secret_hash,
                scope=token.scope,
                patient_id=token.patient_id,
                created=token.created,
                expires=token.expires,
                acting_user=token.acting_user,
            )
        )


CACHE_SECONDS = 2.0
_cache: dict[tuple[str, str], tuple[float, StoredToken]] = {}
_cache_lock = threading.Lock()


def by_hash(repository: Repository, secret_hash: str) -> StoredToken | None:
    key = (str(repository.engine.url), secret_hash)
    cached = _cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    with repository.transaction() as tx:
        row = tx.connection.execute(select(*_COLUMNS).where(api_token.c.secret_hash == secret_hash)).first()
    if row is None:
        return None
    found = StoredToken(*row)
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[key] = (time.monotonic(), found)
    return found


def listed(repository: Repository) -> list[StoredToken]:
    with repository.transaction() as tx:
        rows = tx.connection.execute(select(*_COLUMNS).order_by(api_token.c.created, api_token.c.name)).all()
    return [StoredToken(*row) for row in rows]


def forget_cached() -> None:
    """Drop the tokens remembered, after a revocation made elsewhere (store/oauth.py)."""
    with _cache_lock:
        _cache.clear()


def revoke(repository: Repository, name_or_id: str) -> int:
    """Revoke the live tokens with this id or name; how many were."""
    with _cache_lock:
        _cache.clear()
    with repository.transaction(write=True) as tx:
        revoked = tx.connection.execute(
            update(api_token)
            .where(or_(api_token.c.token_id == name_or_id, api_token.c.name == name_or_id))
            .where(api_token.c.revoked.is_(None))
            .values(revoked=now())
        ).rowcount
    # Again once committed: a lookup in between may have cached the token as still live.
    with _cache_lock:
        _cache.clear()
    return revoked
