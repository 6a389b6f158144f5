"""Whether one stored version meets a grant narrowed by a query, judged on its own body.

A history shows past versions, which the index no longer holds: a version is shown only if it,
as it was written, matches the scopes' search (SMART v2 scopes-and-launch-context.html,
"Finer-grained resource constraints using search parameters"), however the resource stands now.
The search is run in memory (``search.resource_match``): token, string, uri, reference and
date parameters. A scope whose query uses another cannot be judged on a body, so ``unjudged`` names
it and the history is refused rather than shown with versions that may not match.
"""

from __future__ import annotations

from typing import Any

from fhir_twin.search import resource_match
from fhir_twin.search.query import Search
from fhir_twin.security.access import in_compartment, narrowed_ways
from fhir_twin.security.principal import Principal
from fhir_twin.security.scopes import Scope


def unjudged(principal: Principal, res_type: str, permission: str) -> list[str]:
    """The narrowed scopes granting ``permission`` on ``res_type`` (as written) whose query the
    in-memory matcher cannot judge; none when the grant is not narrowed."""
    return [
        _written(scope)
        for _, scope in narrowed_ways(principal, res_type, permission) or ()
        if scope.conditions is not None and resource_match.unsupported(_search(res_type, scope)) is not None
    ]


def version_matches(principal: Principal, res_type: str, body: dict[str, Any] | None, permission: str) -> bool:
    """Whether the version ``body`` (None: a deletion, which matches nothing) meets the grant's
    narrowing: any one way, its compartment and its scope's search (``unjudged`` passed)."""
    ways = narrowed_ways(principal, res_type, permission)
    if ways is None:
        return True
    if body is None:
        return False
    return any(
        (patient is None or in_compartment(body, patient))
        and (scope.conditions is None or resource_match.matches(_search(res_type, scope), body))
        for patient, scope in ways
    )


def _search(res_type: str, scope: Scope) -> Search:
    return Search((res_type,), scope.conditions or ())


def _written(scope: Scope) -> str:
    return f"{scope.level}/{scope.resource_type}.{scope.permissions}?{scope.query}"
