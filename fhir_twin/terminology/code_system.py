"""A CodeSystem (R4 codesystem.html) as a table of concepts with their hierarchy.

The hierarchy is the nesting of ``concept`` and the ``parent`` / ``subsumedBy`` properties
(R4 codesystem.html#hierarchy, concept-properties); ``is-a`` subsumption reads it.

A concept is inactive when its ``inactive`` property is true or its ``status`` is ``retired`` or
``inactive``; ``deprecated`` is not inactive (R4 codesystem-concept-properties: "Concepts that are
deprecated but not inactive can still be used"). It is abstract when ``notSelectable`` (or the
``abstract`` property several HL7 code systems define) is true.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Concept properties that name a parent (R4 codesystem-concept-properties).
PARENT_PROPERTIES = frozenset({"parent", "subsumedBy"})
INACTIVE_STATUSES = frozenset({"retired", "inactive"})
ABSTRACT_PROPERTIES = frozenset({"notSelectable", "abstract"})


@dataclass
class Concept:
    code: str
    display: str | None
    definition: str | None
    designations: list[dict[str, Any]]
    properties: list[dict[str, Any]]
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)

    @property
    def inactive(self) -> bool:
        return any(
            (prop.get("code") == "inactive" and prop.get("valueBoolean") is True)
            or (prop.get("code") == "status" and prop.get("valueCode") in INACTIVE_STATUSES)
            for prop in self.properties
        )

    @property
    def abstract(self) -> bool:
        return any(
            prop.get("code") in ABSTRACT_PROPERTIES and prop.get("valueBoolean") is True for prop in self.properties
        )


class CodeSystem:
    """The concepts of one CodeSystem resource, by code, in document order."""

    def __init__(self, resource: dict[str, Any]) -> None:
        self.url: str = resource["url"]
        self.version: str | None = resource.get("version")
        self.name: str = resource.get("title") or resource.get("name") or self.url
        self.content: str = resource.get("content", "complete")
        self.case_sensitive: bool = resource.get("caseSensitive", True)
        self.language: str | None = resource.get("language")
        self.hierarchy_meaning: str | None = resource.get("hierarchyMeaning")
        self.concepts: dict[str, Concept] = {}
        self._add(resource.get("concept", []), None)
        for concept in self.concepts.values():
            for prop in concept.properties:
                parent = prop.get("valueCode")
                if prop.get("code") in PARENT_PROPERTIES and parent in self.concepts and parent not in concept.parents:
                    concept.parents.append(parent)
                    self.concepts[parent].children.append(concept.code)

    def _add(self, nodes: list[dict[str, Any]], parent: str | None) -> None:
        for node in nodes:
            code = node["code"]
            concept = self.concepts.get(code)
            if concept is None:
                concept = Concept(
                    code,
                    node.get("display"),
                    node.get("definition"),
                    node.get("designation", []),
                    node.get("property", []),
                )
                self.concepts[code] = concept
            if parent is not None and parent not in concept.parents:
                concept.parents.append(parent)
                self.concepts[parent].children.append(code)
            self._add(node.get("concept", []), code)

    @property
    def complete(self) -> bool:
        """Whether every code of the system is here, so a code absent is not a code."""
        return self.content == "complete"

    def get(self, code: str) -> Concept | None:
        found = self.concepts.get(code)
        if found is None and not self.case_sensitive:
            found = next((c for c in self.concepts.values() if c.code.lower() == code.lower()), None)
        return found

    def descendants(self, code: str) -> Iterator[str]:
        """Every code below ``code``, each once (not ``code`` itself)."""
        return self._walk(code, "children")

    def ancestors(self, code: str) -> Iterator[str]:
        """Every code above ``code``, each once (not ``code`` itself)."""
        return self._walk(code, "parents")

    def _walk(self, code: str, direction: str) -> Iterator[str]:
        seen = {code}
        stack = list(getattr(self.concepts[code], direction)) if code in self.concepts else []
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            yield current
            stack.extend(getattr(self.concepts[current], direction))
