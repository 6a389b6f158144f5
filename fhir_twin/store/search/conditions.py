"""Search conditions → SQL: which ids of a type meet a criterion, a chain, ``_has`` or a compartment.

Every condition becomes ``id IN (SELECT res_id FROM idx_... WHERE ...)`` so both databases can
drive the query from the most selective index (R4 search.html#chaining, #has, #combining).
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import CTE, ColumnElement, Select, and_, false, literal, or_, select, true, tuple_, union

from fhir_twin.search.parameters import patient_compartment
from fhir_twin.search.query import (
    AnyOf,
    CodeSet,
    CompositeValue,
    Condition,
    Criterion,
    DateValue,
    InCompartment,
    Narrowed,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    ReverseChain,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)
from fhir_twin.store import audit_index
from fhir_twin.store.schema import INDEX_TABLE, idx_reference, resource
from fhir_twin.store.search import values

_MILLISECOND = timedelta(milliseconds=1)
# Token modifiers answered from a value set or a code system's hierarchy (R4 search.html#token).
TERMINOLOGY_MODIFIERS = frozenset({"in", "not-in", "above", "below"})


def index_table(kind: str, res_type: str) -> Any:
    """A fresh alias of the index rows of ``kind`` for ``res_type``: for AuditEvent, the audit
    trail's own index seen in the same shape (``store.audit_index``)."""
    if res_type == audit_index.AUDIT_TYPE and kind in audit_index.KINDS:
        return audit_index.view(kind)
    return INDEX_TABLE[kind].alias()


def where(res_type: str, ids: Any, condition: Condition, base: str, correlated: bool = False) -> ColumnElement[bool]:
    """The condition on ``ids`` (a column of ``res_type`` ids) that ``condition`` states.

    ``correlated`` asks for ``EXISTS`` probes of the index by resource instead of ``IN`` over the
    set of all matches: cheaper when another condition (or the scan order) already narrows the
    resources to look at.
    """
    if isinstance(condition, AnyOf):
        return or_(*(where(res_type, ids, part, base, correlated) for part in condition.criteria))
    if isinstance(condition, InCompartment):
        return _compartment(res_type, ids, condition)
    if isinstance(condition, Narrowed):
        if condition.resource_type != res_type:
            return true()
        ways = (and_(true(), *(where(res_type, ids, part, base, correlated) for part in way)) for way in condition.ways)
        return or_(false(), *ways)
    if isinstance(condition, ReverseChain):
        ref = index_table("reference", condition.source_type)
        sources = select(ref.c.target_id).where(
            ref.c.res_type == condition.source_type,
            ref.c.param == condition.reference.code,
            ref.c.target_type == res_type,
            where(condition.source_type, ref.c.res_id, condition.criterion, base),
        )
        if condition.within is not None:
            sources = sources.where(_compartment(condition.source_type, ref.c.res_id, InCompartment(condition.within)))
        if condition.narrowed is not None:
            sources = sources.where(where(condition.source_type, ref.c.res_id, condition.narrowed, base))
        return _member(ids, sources, correlated=correlated)
    return _criterion(res_type, ids, condition, base, correlated)


def _member(ids: Any, rows: Select[Any], negate: bool = False, correlated: bool = False) -> ColumnElement[bool]:
    """``ids`` among the first column of ``rows``: ``IN`` a set, or an ``EXISTS`` probe per id."""
    if correlated:
        probe = rows.where(rows.selected_columns[0] == ids).exists()
        return ~probe if negate else probe
    return ids.not_in(rows) if negate else ids.in_(rows)


def _criterion(res_type: str, ids: Any, criterion: Criterion, base: str, correlated: bool) -> ColumnElement[bool]:
    parameter = criterion.parameter
    if parameter.code == "_id":
        wanted = [value.code for value in criterion.values if isinstance(value, TokenValue)]
        return ids.not_in(wanted) if criterion.modifier == "not" else ids.in_(wanted)
    if parameter.code == "_lastUpdated":
        if criterion.missing is not None:
            return false() if criterion.missing else true()
        stamped_by = resource.alias()
        stamped = select(stamped_by.c.res_id).where(
            stamped_by.c.res_type == res_type,
            or_(
                *(
                    values.date(stamped_by.c.last_updated, None, value, width=_MILLISECOND)
                    for value in criterion.values
                    if isinstance(value, DateValue)
                )
            ),
        )
        return _member(ids, stamped, correlated=correlated)
    if parameter.type == "composite":
        return _composite(res_type, ids, criterion, base, correlated)
    table = index_table(parameter.type, res_type)
    rows = select(table.c.res_id).where(table.c.res_type == res_type, table.c.param == parameter.code)
    if criterion.missing is not None:
        return _member(ids, rows, negate=criterion.missing, correlated=correlated)
    if criterion.chain is not None and criterion.chain_type is not None:
        chained = where(criterion.chain_type, table.c.target_id, criterion.chain, base)
        if criterion.within is not None:
            held = InCompartment(criterion.within)
            chained = and_(chained, _compartment(criterion.chain_type, table.c.target_id, held))
        if criterion.narrowed is not None:
            chained = and_(chained, where(criterion.chain_type, table.c.target_id, criterion.narrowed, base))
        return _member(ids, rows.where(table.c.target_type == criterion.chain_type, chained), correlated=correlated)
    if criterion.modifier in TERMINOLOGY_MODIFIERS and parameter.type == "token":
        # Resolved to codes by ``store.search.terminology`` where the search runs; elsewhere unsupported.
        sets = [value for value in criterion.values if isinstance(value, CodeSet)]
        if not sets:
            raise values.unsupported(parameter.code, criterion.modifier)
        in_set = rows.where(or_(*(values.code_set(table, value) for value in sets)))
        return _member(ids, in_set, negate=criterion.modifier == "not-in", correlated=correlated)
    matched = rows.where(
        or_(
            *(
                _value(table, parameter.type, value, criterion.modifier, base, parameter.targets)
                for value in criterion.values
            )
        )
    )
    return _member(ids, matched, negate=criterion.modifier == "not", correlated=correlated)


def _value(
    table: Any, kind: str, value: Value, modifier: str | None, base: str, targets: tuple[str, ...] = ()
) -> ColumnElement[bool]:
    if isinstance(value, StringValue):
        return values.string(table, value, modifier)
    if isinstance(value, TokenValue):
        return values.token(table, value, None if modifier == "not" else modifier)
    if isinstance(value, ReferenceValue):
        return values.reference(table, value, modifier, base, targets)
    if isinstance(value, DateValue):
        return values.date(table.c.low, table.c.high, value)
    if isinstance(value, QuantityValue):
        return values.quantity(table, value)
    if isinstance(value, NumberValue):
        return values.number(table.c.value, value)
    if isinstance(value, UriValue):
        return values.uri(table, value, modifier)
    return false()  # Unmatchable: no stored resource holds it


def _composite(res_type: str, ids: Any, criterion: Criterion, base: str, correlated: bool) -> ColumnElement[bool]:
    """Component rows of one composite value share a group (R4 search.html#composite)."""
    components = criterion.parameter.components
    tables = [INDEX_TABLE[component.parameter.type].alias() for component in components]
    first = tables[0]
    if criterion.missing is not None:  # a composite value is indexed only when every component has one
        code = f"{criterion.parameter.code}#0"
        present = select(first.c.res_id).where(first.c.res_type == res_type, first.c.param == code)
        return _member(ids, present, negate=criterion.missing, correlated=correlated)
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
    return or_(*(_member(ids, match, correlated=correlated) for match in matches))


def _compartment(res_type: str, ids: Any, condition: InCompartment) -> ColumnElement[bool]:
    """Membership of the compartment's set, which every type's condition shares (one CTE)."""
    members = _compartment_set(condition)
    return ids.in_(select(members.c.res_id).where(members.c.res_type == res_type))


def in_compartment(condition: InCompartment) -> ColumnElement[bool]:
    """Membership of the compartment stated once for every type, so that the database can start from
    its members rather than read every resource in order to test each type's condition."""
    members = _compartment_set(condition)
    return tuple_(resource.c.res_type, resource.c.res_id).in_(select(members.c.res_type, members.c.res_id))


def compartment_members(condition: InCompartment) -> CTE:
    """``(res_type, res_id)`` of every member of the compartment (see ``_compartment_set``)."""
    return _compartment_set(condition)


@lru_cache(maxsize=64)
def _compartment_set(condition: InCompartment) -> CTE:
    """``(res_type, res_id)`` of the patient itself, of resources linking to it by a compartment parameter
    of their type, and with ``referenced`` of what those refer to, other Patients apart (R4
    compartmentdefinition-patient.html). Built once per condition so a search of many types names it once."""
    patient_id = condition.patient_id
    link = idx_reference.alias()
    linked = select(link.c.res_type, link.c.res_id).where(
        link.c.target_type == "Patient",
        *([] if patient_id is None else [link.c.target_id == patient_id]),
        or_(*(and_(link.c.param == code, link.c.res_type.in_(types)) for code, types in _compartment_codes())),
    )
    # AuditEvents are members through ``patient``, in the audit trail's own index.
    audit = index_table("reference", audit_index.AUDIT_TYPE)
    audited = select(audit.c.res_type, audit.c.res_id).where(
        audit.c.param == "patient",
        audit.c.target_type == "Patient",
        *([] if patient_id is None else [audit.c.target_id == patient_id]),
    )
    if patient_id is None:
        itself = select(resource.c.res_type, resource.c.res_id).where(resource.c.res_type == "Patient")
    else:
        itself = select(literal("Patient").label("res_type"), literal(patient_id).label("res_id"))
    members = union(linked, audited, itself).cte()
    if not condition.referenced:
        return members
    ref = idx_reference.alias()
    referenced = select(ref.c.target_type, ref.c.target_id).where(
        tuple_(ref.c.res_type, ref.c.res_id).in_(select(members.c.res_type, members.c.res_id)),
        ref.c.target_type != "Patient",
        ref.c.target_id.is_not(None),
    )
    return union(select(members.c.res_type, members.c.res_id), referenced).cte()


@cache
def _compartment_codes() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each compartment parameter code with the types it links to a Patient in."""
    by_code: dict[str, list[str]] = {}
    for res_type, codes in patient_compartment().items():
        for code in codes:
            by_code.setdefault(code, []).append(res_type)
    return tuple((code, tuple(types)) for code, types in sorted(by_code.items()))
