"""``CodeSystem/$subsumes`` (R4 codesystem-operation-subsumes.html): how code A relates to code B
in a held code system's ``is-a`` hierarchy: ``equivalent``, ``subsumes`` (B is below A),
``subsumed-by`` (A is below B) or ``not-subsumed``.

Codes come as ``codeA`` / ``codeB`` with ``system`` (or the CodeSystem invoked on), or as
``codingA`` / ``codingB``. The server tests within one code system only, so codings of another
system are 400 naming both. A system the server does not hold, or whose hierarchy means something
other than ``is-a`` (``grouped-by``, ``part-of``, ``classified-with``), is 400 ``not-supported``;
a code the system lacks is 400 ``code-invalid``: R4 answers an error when the relationship cannot
be determined, never a guessed outcome.
"""

from __future__ import annotations

from typing import Any

from fhir_twin.errors import Invalid, Issue
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation, Permission
from fhir_twin.interactions.operations.terminology_service import (
    Inputs,
    answer,
    code_system_instance,
    inputs,
    instance,
    one,
    part,
)
from fhir_twin.store.terminology import definitions
from fhir_twin.terminology.code_system import CodeSystem
from fhir_twin.terminology.errors import not_held
from fhir_twin.terminology.expansion import code_system_held


def subsumes(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
    given = inputs(request)
    system = one(given, "system")
    version = one(given, "version")
    with context.repository.transaction() as tx:
        invoked_on = instance(tx, "CodeSystem", res_id)
        if invoked_on is not None:
            held = code_system_instance(invoked_on, system, res_id)
            if not held.complete:
                raise not_held(held.url, f"only its {held.content} content is")
        else:
            system = system or _coding_system(given)
            if system is None:
                raise Invalid.at("system", "$subsumes needs a system (or codings with one)")
            held = code_system_held(definitions(tx.connection), system, version)
    meaning = held.hierarchy_meaning
    if meaning not in (None, "is-a"):
        raise not_held(held.url, f"its hierarchy means {meaning}, not is-a, so nothing subsumes")
    code_a = _code(given, "A", held)
    code_b = _code(given, "B", held)
    if code_a == code_b:
        outcome = "equivalent"
    elif code_b in held.descendants(code_a):
        outcome = "subsumes"
    elif code_a in held.descendants(code_b):
        outcome = "subsumed-by"
    else:
        outcome = "not-subsumed"
    return Response(200, {}, answer([part("outcome", outcome, "Code")]))


def _coding_system(given: Inputs) -> str | None:
    for side in ("A", "B"):
        coding = one(given, f"coding{side}", dict)
        if coding is not None and isinstance(coding.get("system"), str):
            return str(coding["system"])
    return None


def _code(given: Inputs, side: str, held: CodeSystem) -> str:
    """Code ``side`` (A or B) as the concept's own code in ``held``."""
    name = f"code{side}"
    code: Any = one(given, name)
    coding = one(given, f"coding{side}", dict)
    if coding is not None:
        if code is not None:
            raise Invalid.at(name, f"Give {name} or coding{side}, not both")
        name = f"coding{side}"
        code = coding.get("code")
        if not isinstance(code, str) or not code:
            raise Invalid.at(name, f"{name} has no code")
        if coding.get("system") not in (None, held.url):
            message = f"{name} is of {coding['system']}, not of {held.url}: only codes of one code system are compared"
            raise Invalid.at(name, message)
    if code is None:
        raise Invalid.at(name, f"$subsumes needs code{side} or coding{side}")
    concept = held.get(code)
    if concept is None:
        message = f"The code {code!r} ({name}) is not in the code system {held.url}"
        raise Invalid(message, issues=[Issue("code-invalid", message, expression=(name,))])
    return concept.code


SUBSUMES = Operation(
    name="subsumes",
    levels=frozenset({"type", "instance"}),
    methods=frozenset({"GET", "POST"}),
    handler=subsumes,
    definition="http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes",
    types=frozenset({"CodeSystem"}),
    permission=Permission(reads=("CodeSystem",)),
)
