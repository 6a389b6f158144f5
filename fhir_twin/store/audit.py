"""The audit trail's storage: AuditEvents are stored resources (read and searched like any other),
each covered by one link of the hash chain in ``audit_chain``.

Links are appended under a lock held to the end of the transaction (PostgreSQL; SQLite admits
one writer at a time anyway), so two processes never both extend the same last link.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy import and_, func, select

from fhir_twin.store.driver import first_row
from fhir_twin.store.indexing import insert_many
from fhir_twin.store.repository import DatabaseTransaction, Repository
from fhir_twin.store.schema import audit_chain, resource, resource_version

_CHAIN_LOCK = "audit-chain"
# Built once: every write's record asks it, holding SQLite's write gate, and a statement built
# anew costs SQLAlchemy its construction and cache key each time.
_LAST_LINK = select(audit_chain.c.seq, audit_chain.c.link).order_by(audit_chain.c.seq.desc()).limit(1)


def append(tx: DatabaseTransaction, events: list[tuple[str, str]], link: Callable[[str, str], str]) -> None:
    """Chain ``events`` (AuditEvent id, its SHA-256 digest) after the last link, in ``tx``."""
    if not events:
        return
    tx.lock(_CHAIN_LOCK)
    last = first_row(tx.connection, _LAST_LINK, {})
    seq, previous = (last[0], last[1]) if last else (0, "0" * 64)
    rows = []
    for res_id, body_digest in events:
        seq += 1
        previous = link(previous, body_digest)
        rows.append({"seq": seq, "res_id": res_id, "digest": body_digest, "link": previous})
    insert_many(tx.connection, audit_chain, rows)


def link_at(repository: Repository, seq: int | None = None) -> tuple[int, str] | None:
    """The link numbered ``seq`` (the last link, when None) with its number; None if there is none."""
    query = select(audit_chain.c.seq, audit_chain.c.link)
    query = query.order_by(audit_chain.c.seq.desc()).limit(1) if seq is None else query.where(audit_chain.c.seq == seq)
    with repository.transaction() as tx:
        row = tx.connection.execute(query).first()
    return (row[0], row[1]) if row else None


def size(repository: Repository) -> int:
    """How many links the chain holds."""
    with repository.transaction() as tx:
        return int(tx.connection.execute(select(func.count()).select_from(audit_chain)).scalar_one())


def chained(repository: Repository, batch: int = 5000) -> Iterator[tuple[int, str, str, str, str | None]]:
    """Every link in order with the stored body of its AuditEvent (None when that is gone)."""
    joined = audit_chain.outerjoin(
        resource_version,
        and_(
            resource_version.c.res_type == "AuditEvent",
            resource_version.c.res_id == audit_chain.c.res_id,
            resource_version.c.version == 1,
        ),
    )
    after = 0
    while True:
        with repository.transaction() as tx:
            rows = tx.connection.execute(
                select(
                    audit_chain.c.seq,
                    audit_chain.c.res_id,
                    audit_chain.c.digest,
                    audit_chain.c.link,
                    resource_version.c.body,
                )
                .select_from(joined)
                .where(audit_chain.c.seq > after)
                .order_by(audit_chain.c.seq)
                .limit(batch)
            ).all()
        if not rows:
            return
        for row in rows:
            yield row[0], row[1], row[2], row[3], row[4]
        after = rows[-1][0]


def unchained(repository: Repository) -> list[str]:
    """Ids of stored AuditEvents that no link covers."""
    with repository.transaction() as tx:
        return list(
            tx.connection.execute(
                select(resource.c.res_id)
                .where(resource.c.res_type == "AuditEvent", resource.c.res_id.not_in(select(audit_chain.c.res_id)))
                .order_by(resource.c.res_id)
            ).scalars()
        )


def rewritten(repository: Repository) -> list[str]:
    """Ids of AuditEvents with any version but the first: a record is written once, so a later
    version (or a deletion) was made behind the API's back."""
    with repository.transaction() as tx:
        later = select(resource_version.c.res_id).where(
            resource_version.c.res_type == "AuditEvent", resource_version.c.version != 1
        )
        moved = select(resource.c.res_id).where(
            resource.c.res_type == "AuditEvent", (resource.c.version != 1) | resource.c.deleted
        )
        return sorted(set(tx.connection.execute(later).scalars()) | set(tx.connection.execute(moved).scalars()))
