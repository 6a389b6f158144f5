"""The terminology token modifiers resolved to codes before a search becomes SQL (R4
search.html#token): ``:in`` / ``:not-in`` a value set's expansion, ``:below`` / ``:above`` a code
and its descendants / ancestors in a held hierarchical code system. The codes go into the SQL as
an ``IN`` list, so their number is bounded (``MAX_SEARCH_CODES``, past it ``too-costly``).
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Connection

from fhir_twin.errors import Invalid, Issue
from fhir_twin.search.query import (
    AnyOf,
    CodeSet,
    Condition,
    Criterion,
    Narrowed,
    ReverseChain,
    Search,
    TokenValue,
    UriValue,
)
from fhir_twin.store.search.conditions import TERMINOLOGY_MODIFIERS
from fhir_twin.store.terminology import definitions
from fhir_twin.terminology.definitions import Definitions
from fhir_twin.terminology.errors import not_held, too_costly
from fhir_twin.terminology.expansion import code_system_held, expand

MAX_SEARCH_CODES = 1_000


def resolve(connection: Connection, query: Search) -> Search:
    """``query`` with each terminology modifier's values replaced by the codes they stand for."""
    if not any(_uses_terminology(condition) for condition in query.conditions):
        return query
    held = definitions(connection)
    return replace(query, conditions=tuple(_condition(condition, held) for condition in query.conditions))


def _uses_terminology(condition: Condition) -> bool:
    if isinstance(condition, Narrowed):
        return any(_uses_terminology(part) for way in condition.ways for part in way)
    if isinstance(condition, AnyOf):
        return any(_uses_terminology(part) for part in condition.criteria)
    if isinstance(condition, ReverseChain):
        return _uses_terminology(condition.criterion)
    if isinstance(condition, Criterion):
        return condition.modifier in TERMINOLOGY_MODIFIERS or (
            condition.chain is not None and _uses_terminology(condition.chain)
        )
    return False


def _condition(condition: Condition, held: Definitions) -> Condition:
    if isinstance(condition, Narrowed):
        ways = tuple(tuple(_condition(part, held) for part in way) for way in condition.ways)
        return replace(condition, ways=ways)
    if isinstance(condition, AnyOf):
        return replace(condition, criteria=tuple(_criterion(part, held) for part in condition.criteria))
    if isinstance(condition, ReverseChain):
        return replace(condition, criterion=_condition(condition.criterion, held))  # type: ignore[arg-type]
    if isinstance(condition, Criterion):
        return _criterion(condition, held)
    return condition


def _criterion(criterion: Criterion, held: Definitions) -> Criterion:
    if criterion.chain is not None:
        return replace(criterion, chain=_criterion(criterion.chain, held))
    if criterion.modifier not in TERMINOLOGY_MODIFIERS or criterion.parameter.type != "token":
        return criterion
    name = f"{criterion.parameter.code}:{criterion.modifier}"
    try:
        return replace(
            criterion, values=tuple(_codes(name, criterion.modifier, value, held) for value in criterion.values)
        )
    except Invalid as error:  # name the parameter, as every search error does (search.html#errors)
        at = (criterion.parameter.code,)
        error.issues = [replace(issue, expression=issue.expression or at) for issue in error.issues]
        raise


def _codes(name: str, modifier: str, value: object, held: Definitions) -> CodeSet:
    if isinstance(value, CodeSet):  # resolved already
        return value
    if isinstance(value, UriValue):
        value_set = held.value_set(value.uri)
        if value_set is None:
            message = f"{name}: the value set {value.uri} is not known to this server"
            raise Invalid(message, issues=[Issue("not-found", message)])
        expansion = expand(value_set, held, MAX_SEARCH_CODES)
        return CodeSet(frozenset((code.system, code.code) for code in expansion))
    if not isinstance(value, TokenValue) or value.system is None or value.code is None:
        raise Invalid.at(name, f"{name} takes system|code: subsumption is tested within one code system")
    try:
        system = code_system_held(held, value.system)
    except Invalid:
        raise not_held(value.system, f"{name} cannot test subsumption in it") from None
    related = system.descendants(value.code) if modifier == "below" else system.ancestors(value.code)
    codes = {value.code, *related}
    if len(codes) > MAX_SEARCH_CODES:
        raise too_costly(f"{name}={value.system}|{value.code}", MAX_SEARCH_CODES)
    return CodeSet(frozenset((value.system, code) for code in codes))
