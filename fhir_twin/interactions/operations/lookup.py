"""``CodeSystem/$lookup`` (R4 codesystem-operation-lookup.html): a code's name, display,
designations and properties, ``parent`` and ``child`` among them from the hierarchy.

A code system the server does not hold (SNOMED CT, LOINC, ...) is 400 ``not-supported`` naming
it; a code a complete held system lacks is 404, as HAPI FHIR answers.
"""

from __future__ import annotations

from typing import Any

from fhir_twin.errors import Invalid, NotFound
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation, Permission
from fhir_twin.interactions.operations.terminology_service import answer, inputs, one, part
from fhir_twin.store.terminology import definitions
from fhir_twin.terminology.code_system import Concept
from fhir_twin.terminology.errors import not_held


def lookup(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
    given = inputs(request)
    coding = one(given, "coding", dict) or {}
    system = one(given, "system") or coding.get("system")
    code = one(given, "code") or coding.get("code")
    version = one(given, "version") or coding.get("version")
    if not system or not code:
        raise Invalid.at("code", "$lookup needs a system and a code (or a coding with both)")
    wanted = {value for name, value in given if name == "property"}
    with context.repository.transaction() as tx:
        held = definitions(tx.connection).code_system(system, version)
    if held is None:
        raise not_held(f"{system}|{version}" if version else system)
    concept = held.get(code)
    if concept is None:
        if not held.complete:
            raise not_held(system, f"only its {held.content} content is, which lacks {code!r}")
        raise NotFound(f"The code {code!r} is not in the code system {system}")
    parts = [part("name", held.name)]
    if held.version:
        parts.append(part("version", held.version))
    if concept.display:
        parts.append(part("display", concept.display))
    parts += [_designation(designation) for designation in concept.designations]
    parts += [_property(name, value) for name, value in _properties(concept) if not wanted or name in wanted]
    return Response(200, {}, answer(parts))


def _properties(concept: Concept) -> list[tuple[str, dict[str, Any]]]:
    """(code, {value[x]: ...}) for the concept's own properties, its parents and children."""
    found = [
        (prop["code"], {key: value for key, value in prop.items() if key.startswith("value")})
        for prop in concept.properties
        if prop.get("code") not in ("parent", "child")
    ]
    found += [("parent", {"valueCode": code}) for code in concept.parents]
    found += [("child", {"valueCode": code}) for code in concept.children]
    return found


def _property(name: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"name": "property", "part": [part("code", name, "Code"), {"name": "value", **value}]}


def _designation(designation: dict[str, Any]) -> dict[str, Any]:
    parts = []
    if "language" in designation:
        parts.append(part("language", designation["language"], "Code"))
    if "use" in designation:
        parts.append(part("use", designation["use"], "Coding"))
    parts.append(part("value", designation.get("value", "")))
    return {"name": "designation", "part": parts}


LOOKUP = Operation(
    name="lookup",
    levels=frozenset({"type"}),
    methods=frozenset({"GET", "POST"}),
    handler=lookup,
    definition="http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup",
    types=frozenset({"CodeSystem"}),
    permission=Permission(reads=("CodeSystem",)),
)
