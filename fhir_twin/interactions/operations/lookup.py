"""``CodeSystem/$lookup`` (R4 codesystem-operation-lookup.html): a code's name, display,
designations and properties, ``parent`` and ``child`` among them from the hierarchy.

Invoked on a stored CodeSystem (``CodeSystem/{id}/$lookup``, as later FHIR versions define it; R4
defines the type level only) it looks in that resource. ``displayLanguage`` (else ``Accept-Language``) chooses the
display (see ``fhir_twin.terminology.language``). ``property`` asks for some of the answer only:
``name`` and ``display`` always come (1..1), ``version``, ``designation`` (``lang.X``: those in
language X), ``definition``, ``parent``, ``child``, ``inactive`` and the code system's own
properties when asked for; without ``property`` the server answers all but ``definition``.

A code system the server does not hold (SNOMED CT, LOINC, ...) is 400 ``not-supported`` naming
it; a code a complete held system lacks is 404, as HAPI FHIR answers.
"""

from __future__ import annotations

from typing import Any

from fhir_twin.errors import Invalid, NotFound
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation, Permission
from fhir_twin.interactions.operations.terminology_service import (
    answer,
    code_system_instance,
    inputs,
    instance,
    languages,
    one,
    part,
)
from fhir_twin.store.terminology import definitions
from fhir_twin.terminology.code_system import CodeSystem, Concept
from fhir_twin.terminology.errors import not_held
from fhir_twin.terminology.language import display, in_language


def lookup(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
    given = inputs(request)
    coding = one(given, "coding", dict) or {}
    system = one(given, "system") or coding.get("system")
    code = one(given, "code") or coding.get("code")
    version = one(given, "version") or coding.get("version")
    wanted = {value for name, value in given if name == "property"}
    shown_in = languages(given, request)
    with context.repository.transaction() as tx:
        invoked_on = instance(tx, "CodeSystem", res_id)
        if invoked_on is not None:
            held: CodeSystem | None = code_system_instance(invoked_on, system, res_id)
            system = invoked_on["url"]
        else:
            if not system or not code:
                raise Invalid.at("code", "$lookup needs a system and a code (or a coding with both)")
            held = definitions(tx.connection).code_system(system, version)
    if not code:
        raise Invalid.at("code", "$lookup needs a code (or a coding with one)")
    if held is None:
        raise not_held(f"{system}|{version}" if version else str(system))
    concept = held.get(code)
    if concept is None:
        if not held.complete:
            raise not_held(str(system), f"only its {held.content} content is, which lacks {code!r}")
        raise NotFound(f"The code {code!r} is not in the code system {system}")

    def asked(name: str) -> bool:
        return not wanted or name in wanted

    parts = [part("name", held.name)]
    if held.version and asked("version"):
        parts.append(part("version", held.version))
    shown = display(concept.designations, concept.display, held.language, list(shown_in))
    if shown:
        parts.append(part("display", shown))
    if asked("designation"):
        designations = concept.designations
    else:
        chosen = [name.removeprefix("lang.").lower() for name in wanted if name.startswith("lang.")]
        designations = in_language(concept.designations, chosen) if chosen else []
    parts += [_designation(designation) for designation in designations]
    parts += [_property(name, value) for name, value in _properties(concept, wanted) if asked(name)]
    return Response(200, {}, answer(parts))


def _properties(concept: Concept, wanted: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """(code, {value[x]: ...}) for the concept's own properties, its parents and children, and
    ``definition`` and the derived ``inactive`` when asked for by name."""
    found = [
        (prop["code"], {key: value for key, value in prop.items() if key.startswith("value")})
        for prop in concept.properties
        if prop.get("code") not in ("parent", "child")
    ]
    found += [("parent", {"valueCode": code}) for code in concept.parents]
    found += [("child", {"valueCode": code}) for code in concept.children]
    if "definition" in wanted and concept.definition:
        found.append(("definition", {"valueString": concept.definition}))
    if "inactive" in wanted and not any(name == "inactive" for name, _ in found):
        found.append(("inactive", {"valueBoolean": concept.inactive}))
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
    levels=frozenset({"type", "instance"}),
    methods=frozenset({"GET", "POST"}),
    handler=lookup,
    definition="http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup",
    types=frozenset({"CodeSystem"}),
    permission=Permission(reads=("CodeSystem",)),
)
