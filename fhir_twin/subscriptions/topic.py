"""Matching a write against topic-based Subscriptions (Subscriptions Backport IG, "Topics").

A write fires a ``resourceTrigger`` of a SubscriptionTopic when its interaction (create, update,
delete) is supported and each criterion given holds (R4B subscriptiontopic.html): the
``queryCriteria.previous`` search met by the version replaced and ``current`` by the version
written (``resultForCreate``/``resultForDelete`` standing in for the side that does not exist;
either side suffices unless ``requireBoth``), and ``fhirPathCriteria`` true over ``%previous`` and
``%current``. A Subscription on that topic is then owed an event if the resource meets its
filters (``backport-filter-criteria``): the version written, or for a delete the one deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fhir_twin.errors import FhirError
from fhir_twin.interactions.subscription_backport import backport, filters
from fhir_twin.interactions.subscription_topic import Topic, Trigger, topic_of
from fhir_twin.search.fhirpath.trigger import compile_trigger
from fhir_twin.search.query import Search
from fhir_twin.search.resource_match import matches
from fhir_twin.store import subscription_outbox as outbox
from fhir_twin.store.repository import DatabaseTransaction

log = logging.getLogger("fhir_twin.subscriptions")


@dataclass(frozen=True)
class TopicWatch:
    """An active topic-based Subscription, as it applies to one resource type."""

    subscription_id: str
    triggers: tuple[Trigger, ...]
    filters: tuple[Search, ...]


def watches(tx: DatabaseTransaction) -> dict[str, list[TopicWatch]]:
    """The active topic-based Subscriptions, per resource type their topic triggers on."""
    topics: dict[str, Topic] = {}
    for body in outbox.subscriptions(tx, "SubscriptionTopic"):
        try:
            found = topic_of(body)
        except FhirError:
            continue  # stored before this server checked topics: it triggers nothing
        topics[found.url] = topics.get(found.url, found)
        if body.get("version"):
            topics[f"{found.url}|{body['version']}"] = found
    found_watches: dict[str, list[TopicWatch]] = {}
    for subscription in outbox.subscriptions(tx):
        wanted = backport(subscription)
        if wanted is None or subscription.get("status") != "active" or wanted.topic not in topics:
            continue
        topic = topics[wanted.topic]
        try:
            searches = filters(subscription, topic)
        except FhirError:
            continue
        for res_type in {trigger.resource for trigger in topic.triggers}:
            triggers = tuple(trigger for trigger in topic.triggers if trigger.resource == res_type)
            watch = TopicWatch(str(subscription["id"]), triggers, tuple(searches.get(res_type, ())))
            found_watches.setdefault(res_type, []).append(watch)
    return found_watches


def interaction(previous: dict[str, Any] | None, current: dict[str, Any] | None) -> str:
    if current is None:
        return "delete"
    return "create" if previous is None else "update"


def notified(watch: TopicWatch, previous: dict[str, Any] | None, current: dict[str, Any] | None) -> bool:
    """Whether the write from ``previous`` to ``current`` (None: absent) owes ``watch`` an event."""
    done = interaction(previous, current)
    if not any(fires(trigger, done, previous, current) for trigger in watch.triggers):
        return False
    focus = current if current is not None else previous
    return all(matches(search, focus) for search in watch.filters)


def fires(trigger: Trigger, done: str, previous: dict[str, Any] | None, current: dict[str, Any] | None) -> bool:
    if done not in trigger.interactions:
        return False
    if trigger.previous is not None or trigger.current is not None:
        before = _side(trigger.previous, previous, trigger.result_for_create, trigger.require_both)
        after = _side(trigger.current, current, trigger.result_for_delete, trigger.require_both)
        if not ((before and after) if trigger.require_both else (before or after)):
            return False
    return trigger.fhirpath is None or compile_trigger(trigger.fhirpath)(previous, current)


def _side(search: Search | None, version: dict[str, Any] | None, result_when_absent: str, both: bool) -> bool:
    """One side of ``queryCriteria``: a side without a search holds only when both must (it
    cannot make either-side true alone); a version that does not exist holds as
    ``result_when_absent`` says."""
    if search is None:
        return both
    if version is None:
        return result_when_absent == "test-passes"
    return matches(search, version)
