"""One walk over a resource's JSON with the element table, which the element checks share.

``datatypes`` (primitives' JSON types), ``terminology`` (required bindings) and ``cardinality``
(required and choice elements) each judge what this walk visits: every value of an element the
table (``data/elements.json``) knows, in document order, with its path (``Observation.code``,
``Observation.component[0].code``). Objects are entered when their type is in the table; a
nested resource (R4 references.html#contained, Bundle entries) takes its ``resourceType``.
Element names the table does not know are not visited: they are fhir.resources' to refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir_twin.fhir.definitions import table


@dataclass(frozen=True, slots=True)
class Element:
    """An element of a type: its type code (``Resource`` for a nested resource), whether that type
    is a primitive, whether the element repeats (an array in JSON), and the value set URL of its
    required binding when the table can expand it."""

    type: str
    primitive: bool
    repeats: bool
    binding: str | None


# One value met by the walk: (path, element, value, type name, shaped). ``element`` is None for
# the resource itself. The type name is an object value's type (a nested resource's
# ``resourceType`` as given, a non-string included), else None. ``shaped`` says whether the value
# and every element around it are in their JSON shape: an array exactly where the element repeats.
# A plain tuple: building a NamedTuple per value would double the walk's cost.
Visit = tuple[str, Element | None, Any, Any, bool]


@cache
def elements(type_name: str) -> dict[str, Element] | None:
    """Per JSON name, the elements of ``type_name``; None for a type the table does not know."""
    types = table()["types"]
    known = types.get(type_name)
    if known is None:
        return None
    return {
        name: Element(child, child != "Resource" and child not in types, repeats, binding)
        for name, (child, binding, repeats) in known.items()
    }


def walk(resource: dict[str, Any]) -> list[Visit]:
    """Every value of a known element of ``resource``, in document order (none without a
    string ``resourceType``)."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return []
    visits: list[Visit] = [(resource_type, None, resource, resource_type, True)]
    _enter(resource, resource_type, resource_type, True, visits)
    return visits


def _enter(node: dict[str, Any], type_name: str, path: str, shaped: bool, visits: list[Visit]) -> None:
    """Visit the known elements of an object of type ``type_name``, two frames per level of the
    body (``fhir.json`` bounds the depth of what clients send, ``MAX_DEPTH``)."""
    known = elements(type_name)
    if known is None:
        return
    for key, value in node.items():
        element = known.get(key)
        if element is None:
            continue
        if value.__class__ is list:
            fits = shaped and element.repeats
            for i, item in enumerate(value):
                _visit(f"{path}.{key}[{i}]", element, item, fits, visits)
        else:
            _visit(f"{path}.{key}", element, value, shaped and not element.repeats, visits)


def _visit(path: str, element: Element, value: Any, shaped: bool, visits: list[Visit]) -> None:
    if element.primitive or value.__class__ is not dict:
        visits.append((path, element, value, None, shaped))
        return
    type_name = value.get("resourceType") if element.type == "Resource" else element.type
    visits.append((path, element, value, type_name, shaped))
    if type_name.__class__ is str:
        _enter(value, type_name, path, shaped, visits)
