"""Where the references of a resource sit (R4 references.html).

A ``Reference.reference`` is found by its key; the element is named as a FHIRPath
(``Observation.subject``, ``Observation.performer[1]``) so an error can say where it is.
Resources carried inside another one (``Bundle.entry.resource``, ``Parameters.parameter.resource``)
resolve their references in their own context and are not walked; contained resources are.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

PLACEHOLDER_SCHEMES = ("urn:uuid:", "urn:oid:")


def references(resource: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(element, reference)`` for every ``Reference.reference`` of ``resource``."""
    yield from _walk(resource, str(resource.get("resourceType", "Resource")), root=True)


def placeholders(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``urn:uuid:`` / ``urn:oid:`` references of ``resource``: outside a transaction Bundle
    that gives them ids (R4 bundle.html#references, http.html#trules) they name nothing."""
    return [(element, ref) for element, ref in references(resource) if ref.startswith(PLACEHOLDER_SCHEMES)]


def _walk(value: Any, path: str, root: bool = False) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        if not root and "resourceType" in value and not _contained(path):
            return
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield path, item
            elif isinstance(item, dict | list):
                yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for number, item in enumerate(value):
            yield from _walk(item, f"{path}[{number}]")


def _contained(path: str) -> bool:
    return path.rpartition(".")[2].startswith("contained[")
