"""Authorization: what a principal's scopes let it do, and the patient compartment it is held to.

Each interaction needs one permission on its resource type (SMART v2 scopes): ``c`` create,
``r`` read and vread, ``u`` update and patch, ``d`` delete, ``s`` search and history. A grant
through a ``patient/`` scope reaches only the launch patient's compartment (R4
compartmentdefinition-patient.html). What lies outside it answers exactly as what does not
exist, so a patient-context credential cannot learn whether another patient's record exists.

A scope narrowed by a query (``patient/Observation.rs?category=vital-signs``) grants only on the
resources its search matches; ``narrowing`` states what a grant is then held to, as a search
condition (``Narrowed``) that searches, chains and ``_has`` carry and single resources are
matched against in the database, so every search parameter means what it means in a search.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any

from fhir_twin.errors import Forbidden
from fhir_twin.fhir.resource_types import AUDIT_TYPES
from fhir_twin.search.extract import extract
from fhir_twin.search.index import IndexRow, ReferenceRow
from fhir_twin.search.parameters import patient_compartment
from fhir_twin.search.query import AnyOf, Condition, Criterion, InCompartment, Narrowed, ReverseChain, Search
from fhir_twin.security.principal import Principal
from fhir_twin.security.scopes import Scope

_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
# Reach of a grant: everything, or the compartment of the patient named.
ALL = "*"
# One way a narrowed grant reaches a resource: the compartment it is held to, and its scope.
Way = tuple[str | None, Scope]


def reach(principal: Principal, resource_type: str, permission: str) -> str | None:
    """``ALL``, the patient id whose compartment the grant is held to, or None when not granted.

    ``patient/`` scopes do not reach the audit trail: one record can name several patients (a
    clinician's search), so a patient's app would learn of others from it. Auditors read it.
    """
    if principal.trusted:
        return ALL
    held_to = None
    for scope in principal.scopes:
        if scope.grants(resource_type, permission):
            if scope.level != "patient":
                return ALL
            if resource_type not in AUDIT_TYPES:
                held_to = principal.patient
    return held_to


def narrowing(principal: Principal, resource_type: str, permission: str) -> Narrowed | None:
    """What a grant is held to when a scope granting it is narrowed by a query, or None when it
    is not (``reach`` then says all). The granting scopes are ORed (SMART v2: scopes add up); a
    scope not narrowed on the type, or on ``*``, lifts the narrowing at its level: a ``user`` or
    ``system`` one entirely, a ``patient`` one for the compartment."""
    ways = narrowed_ways(principal, resource_type, permission)
    if ways is None:
        return None
    return Narrowed(resource_type, tuple(_conditions(patient, scope) for patient, scope in ways))


def narrowed_ways(principal: Principal, resource_type: str, permission: str) -> tuple[Way, ...] | None:
    """The ways ``narrowing`` ORs, each the launch patient whose compartment it is held to (None:
    none) and the scope it takes its query from; None when the grant is not narrowed. A job run
    later (a bulk export) keeps the scopes' queries, written, and parses them again."""
    if principal.trusted:
        return None
    granting = [scope for scope in principal.scopes if scope.grants(resource_type, permission)]
    if not any(scope.conditions is not None for scope in granting):
        return None
    ways: list[Way] = []
    for scope in granting:
        if scope.level == "patient" and (principal.patient is None or resource_type in AUDIT_TYPES):
            continue  # it reaches nothing: no launch patient, or the audit trail
        patient = principal.patient if scope.level == "patient" else None
        if patient is None and scope.conditions is None:
            return None
        ways.append((patient, scope))
    return tuple(ways)


def _conditions(patient: str | None, scope: Scope) -> tuple[Condition, ...]:
    """The conditions one way holds a resource to, ANDed: its compartment and its scope's search."""
    held: tuple[Condition, ...] = () if patient is None else (InCompartment(patient),)
    return (*held, *(scope.conditions or ()))


def narrowed_scopes(principal: Principal, resource_type: str, permission: str) -> list[str]:
    """The narrowed scopes that grant ``permission`` on ``resource_type``, as written, when the
    grant is narrowed (for a refusal to name them)."""
    if narrowing(principal, resource_type, permission) is None:
        return []
    return [
        f"{scope.level}/{scope.resource_type}.{scope.permissions}?{scope.query}"
        for scope in principal.scopes
        if scope.query is not None and scope.grants(resource_type, permission)
    ]


def holds_everything(principal: Principal) -> bool:
    """Whether the principal may do anything: the server itself, or a ``system/*`` scope with
    every permission (``system/*.cruds``, or ``system/*.*`` in SMART v1)."""
    return principal.trusted or any(
        scope.level == "system" and scope.resource_type == "*" and set(scope.permissions) >= set("cruds")
        for scope in principal.scopes
    )


def require(principal: Principal, resource_type: str, permission: str) -> str:
    """The reach of a granted permission; 403 when the scopes do not grant it."""
    found = reach(principal, resource_type, permission)
    if found is None:
        verb = _VERBS[permission]
        # RFC 6750 section 3.1: the token is good but its scope too narrow.
        challenge = {"WWW-Authenticate": 'Bearer realm="fhir-twin", error="insufficient_scope"'}
        raise Forbidden(f"The credential's scopes do not allow {verb} on {resource_type}", headers=challenge)
    return found


@cache
def compartment_codes() -> dict[str, frozenset[str]]:
    """Per resource type, the parameters that put it in a Patient's compartment."""
    return {name: frozenset(codes) for name, codes in patient_compartment().items()}


def in_compartment(resource: dict[str, Any], patient_id: str) -> bool:
    """Whether ``resource`` is in Patient ``patient_id``'s compartment: the patient itself, or a
    resource that names it through a compartment parameter of its type."""
    return patient_id in patients_of(resource)


def patients_of(resource: dict[str, Any], base: str | None = None) -> set[str]:
    """The ids of the patients whose compartment ``resource`` is in (for the audit trail);
    ``base``, this server's base URL, makes an absolute reference into it count as a local one
    (R4 references.html), as the index counts it."""
    res_type = resource.get("resourceType", "")
    found = {resource["id"]} if res_type == "Patient" and isinstance(resource.get("id"), str) else set()
    if res_type == "Patient" and "link" not in resource:
        return found  # its only compartment parameter is link: nothing to extract
    codes = compartment_codes().get(res_type)
    if codes:
        found.update(
            row.target_id
            for row in extract(resource, base)
            if isinstance(row, ReferenceRow) and row.param in codes and row.target_type == "Patient" and row.target_id
        )
    return found


def patients_in(res_type: str, res_id: str, index: list[IndexRow]) -> set[str]:
    """The patients whose compartment a resource is in, from its index rows."""
    codes = compartment_codes().get(res_type, frozenset())
    found = {res_id} if res_type == "Patient" else set()
    found.update(
        row.target_id
        for row in index
        if isinstance(row, ReferenceRow) and row.param in codes and row.target_type == "Patient" and row.target_id
    )
    return found


def confine(query: Search, principal: Principal, permission: str = "s") -> Search:
    """``query`` held to what ``principal`` may search: every base type's grant (403 if one is
    missing), its compartment when the grant is a patient's, what its narrowed scopes match, and
    the same for every resource a chain or ``_has`` looks into, so no criterion can probe another
    patient's record or what the scopes leave out."""
    held: set[str] = set()
    for res_type in query.resource_types:
        found = require(principal, res_type, permission)
        if found != ALL:
            held.add(found)
    conditions = tuple(_confine(condition, principal) for condition in query.conditions)
    narrowed = tuple(
        held_by
        for res_type in query.resource_types
        if (held_by := narrowing(principal, res_type, permission)) is not None
    )
    if held:
        # Only one launch patient per credential.
        conditions = (InCompartment(held.pop()), *conditions)
    return replace(query, conditions=(*conditions, *narrowed))


def _confine(condition: Condition, principal: Principal) -> Condition:
    if isinstance(condition, AnyOf):
        return AnyOf(tuple(_confine_criterion(part, principal) for part in condition.criteria))
    if isinstance(condition, ReverseChain):
        inner = _confine(condition.criterion, principal)
        assert isinstance(inner, Criterion | ReverseChain)
        return replace(
            condition,
            criterion=inner,
            within=_within(principal, condition.source_type),
            narrowed=narrowing(principal, condition.source_type, "s"),
        )
    if isinstance(condition, Criterion):
        return _confine_criterion(condition, principal)
    return condition


def _confine_criterion(criterion: Criterion, principal: Principal) -> Criterion:
    if criterion.chain is None or criterion.chain_type is None:
        return criterion
    chain = _confine_criterion(criterion.chain, principal)
    return replace(
        criterion,
        chain=chain,
        within=_within(principal, criterion.chain_type),
        narrowed=narrowing(principal, criterion.chain_type, "s"),
    )


def _within(principal: Principal, res_type: str) -> str | None:
    """The compartment a chained type is searched in (None: all of it); 403 when the principal may
    not search that type at all."""
    found = require(principal, res_type, "s")
    return None if found == ALL else found
