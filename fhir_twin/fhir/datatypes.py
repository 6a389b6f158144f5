"""The JSON type of every primitive value (R4 json.html#primitive).

FHIR JSON represents ``boolean`` as JSON true/false, ``integer``, ``unsignedInt`` and
``positiveInt`` as JSON numbers without a fraction, ``decimal`` as a JSON number, and every other
primitive as a JSON string. fhir.resources validates in pydantic's lax mode, which takes
``"yes"`` for true and ``"+2"`` for 2, and the store would then keep text where a number or a
boolean belongs. This walk, over the element table (``data/elements.json``), refuses them.
Element names the table does not know are left to fhir.resources.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

from fhir_twin.errors import Issue
from fhir_twin.fhir.definitions import table

# JSON type each primitive takes: bool, int (a number without fraction) or a number; else str.
_EXPECTED: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "integer": (int,),
    "unsignedInt": (int,),
    "positiveInt": (int,),
    "decimal": (int, Decimal, float),
}
_WORDS = {bool: "true or false", int: "a whole JSON number", str: "a JSON string"}


@cache
def _children(type_name: str) -> dict[str, tuple[str, bool]] | None:
    """Per element name, (child type, is primitive); None for a type the table does not know."""
    types = table()["types"]
    elements = types.get(type_name)
    if elements is None:
        return None
    return {name: (child, child != "Resource" and child not in types) for name, (child, _, _) in elements.items()}


def json_type_issues(resource: dict[str, Any]) -> list[Issue]:
    """Primitive values of the wrong JSON type, anywhere in ``resource``."""
    issues: list[Issue] = []
    resource_type = resource.get("resourceType")
    if isinstance(resource_type, str):
        _walk(resource, resource_type, resource_type, issues)
    return issues


def _walk(node: dict[str, Any], type_name: str, path: str, issues: list[Issue]) -> None:
    children = _children(type_name)
    if children is None:
        return
    for key, value in node.items():
        element = children.get(key)
        if element is None:
            continue
        child, primitive = element
        if type(value) is list:
            for i, item in enumerate(value):
                _visit(item, child, primitive, f"{path}.{key}[{i}]", issues)
        else:
            _visit(value, child, primitive, f"{path}.{key}", issues)


def _visit(value: Any, child: str, primitive: bool, path: str, issues: list[Issue]) -> None:
    if primitive:
        if value is None or child == "xhtml":
            return  # nulls are the empty-element rule's; the narrative is text
        expected = _EXPECTED.get(child, (str,))
        if type(value) not in expected:
            want = "a JSON number" if child == "decimal" else _WORDS[expected[0]]
            issues.append(Issue("value", f"{path} must be {want} ({child}), not {value!r}", expression=(path,)))
        return
    if type(value) is not dict:
        return  # fhir.resources names an object of the wrong shape
    if child == "Resource":
        resource_type = value.get("resourceType")
        if not isinstance(resource_type, str):
            return
        child = resource_type
    _walk(value, child, path, issues)
