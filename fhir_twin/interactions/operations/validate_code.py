"""``$validate-code`` on ValueSet (R4 valueset-operation-validate-code.html) and CodeSystem
(codesystem-operation-validate-code.html): is this code (``code`` with ``system`` and
``display``, a ``coding``, or any coding of a ``codeableConcept``) in it? Answers ``result``,
``message`` and the ``display`` the server knows.

Where the code's system is not held (SNOMED CT, LOINC, ...) and the value set needs it, the
answer is false with the message that the code system is not held: the server does not guess.

An inactive code is still valid: ``result`` true, with a ``message`` saying it is inactive (R4:
"If this is provided when result = true, the message carries hints and warnings"). A ``display``
is valid when it is the code's display or one of its designations (those in ``displayLanguage``
when it is given); the ``display`` answered is in ``displayLanguage``, else ``Accept-Language``.
"""

from __future__ import annotations

from typing import Any

from fhir_twin.errors import Invalid
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation, Permission
from fhir_twin.interactions.operations.expand import value_set_of
from fhir_twin.interactions.operations.terminology_service import (
    Inputs,
    answer,
    code_system_instance,
    inputs,
    instance,
    languages,
    one,
    part,
)
from fhir_twin.store.terminology import definitions
from fhir_twin.terminology.definitions import Definitions
from fhir_twin.terminology.expansion import Code, expand
from fhir_twin.terminology.language import display as display_in
from fhir_twin.terminology.language import in_language

Coding = tuple[str | None, str, str | None]  # system, code, display


def validate_code(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
    given = inputs(request)
    codings = _codings(given)
    wanted = languages(given, request)
    # Displays are checked against the designations of the language asked for, when one is.
    checked_in = list(wanted) if one(given, "displayLanguage") else []
    with context.repository.transaction() as tx:
        held = definitions(tx.connection)
        invoked_on = instance(tx, str(res_type), res_id)
        if res_type == "CodeSystem":
            verdicts = [_in_code_system(given, held, invoked_on, coding, wanted, checked_in) for coding in codings]
        else:
            known = _expansion(value_set_of(given, held, invoked_on), held, wanted)
            verdicts = [_in_value_set(known, coding, checked_in) for coding in codings]
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


def _expansion(
    value_set: dict[str, Any], held: Definitions, wanted: tuple[str, ...]
) -> dict[tuple[str, str], Code] | str:
    """The codes of the value set by (system, code), or why it cannot be expanded here."""
    try:
        return {(c.system, c.code): c for c in expand(value_set, held, languages=wanted)}
    except Invalid as error:
        if error.issues and error.issues[0].code == "not-supported":
            return f"{error.diagnostics}: code system not held, so the code cannot be validated"
        raise


def _in_value_set(known: dict[tuple[str, str], Code] | str, coding: Coding, checked_in: list[str]) -> Verdict:
    system, code, display = coding
    if isinstance(known, str):
        return False, known, None
    matches = [key for key in known if key[1] == code and (system is None or key[0] == system)]
    if not matches:
        return False, f"The code {system or ''}#{code} is not in the value set", None
    found = known[matches[0]]
    return _checked(display, found.display, found.designations, checked_in, found.inactive, f"{found.system}#{code}")


def _in_code_system(
    given: Inputs,
    held: Definitions,
    invoked_on: dict[str, Any] | None,
    coding: Coding,
    wanted: tuple[str, ...],
    checked_in: list[str],
) -> Verdict:
    system, code, display = coding
    url: str | None
    if invoked_on is not None:
        code_system = code_system_instance(invoked_on, one(given, "url"), invoked_on.get("id"))
        url = code_system.url
    else:
        url = one(given, "url") or system
        if url is None:
            raise Invalid.at("url", "Name the code system: url, system, or CodeSystem/{id}/$validate-code")
        found = held.code_system(url, one(given, "version"))
        if found is None:
            return False, f"The code system {url} is not held by this server: code system not held", None
        code_system = found
    if system is not None and system != url:
        return False, f"The coding's system {system} is not the code system {url}", None
    concept = code_system.get(code)
    if concept is None:
        if not code_system.complete:
            return False, f"Only the {code_system.content} content of {url} is held: code system not held", None
        return False, f"The code {code!r} is not in the code system {url}", None
    shown = display_in(concept.designations, concept.display, code_system.language, list(wanted))
    return _checked(display, shown, concept.designations, checked_in, concept.inactive, f"{url}#{code}")


def _checked(
    given: str | None,
    known: str | None,
    designations: tuple[dict[str, Any], ...] | list[dict[str, Any]],
    checked_in: list[str],
    inactive: bool,
    named: str,
) -> Verdict:
    """The verdict on a code that is there: its display checked, a hint when it is inactive."""
    valid = {
        text.casefold() for text in (known, *(d.get("value") for d in in_language(designations, checked_in))) if text
    }
    if given is not None and valid and given.casefold() not in valid:
        return False, f"The display {given!r} is not the display of this code, {known!r}", known
    return True, (f"The code {named} is inactive" if inactive else None), known


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
