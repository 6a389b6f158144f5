"""``Subscription/$status`` and ``Subscription/{id}/$status`` (Subscriptions Backport IG,
OperationDefinition-backport-subscription-status.html): a ``searchset`` Bundle of R4B
``SubscriptionStatus`` resources (type ``query-status``), one per topic-based Subscription, with
its status, topic and ``eventsSinceSubscriptionStart``. At type level ``id`` and ``status``
(each repeatable, ORed) choose among them; at instance level they are ignored, and an R4
Subscription, which has no topic, is refused (400).

``status`` and ``status_entry`` also build the first entry of every notification.
"""

from __future__ import annotations

import uuid
from typing import Any

from fhir_twin.errors import Invalid, NotFound
from fhir_twin.fhir import json
from fhir_twin.fhir.bundle import Entry, bundle
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation, Parameter, Permission, parameters
from fhir_twin.interactions.subscription_backport import IG, is_topic_based
from fhir_twin.store import subscription_outbox as outbox


def status(subscription: dict[str, Any], kind: str, events: int, base: str) -> dict[str, Any]:
    """The R4B SubscriptionStatus of a topic-based ``subscription``: ``kind`` (handshake,
    heartbeat, event-notification, query-status) and ``eventsSinceSubscriptionStart`` (a string
    in R4B)."""
    return {
        "resourceType": "SubscriptionStatus",
        "status": subscription.get("status"),
        "type": kind,
        "eventsSinceSubscriptionStart": str(events),
        "subscription": {"reference": f"{base}/Subscription/{subscription['id']}"},
        "topic": subscription.get("criteria"),
    }


def status_entry(resource: dict[str, Any], subscription_id: str, base: str) -> dict[str, Any]:
    """The status as a history Bundle's entry: its ``request`` the ``$status`` call (bdl-3, bdl-4)."""
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": resource,
        "request": {"method": "GET", "url": f"{base}/Subscription/{subscription_id}/$status"},
        "response": {"status": "200"},
    }


def subscription_status(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
    given = [(name, value) for name, value in parameters(request) if isinstance(value, str)]
    with context.repository.transaction() as tx:
        if res_id is not None:
            current = tx.current("Subscription", res_id)
            if current is None or current.body is None:
                raise NotFound(f"Subscription/{res_id} is not known")
            found = [json.loads(current.body)]
            if not is_topic_based(found[0]):
                raise Invalid(f"Subscription/{res_id} is not topic-based: $status reports topic-based Subscriptions")
        else:
            ids = {value for name, value in given if name == "id"}
            statuses = {value for name, value in given if name == "status"}
            found = [
                subscription
                for subscription in outbox.subscriptions(tx)
                if is_topic_based(subscription)
                and (not ids or subscription["id"] in ids)
                and (not statuses or subscription.get("status") in statuses)
            ]
        counted = [(subscription, outbox.events(tx, str(subscription["id"]))) for subscription in found]
    entries = [
        Entry(
            f"urn:uuid:{uuid.uuid4()}",
            json.dumps(status(subscription, "query-status", events, request.base)).decode("utf-8"),
            search_mode="match",
        )
        for subscription, events in counted
    ]
    url = f"{request.base}/Subscription/{res_id}/$status" if res_id else f"{request.base}/Subscription/$status"
    body = bundle("searchset", entries, {"self": url}, len(entries), str(uuid.uuid4()), format_instant(now()))
    return Response(200, {}, body)


SUBSCRIPTION_STATUS = Operation(
    name="status",
    levels=frozenset({"type", "instance"}),
    methods=frozenset({"GET", "POST"}),
    handler=subscription_status,
    definition=f"{IG}/OperationDefinition/backport-subscription-status",
    types=frozenset({"Subscription"}),
    description="The status of topic-based Subscriptions, as SubscriptionStatus resources",
    parameters=(
        Parameter("id", "in", "id", "At type level, the Subscriptions to report (ORed)", max="*"),
        Parameter("status", "in", "code", "At type level, the statuses to report (ORed)", max="*"),
        Parameter("return", "out", "Bundle", "A searchset Bundle of SubscriptionStatus", min=1),
    ),
    permission=Permission(reads=("Subscription",), searches=("Subscription",)),
)
