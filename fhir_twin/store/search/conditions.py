"""Search conditions → SQL: which ids of a type meet a criterion, a chain, ``_has`` or a compartment.

Every condition becomes ``id IN (SELECT res_id FROM idx_... WHERE ...)`` so both databases can
drive the query from the most selective index (R4 search.html#chaining, #has, #combining).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, or_, select, true

from fhir_twin.search.query import (
    AnyOf,
    CompositeValue,
    Condition,
    Criterion,
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    ReverseChain,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)
from fhir_twin.store.schema import (
    idx_date,
    idx_number,
    idx_quantity,
    idx_reference,
    idx_string,
    idx_token,
    idx_uri,
    resource,
)
from fhir_twin.store.search import values

TABLES = {
    "string": idx_string,
    "token": idx_token,
    "reference": idx_reference,
    "date": idx_date,
    "number": idx_number,
    "quantity": idx_quantity,
    "uri": idx_uri,
}
_MILLISECOND = timedelta(milliseconds=1)


def where(res_type: str, ids: Any, condition: Condition, base: str) -> ColumnElement[bool]:
    """The condition on ``ids`` (a column of ``res_type`` ids) that ``condition`` states."""
    if isinstance(condition, AnyOf):
        return or_(*(where(res_type, ids, part, base) for part in condition.criteria))
    if isinstance(condition, ReverseChain):
        ref = idx_reference.alias()
        sources = select(ref.c.target_id).where(
            ref.c.res_type == condition.source_type,
            ref.c.param == condition.reference.code,
            ref.c.target_type == res_type,
            where(condition.source_type, ref.c.res_id, condition.criterion, base),
        )
        return ids.in_(sources)
    return _criterion(res_type, ids, condition, base)


def _criterion(res_type: str, ids: Any, criterion: Criterion, base: str) -> ColumnElement[bool]:
    parameter = criterion.parameter
    if parameter.code == "_id":
        wanted = [value.code for value in criterion.values if isinstance(value, TokenValue)]
        return ids.not_in(wanted) if criterion.modifier == "not" else ids.in_(wanted)
    if parameter.code == "_lastUpdated":
        if criterion.missing is not None:
            return false() if criterion.missing else true()
        stamped = select(resource.c.res_id).where(
            resource.c.res_type == res_type,
            or_(
                *(
                    values.date(resource.c.last_updated, resource.c.last_updated + _MILLISECOND, value)
                    for value in criterion.values
                    if isinstance(value, DateValue)
                )
            ),
        )
        return ids.in_(stamped)
    if parameter.type == "composite":
        return _composite(res_type, ids, criterion, base)
    table = TABLES[parameter.type].alias()
    rows = select(table.c.res_id).where(table.c.res_type == res_type, table.c.param == parameter.code)
    if criterion.missing is not None:
        return ids.not_in(rows) if criterion.missing else ids.in_(rows)
    if criterion.chain is not None and criterion.chain_type is not None:
        chained = where(criterion.chain_type, table.c.target_id, criterion.chain, base)
        return ids.in_(rows.where(table.c.target_type == criterion.chain_type, chained))
    if criterion.modifier in ("in", "not-in", "above", "below") and parameter.type == "token":
        raise values.unsupported(parameter.code, criterion.modifier)
    matched = rows.where(
        or_(*(_value(table, parameter.type, value, criterion.modifier, base) for value in criterion.values))
    )
    return ids.not_in(matched) if criterion.modifier == "not" else ids.in_(matched)


def _value(table: Any, kind: str, value: Value, modifier: str | None, base: str) -> ColumnElement[bool]:
    if isinstance(value, StringValue):
        return values.string(table, value, modifier)
    if isinstance(value, TokenValue):
        return values.token(table, value, None if modifier == "not" else modifier)
    if isinstance(value, ReferenceValue):
        return values.reference(table, value, modifier, base)
    if isinstance(value, DateValue):
        return values.date(table.c.low, table.c.high, value)
    if isinstance(value, QuantityValue):
        return values.quantity(table, value)
    if isinstance(value, NumberValue):
        return values.number(table.c.value, value)
    if isinstance(value, UriValue):
        return values.uri(table, value, modifier)
    return false()


def _composite(res_type: str, ids: Any, criterion: Criterion, base: str) -> ColumnElement[bool]:
    """Component rows of one composite value share a group (R4 search.html#composite)."""
    components = criterion.parameter.components
    tables = [TABLES[component.parameter.type].alias() for component in components]
    first = tables[0]
    joined: Any = first
    for other in tables[1:]:
        joined = joined.join(
            other,
            and_(other.c.res_type == first.c.res_type, other.c.res_id == first.c.res_id, other.c.grp == first.c.grp),
        )
    matches: list[Select[Any]] = []
    for value in criterion.values:
        if not isinstance(value, CompositeValue):
            continue
        conditions = [first.c.res_type == res_type]
        for index, (component, table, part) in enumerate(zip(components, tables, value.parts, strict=True)):
            conditions.append(table.c.param == f"{criterion.parameter.code}#{index}")
            conditions.append(_value(table, component.parameter.type, part, None, base))
        matches.append(select(first.c.res_id).select_from(joined).where(*conditions))
    if not matches:
        return false()
    return or_(*(ids.in_(match) for match in matches))
