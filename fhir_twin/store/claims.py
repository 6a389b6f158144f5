"""Claims on queued rows (the Doctor's queue, the Subscriptions outbox): a worker takes the rows
of one key (a patient, a subscription) compare-and-set, so two workers never work on one key at
once; a claim older than ``STALE_CLAIM`` is a dead worker's, and is taken over."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, and_, or_, select

STALE_CLAIM = timedelta(minutes=2)


def claimable(table: Table, key: str, owner: str, at: datetime) -> ColumnElement[bool]:
    """Rows of ``table`` that ``owner`` may claim at ``at``: unclaimed or stale, of a ``key`` no
    other owner holds. Not held by this owner: SQLite evaluates an update row by row, so a key's
    second row would otherwise see its first just claimed, and stay for a second pass."""
    rows = table.c
    other = table.alias("other")
    held = (
        select(other.c.seq)
        .where(
            other.c[key] == rows[key],
            other.c.claimed_by.is_not(None),
            other.c.claimed_by != owner,
            other.c.claimed_at >= at - STALE_CLAIM,
        )
        .exists()
    )
    return and_(or_(rows.claimed_by.is_(None), rows.claimed_at < at - STALE_CLAIM), ~held)
