"""Why a terminology question has no answer here: a code system not held, or too many codes."""

from __future__ import annotations

from fhir_twin.errors import Invalid, Issue


def not_held(system: str, why: str = "") -> Invalid:
    """400 ``not-supported``: the server does not hold ``system`` (SNOMED CT, LOINC, ...), so it
    says so rather than guess (R4 terminology-service.html: a server need not hold every system)."""
    message = f"The code system {system} is not held by this server{': ' + why if why else ''}"
    return Invalid(message, issues=[Issue("not-supported", message)])


def too_costly(what: str, limit: int) -> Invalid:
    """400 ``too-costly``: an expansion past ``limit`` codes (R4 valueset-operation-expand.html)."""
    message = f"{what} has more than {limit:,} codes, more than this server expands"
    return Invalid(message, issues=[Issue("too-costly", message)])
