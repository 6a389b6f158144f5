"""The search-parameter registry, from the official R4 SearchParameter definitions.

One definition may serve many resource types (``clinical-patient`` covers 30 of them with one
expression joined by ``|``); the registry gives each type its own ``SearchParameter`` whose
expression keeps only the branches that start at that type (R4 searchparameter.html).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data") / "search-parameters.json"
# R4B's SubscriptionTopic parameters (the type R4 lacks, served for the Subscriptions Backport IG).
DATA_R4B = Path(__file__).with_name("data") / "search-parameters-r4b.json"

# Parameters every type has, searched from columns of the resource table, not from an index.
ID = "_id"
LAST_UPDATED = "_lastUpdated"
# Resource-level parameters this server cannot answer properly; declared unsupported.
UNSUPPORTED = frozenset({"_text", "_content", "_list", "_query", "_filter", "_contained", "_containedType"})


@dataclass(frozen=True)
class Component:
    """One part of a composite parameter: the parameter it reuses and its relative expression."""

    definition: str
    expression: str
    parameter: SearchParameter


@dataclass(frozen=True)
class SearchParameter:
    """A search parameter as it applies to one resource type (``base``)."""

    code: str
    type: str
    base: str
    url: str
    expression: str | None
    targets: tuple[str, ...] = ()
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()

    @property
    def is_common(self) -> bool:
        """Defined on Resource/DomainResource, so it exists for every type."""
        return self.base in ("Resource", "DomainResource")


@cache
def _data() -> dict[str, Any]:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    extra = json.loads(DATA_R4B.read_text(encoding="utf-8"))["parameters"]
    return {**data, "parameters": data["parameters"] + extra}


@cache
def _by_url() -> dict[str, dict[str, Any]]:
    return {item["url"]: item for item in _data()["parameters"]}


def branches_for(expression: str, resource_type: str) -> str | None:
    """The ``|``-branches of ``expression`` that start at ``resource_type`` (or Resource)."""
    kept = []
    for branch in _split_union(expression):
        head = re.match(r"\(?\s*([A-Z][A-Za-z]*)", branch)
        if head and head.group(1) in (resource_type, "Resource", "DomainResource"):
            kept.append(branch)
    return " | ".join(kept) if kept else None


def _split_union(expression: str) -> list[str]:
    """Split on ``|`` outside parentheses and quotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(expression):
        if char == "'" and (index == 0 or expression[index - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == "|":
            parts.append(expression[start:index].strip())
            start = index + 1
    parts.append(expression[start:].strip())
    return [part for part in parts if part]


def _make(item: dict[str, Any], resource_type: str) -> SearchParameter | None:
    expression = item.get("expression")
    if expression is not None:
        expression = branches_for(expression, resource_type)
        if expression is None:
            return None
    components: tuple[Component, ...] = ()
    if item["type"] == "composite":
        parts = []
        for part in item.get("component", []):
            target = _by_url().get(part["definition"])
            if target is None:
                return None
            parameter = SearchParameter(
                code=target["code"],
                type=target["type"],
                base=resource_type,
                url=target["url"],
                expression=part["expression"],
                targets=tuple(target.get("target", ())),
            )
            parts.append(Component(part["definition"], part["expression"], parameter))
        components = tuple(parts)
    return SearchParameter(
        code=item["code"],
        type=item["type"],
        base=resource_type,
        url=item["url"],
        expression=expression,
        targets=tuple(item.get("target", ())),
        modifiers=tuple(item.get("modifier", ())),
        comparators=tuple(item.get("comparator", ())),
        components=components,
    )


@cache
def parameters_for(resource_type: str) -> Mapping[str, SearchParameter]:
    """Every search parameter of ``resource_type`` by code, common ones included."""
    found: dict[str, SearchParameter] = {}
    for item in _data()["parameters"]:
        bases = item["base"]
        if item["code"] in UNSUPPORTED or item["type"] == "special":
            continue
        if resource_type in bases or "Resource" in bases or "DomainResource" in bases:
            parameter = _make(item, resource_type)
            if parameter is not None:
                found[item["code"]] = parameter
    return found


def parameter(resource_type: str, code: str) -> SearchParameter | None:
    return parameters_for(resource_type).get(code)


@cache
def patient_compartment() -> Mapping[str, tuple[str, ...]]:
    """Per resource type, the parameters that put it in a Patient's compartment."""
    return {name: tuple(codes) for name, codes in _data()["patientCompartment"].items()}
