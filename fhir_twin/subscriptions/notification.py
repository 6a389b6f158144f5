"""A topic-based Subscription's notification (Subscriptions Backport IG, notifications.html):
a ``history`` Bundle whose first entry is an R4B ``SubscriptionStatus`` (its ``request`` the
``$status`` call it answers, as bdl-3 and bdl-4 ask of a history Bundle), then, per
``backport-payload-content``, nothing (``empty``), an entry with the focus's ``fullUrl`` and
``request`` but no resource (``id-only``), or the version itself (``full-resource``).

Three types are sent: ``handshake`` when the Subscription becomes active, ``heartbeat`` after
``backport-heartbeat-period`` seconds without a notification, ``event-notification`` per event,
with its ``notificationEvent`` (``eventNumber``, ``timestamp``, and ``focus`` unless empty).
"""

from __future__ import annotations

import uuid
from typing import Any

from fhir_twin.fhir import json
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.interactions.operations.subscription_status import status, status_entry
from fhir_twin.interactions.subscription import REST_HOOK
from fhir_twin.interactions.subscription_backport import Backport, is_topic_based
from fhir_twin.store import subscription_outbox as outbox
from fhir_twin.store.repository import DatabaseTransaction
from fhir_twin.store.version import Version

_REQUEST_METHODS = {"POST": "POST", "PUT": "PUT", "PATCH": "PATCH", "DELETE": "DELETE"}


def handshake(tx: DatabaseTransaction, version: Version, subscription: dict[str, Any] | None) -> bool:
    """Owe a handshake, and count events from zero, when a topic-based Subscription becomes
    active (created so, or changed to it); True when one is owed."""
    if subscription is None or not is_topic_based(subscription) or subscription.get("status") != "active":
        return False
    before = tx.version(version.res_type, version.res_id, version.version - 1)
    if before is not None and before.body is not None and json.loads(before.body).get("status") == "active":
        return False
    outbox.start_events(tx, version.res_id)
    outbox.owe(tx, version.res_id, version.res_type, version.res_id, version.version, REST_HOOK, kind="handshake")
    return True


def bundle(
    subscription: dict[str, Any],
    wanted: Backport,
    owed: outbox.Owed,
    events: int,
    focus: Version | None,
    base: str,
) -> dict[str, Any]:
    """The notification of ``owed``; ``focus``, the version an event is about; ``events``, the
    count a handshake or heartbeat reports."""
    kind = owed.kind or "event-notification"
    number = owed.event_number if kind == "event-notification" and owed.event_number is not None else events
    found = status(subscription, kind, number, base)
    entries = [status_entry(found, str(subscription["id"]), base)]
    if kind == "event-notification" and focus is not None:
        event: dict[str, Any] = {"eventNumber": str(number), "timestamp": format_instant(focus.last_updated)}
        url = f"{base}/{focus.res_type}/{focus.res_id}"
        if wanted.content != "empty":
            event["focus"] = {"reference": url}
            entries.append(_focus_entry(focus, url, full=wanted.content == "full-resource"))
        found["notificationEvent"] = [event]
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "timestamp": format_instant(now()),
        "entry": entries,
    }


def _focus_entry(focus: Version, url: str, full: bool) -> dict[str, Any]:
    method = _REQUEST_METHODS.get(focus.method, "PUT" if focus.version > 1 else "POST")
    target = focus.res_type if method == "POST" else f"{focus.res_type}/{focus.res_id}"
    entry: dict[str, Any] = {
        "fullUrl": url,
        "request": {"method": method, "url": target},
        "response": {"status": str(focus.status), "etag": f'W/"{focus.version}"'},
    }
    if full and focus.body is not None:
        entry["resource"] = json.loads(focus.body)
    return entry
