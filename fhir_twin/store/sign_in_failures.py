"""Failed sign-ins at the authorization server, counted per subject (a user name or an address)
in the database, so every server process sees the same count (security/oauth/sign_in_limit.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import oauth_sign_in_failure as failure


def count(repository: Repository, subject: str, since: datetime) -> tuple[int, datetime | None]:
    """The failures of ``subject`` counted since ``since``, and the last one's time."""
    with repository.transaction() as tx:
        row = tx.connection.execute(
            select(failure.c.failures, failure.c.last).where(failure.c.subject == subject, failure.c.last > since)
        ).first()
    return (row[0], row[1]) if row is not None else (0, None)


def add(repository: Repository, subject: str, at: datetime, since: datetime) -> None:
    """One more failure at ``at``; a count whose last failure is before ``since`` starts again.
    Each step is one statement, so failures counted at once by several processes are all kept."""
    dialect = postgresql if repository.engine.dialect.name == "postgresql" else sqlite
    with repository.transaction(write=True) as tx:
        counted = tx.connection.execute(
            update(failure)
            .where(failure.c.subject == subject, failure.c.last > since)
            .values(failures=failure.c.failures + 1, last=at)
        ).rowcount
        if not counted:
            counted = tx.connection.execute(
                update(failure).where(failure.c.subject == subject).values(failures=1, last=at)
            ).rowcount
        if not counted:
            # RETURNING, not rowcount: psycopg leaves rowcount -1 here on PostgreSQL.
            counted = (
                tx.connection.execute(
                    dialect.insert(failure)
                    .values(subject=subject, failures=1, last=at)
                    .on_conflict_do_nothing(index_elements=["subject"])
                    .returning(failure.c.subject)
                ).first()
                is not None
            )
    if not counted:  # another process counted the first failure at the same moment: count on it
        add(repository, subject, at, since)


def clear(repository: Repository, *subjects: str) -> None:
    with repository.transaction(write=True) as tx:
        tx.connection.execute(delete(failure).where(failure.c.subject.in_(subjects)))
