"""What a search expression selects: values in typed groups, and the FHIR type names both
engines (``compiled``, ``engine``) read.

Every result carries its FHIR datatype, which the index conversions need (a dict may be a
Coding, an Identifier or a ContactPoint).
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

# Values of one FHIR datatype (None: unknown), in document order.
Group = tuple[str | None, list[Any]]


class Selector(Protocol):
    """What an expression selects from ``focus`` (``resource`` answers ``%resource``)."""

    def __call__(self, focus: Any, resource: dict[str, Any]) -> list[Group]: ...


# fmt: off
PRIMITIVES = frozenset({
    "boolean", "integer", "string", "decimal", "uri", "url", "canonical", "base64Binary", "instant", "date",
    "dateTime", "time", "code", "oid", "id", "markdown", "unsignedInt", "positiveInt", "uuid", "xhtml",
})
# fmt: on
# Specialisations the R4 type hierarchy defines among the types an ``as`` names (datatypes.html).
PARENT = {
    "code": "string",
    "id": "string",
    "markdown": "string",
    "canonical": "uri",
    "url": "uri",
    "oid": "uri",
    "uuid": "uri",
    "positiveInt": "integer",
    "unsignedInt": "integer",
    "Age": "Quantity",
    "Count": "Quantity",
    "Distance": "Quantity",
    "Duration": "Quantity",
    "MoneyQuantity": "Quantity",
    "SimpleQuantity": "Quantity",
}
# FHIRPath System types that name a FHIR primitive in HAPI's case-insensitive type tests.
SYSTEM = {
    name[0].upper() + name[1:]: name for name in ("boolean", "string", "integer", "decimal", "date", "dateTime", "time")
}

_ID = r"[A-Za-z0-9\-.]{1,64}"
_TARGET = re.compile(rf"(?:^|.*/)([A-Z][A-Za-z]+)/({_ID})(?:/_history/{_ID})?$")


def reference_target(reference: str) -> tuple[str, str] | None:
    """``(type, id)`` of a RESTful reference, relative or absolute, versioned or not (R4 references.html)."""
    match = _TARGET.match(reference)
    return (match.group(1), match.group(2)) if match else None


def distinct(groups: list[Group]) -> list[Group]:
    """Drop repeated values; ``1.0`` and ``1.00`` stay apart, as fhirpathpy compares their JSON text."""
    scalars: dict[tuple[bool, Any], list[Any]] = {}
    objects: list[Any] = []
    result: list[Group] = []
    for type_name, values in groups:
        kept = []
        for value in values:
            pool = objects if isinstance(value, dict | list) else scalars.setdefault((type(value) is bool, value), [])
            if not any(value == other and _text(value) == _text(other) for other in pool):
                pool.append(value)
                kept.append(value)
        if kept:
            result.append((type_name, kept))
    return result


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)
