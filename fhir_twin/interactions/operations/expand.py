"""``ValueSet/$expand`` (R4 valueset-operation-expand.html): the codes of a value set named by
``url``, by the instance invoked on, or sent as ``valueSet``; ``filter`` keeps codes whose code or
display contains the text (case-insensitive); ``offset`` and ``count`` page the flat
``expansion.contains``, and ``expansion.total`` counts every code that passed the filter.
"""

from __future__ import annotations

import uuid
from typing import Any

from fhir_twin.errors import Invalid, Issue
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation, Permission
from fhir_twin.interactions.operations.terminology_service import Inputs, inputs, instance, one, whole_number
from fhir_twin.store.terminology import definitions
from fhir_twin.terminology.definitions import Definitions
from fhir_twin.terminology.expansion import Code, expand

IDENTITY = ("id", "url", "version", "name", "title", "status")


def expand_operation(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
    given = inputs(request)
    text = one(given, "filter")
    offset = whole_number(given, "offset") or 0
    count = whole_number(given, "count")
    with context.repository.transaction() as tx:
        held = definitions(tx.connection)
        value_set = value_set_of(given, held, instance(tx, "ValueSet", res_id))
        codes = expand(value_set, held)
    if text:
        folded = text.casefold()
        codes = [c for c in codes if folded in c.code.casefold() or folded in (c.display or "").casefold()]
    page = codes[offset:] if count is None else codes[offset : offset + count]
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": format_instant(now()),
        "total": len(codes),
        "offset": offset,
    }
    used = [("filter", text), ("offset", offset), ("count", count)]
    parameters = [{"name": name, **_value(value)} for name, value in used if value is not None]
    if parameters:
        expansion["parameter"] = parameters
    if page:
        expansion["contains"] = [_contains(code) for code in page]
    body = {"resourceType": "ValueSet", **{key: value_set[key] for key in IDENTITY if key in value_set}}
    body.setdefault("status", "active")
    body["expansion"] = expansion
    return Response(200, {}, body)


def value_set_of(given: Inputs, held: Definitions, invoked_on: dict[str, Any] | None) -> dict[str, Any]:
    """The value set asked about: the instance, the ``valueSet`` resource, or ``url`` (stored or packaged)."""
    if invoked_on is not None:
        return invoked_on
    sent = one(given, "valueSet", dict)
    if sent is not None:
        if sent.get("resourceType") != "ValueSet":
            raise Invalid.at("valueSet", "valueSet must be a ValueSet resource")
        return sent
    url = one(given, "url")
    if url is None:
        raise Invalid.at("url", "Name the value set: url, a valueSet resource, or ValueSet/{id}/$expand")
    found = held.value_set(url, one(given, "valueSetVersion"))
    if found is None:
        message = f"The value set {url} is not known to this server"
        raise Invalid(message, issues=[Issue("not-found", message, expression=("url",))])
    return found


def _value(value: Any) -> dict[str, Any]:
    return {"valueInteger": value} if isinstance(value, int) else {"valueString": value}


def _contains(code: Code) -> dict[str, Any]:
    entry = {"system": code.system}
    if code.version:
        entry["version"] = code.version
    entry["code"] = code.code
    if code.display:
        entry["display"] = code.display
    return entry


EXPAND = Operation(
    name="expand",
    levels=frozenset({"type", "instance"}),
    methods=frozenset({"GET", "POST"}),
    handler=expand_operation,
    definition="http://hl7.org/fhir/OperationDefinition/ValueSet-expand",
    types=frozenset({"ValueSet"}),
    permission=Permission(reads=("ValueSet", "CodeSystem")),
)
