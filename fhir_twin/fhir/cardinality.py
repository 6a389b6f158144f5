"""Cardinality: every required element present, at most one type per choice element.

fhir.resources checks both rules in model validators that run only once every field of a model
is valid, and then stop at the first problem, so an Observation missing ``status`` and ``code``
would be told only ``code``. This walk over the JSON finds every such problem at once, from the
``min`` of each element (R4 elementdefinition.html#cardinality) and the choice elements
(R4 formats.html#choice: "only one of the types SHALL be present"), as recorded in
``data/elements.json``, over what ``elements.walk`` visits. A primitive counts as present when
it has only its ``_name`` extension (R4 json.html#primitive). A nested resource must be of a
known type.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from fhir_twin.errors import Issue
from fhir_twin.fhir.definitions import table
from fhir_twin.fhir.elements import Visit, elements
from fhir_twin.fhir.resource_types import is_resource_type

# per type: (required element -> its JSON names, choice element -> its JSON names)
Rules = tuple[dict[str, list[str]], dict[str, list[str]]]


@cache
def _rules(type_name: str) -> Rules:
    data = table()
    return data["required"].get(type_name, {}), data["choices"].get(type_name, {})


def cardinality_issues(visits: Iterable[Visit]) -> list[Issue]:
    """Missing required elements and choice elements given more than one type, anywhere in what
    ``elements.walk`` visits; nothing within a nested resource of unknown type."""
    issues: list[Issue] = []
    unknown: tuple[str, ...] = ()  # paths of nested resources of unknown type
    for path, element, node, type_name, _ in visits:
        if type(node) is not dict or (element is not None and element.primitive):
            continue
        if unknown and path.startswith(unknown):
            continue
        if (
            element is not None
            and element.type == "Resource"
            and not (isinstance(type_name, str) and is_resource_type(type_name))
        ):
            where = f"{path}.resourceType"
            issues.append(Issue("structure", f"Unknown resource type {type_name!r} at {path}", expression=(where,)))
            unknown += (f"{path}.",)
            continue
        if elements(type_name) is None:
            continue
        required, choices = _rules(type_name)
        for element_name, names in required.items():
            if not any(node.get(name) is not None or node.get(f"_{name}") is not None for name in names):
                where = f"{path}.{element_name}"
                issues.append(Issue("required", f"{where} is required (minimum cardinality 1)", expression=(where,)))
        for element_name, names in choices.items():
            given = [name for name in names if name in node or f"_{name}" in node]
            if len(given) > 1:
                where = f"{path}.{element_name}"
                issues.append(
                    Issue("structure", f"{where} takes one type only, but has {', '.join(given)}", expression=(where,))
                )
    return issues
