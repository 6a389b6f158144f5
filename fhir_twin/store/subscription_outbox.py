"""The Subscription outbox: notifications owed, and the Subscriptions that are active.

A write that matches an active Subscription adds a row here in the write's own transaction
(``owe``), so a commit means the notification is owed and a rollback that it is not (the
transactional outbox). Delivery workers ``claim`` a subscription's rows as one
(compare-and-set, as the Doctor's queue does), so no two processes deliver one subscription's
notifications at once and they go out in order; a row is ``delivered`` (deleted) only after its
receiver answered 2xx, so a crash between the send and the delete sends it again: at least once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update

from fhir_twin.fhir import json
from fhir_twin.fhir.instant import now
from fhir_twin.store import claims
from fhir_twin.store.repository import DatabaseTransaction, Repository
from fhir_twin.store.schema import resource, resource_version, subscription_event, subscription_outbox
from fhir_twin.store.version import CURRENT

# A claim older than ``claims.STALE_CLAIM`` is taken over: its worker died or hangs (the POST
# timeout is shorter).
CLAIM_BATCH = 20


@dataclass(frozen=True)
class Owed:
    """One notification owed: the version of the resource that matched."""

    seq: int
    subscription_id: str
    res_type: str
    res_id: str
    version: int
    attempts: int
    kind: str | None = None  # a topic-based Subscription's notification type
    event_number: int | None = None


def owe(
    tx: DatabaseTransaction,
    subscription_id: str,
    res_type: str,
    res_id: str,
    version: int,
    channel: str,
    kind: str | None = None,
    event_number: int | None = None,
) -> None:
    """Owe ``subscription_id`` (of ``channel`` type) a notification of this version, with the
    write in ``tx``; ``kind`` and ``event_number`` for a topic-based Subscription's."""
    at = now()
    row = {
        "subscription_id": subscription_id,
        "res_type": res_type,
        "res_id": res_id,
        "version": version,
        "channel": channel,
        "kind": kind,
        "event_number": event_number,
    }
    tx.stage(subscription_outbox, [{**row, "enqueued": at, "attempts": 0, "due": at}])


def start_events(tx: DatabaseTransaction, subscription_id: str) -> None:
    """Count a topic-based Subscription's events from zero, as it becomes active."""
    e = subscription_event.c
    tx.connection.execute(delete(subscription_event).where(e.subscription_id == subscription_id))
    tx.connection.execute(insert(subscription_event).values(subscription_id=subscription_id, events=0, last_sent=now()))


def next_event(tx: DatabaseTransaction, subscription_id: str) -> int:
    """The number of the Subscription's next event, counted in ``tx``: the row lock holds a
    concurrent write until this one commits, so numbers follow the commit order."""
    e = subscription_event.c
    counted = tx.connection.execute(
        update(subscription_event).where(e.subscription_id == subscription_id).values(events=e.events + 1)
    ).rowcount
    if not counted:
        start_events(tx, subscription_id)
        return next_event(tx, subscription_id)
    return int(tx.connection.execute(select(e.events).where(e.subscription_id == subscription_id)).scalar_one())


def events(tx: DatabaseTransaction, subscription_id: str) -> int:
    """``eventsSinceSubscriptionStart``: how many events the Subscription has been owed."""
    e = subscription_event.c
    found = tx.connection.execute(select(e.events).where(e.subscription_id == subscription_id)).scalar()
    return int(found or 0)


def sent(repository: Repository, subscription_id: str) -> None:
    """Record that the Subscription was just sent a notification (its heartbeat clock restarts)."""
    e = subscription_event.c
    with repository.transaction(write=True) as tx:
        tx.connection.execute(
            update(subscription_event).where(e.subscription_id == subscription_id).values(last_sent=now())
        )


def owe_heartbeat(repository: Repository, subscription_id: str, period: timedelta) -> bool:
    """Owe a heartbeat when the Subscription was sent nothing for ``period`` and owes nothing;
    compare-and-set on ``last_sent``, so one process owes it."""
    e = subscription_event.c
    o = subscription_outbox.c
    at = now()
    with repository.transaction(write=True) as tx:
        idle = ~select(o.seq).where(o.subscription_id == subscription_id).exists()
        taken = tx.connection.execute(
            update(subscription_event)
            .where(e.subscription_id == subscription_id, e.last_sent <= at - period, idle)
            .values(last_sent=at)
        ).rowcount
        if taken:
            owe(tx, subscription_id, "Subscription", subscription_id, 0, "rest-hook", kind="heartbeat")
    return bool(taken)


def subscriptions(tx: DatabaseTransaction, res_type: str = "Subscription") -> list[dict[str, object]]:
    """Every current (not deleted) resource of ``res_type`` (Subscription, SubscriptionTopic), as stored."""
    r = resource.c
    query = (
        select(resource_version.c.body)
        .select_from(CURRENT)
        .where(r.res_type == res_type, r.deleted.is_(False))
        .order_by(r.res_id)
    )
    return [json.loads(body) for body in tx.connection.execute(query).scalars() if body is not None]


def pending(repository: Repository, subscription_id: str | None = None) -> int:
    """How many notifications are owed (to one subscription)."""
    query = select(func.count()).select_from(subscription_outbox)
    if subscription_id is not None:
        query = query.where(subscription_outbox.c.subscription_id == subscription_id)
    with repository.transaction() as tx:
        return int(tx.connection.execute(query).scalar_one())


def claim(
    repository: Repository,
    owner: str,
    channel: str,
    among: Collection[str] | None = None,
    limit: int = CLAIM_BATCH,
) -> list[str]:
    """Claim the owed rows of ``channel`` of up to ``limit`` subscriptions (of those ``among``,
    when given) whose oldest row is due; returns their ids. A subscription another worker holds
    (a claim younger than ``claims.STALE_CLAIM``) is left to it, so one subscription's
    notifications are never sent by two workers at once."""
    o = subscription_outbox.c
    at = now()
    other = subscription_outbox.alias("other")
    claimable = claims.claimable(subscription_outbox, "subscription_id")
    # The head row (oldest) carries the backoff; the rows behind it wait with it, to keep the order.
    ahead = select(other.c.seq).where(other.c.subscription_id == o.subscription_id, other.c.seq < o.seq).exists()
    wanted = select(o.subscription_id).where(o.channel == channel, claimable, ~ahead, o.due <= at)
    if among is not None:
        wanted = wanted.where(o.subscription_id.in_(sorted(among)))
    with repository.transaction() as tx:
        bounds = claims.claim_bounds(owner, at)
        ready = list(tx.connection.execute(wanted.order_by(o.seq).limit(limit), bounds).scalars())
    return claims.take(repository, subscription_outbox, "subscription_id", ready, owner, at) if ready else []


def claimed(repository: Repository, owner: str, subscription_id: str) -> list[Owed]:
    """The rows ``owner`` holds for the subscription, oldest first."""
    o = subscription_outbox.c
    query = (
        select(o.seq, o.subscription_id, o.res_type, o.res_id, o.version, o.attempts, o.kind, o.event_number)
        .where(o.subscription_id == subscription_id, o.claimed_by == owner)
        .order_by(o.seq)
    )
    with repository.transaction() as tx:
        return [Owed(*row) for row in tx.connection.execute(query)]


def delivered(repository: Repository, owner: str, *seqs: int) -> None:
    """Forget notifications their receiver acknowledged: a run of them in one write, since on
    SQLite each write waits its turn at the write gate behind the device bridge and the Doctor."""
    o = subscription_outbox.c
    with repository.transaction(write=True) as tx:
        tx.connection.execute(delete(subscription_outbox).where(o.seq.in_(seqs), o.claimed_by == owner))


def failed(repository: Repository, owner: str, seq: int, error: str, retry_at: datetime) -> None:
    """Count a failed attempt on a notification, to be retried at ``retry_at``."""
    o = subscription_outbox.c
    with repository.transaction(write=True) as tx:
        tx.connection.execute(
            update(subscription_outbox)
            .where(o.seq == seq, o.claimed_by == owner)
            .values(attempts=o.attempts + 1, last_error=error[:2000], due=retry_at)
        )


def release(repository: Repository, owner: str, subscription_id: str) -> None:
    """Hand back what ``owner`` holds of the subscription for a later pass."""
    o = subscription_outbox.c
    with repository.transaction(write=True) as tx:
        tx.connection.execute(
            update(subscription_outbox)
            .where(o.subscription_id == subscription_id, o.claimed_by == owner)
            .values(claimed_by=None, claimed_at=None)
        )


def discard(repository: Repository, subscription_id: str, channel: str | None = None) -> None:
    """Drop every notification owed to a subscription that stopped (``error``, ``off``, deleted),
    or those owed through a ``channel`` it no longer has."""
    o = subscription_outbox.c
    rows = delete(subscription_outbox).where(o.subscription_id == subscription_id)
    if channel is not None:
        rows = rows.where(o.channel == channel)
    with repository.transaction(write=True) as tx:
        tx.connection.execute(rows)
