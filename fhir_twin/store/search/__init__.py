"""Running a ``Search`` against the index tables: matches, sorting, keyset pages, totals, includes.

Pages are chained by a cursor holding the last row's sort values and identity, so a client
paging through results never sees an entry twice or misses one because another client wrote
in between (R4 http.html#paging; HAPI's cached-list alternative grows stale).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, false, func, or_, select, true

from fhir_twin.errors import Invalid
from fhir_twin.search.query import Condition, Criterion, Include, InCompartment, Search, SortKey
from fhir_twin.store import audit_index
from fhir_twin.store.schema import resource, resource_version
from fhir_twin.store.search.conditions import in_compartment, index_table, where
from fhir_twin.store.search.terminology import resolve
from fhir_twin.store.version import CURRENT, Version, columns

INCLUDE_LIMIT = 1000
ITERATE_DEPTH = 3


@dataclass(frozen=True)
class Page:
    matches: list[Version]
    next_cursor: str | None
    previous_cursor: str | None
    total: int | None


def search(connection: Connection, query: Search, base: str) -> Page:
    """One page of current, live resources meeting ``query``, and the cursors of its neighbours.

    A cursor is the sort values and identity of a page's edge row with a direction: ``next``
    pages start after it, ``previous`` pages end before it. ``_count=0`` asks for the total
    alone (search.html#count): no rows, so no neighbours.
    """
    query = resolve(connection, query)
    if query.count == 0:
        return Page([], None, None, count(connection, query, base))
    keys = [sort_value(key, query.resource_types) for key in query.sort]
    conditions = [resource.c.deleted.is_(False), _types_and_conditions(query, base)]
    backwards = False
    if query.cursor is not None:
        backwards, edge = _decode(query.cursor, len(keys))
        conditions.append(_before(query, keys, edge) if backwards else _after(query, keys, edge))
    order = []
    for key, expression in zip(query.sort, keys, strict=True):
        descending = key.descending != backwards
        # Nulls sort last reading forwards, so first when reading backwards.
        order.append(expression.desc() if descending else expression.asc())
        order[-1] = order[-1].nulls_first() if backwards else order[-1].nulls_last()
    identity = (
        [resource.c.res_type.desc(), resource.c.res_id.desc()]
        if backwards
        else [resource.c.res_type, resource.c.res_id]
    )
    statement = (
        select(*columns(resource_version), *keys)
        .select_from(CURRENT)
        .where(*conditions)
        .order_by(*order, *identity)
        .limit(query.count + 1)
    )
    rows = list(connection.execute(statement).all())
    more = len(rows) > query.count
    rows = rows[: query.count]
    if backwards:
        rows.reverse()
    width = len(columns(resource_version))
    matches = [Version(*row[:width]) for row in rows]
    edges = (
        [_encode(direction, [*row[width:], row[0], row[1]]) for direction, row in (("b", rows[0]), ("a", rows[-1]))]
        if rows
        else []
    )
    next_cursor = edges[1] if rows and (more or backwards) else None
    previous_cursor = edges[0] if rows and query.cursor is not None and (more or not backwards) else None
    total = None
    if query.total in ("accurate", "estimate") or query.summary == "count":
        total = count(connection, query, base)
    elif query.cursor is None and not more:
        total = len(matches)  # the whole result is on this page: its size costs nothing
    return Page(matches, next_cursor, previous_cursor, total)


def count(connection: Connection, query: Search, base: str) -> int:
    query = resolve(connection, query)
    statement = (
        select(func.count())
        .select_from(resource)
        .where(resource.c.deleted.is_(False), _types_and_conditions(query, base))
    )
    return connection.execute(statement).scalar_one()


def matching(query: Search, base: str) -> ColumnElement[bool]:
    """The condition a row of ``resource`` meets when it is live and matches ``query``: for
    queries built beside the search's own (the twin API's patients list, joined to the Doctor's
    assessments)."""
    return and_(resource.c.deleted.is_(False), _types_and_conditions(query, base))


def _types_and_conditions(query: Search, base: str) -> ColumnElement[bool]:
    """Every condition, for every searched type.

    One condition drives the query as ``IN`` the set it matches — the one likely to match
    fewest resources — and the others are ``EXISTS`` probes of the resources it yields. With no
    selective condition and the default order, every condition is a probe: resources are read
    in id order and the page fills early, whatever the size of the data.
    """
    ranked = sorted(query.conditions, key=_selectivity)
    drive = bool(ranked) and (_selectivity(ranked[0]) <= _SELECTIVE or bool(query.sort))
    per_type = []
    for res_type in query.resource_types:
        parts = [
            where(res_type, resource.c.res_id, condition, base, correlated=not (drive and number == 0))
            for number, condition in enumerate(ranked)
        ]
        per_type.append(and_(resource.c.res_type == res_type, *parts))
    # A compartment is one set across types: stated once as well, the database can start from it.
    compartments = [in_compartment(c) for c in query.conditions if isinstance(c, InCompartment)]
    return and_(*compartments, or_(*per_type) if per_type else false())


# Ranks of how few resources a condition is likely to match; up to _SELECTIVE it drives the query.
_SELECTIVE = 2


def _selectivity(condition: Condition) -> int:
    if isinstance(condition, InCompartment):
        return 1
    if not isinstance(condition, Criterion) or condition.missing is not None or condition.modifier in ("not", "text"):
        return 9
    code, kind = condition.parameter.code, condition.parameter.type
    if code == "_id" or code.endswith("identifier"):
        return 0
    if kind == "reference" and condition.chain is None:
        return 1
    if kind == "string":
        return 2
    if kind == "token":
        return 3
    return 9


def sort_value(key: SortKey, types: tuple[str, ...]) -> Any:
    """The value a resource sorts by: the smallest (ascending) or largest (descending) of its index
    values for the parameter (R4 search.html#sort)."""
    parameter = key.parameter
    if parameter.code == "_id":
        return resource.c.res_id
    if parameter.code == "_lastUpdated":
        return resource.c.last_updated
    table = index_table(parameter.type, types[0] if len(types) == 1 else "")
    column = {
        "string": table.c.get("normalized"),
        "token": table.c.get("code"),
        "reference": table.c.get("target_id"),
        "date": table.c.get("high") if key.descending else table.c.get("low"),
        "number": table.c.get("value"),
        "quantity": table.c.get("value"),
        "uri": table.c.get("uri"),
    }[parameter.type]
    aggregate = func.max(column) if key.descending else func.min(column)
    return (
        select(aggregate)
        .where(
            table.c.res_type == resource.c.res_type,
            table.c.res_id == resource.c.res_id,
            table.c.param == parameter.code,
        )
        .scalar_subquery()
    )


def _after(query: Search, keys: list[Any], cursor: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after the cursor in the sort order (nulls last in either direction)."""
    *sort_values, last_type, last_id = cursor
    condition: ColumnElement[bool] = or_(
        resource.c.res_type > last_type, and_(resource.c.res_type == last_type, resource.c.res_id > last_id)
    )
    for key, expression, value in reversed(list(zip(query.sort, keys, sort_values, strict=True))):
        if value is None:
            condition = and_(expression.is_(None), condition)
            continue
        beyond = expression < value if key.descending else expression > value
        condition = or_(beyond, expression.is_(None), and_(expression == value, condition))
    return condition


def _before(query: Search, keys: list[Any], cursor: list[Any]) -> ColumnElement[bool]:
    """Rows strictly before the cursor in the sort order (the mirror of ``_after``)."""
    *sort_values, first_type, first_id = cursor
    condition: ColumnElement[bool] = or_(
        resource.c.res_type < first_type, and_(resource.c.res_type == first_type, resource.c.res_id < first_id)
    )
    for key, expression, value in reversed(list(zip(query.sort, keys, sort_values, strict=True))):
        if value is None:
            condition = or_(expression.is_not(None), and_(expression.is_(None), condition))
            continue
        ahead = expression > value if key.descending else expression < value
        condition = or_(ahead, and_(expression == value, condition))
    return condition


def _encode(direction: str, values: list[Any]) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return {"t": value.isoformat()}
        if isinstance(value, Decimal | float):
            return {"n": str(value)}
        return value

    text = json.dumps([direction, *(plain(value) for value in values)], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str, keys: int) -> tuple[bool, list[Any]]:
    """Whether the cursor reads backwards, and its row's sort values and identity."""

    def typed(value: Any) -> Any:
        if isinstance(value, dict) and "t" in value:
            return datetime.fromisoformat(value["t"])
        if isinstance(value, dict) and "n" in value:
            return Decimal(value["n"])
        return value

    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != keys + 3 or raw[0] not in ("a", "b"):
            raise ValueError("wrong shape")
        return raw[0] == "b", [typed(value) for value in raw[1:]]
    except (ValueError, TypeError):
        message = f"_cursor {cursor[:40]!r} is not a page position this server made for this search"
        raise Invalid.at("_cursor", message) from None


def included(connection: Connection, query: Search, matches: list[Version]) -> list[Version]:
    """Resources named by ``_include`` and ``_revinclude`` (with ``:iterate``), at most
    ``INCLUDE_LIMIT`` (R4 search.html#include)."""
    seen = {(version.res_type, version.res_id) for version in matches}
    found: list[Version] = []
    frontier = list(seen)
    for depth in range(ITERATE_DEPTH):
        keys: set[tuple[str, str]] = set()
        for include in query.includes:
            if depth == 0 or include.iterate:
                keys |= _forward(connection, include, frontier)
        for include in query.revincludes:
            if depth == 0 or include.iterate:
                keys |= _reverse(connection, include, frontier)
        new = sorted(keys - seen)[: INCLUDE_LIMIT - len(found)]
        if not new:
            break
        seen |= set(new)
        found.extend(_current(connection, new))
        frontier = new
        if len(found) >= INCLUDE_LIMIT:
            break
    return found


def _forward(connection: Connection, include: Include, frontier: list[tuple[str, str]]) -> set[tuple[str, str]]:
    ids = [res_id for res_type, res_id in frontier if res_type == include.source_type]
    if not ids:
        return set()
    ref = index_table("reference", include.source_type)
    statement = select(ref.c.target_type, ref.c.target_id).where(
        ref.c.res_type == include.source_type, ref.c.res_id.in_(ids), ref.c.target_id.is_not(None)
    )
    if include.parameter is not None:
        statement = statement.where(ref.c.param == include.parameter.code)
    if include.target_type is not None:
        statement = statement.where(ref.c.target_type == include.target_type)
    return {(row[0], row[1]) for row in connection.execute(statement)}


def _reverse(connection: Connection, include: Include, frontier: list[tuple[str, str]]) -> set[tuple[str, str]]:
    if not frontier:
        return set()
    found: set[tuple[str, str]] = set()
    sources = ("", audit_index.AUDIT_TYPE) if include.source_type == "*" else (include.source_type,)
    for source in sources:
        found |= _reverse_from(connection, include, frontier, index_table("reference", source))
    return found


def _reverse_from(
    connection: Connection, include: Include, frontier: list[tuple[str, str]], ref: Any
) -> set[tuple[str, str]]:
    """The resources in ``ref`` (an index of references) that ``include`` adds for ``frontier``."""
    targets = or_(
        *(
            and_(ref.c.target_type == res_type, ref.c.target_id.in_([i for t, i in frontier if t == res_type]))
            for res_type in {t for t, _ in frontier}
        )
    )
    statement = select(ref.c.res_type, ref.c.res_id).where(targets)
    if include.source_type != "*":
        statement = statement.where(ref.c.res_type == include.source_type)
    if include.target_type is not None:
        statement = statement.where(ref.c.target_type == include.target_type)
    if include.parameter is not None:
        statement = statement.where(ref.c.param == include.parameter.code)
    return {(row[0], row[1]) for row in connection.execute(statement)}


def _current(connection: Connection, keys: list[tuple[str, str]]) -> list[Version]:
    by_type: dict[str, list[str]] = {}
    for res_type, res_id in keys:
        by_type.setdefault(res_type, []).append(res_id)
    condition = or_(
        *(and_(resource.c.res_type == res_type, resource.c.res_id.in_(ids)) for res_type, ids in by_type.items())
    )
    statement = (
        select(*columns(resource_version))
        .select_from(CURRENT)
        .where(resource.c.deleted.is_(False), condition if by_type else true())
        .order_by(resource.c.res_type, resource.c.res_id)
    )
    return [Version(*row) for row in connection.execute(statement)]
