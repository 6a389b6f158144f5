"""Statements sent on the database driver's own cursor, for the hottest paths.

SQLAlchemy's execution of a statement (its execution context, result object and events) costs
more than the database's work on a small one: an index row's insert took 11.5 µs through it and
5.5 µs on the driver on SQLite, and a read by id with its connection's checkout 68 µs against 12 µs
(``docs/performance.md`` section 4). These statements keep SQLAlchemy's compiled SQL and its
column types' conversions, and their errors are raised as SQLAlchemy raises them (a duplicate key
is an ``IntegrityError``), so callers see one kind of error whichever way a statement went.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Select
from sqlalchemy.exc import DBAPIError


@contextmanager
def driver_cursor(connection: Connection, statement: str) -> Iterator[Any]:
    """A cursor of the driver's, in the connection's transaction."""
    driver = connection.connection.driver_connection
    assert driver is not None
    dbapi_error = connection.dialect.loaded_dbapi.Error
    cursor = driver.cursor()  # sqlite3's cursors are no context managers
    try:
        yield cursor
    except dbapi_error as error:
        raise DBAPIError.instance(statement, None, error, dbapi_error) from error
    finally:
        cursor.close()


def first_row(connection: Connection, statement: Select[Any], parameters: dict[str, Any]) -> tuple[Any, ...] | None:
    """The first row of ``statement``, in the connection's transaction."""
    compiled = _compiled(connection.dialect, statement)
    with driver_cursor(connection, compiled.sql) as cursor:
        cursor.execute(compiled.sql, compiled.parameters(parameters))
        row = cursor.fetchone()
    return compiled.converted(row)


def first_row_alone(engine: Engine, statement: Select[Any], parameters: dict[str, Any]) -> tuple[Any, ...] | None:
    """The first row of ``statement`` run as a transaction of its own, which one statement needs no
    other for: it reads one consistent snapshot by itself. SQLite's driver connections are in
    autocommit mode (``database._configure_sqlite``), so the statement is its own implicit
    transaction; PostgreSQL's connection is put in autocommit for it, one round trip instead of
    three (``BEGIN``, the statement, and the pool's ``ROLLBACK`` when the connection goes back).
    The connection comes from the engine's pool and goes back to it in its default mode; one the
    database dropped is discarded, as SQLAlchemy discards it."""
    compiled = _compiled(engine.dialect, statement)
    pooled = engine.raw_connection()
    try:
        driver = pooled.driver_connection
        assert driver is not None
        postgresql = engine.dialect.name == "postgresql"
        if postgresql:
            driver.autocommit = True
        cursor = driver.cursor()
        try:
            cursor.execute(compiled.sql, compiled.parameters(parameters))
            row = cursor.fetchone()
        except engine.dialect.loaded_dbapi.Error as error:
            dropped = engine.dialect.is_disconnect(error, driver, cursor)
            if dropped:
                pooled.invalidate(error)
            raise DBAPIError.instance(
                compiled.sql, None, error, engine.dialect.loaded_dbapi.Error, connection_invalidated=dropped
            ) from error
        finally:
            cursor.close()
            if postgresql and not driver.closed:
                driver.autocommit = False
    finally:
        pooled.close()
    return compiled.converted(row)


@dataclass(frozen=True)
class _Compiled:
    """A statement's SQL for one dialect, the order of its parameters (None: by name) and the
    conversions of its parameters and of its result's columns by their SQLAlchemy types."""

    statement: Select[Any]  # kept so its id, the cache's key, is not reused
    sql: str
    defaults: dict[str, Any]  # the values of the statement's own literals, and None for the rest
    positions: tuple[str, ...] | None
    binds: dict[str, Callable[[Any], Any]]
    results: tuple[tuple[int, Callable[[Any], Any]], ...]

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        converted = {**self.defaults, **values}
        for name, process in self.binds.items():
            if converted.get(name) is not None:
                converted[name] = process(converted[name])
        if self.positions is None:
            return converted
        return tuple(converted[name] for name in self.positions)

    def converted(self, row: Any) -> tuple[Any, ...] | None:
        if row is None:
            return None
        if not self.results:
            return tuple(row)
        values = list(row)
        for place, process in self.results:
            values[place] = process(values[place])
        return tuple(values)


_COMPILED: dict[tuple[str, int], _Compiled] = {}


def _compiled(dialect: Dialect, statement: Select[Any]) -> _Compiled:
    key = (dialect.name, id(statement))
    found = _COMPILED.get(key)
    if found is not None:
        return found
    compiled = statement.compile(dialect=dialect)
    if any(bind.expanding for bind in compiled.binds.values()):
        raise ValueError("a statement with an expanding parameter (IN) needs SQLAlchemy's rendering")
    binds: dict[str, Callable[[Any], Any]] = {}
    for name, bind in compiled.binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binds[name] = process
    results = []
    for place, column in enumerate(statement.selected_columns):
        process = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if process is not None:
            results.append((place, process))
    positions = tuple(compiled.positiontup) if compiled.positiontup is not None else None
    found = _Compiled(statement, compiled.string, dict(compiled.params), positions, binds, tuple(results))
    _COMPILED[key] = found
    return found
