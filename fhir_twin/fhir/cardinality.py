"""Cardinality: every required element present, at most one type per choice element.

fhir.resources checks both rules in model validators that run only once every field of a model
is valid, and then stop at the first problem, so an Observation missing ``status`` and ``code``
would be told only ``code``. This walk over the JSON finds every such problem at once, from the
``min`` of each element (R4 elementdefinition.html#cardinality) and the choice elements
(R4 formats.html#choice: "only one of the types SHALL be present"), as recorded in
``data/elements.json``. A primitive counts as present when it has only its ``_name`` extension
(R4 json.html#primitive). A nested resource must be of a known type. Element names the table
does not know are left to fhir.resources.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_twin.errors import Issue
from fhir_twin.fhir.definitions import table
from fhir_twin.fhir.model import is_resource_type

# per type: (required element -> its JSON names, choice element -> its JSON names, child types)
Rules = tuple[dict[str, list[str]], dict[str, list[str]], dict[str, str]]


@cache
def _rules(type_name: str) -> Rules | None:
    data = table()
    elements = data["types"].get(type_name)
    if elements is None:
        return None
    children = {
        name: child for name, (child, _, _) in elements.items() if child == "Resource" or child in data["types"]
    }
    return data["required"].get(type_name, {}), data["choices"].get(type_name, {}), children


def cardinality_issues(resource: dict[str, Any]) -> list[Issue]:
    """Missing required elements and choice elements given more than one type, anywhere."""
    issues: list[Issue] = []
    resource_type = resource.get("resourceType")
    if isinstance(resource_type, str):
        _walk(resource, resource_type, resource_type, issues)
    return issues


def _walk(node: dict[str, Any], type_name: str, path: str, issues: list[Issue]) -> None:
    rules = _rules(type_name)
    if rules is None:
        return
    required, choices, children = rules
    for element, names in required.items():
        if not any(node.get(name) is not None or node.get(f"_{name}") is not None for name in names):
            where = f"{path}.{element}"
            issues.append(Issue("required", f"{where} is required (minimum cardinality 1)", expression=(where,)))
    for element, names in choices.items():
        given = [name for name in names if name in node or f"_{name}" in node]
        if len(given) > 1:
            where = f"{path}.{element}"
            issues.append(
                Issue("structure", f"{where} takes one type only, but has {', '.join(given)}", expression=(where,))
            )
    for key, value in node.items():
        child = children.get(key)
        if child is None:
            continue
        if type(value) is list:
            for i, item in enumerate(value):
                _visit(item, child, f"{path}.{key}[{i}]", issues)
        else:
            _visit(value, child, f"{path}.{key}", issues)


def _visit(value: Any, child: str, path: str, issues: list[Issue]) -> None:
    if type(value) is not dict:
        return
    if child == "Resource":
        resource_type = value.get("resourceType")
        if not isinstance(resource_type, str) or not is_resource_type(resource_type):
            where = f"{path}.resourceType"
            issues.append(Issue("structure", f"Unknown resource type {resource_type!r} at {path}", expression=(where,)))
            return
        child = resource_type
    _walk(value, child, path, issues)
