"""``ValueSet/$expand`` (R4 valueset-operation-expand.html): the codes of a value set named by
``url``, by the instance invoked on, or sent as ``valueSet``; ``filter`` keeps codes whose code or
display contains the text (case-insensitive); ``offset`` and ``count`` page the flat
``expansion.contains``, and ``expansion.total`` counts every code that passed the filter.

``activeOnly`` leaves inactive codes out; ``displayLanguage`` (else ``Accept-Language``) chooses
each display; ``includeDesignations`` adds each code's designations (in the languages asked for,
when some are). ``excludeNested=false`` nests ``contains`` by the code systems' hierarchies, with
``abstract`` on codes not to be selected; such an expansion is not paged ("Hierarchical expansions
are not subject to paging and servers simply return the entire expansion"), but ``count=0`` still
asks only its size. The default stays flat.
"""

from __future__ import annotations

import uuid
from typing import Any

from fhir_twin.errors import Invalid, Issue
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation, Permission
from fhir_twin.interactions.operations.terminology_service import (
    Inputs,
    flag,
    inputs,
    instance,
    languages,
    one,
    whole_number,
)
from fhir_twin.store.terminology import definitions
from fhir_twin.terminology.definitions import Definitions
from fhir_twin.terminology.expansion import Branch, Code, expand, nest
from fhir_twin.terminology.language import in_language

IDENTITY = ("id", "url", "version", "name", "title", "status")


def expand_operation(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
    given = inputs(request)
    text = one(given, "filter")
    offset = whole_number(given, "offset")
    count = whole_number(given, "count")
    active_only = flag(given, "activeOnly")
    nested = flag(given, "excludeNested") is False
    with_designations = flag(given, "includeDesignations")
    display_language = one(given, "displayLanguage")
    wanted = languages(given, request)
    with context.repository.transaction() as tx:
        held = definitions(tx.connection)
        value_set = value_set_of(given, held, instance(tx, "ValueSet", res_id))
        codes = expand(value_set, held, active_only=bool(active_only), languages=wanted)
        if text:
            folded = text.casefold()
            codes = [c for c in codes if folded in c.code.casefold() or folded in (c.display or "").casefold()]
        branches = nest(codes, held) if nested and count != 0 else None
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": format_instant(now()),
        "total": len(codes),
    }
    if branches is None:
        start = offset or 0
        expansion["offset"] = start
        page = codes[start:] if count is None else codes[start : start + count]
        contains = [_contains(code, None, with_designations, wanted) for code in page]
    else:
        # Paging applies to flat expansions only (R4 valueset-operation-expand.html): not used.
        offset = count = None
        contains = [_branch(branch, with_designations, wanted) for branch in branches]
    used = [
        ("filter", text),
        ("offset", offset),
        ("count", count),
        ("activeOnly", active_only),
        ("excludeNested", False if nested else None),
        ("includeDesignations", with_designations),
        ("displayLanguage", display_language),
    ]
    parameters = [{"name": name, **_value(value)} for name, value in used if value is not None]
    if parameters:
        expansion["parameter"] = parameters
    if contains:
        expansion["contains"] = contains
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
    if isinstance(value, bool):
        return {"valueBoolean": value}
    return {"valueInteger": value} if isinstance(value, int) else {"valueString": value}


def _branch(branch: Branch, with_designations: bool | None, wanted: tuple[str, ...]) -> dict[str, Any]:
    below = [_branch(child, with_designations, wanted) for child in branch.below]
    return _contains(branch.code, below, with_designations, wanted)


def _contains(
    code: Code, below: list[dict[str, Any]] | None, with_designations: bool | None, wanted: tuple[str, ...]
) -> dict[str, Any]:
    entry: dict[str, Any] = {"system": code.system}
    if code.abstract:
        entry["abstract"] = True
    if code.inactive:
        entry["inactive"] = True
    if code.version:
        entry["version"] = code.version
    entry["code"] = code.code
    if code.display:
        entry["display"] = code.display
    if with_designations:
        designations = [
            {key: d[key] for key in ("language", "use", "value") if key in d}
            for d in in_language(code.designations, list(wanted))
        ]
        if designations:
            entry["designation"] = designations
    if below:
        entry["contains"] = below
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
