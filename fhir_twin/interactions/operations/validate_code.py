"""``$validate-code`` on ValueSet (R4 valueset-operation-validate-code.html) and CodeSystem
(codesystem-operation-validate-code.html): is this code (``code`` with ``system`` and
``display``, a ``coding``, or any coding of a ``codeableConcept``) in it? Answers ``result``,
``message`` and the ``display`` the server knows.

Where the code's system is not held (SNOMED CT, LOINC, ...) and the value set needs it, the
answer is false with the message that the code system is not held: the server does not guess.
"""

from __future__ import annotations

from typing import Any

from fhir_twin.errors import Invalid
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation, Permission
from fhir_twin.interactions.operations.expand import value_set_of
from fhir_twin.interactions.operations.terminology_service import Inputs, answer, inputs, instance, one, part
from fhir_twin.store.terminology import definitions
from fhir_twin.terminology.definitions import Definitions
from fhir_twin.terminology.expansion import expand

Coding = tuple[str | None, str, str | None]  # system, code, display


def validate_code(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
    given = inputs(request)
    codings = _codings(given)
    with context.repository.transaction() as tx:
        held = definitions(tx.connection)
        invoked_on = instance(tx, str(res_type), res_id)
        if res_type == "CodeSystem":
            verdicts = [_in_code_system(given, held, invoked_on, coding) for coding in codings]
        else:
            known = _expansion(value_set_of(given, held, invoked_on), held)
            verdicts = [_in_value_set(known, coding) for coding in codings]
    result, message, display = next((v for v in verdicts if v[0]), verdicts[0])
    parts = [part("result", result, "Boolean")]
    if message:
        parts.append(part("message", message))
    if display:
        parts.append(part("display", display))
    return Response(200, {}, answer(parts))


def _codings(given: Inputs) -> list[Coding]:
    concept = one(given, "codeableConcept", dict)
    if concept is not None:
        codings = [c for c in concept.get("coding", []) if isinstance(c, dict) and c.get("code")]
        if not codings:
            raise Invalid.at("codeableConcept", "codeableConcept has no coding with a code")
        return [(c.get("system"), c["code"], c.get("display")) for c in codings]
    coding = one(given, "coding", dict)
    if coding is not None:
        if not coding.get("code"):
            raise Invalid.at("coding", "coding has no code")
        return [(coding.get("system"), coding["code"], coding.get("display"))]
    code = one(given, "code")
    if code is None:
        raise Invalid.at("code", "$validate-code needs a code, a coding or a codeableConcept")
    return [(one(given, "system"), code, one(given, "display"))]


Verdict = tuple[bool, str | None, str | None]


def _expansion(value_set: dict[str, Any], held: Definitions) -> dict[tuple[str, str], str | None] | str:
    """Display per (system, code) of the value set, or why it cannot be expanded here."""
    try:
        return {(c.system, c.code): c.display for c in expand(value_set, held)}
    except Invalid as error:
        if error.issues and error.issues[0].code == "not-supported":
            return f"{error.diagnostics}: code system not held, so the code cannot be validated"
        raise


def _in_value_set(known: dict[tuple[str, str], str | None] | str, coding: Coding) -> Verdict:
    system, code, display = coding
    if isinstance(known, str):
        return False, known, None
    matches = [key for key in known if key[1] == code and (system is None or key[0] == system)]
    if not matches:
        return False, f"The code {system or ''}#{code} is not in the value set", None
    return _display_checked(display, known[matches[0]])


def _in_code_system(given: Inputs, held: Definitions, invoked_on: dict[str, Any] | None, coding: Coding) -> Verdict:
    system, code, display = coding
    url = (invoked_on or {}).get("url") or one(given, "url") or system
    if url is None:
        raise Invalid.at("url", "Name the code system: url, system, or CodeSystem/{id}/$validate-code")
    code_system = held.code_system(url, one(given, "version"))
    if code_system is None:
        return False, f"The code system {url} is not held by this server: code system not held", None
    concept = code_system.get(code)
    if concept is None:
        if not code_system.complete:
            return False, f"Only the {code_system.content} content of {url} is held: code system not held", None
        return False, f"The code {code!r} is not in the code system {url}", None
    return _display_checked(display, concept.display)


def _display_checked(given: str | None, known: str | None) -> Verdict:
    if given is not None and known is not None and given.casefold() != known.casefold():
        return False, f"The display {given!r} is not the display of this code, {known!r}", known
    return True, None, known


VALIDATE_CODE = Operation(
    name="validate-code",
    levels=frozenset({"type", "instance"}),
    methods=frozenset({"GET", "POST"}),
    handler=validate_code,
    definition="http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code",
    types=frozenset({"ValueSet", "CodeSystem"}),
    permission=Permission(reads=("ValueSet", "CodeSystem")),
    definition_for=(("CodeSystem", "http://hl7.org/fhir/OperationDefinition/CodeSystem-validate-code"),),
)
