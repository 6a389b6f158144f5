"""SubscriptionTopic (R4B subscriptiontopic.html), as the Subscriptions Backport IG uses it: what
writes a topic-based Subscription is told of, checked as a topic is stored so one the server
cannot evaluate is refused (400 naming the element) rather than silently never fired.

The server evaluates ``resourceTrigger`` only (``eventTrigger`` needs events it does not have):
- ``resource``: a served type, as its name or its ``http://hl7.org/fhir/StructureDefinition/``
  URL; ``supportedInteraction`` any of create, update, delete (absent: all three);
- ``queryCriteria.previous``/``current``: searches on that type (``status=final`` or
  ``RiskAssessment?status=final``) matched in memory (``search.resource_match``) against the
  versions before and after the write; ``resultForCreate``/``resultForDelete`` (test-passes,
  test-fails) answer for the side that does not exist; ``requireBoth`` as R4B says;
- ``fhirPathCriteria`` over ``%previous`` and ``%current`` (``search.fhirpath.trigger``).
A trigger fires when the interaction is supported and every criterion given holds.
``canFilterBy.filterParameter`` names the search parameters a Subscription may filter on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fhir_twin.errors import Invalid
from fhir_twin.fhir.resource_types import is_resource_type
from fhir_twin.search.fhirpath.trigger import check_trigger
from fhir_twin.search.parameters import parameter
from fhir_twin.search.parser import parse
from fhir_twin.search.query import Search
from fhir_twin.search.resource_match import unsupported

INTERACTIONS = ("create", "update", "delete")
RESULTS = ("test-passes", "test-fails")
_DEFINITION = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True)
class Trigger:
    """One ``resourceTrigger``."""

    resource: str
    interactions: tuple[str, ...]
    previous: Search | None = None
    current: Search | None = None
    result_for_create: str = "test-fails"
    result_for_delete: str = "test-fails"
    require_both: bool = False
    fhirpath: str | None = None


@dataclass(frozen=True)
class Topic:
    url: str
    status: str
    triggers: tuple[Trigger, ...]
    filters: dict[str, str]  # filterParameter -> the resource type it applies to


def topic_of(body: dict[str, Any]) -> Topic:
    """The topic ``body`` defines; 400 naming the element the server cannot evaluate."""
    url = body.get("url")
    if not url:
        raise Invalid.at("SubscriptionTopic.url", "a SubscriptionTopic needs a url: Subscriptions name it by it")
    triggers = tuple(_trigger(item, n) for n, item in enumerate(body.get("resourceTrigger") or []))
    if not triggers:
        raise Invalid.at(
            "SubscriptionTopic.resourceTrigger",
            "this server evaluates resourceTrigger only: a topic needs at least one",
            "not-supported",
        )
    if body.get("eventTrigger"):
        raise Invalid.at("SubscriptionTopic.eventTrigger", "eventTrigger is not supported", "not-supported")
    filters: dict[str, str] = {}
    for n, item in enumerate(body.get("canFilterBy") or []):
        where = f"SubscriptionTopic.canFilterBy[{n}]"
        name = item.get("filterParameter")
        types = [_resource_type(item["resource"], where + ".resource")] if item.get("resource") else []
        types = types or [trigger.resource for trigger in triggers]
        if not name or any(parameter(res_type, name) is None for res_type in types):
            raise Invalid.at(
                where + ".filterParameter", f"{name!r} is not a search parameter of {', '.join(sorted(set(types)))}"
            )
        filters[name] = types[0]
    return Topic(str(url), str(body.get("status") or ""), triggers, filters)


def _trigger(item: dict[str, Any], n: int) -> Trigger:
    where = f"SubscriptionTopic.resourceTrigger[{n}]"
    res_type = _resource_type(item.get("resource") or "", where + ".resource")
    interactions = tuple(item.get("supportedInteraction") or INTERACTIONS)
    for interaction in interactions:
        if interaction not in INTERACTIONS:
            raise Invalid.at(where + ".supportedInteraction", f"{interaction!r} is not create, update or delete")
    query = item.get("queryCriteria") or {}
    results = {}
    for key in ("resultForCreate", "resultForDelete"):
        results[key] = query.get(key) or "test-fails"
        if results[key] not in RESULTS:
            raise Invalid.at(f"{where}.queryCriteria.{key}", f"{results[key]!r} is not test-passes or test-fails")
    fhirpath = item.get("fhirPathCriteria")
    if fhirpath is not None:
        try:
            check_trigger(fhirpath, res_type)
        except ValueError as error:
            raise Invalid.at(where + ".fhirPathCriteria", f"{fhirpath!r} is not usable FHIRPath: {error}") from None
    return Trigger(
        res_type,
        interactions,
        previous=_query(res_type, query.get("previous"), f"{where}.queryCriteria.previous"),
        current=_query(res_type, query.get("current"), f"{where}.queryCriteria.current"),
        result_for_create=results["resultForCreate"],
        result_for_delete=results["resultForDelete"],
        require_both=bool(query.get("requireBoth")),
        fhirpath=fhirpath,
    )


def _resource_type(text: str, where: str) -> str:
    name = text.removeprefix(_DEFINITION)
    if not is_resource_type(name):
        raise Invalid.at(where, f"{text!r} is not a resource type this server serves")
    return name


def _query(res_type: str, text: str | None, where: str) -> Search | None:
    if text is None:
        return None
    return in_memory_search(res_type, text, where)


def in_memory_search(res_type: str, text: str, where: str) -> Search:
    """``text`` (``param=value&…``, with or without ``Type?``) as a search on ``res_type`` that
    ``search.resource_match`` can evaluate; 400 at ``where`` otherwise."""
    head, mark, query_text = text.partition("?")
    if not mark:
        head, query_text = res_type, text
    if head != res_type:
        raise Invalid.at(where, f"{text!r} must search {res_type}")
    try:
        query = parse_qsl(query_text, keep_blank_values=True, strict_parsing=bool(query_text))
        searched = parse((res_type,), query, strict=True, default_count=1, max_count=1)
    except ValueError:
        raise Invalid.at(where, f"{text!r} is not a search query") from None
    except Invalid as error:
        raise Invalid.at(where, f"{text!r}: {error}") from None
    reason = unsupported(searched)
    if reason is not None:
        raise Invalid.at(where, f"{text!r}: {reason} cannot be evaluated for a notification", "not-supported")
    return searched
