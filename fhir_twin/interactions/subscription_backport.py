"""A topic-based Subscription, as the Subscriptions R5 Backport IG profiles R4's
(http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-backport-subscription.html):

- ``criteria`` is the canonical URL of a stored SubscriptionTopic (``url`` or ``url|version``);
- ``_criteria`` carries ``backport-filter-criteria`` extensions, each a search on one of the
  topic's resources using only the topic's ``canFilterBy`` parameters (``patient=Patient/1``),
  all of which a notified resource must meet;
- ``channel._payload`` carries ``backport-payload-content``: ``empty``, ``id-only`` or
  ``full-resource``; ``channel.payload`` is ``application/fhir+json`` (the notification Bundle);
- ``channel`` extensions ``backport-heartbeat-period`` (seconds without a notification after
  which a ``heartbeat`` is sent), ``backport-timeout`` (seconds the endpoint may take) and
  ``backport-max-count`` (events per notification: the server sends one, so any count holds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_twin.errors import Invalid
from fhir_twin.fhir import json
from fhir_twin.interactions.subscription_topic import Topic, in_memory_search, topic_of
from fhir_twin.search.parser import parse
from fhir_twin.search.query import Search
from fhir_twin.store.repository import DatabaseTransaction

IG = "http://hl7.org/fhir/uv/subscriptions-backport"
PROFILE = f"{IG}/StructureDefinition/backport-subscription"
FILTER_CRITERIA = f"{IG}/StructureDefinition/backport-filter-criteria"
PAYLOAD_CONTENT = f"{IG}/StructureDefinition/backport-payload-content"
HEARTBEAT_PERIOD = f"{IG}/StructureDefinition/backport-heartbeat-period"
TIMEOUT = f"{IG}/StructureDefinition/backport-timeout"
MAX_COUNT = f"{IG}/StructureDefinition/backport-max-count"
CONTENTS = ("empty", "id-only", "full-resource")
_CHANNEL_EXTENSIONS = {HEARTBEAT_PERIOD: "valueUnsignedInt", TIMEOUT: "valueUnsignedInt", MAX_COUNT: "valuePositiveInt"}


@dataclass(frozen=True)
class Backport:
    """What a stored topic-based Subscription asks for."""

    topic: str
    content: str
    heartbeat_period: int | None
    timeout: int | None


def is_topic_based(subscription: dict[str, Any]) -> bool:
    """A topic-based Subscription names a topic's canonical URL (``http:``, ``urn:``…) where R4
    has a search, which starts with a resource type and so has no ``:`` before its ``?``."""
    return ":" in str(subscription.get("criteria") or "").partition("?")[0]


def backport(subscription: dict[str, Any]) -> Backport | None:
    """The backport elements of a stored (already checked) Subscription; None for an R4 one."""
    if not is_topic_based(subscription):
        return None
    channel = subscription.get("channel") or {}
    return Backport(
        topic=str(subscription["criteria"]),
        content=str(next(iter(_values(channel.get("_payload"), PAYLOAD_CONTENT, "valueCode")), "")),
        heartbeat_period=next(iter(_values(channel, HEARTBEAT_PERIOD, "valueUnsignedInt")), None),
        timeout=next(iter(_values(channel, TIMEOUT, "valueUnsignedInt")), None),
    )


def find_topic(tx: DatabaseTransaction, canonical: str) -> Topic | None:
    """The stored topic a canonical (``url`` or ``url|version``) names, if any."""
    url, _, version = canonical.partition("|")
    query = [("url", url)] + ([("version", version)] if version else [])
    page = tx.search(parse(("SubscriptionTopic",), query, strict=True, default_count=2, max_count=2), "")
    for found in page.matches:
        if found.body is not None:
            return topic_of(json.loads(found.body))
    return None


def topic(tx: DatabaseTransaction, canonical: str) -> Topic:
    """The topic of a Subscription's ``criteria``: 400 when there is none, or it is retired."""
    found = find_topic(tx, canonical)
    if found is None:
        raise Invalid.at("Subscription.criteria", f"no SubscriptionTopic has the url {canonical!r}", "not-found")
    if found.status == "retired":
        raise Invalid.at("Subscription.criteria", f"the SubscriptionTopic {canonical!r} is retired")
    return found


def filters(subscription: dict[str, Any], found: Topic) -> dict[str, list[Search]]:
    """The Subscription's filters, per resource type: 400 naming one that uses a parameter the
    topic's ``canFilterBy`` does not offer, or a search that cannot be evaluated."""
    searches: dict[str, list[Search]] = {}
    for n, extension in enumerate(_extensions(subscription.get("_criteria"), FILTER_CRITERIA)):
        where = f"Subscription.criteria.extension[{n}]"
        text = extension.get("valueString")
        if not isinstance(text, str) or not text:
            raise Invalid.at(where, f"{FILTER_CRITERIA} needs a valueString: a search such as 'patient=Patient/1'")
        head, mark, query_text = text.partition("?")
        names = [part.partition("=")[0].partition(":")[0] for part in (query_text if mark else text).split("&")]
        for name in names:
            if name not in found.filters:
                offered = ", ".join(sorted(found.filters)) or "none"
                raise Invalid.at(
                    where, f"the topic {found.url!r} cannot filter by {name!r} (its canFilterBy offers: {offered})"
                )
        res_type = head if mark else found.filters[names[0]]
        searches.setdefault(res_type, []).append(in_memory_search(res_type, text, where))
    return searches


def check_channel(channel: dict[str, Any]) -> None:
    """400 unless ``backport-payload-content`` is one of ``CONTENTS`` and each channel extension
    the IG defines has its positive whole number."""
    contents = _values(channel.get("_payload"), PAYLOAD_CONTENT, "valueCode")
    if len(contents) != 1 or contents[0] not in CONTENTS:
        raise Invalid.at(
            "Subscription.channel.payload.extension",
            f"a topic-based Subscription needs one {PAYLOAD_CONTENT} extension, a valueCode of {', '.join(CONTENTS)}",
        )
    for url, kind in _CHANNEL_EXTENSIONS.items():
        for value in _values(channel, url, kind):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise Invalid.at("Subscription.channel.extension", f"{url} needs a {kind} of at least 1")


def _extensions(element: Any, url: str) -> list[dict[str, Any]]:
    if not isinstance(element, dict):
        return []
    return [item for item in element.get("extension") or [] if isinstance(item, dict) and item.get("url") == url]


def _values(element: Any, url: str, kind: str) -> list[Any]:
    return [item.get(kind) for item in _extensions(element, url)]
