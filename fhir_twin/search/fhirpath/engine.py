"""fhirpathpy for the search expressions ``compiled`` does not take, in the dialect both read.

fhirpathpy's nodes carry the types of its R4 model; only values it computes itself
(``exists() and ...`` gives a System Boolean) are typed by shape. ``normalize`` rewrites an
expression into fhirpathpy's strict reading of the dialect (see ``search.fhirpath``).
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal
from functools import cache
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhir_twin.fhir.definitions import table
from fhir_twin.search.fhirpath.results import PRIMITIVES, SYSTEM, Group, Selector, distinct, reference_target

_RESOURCE_HEAD = re.compile(r"('[^']*')|(^|[\s(|])(?:Domain)?Resource\.")
_AS_OPERATOR = re.compile(r"('[^']*')|\s+as\s+([A-Za-z][\w.]*)|\.as\(")
_TYPE_ARGUMENT = re.compile(r"('[^']*')|\b(ofType|is)\((?:FHIR\.)?(\w+)\)|\bis\s+(?:FHIR\.)?(\w+)")


def normalize(expression: str, base: str) -> str:
    """``expression`` in fhirpathpy's strict FHIRPath, for a ``base``-typed focus.

    ``x as T`` becomes ``x.ofType(T)`` and System type names FHIR ones; a ``Resource.`` or
    ``DomainResource.`` head names the resource type, as fhirpathpy does not match a resource
    against the types it specialises.

    ``as`` binds tighter than ``|`` and looser than ``.``, so the rewrite is exact for the path
    operands the R4 expressions give it (not for arithmetic ones such as ``a + b as T``).
    """

    def rewrite_as(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        return f".ofType({match.group(2)})" if match.group(2) else ".ofType("

    def rename(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        if match.group(2):
            return f"{match.group(2)}({SYSTEM.get(match.group(3), match.group(3))})"
        return f"is {SYSTEM.get(match.group(4), match.group(4))}"

    def rehead(match: re.Match[str]) -> str:
        return match.group(1) or f"{match.group(2)}{base.partition('.')[0]}."

    return _TYPE_ARGUMENT.sub(rename, _AS_OPERATOR.sub(rewrite_as, _RESOURCE_HEAD.sub(rehead, expression)))


def _resolve(references: list[Any]) -> list[ResourceNode]:
    """fhirpathpy's ``resolve()``: a placeholder of the type each reference names, as ``_resolves_to`` reads it."""
    found = []
    for reference in references:
        target = reference.get("reference") if isinstance(reference, dict) else None
        parsed = reference_target(target) if isinstance(target, str) else None
        if parsed:
            found.append(ResourceNode.create_node({"resourceType": parsed[0], "id": parsed[1]}))
    return found


ENGINE_OPTIONS = {"userInvocationTable": {"resolve": {"fn": _resolve, "arity": {0: []}}}}
MODEL = models["r4"]


_ENGINE_LOCK = threading.Lock()


@cache
def engine_selector(expression: str, base: str) -> Selector:
    """fhirpathpy on ``normalize(expression)``; top-level ``|`` branches run apart so nodes keep their types."""
    compiled = [
        fhirpathpy.compile(branch, MODEL, {**ENGINE_OPTIONS, "returnRawData": True})
        for branch in split_union(normalize(expression, base))
    ]

    def select(focus: Any, resource: dict[str, Any]) -> list[Group]:
        root = focus if focus is resource else ResourceNode.create_node(focus, base)
        context = {"resource": resource, "rootResource": resource}
        # fhirpathpy keeps evaluation state in module globals: one evaluation at a time per process.
        with _ENGINE_LOCK:
            groups = [_engine_group(node) for function in compiled for node in function(root, context)]
        return distinct(groups) if len(compiled) > 1 else groups

    return select


def engine_nodes(expression: str, resource: dict[str, Any]) -> list[Any]:
    """fhirpathpy's answer for ``expression`` on ``resource`` as it gives it: an element it selects
    is a ``ResourceNode`` whose ``propName`` says where it sits in the JSON (``Patient.name[0].given``),
    which a FHIRPath Patch needs to change it there. Not cached: patch paths are the client's.
    ``resolve()`` is fhirpathpy's own, which finds nothing outside the resource."""
    function = fhirpathpy.compile(expression, MODEL, {"returnRawData": True})
    with _ENGINE_LOCK:
        return list(function(resource, {"resource": resource, "rootResource": resource}))


def _engine_group(node: Any) -> Group:
    if isinstance(node, ResourceNode):
        path = node.path or ""
        type_name = SYSTEM.get(path.removeprefix("System."), path)
        if type_name in PRIMITIVES or type_name in table()["types"]:
            return type_name, [node.data]
        node = node.data
    return _infer_type(node), [node]


def _infer_type(value: Any) -> str | None:
    """The datatype of a value fhirpathpy computed rather than selected: System values by shape."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return value["resourceType"]
    return "decimal" if isinstance(value, float | Decimal) else None


def split_union(expression: str) -> list[str]:
    """The top-level ``|`` branches of ``expression`` (outside parentheses and string literals)."""
    branches, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(expression):
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "([":
            depth += 1
        elif not quoted and char in ")]":
            depth -= 1
        elif not quoted and depth == 0 and char == "|":
            branches.append(expression[start:index].strip())
            start = index + 1
    branches.append(expression[start:].strip())
    return branches
