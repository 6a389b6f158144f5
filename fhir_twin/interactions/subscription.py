"""The R4 Subscription rules this server can honour (R4 subscription.html), checked as a
Subscription is stored, so one it cannot serve is refused (400) rather than silently never fired.

- ``criteria`` is a search URL of a served type (``RiskAssessment?method=news2&risk=high``),
  parsed here by the server's own search parser, strictly: an unknown parameter would match
  everything, so it is refused naming it.
- ``channel.type`` is ``rest-hook`` or ``websocket``. A rest-hook's ``endpoint`` is an http(s)
  URL, its ``payload`` absent (a notification without a body) or ``application/fhir+json`` (the
  resource), each ``header`` a ``Name: value`` line sent with every notification. A websocket
  Subscription has none of the three: its clients connect to the server's websocket URL (in the
  CapabilityStatement) and are sent ``ping {id}``, with no body or headers.
- The ``subscription-secret`` extension (as Medplum names it) holds the key of the HMAC-SHA256
  ``X-Signature`` header (``fhir_twin.subscriptions.signature``).
- ``status``: the server accepts a ``requested`` Subscription by storing it ``active``
  (subscription.html "Subscription Status"); ``error`` is set by the server after repeated failure.
- Who may subscribe: a Subscription is delivered every matching resource, whoever's it is, so its
  author must be able to search every resource of the criteria's type (a ``user/`` or ``system/``
  grant); a patient-context or narrower credential is refused (403) rather than told of others.
- A topic-based Subscription (Subscriptions Backport IG) names a SubscriptionTopic's canonical URL
  as its ``criteria``: ``subscription_backport`` holds its rules.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir_twin.errors import Forbidden, Invalid
from fhir_twin.fhir.resource_types import is_resource_type
from fhir_twin.interactions import subscription_backport as backport
from fhir_twin.search.parameters import ID
from fhir_twin.search.parser import parse
from fhir_twin.search.query import Search
from fhir_twin.security import context
from fhir_twin.security.access import ALL, narrowing, require
from fhir_twin.store.repository import DatabaseTransaction

SECRET_EXTENSION = "https://www.medplum.com/fhir/StructureDefinition/subscription-secret"
REST_HOOK = "rest-hook"
WEBSOCKET = "websocket"
FHIR_JSON = "application/fhir+json"
# Result parameters shape an answer; a notification has none to shape.
_RESULT_PARAMETERS = frozenset(
    {"_count", "_cursor", "_sort", "_summary", "_total", "_elements", "_include", "_revinclude", "_contained"}
)
_HEADER = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[ \t]*[^\r\n]*")


def accepted(resource: dict[str, Any], tx: DatabaseTransaction) -> dict[str, Any]:
    """``resource`` as it is to be stored: checked (400 naming the element, 403 for an author who
    may not see all it would deliver), ``requested`` made ``active``. A topic-based one (its
    criteria a canonical URL) is checked against its topic, found in ``tx``."""
    if backport.is_topic_based(resource):
        # One that is off or in error is sent nothing, and its topic may be gone (the server sets
        # it ``error`` then): its topic is checked when it is made active again.
        if resource.get("status") in ("requested", "active"):
            topic = backport.topic(tx, str(resource["criteria"]))
            for res_type in sorted({trigger.resource for trigger in topic.triggers}):
                _may_see_all(res_type)
            backport.filters(resource, topic)
        _channel(resource.get("channel") or {}, topic_based=True)
        backport.check_channel(resource.get("channel") or {})
    else:
        searched = criteria(resource.get("criteria") or "")
        _may_see_all(searched.resource_types[0])
        # One being set off or in error needs no channel to be told on.
        offered = tx.sender is None or tx.sender.websocket or resource.get("status") not in ("requested", "active")
        _channel(resource.get("channel") or {}, topic_based=False, websocket=offered)
    for extension in resource.get("extension") or []:
        if extension.get("url") == SECRET_EXTENSION and not extension.get("valueString"):
            raise Invalid.at("Subscription.extension", f"{SECRET_EXTENSION} needs a valueString: the signing key")
    if resource.get("status") == "requested":
        return {**resource, "status": "active"}
    return resource


def _channel(channel: dict[str, Any], topic_based: bool, websocket: bool = False) -> None:
    kind = channel.get("type")
    if kind == WEBSOCKET and not topic_based and not websocket:
        raise Invalid.at(
            "Subscription.channel.type",
            "this server runs no websocket channel (its websocket_port is not set), so nothing would ever be "
            "pinged: use rest-hook, or ask the operator to set websocket_port",
            "not-supported",
        )
    if kind == WEBSOCKET and not topic_based:
        _websocket(channel)
    elif kind == REST_HOOK:
        _rest_hook(channel, topic_based)
    else:
        supported = "rest-hook only for a topic-based Subscription" if topic_based else "rest-hook and websocket only"
        raise Invalid.at(
            "Subscription.channel.type",
            f"channel type {kind!r} is not supported: this server delivers {supported}",
            "not-supported",
        )


def _websocket(channel: dict[str, Any]) -> None:
    """A websocket client binds at the server's URL and is sent a bare ``ping``: nothing to set."""
    for element in ("endpoint", "payload", "header"):
        if channel.get(element):
            raise Invalid.at(
                f"Subscription.channel.{element}",
                f"a websocket Subscription has no {element}: its clients connect to the server's websocket URL "
                "(CapabilityStatement extension capabilitystatement-websocket) and are sent 'ping {id}' alone",
            )


def _rest_hook(channel: dict[str, Any], topic_based: bool) -> None:
    endpoint = channel.get("endpoint") or ""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid.at("Subscription.channel.endpoint", f"a rest-hook needs an http(s) endpoint, not {endpoint!r}")
    payload = channel.get("payload")
    if topic_based and payload != FHIR_JSON:
        raise Invalid.at(
            "Subscription.channel.payload",
            f"a topic-based Subscription is notified with Bundles: its payload must be {FHIR_JSON}",
            "not-supported",
        )
    if payload is not None and payload != FHIR_JSON:
        raise Invalid.at(
            "Subscription.channel.payload",
            f"payload {payload!r} is not supported: leave it out (no body) or give {FHIR_JSON}",
            "not-supported",
        )
    for number, line in enumerate(channel.get("header") or []):
        if not _HEADER.fullmatch(line):
            raise Invalid.at(f"Subscription.channel.header[{number}]", f"{line!r} is not a 'Name: value' header")


def _may_see_all(res_type: str) -> None:
    """403 unless the author's grant reaches every resource of ``res_type``: delivery is not held
    to a patient's compartment."""
    principal = context.current()
    if principal is None:
        return  # the server's own loads and rebuilds, outside any request
    if require(principal, res_type, "s") != ALL or narrowing(principal, res_type, "s") is not None:
        raise Forbidden(
            f"A Subscription on {res_type} is sent every matching {res_type}: the credential may search only "
            f"its patient's, or those its scopes' query matches, so it may not subscribe"
        )


def criteria(text: str, resource_id: str | None = None) -> Search:
    """The search ``text`` (a Subscription's criteria) runs; with ``resource_id``, restricted to
    that resource, which is how a written version is matched: by the same search a client runs."""
    res_type, _, query_text = text.partition("?")
    if not is_resource_type(res_type):
        raise Invalid.at(
            "Subscription.criteria", f"criteria {text!r} must start with a resource type this server serves"
        )
    try:
        query = parse_qsl(query_text, keep_blank_values=True, strict_parsing=bool(query_text))
    except ValueError:
        raise Invalid.at("Subscription.criteria", f"criteria {text!r} is not a search URL") from None
    for name, _ in query:
        if name.split(":")[0] in _RESULT_PARAMETERS:
            raise Invalid.at("Subscription.criteria", f"criteria may not use {name}: it filters nothing")
    if resource_id is not None:
        query.append((ID, resource_id))
    try:
        return parse((res_type,), query, strict=True, default_count=1, max_count=1)
    except Invalid as error:
        raise Invalid.at("Subscription.criteria", f"criteria {text!r}: {error}") from None
