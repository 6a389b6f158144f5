"""The JSON type of every primitive value (R4 json.html#primitive).

FHIR JSON represents ``boolean`` as JSON true/false, ``integer``, ``unsignedInt`` and
``positiveInt`` as JSON numbers without a fraction, ``decimal`` as a JSON number, and every other
primitive as a JSON string. fhir.resources validates in pydantic's lax mode, which takes
``"yes"`` for true and ``"+2"`` for 2, and the store would then keep text where a number or a
boolean belongs. This check, over what ``elements.walk`` visits, refuses them.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from fhir_twin.errors import Issue
from fhir_twin.fhir.elements import Visit

# JSON type each primitive takes: bool, int (a number without fraction) or a number; else str.
_EXPECTED: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "integer": (int,),
    "unsignedInt": (int,),
    "positiveInt": (int,),
    "decimal": (int, Decimal, float),
}
_WORDS = {bool: "true or false", int: "a whole JSON number", str: "a JSON string"}


def json_type_issues(visits: Iterable[Visit]) -> list[Issue]:
    """Primitive values of the wrong JSON type among ``visits`` (``elements.walk`` of a resource)."""
    issues: list[Issue] = []
    for path, element, value, _, _ in visits:
        if element is None or not element.primitive or value is None or element.type == "xhtml":
            continue  # nulls are the empty-element rule's; the narrative is text
        child = element.type
        expected = _EXPECTED.get(child, (str,))
        if type(value) not in expected:
            want = "a JSON number" if child == "decimal" else _WORDS[expected[0]]
            issues.append(Issue("value", f"{path} must be {want} ({child}), not {value!r}", expression=(path,)))
    return issues
