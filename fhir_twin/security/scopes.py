"""SMART App Launch scopes, v1 (``patient/Observation.read``) and v2 (``patient/Observation.rs``).

A scope grants permissions (``c r u d s``) on one resource type or ``*`` at one level:
``patient`` (only the launch patient's compartment), ``user`` or ``system`` (unrestricted).
v1 ``read`` is ``rs``, ``write`` is ``cud``, ``*`` all five (SMART v2 scopes-and-launch-context,
"Scopes for requesting FHIR resources"). Other scopes (``openid``, ``launch/patient``...) grant
nothing here.

A v2 scope may be narrowed by a search of its type (``patient/Observation.rs?category=vital-signs``,
"Finer-grained resource constraints using search parameters"): it grants only on the resources
that search matches. The query is parsed by the server's own search parser, so every search
parameter of the type works; one it cannot honour exactly (an unknown parameter, a result
parameter such as ``_count`` or ``_include``, a ``*`` type, a v1 permission) makes the scope
invalid, so it grants nothing rather than more than it says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qsl

from fhir_twin.errors import FhirError
from fhir_twin.search.query import Condition

PERMISSIONS = "cruds"
_SCOPE = re.compile(r"^(patient|user|system)/([A-Za-z]+|\*)\.(read|write|\*|c?r?u?d?s?)(?:\?(.*))?$", re.DOTALL)
_V1 = {"read": "rs", "write": "cud", "*": PERMISSIONS}


@dataclass(frozen=True)
class Scope:
    """One resource scope: ``level`` patient, user or system; ``resource_type`` a type or ``*``;
    ``conditions`` the search that narrows it, ANDed (None: not narrowed)."""

    level: str
    resource_type: str
    permissions: str
    query: str | None = None
    conditions: tuple[Condition, ...] | None = field(default=None, compare=False)

    def grants(self, resource_type: str, permission: str) -> bool:
        return self.resource_type in ("*", resource_type) and permission in self.permissions


def within(asked: Scope, registered: Iterable[Scope]) -> bool:
    """Whether every permission ``asked`` names is one a ``registered`` scope of its level grants:
    one not narrowed, or narrowed by the same search of the same type (SMART app-launch.html: a
    client may ask for less than it was registered with, never more)."""
    mine = [scope for scope in registered if scope.level == asked.level]
    return all(
        any(
            scope.grants(asked.resource_type, permission)
            and (scope.query is None or (scope.query == asked.query and scope.resource_type == asked.resource_type))
            for scope in mine
        )
        for permission in asked.permissions
    )


def parse_scope(text: str) -> Scope | None:
    """The resource scope ``text`` states, or None for any other scope (or an invalid one)."""
    found = _SCOPE.match(text)
    if found is None:
        return None
    level, resource_type, permissions, query = found.groups()
    if query is not None:
        if _query_problem(resource_type, permissions, query) is not None:
            return None
        return Scope(level, resource_type, permissions, query, _conditions(resource_type, query))
    permissions = _V1.get(permissions, permissions)
    return Scope(level, resource_type, permissions) if permissions else None


def scope_problem(text: str) -> str | None:
    """Why ``text`` is not a resource scope this server honours (for ``token create``), or None."""
    found = _SCOPE.match(text)
    if found is None:
        return f"{text!r} is not a SMART resource scope like patient/Observation.rs"
    _, resource_type, permissions, query = found.groups()
    if query is not None:
        problem = _query_problem(resource_type, permissions, query)
        return None if problem is None else f"{text!r}: {problem}"
    if not permissions:
        return f"{text!r} grants no permission: give some of c, r, u, d, s"
    return None


def _query_problem(resource_type: str, permissions: str, query: str) -> str | None:
    """Why the query narrowing a scope cannot be honoured exactly, or None. (The resource types
    and the search parser, with fhir.resources behind them, load only for a narrowed scope:
    ``fhir-twin --help`` reads this module.)"""
    from fhir_twin.fhir.resource_types import is_resource_type

    if resource_type == "*" or not is_resource_type(resource_type):
        return "only a scope on one resource type may be narrowed by a query"
    if permissions in _V1 or not permissions:
        return "only a SMART v2 scope (permissions among c, r, u, d, s) may be narrowed by a query"
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        return "the query after '?' is empty"
    try:
        conditions = _conditions(resource_type, query)
    except FhirError as error:
        return f"the query is not a search of {resource_type}: {error}"
    if len(conditions) != len(pairs):
        # Result parameters (_count, _include, _sort...) shape an answer and narrow nothing.
        return f"the query may hold only search parameters of {resource_type}, not result parameters"
    return None


@lru_cache(maxsize=256)
def _conditions(resource_type: str, query: str) -> tuple[Condition, ...]:
    """The conditions of a scope's query, as a search of ``resource_type`` parses them (strictly:
    an unknown parameter is refused, never ignored)."""
    from fhir_twin.search.parser import parse

    pairs = parse_qsl(query, keep_blank_values=True)
    return parse((resource_type,), pairs, strict=True, default_count=1, max_count=1).conditions


@lru_cache(maxsize=1024)
def parse_scopes(text: str) -> tuple[Scope, ...]:
    """The resource scopes of a space-separated scope string (parsed once per string: every
    request's principal is built from its credential's)."""
    return tuple(scope for part in text.split() if (scope := parse_scope(part)) is not None)


def is_scope(text: str) -> bool:
    """Whether ``text`` is a well-formed SMART resource scope (what ``token create`` accepts)."""
    return scope_problem(text) is None
