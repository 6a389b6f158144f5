"""Matching a written version against the active Subscriptions, in the write's transaction.

Each version written (``version_written``) is matched by running each active Subscription's
criteria, restricted to the written resource's ``_id``, in the write's own transaction: the same
search a client would run, seeing the write. A match owes a notification (an outbox row) in that
transaction, so it commits or rolls back with the write.

Topic-based Subscriptions (``topic``) are matched in the same transaction; each event gets the
Subscription's next event number there, and a Subscription becoming active is owed a handshake.

R4 subscription.html: only an ``active`` Subscription whose ``end`` has not passed matches; a write
after its ``end`` owes nothing. A Subscription set to anything but ``active`` (``off``, ``error``)
or deleted has what it was owed dropped once that write commits.

The active set is cached per process: a write of a type no Subscription watches costs a dict
lookup. A Subscription written in this process clears the cache when it commits; one written by
another process is seen within ``CACHE_SECONDS``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_twin.errors import FhirError
from fhir_twin.fhir import json
from fhir_twin.fhir.instant import now, parse_range
from fhir_twin.interactions.subscription import REST_HOOK, criteria
from fhir_twin.interactions.subscription_backport import is_topic_based
from fhir_twin.signals import version_written
from fhir_twin.store import subscription_outbox as outbox
from fhir_twin.store.repository import DatabaseTransaction, Repository
from fhir_twin.store.version import Version
from fhir_twin.store.worker import Worker, wake
from fhir_twin.subscriptions import topic
from fhir_twin.subscriptions.notification import handshake
from fhir_twin.subscriptions.topic import TopicWatch, notified

CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Watch:
    """An active Subscription: its id, criteria, channel type and ``end`` (naive UTC), if it has one."""

    subscription_id: str
    criteria: str
    channel: str
    end: datetime | None = None


class SubscriptionMatcher:
    """Listens to ``version_written`` from one Repository (and the worker threads' own, ``listen``);
    keep a reference to stay connected. ``worker``: the delivery worker class to wake after a
    commit that owed notifications."""

    def __init__(self, repository: Repository, worker: type[Worker]) -> None:
        self.repository = repository
        self.worker = worker
        self._lock = threading.Lock()
        self._watches: tuple[dict[str, list[Watch]], dict[str, list[TopicWatch]]] | None = None
        self._loaded = 0.0
        self.listen(repository)

    def listen(self, repository: Repository) -> None:
        """Match the writes of ``repository`` too: one on the same database (a worker thread's, such
        as the Doctor's, whose RiskAssessments are matched like any client's writes)."""
        version_written.connect(self.on_written, sender=repository)

    def on_written(
        self, sender: object, *, tx: DatabaseTransaction, version: Version, resource: dict[str, Any] | None
    ) -> None:
        if version.res_type in ("Subscription", "SubscriptionTopic"):
            tx.after_commit(self.forget)
        if version.res_type == "Subscription" and (version.deleted or (resource or {}).get("status") != "active"):
            tx.after_commit(lambda: outbox.discard(self.repository, version.res_id))
        if version.res_type == "Subscription" and not version.deleted and handshake(tx, version, _body(version)):
            tx.after_commit(self._wake)
        topic_watches = self._active(tx)[1].get(version.res_type)
        if topic_watches and self._notify_topics(tx, version, resource, topic_watches):
            tx.after_commit(self._wake)
        if version.deleted:
            return
        watches = self._active(tx)[0].get(version.res_type)
        if not watches:
            return
        owed = False
        at = now()
        for watch in watches:
            if watch.end is not None and watch.end <= at:
                continue
            query = criteria(watch.criteria, version.res_id)
            if tx.search(query, "").matches:
                outbox.owe(tx, watch.subscription_id, version.res_type, version.res_id, version.version, watch.channel)
                owed = True
        if owed:
            tx.after_commit(self._wake)

    def _notify_topics(
        self, tx: DatabaseTransaction, version: Version, resource: dict[str, Any] | None, found: list[TopicWatch]
    ) -> bool:
        """Owe each topic-based Subscription the write notifies its next event."""
        current = None if version.deleted else resource or _body(version)
        before = tx.version(version.res_type, version.res_id, version.version - 1)
        previous = None if before is None or before.deleted else _body(before)
        owed = False
        for watch in found:
            if notified(watch, previous, current):
                number = outbox.next_event(tx, watch.subscription_id)
                outbox.owe(
                    tx, watch.subscription_id, version.res_type, version.res_id, version.version, REST_HOOK,
                    kind="event-notification", event_number=number,
                )  # fmt: skip
                owed = True
        return owed

    def forget(self) -> None:
        """Reload the active Subscriptions at the next write."""
        with self._lock:
            self._watches = None

    def _active(self, tx: DatabaseTransaction) -> tuple[dict[str, list[Watch]], dict[str, list[TopicWatch]]]:
        with self._lock:
            if self._watches is not None and time.monotonic() - self._loaded < CACHE_SECONDS:
                return self._watches
        watches: dict[str, list[Watch]] = {}
        for subscription in outbox.subscriptions(tx):
            text = str(subscription.get("criteria") or "")
            if subscription.get("status") != "active" or is_topic_based(subscription):
                continue
            try:
                criteria(text)
            except FhirError:
                continue  # stored before this server checked criteria: it can match nothing
            channel = subscription.get("channel")
            kind = str(channel.get("type")) if isinstance(channel, dict) else ""
            watch = Watch(str(subscription["id"]), text, kind, end_of(subscription))
            watches.setdefault(text.partition("?")[0], []).append(watch)
        active = (watches, topic.watches(tx))
        with self._lock:
            self._watches, self._loaded = active, time.monotonic()
        return active

    def _wake(self) -> None:
        wake(self.repository, self.worker)


def _body(version: Version) -> dict[str, Any] | None:
    return json.loads(version.body) if version.body is not None else None


def end_of(subscription: dict[str, Any]) -> datetime | None:
    """When the Subscription is to be turned off (R4 ``Subscription.end``, an instant), naive UTC."""
    end = subscription.get("end")
    return parse_range(str(end))[0] if end else None
