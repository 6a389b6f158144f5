"""Writing a resource's index rows, in the same transaction as the version they describe."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, text

from fhir_twin.search.index import ROW_TYPES, IndexRow, ReferenceRow
from fhir_twin.store.driver import driver_cursor
from fhir_twin.store.schema import INDEX_TABLE, INDEX_TABLES, idx_reference, resource

TABLE_OF: dict[type[IndexRow], Table] = {ROW_TYPES[kind]: table for kind, table in INDEX_TABLE.items()}
_DELETES = {
    table.name: delete(table).where(table.c.res_type == bindparam("key_type"), table.c.res_id == bindparam("key_id"))
    for table in INDEX_TABLES
}
# On PostgreSQL the same deletes in one statement, one round trip instead of one per table: every
# data-modifying statement in WITH runs to completion whether or not the query reads it (PostgreSQL
# manual, "Data-Modifying Statements in WITH").
_DELETE_ALL = text(
    "WITH "
    + ", ".join(
        f"{table.name} AS (DELETE FROM {table.name} WHERE res_type = :key_type AND res_id = :key_id)"
        for table in INDEX_TABLES
    )
    + " SELECT 1"
)


def replace_index(connection: Connection, res_type: str, res_id: str, rows: list[IndexRow], fresh: bool) -> None:
    """Make ``rows`` the index of ``res_type/res_id``; ``fresh`` when it never had rows before."""
    if not fresh and connection.dialect.name == "postgresql":
        connection.execute(_DELETE_ALL, {"key_type": res_type, "key_id": res_id})
    elif not fresh:
        for statement in _DELETES.values():
            connection.execute(statement, {"key_type": res_type, "key_id": res_id})
    by_table: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    add_rows(by_table, res_type, res_id, rows)
    insert_rows(connection, by_table)


# Indexed text is cut to a length every database can hold in a B-tree entry (PostgreSQL refuses
# entries over about 2.7 kB); unindexed columns such as ``exact`` keep the whole value.
INDEXED_LENGTH = 500
_INDEXED_TEXT = ("normalized", "system", "code", "text", "type_system", "type_code", "url", "uri", "canonical_code")
# The longest id ``target_id`` holds (a FHIR id has at most 64 characters): a longer one names no
# resource here, so its row keeps no target.
_TARGET_ID_LENGTH = 64


@dataclass(frozen=True)
class _Layout:
    """How a kind of index row becomes an insert's values: ``res_type``, ``res_id`` and then its
    fields in order, as a tuple (``group`` fills ``grp``), so no dict is built per row."""

    table: Table
    columns: tuple[str, ...]
    take: Callable[[IndexRow], tuple[Any, ...]]
    # Positions in ``take``'s tuple of indexed text, and of ``target_type`` and ``target_id``.
    texts: tuple[int, ...]
    target: tuple[int, int] | None


def _layout(kind: type[IndexRow], table: Table) -> _Layout:
    names = tuple(kind.__dataclass_fields__)
    target = (names.index("target_type"), names.index("target_id")) if kind is ReferenceRow else None
    return _Layout(
        table,
        ("res_type", "res_id", *("grp" if name == "group" else name for name in names)),
        attrgetter(*names),
        tuple(place for place, name in enumerate(names) if name in _INDEXED_TEXT),
        target,
    )


_LAYOUT = {kind: _layout(kind, table) for kind, table in TABLE_OF.items()}
_TABLES = {table.name: table for table in INDEX_TABLES}
_COLUMNS = {layout.table.name: layout.columns for layout in _LAYOUT.values()}


def add_rows(by_table: dict[str, list[tuple[Any, ...]]], res_type: str, res_id: str, rows: list[IndexRow]) -> None:
    """Add ``rows`` as insert values, per index table (``insert_rows`` sends them)."""
    for row in rows:
        layout = _LAYOUT[type(row)]
        values = layout.take(row)
        if _too_long(values, layout):
            values = _fitted(values, layout)
        by_table[layout.table.name].append((res_type, res_id, *values))


def _too_long(values: tuple[Any, ...], layout: _Layout) -> bool:
    for place in layout.texts:
        text = values[place]
        if text is not None and len(text) > INDEXED_LENGTH:
            return True
    if layout.target is not None:
        target_id = values[layout.target[1]]
        return target_id is not None and len(target_id) > _TARGET_ID_LENGTH
    return False


def _fitted(values: tuple[Any, ...], layout: _Layout) -> tuple[Any, ...]:
    """Indexed text cut to ``INDEXED_LENGTH``; a target id too long for its column dropped with its type."""
    fitted = list(values)
    for place in layout.texts:
        if fitted[place] is not None:
            fitted[place] = fitted[place][:INDEXED_LENGTH]
    if layout.target is not None:
        target_type, target_id = layout.target
        if fitted[target_id] is not None and len(fitted[target_id]) > _TARGET_ID_LENGTH:
            fitted[target_type] = fitted[target_id] = None
    return tuple(fitted)


def insert_rows(connection: Connection, by_table: dict[str, list[tuple[Any, ...]]]) -> None:
    """One multi-row insert per index table, of the values ``add_rows`` made."""
    for name, rows in by_table.items():
        _insert_tuples(connection, _TABLES[name], _COLUMNS[name], rows)


def insert_many(connection: Connection, table: Table, values_list: list[dict[str, Any]]) -> None:
    """One multi-row insert of ``values_list`` (rows with the same keys) into ``table``.

    On SQLite and PostgreSQL the rows go to the driver with the column types' own conversions:
    SQLAlchemy's per-row parameter processing costs more than the database's insert of an index
    row. Keys that are not columns of ``table`` are left out, as SQLAlchemy's ``insert`` leaves them.
    """
    if not values_list:
        return
    names = tuple(name for name in values_list[0] if name in table.c)
    take = itemgetter(*names)
    _insert_tuples(connection, table, names, [take(values) for values in values_list])


def _insert_tuples(connection: Connection, table: Table, names: tuple[str, ...], rows: list[Any]) -> None:
    """Rows of values in the order of the columns ``names``, converted by the column types and sent."""
    if not rows:
        return
    if connection.dialect.name not in ("sqlite", "postgresql"):
        connection.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])
        return
    converting = [(place, process) for place, process in enumerate(_processors(connection, table, names)) if process]
    if converting:
        rows = [_converted(list(row), converting) for row in rows]
    if connection.dialect.name == "sqlite":
        sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        _send(connection, sql, rows, many=True)
    elif len(rows) < COPY_FROM:
        row = f"({', '.join(['%s'] * len(names))})"
        sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES {', '.join([row] * len(rows))}"
        _send(connection, sql, tuple(value for row_values in rows for value in row_values), many=False)
    else:
        _copy(connection, f"COPY {table.name} ({', '.join(names)}) FROM STDIN", rows)


def _send(connection: Connection, sql: str, parameters: Any, many: bool) -> None:
    """An insert of converted rows on the driver's own cursor, in the connection's transaction:
    SQLAlchemy's execution of a statement (its context, result and events) cost as much as
    SQLite's insert of one index row (a one-row insert 11.5 µs through it, 5.5 µs on the driver),
    and a create sends about ten inserts while it holds SQLite's write gate."""
    with driver_cursor(connection, sql) as cursor:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)


# Rows from which PostgreSQL gets a COPY rather than one multi-row INSERT. A COPY takes two round
# trips (its start and its end), the INSERT one; past this many rows COPY's cheaper parsing of the
# rows is worth the second round trip (and keeps the INSERT far below the 65,535 parameters a
# statement may have).
COPY_FROM = 100


def _copy(connection: Connection, statement: str, rows: list[Any]) -> None:
    """PostgreSQL's bulk load on the driver, in the connection's transaction."""
    with driver_cursor(connection, statement) as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _converted(row: list[Any], converting: list[tuple[int, Any]]) -> tuple[Any, ...]:
    for place, process in converting:
        if row[place] is not None:
            row[place] = process(row[place])
    return tuple(row)


_PROCESSORS: dict[tuple[str, str, tuple[str, ...]], list[Any]] = {}


def _processors(connection: Connection, table: Table, names: tuple[str, ...]) -> list[Any]:
    key = (connection.dialect.name, table.name, names)
    found = _PROCESSORS.get(key)
    if found is None:
        dialect = connection.dialect
        found = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names]
        _PROCESSORS[key] = found
    return found


def clear_index(connection: Connection, res_type: str, ids: list[str]) -> None:
    """Remove every index row of the given resources (a reindex batch)."""
    for table in INDEX_TABLES:
        connection.execute(delete(table).where(table.c.res_type == res_type, table.c.res_id.in_(ids)))


def live_keys(connection: Connection, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of ``keys`` (type, id) name live resources."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for res_type, res_id in keys:
        by_type[res_type].append(res_id)
    found: set[tuple[str, str]] = set()
    for res_type, ids in by_type.items():
        for start in range(0, len(ids), 500):
            rows = connection.execute(_LIVE, {"res_type": res_type, "ids": ids[start : start + 500]})
            found.update((res_type, row[0]) for row in rows)
    return found


# Built once: every write with references asks it (``DatabaseTransaction.check_integrity``).
_LIVE = select(resource.c.res_id).where(
    resource.c.res_type == bindparam("res_type"),
    resource.c.res_id.in_(bindparam("ids", expanding=True)),
    resource.c.deleted.is_(False),
)


# Records of what happened: they name resources that may since be gone, or never existed (a
# refused read), so their references neither need a target nor keep one from being deleted.
RECORD_TYPES = ("AuditEvent",)


def referrer_of(connection: Connection, target: tuple[str, str]) -> tuple[str, str] | None:
    """A live resource that refers to ``target``, if any (index rows exist for live ones only)."""
    row = connection.execute(
        select(idx_reference.c.res_type, idx_reference.c.res_id)
        .where(idx_reference.c.target_type == target[0], idx_reference.c.target_id == target[1])
        .where(idx_reference.c.res_type.not_in(RECORD_TYPES))
        .where((idx_reference.c.res_type != target[0]) | (idx_reference.c.res_id != target[1]))
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else None
