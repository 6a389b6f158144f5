"""A search evaluated against one resource in memory, without the database.

A SubscriptionTopic's ``queryCriteria.previous`` is asked of the version a write replaced, which
the index no longer holds (R4B subscriptiontopic.html, "queryCriteria"), and a backport
Subscription's filter of a deleted resource likewise; so these are matched against the index
rows ``extract`` gives of a body; so are past versions a history shows under SMART scopes
narrowed by a query (``security.version_match``). Only the forms such criteria take are
matched here: token (plain and ``:not``), string (plain and ``:exact``), uri, reference and date
parameters (every prefix but ``ap``, whose window moves with the clock), AND of parameters, OR of
comma lists; ``unsupported`` names anything else, so it is refused when the topic or
Subscription is stored (or the history asked), never silently mismatched.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_twin.search.extract import extract
from fhir_twin.search.index import DateRow, IndexRow, ReferenceRow, StringRow, TokenRow, UriRow
from fhir_twin.search.query import (
    AnyOf,
    Condition,
    Criterion,
    DateValue,
    ReferenceValue,
    Search,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)
from fhir_twin.search.text import fold

_MODIFIERS = {
    "token": (None, "not"),
    "string": (None, "exact"),
    "uri": (None,),
    "reference": (None,),
    "date": (None,),
}


def unsupported(search: Search) -> str | None:
    """Why ``search`` cannot be matched in memory (the parameter as written), or None."""
    for condition in search.conditions:
        for criterion in condition.criteria if isinstance(condition, AnyOf) else (condition,):
            if not isinstance(criterion, Criterion):
                return "_has and compartment criteria"
            code = criterion.parameter.code
            kind = criterion.parameter.type
            if code.startswith("_"):
                return f"{code} (searched from the resource table, not from a body)"
            if criterion.chain is not None or criterion.missing is not None:
                return f"{code} (chains and :missing)"
            if kind not in _MODIFIERS:
                return f"{code} (a {kind} parameter: token, string, uri, reference and date ones are supported)"
            if criterion.modifier not in _MODIFIERS[kind]:
                return f"{code}:{criterion.modifier}"
            if any(isinstance(value, DateValue) and value.prefix == "ap" for value in criterion.values):
                return f"{code}=ap (its window moves with the clock)"
    return None


def matches(search: Search, resource: dict[str, Any] | None) -> bool:
    """Whether ``resource`` meets every condition of ``search`` (a search ``unsupported`` passed);
    no resource meets none."""
    if resource is None:
        return False
    rows = extract(resource)
    return all(_holds(condition, rows) for condition in search.conditions)


def _holds(condition: Condition, rows: list[IndexRow]) -> bool:
    if isinstance(condition, AnyOf):
        return any(_holds(criterion, rows) for criterion in condition.criteria)
    if not isinstance(condition, Criterion):
        return False  # refused by ``unsupported`` when the search was stored
    code = condition.parameter.code
    own = [row for row in rows if row.param == code]
    found = any(_row_matches(row, value, condition.modifier) for row in own for value in condition.values)
    if condition.modifier == "not":
        return not any(_row_matches(row, value, None) for row in own for value in condition.values)
    return found


def _row_matches(row: IndexRow, value: Value, modifier: str | None) -> bool:
    if isinstance(row, TokenRow) and isinstance(value, TokenValue):
        if value.code is not None and row.code != value.code:
            return False
        if value.system_given or value.system is not None:
            return row.system == value.system
        return True
    if isinstance(row, StringRow) and isinstance(value, StringValue):
        if modifier == "exact":
            return row.exact == value.text
        return row.normalized.startswith(fold(value.text))
    if isinstance(row, UriRow) and isinstance(value, UriValue):
        return row.uri == value.uri
    if isinstance(row, DateRow) and isinstance(value, DateValue):
        return _date_matches(row, value)
    if isinstance(row, ReferenceRow) and isinstance(value, ReferenceValue):
        if value.url is not None:
            return row.url == value.url
        return row.target_id == value.target_id and value.target_type in (None, row.target_type)
    return False


def _date_matches(row: DateRow, value: DateValue) -> bool:
    """The target ``[low, high)`` against the value's range by its prefix (search.html#prefix), as
    ``store.search.values.date`` compares them in SQL, open Period ends included."""
    low, high = row.low, row.high

    def ends_after(bound: datetime) -> bool:
        return high > bound if bound < datetime.max else high == bound

    def starts_before(bound: datetime) -> bool:
        return low < bound if bound > datetime.min else low == bound

    contained = low >= value.low and high <= value.high
    match value.prefix:
        case "eq":
            return contained
        case "ne":
            return not contained
        case "gt":
            return ends_after(value.high)
        case "lt":
            return starts_before(value.low)
        case "ge":
            return ends_after(value.high) or contained
        case "le":
            return starts_before(value.low) or contained
        case "sa":
            return low >= value.high
        case "eb":
            return high <= value.low
    return False  # ap: refused by ``unsupported``
