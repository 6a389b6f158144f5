"""The twin's fact rows: written with the resource version they come from, read as of any instant.

A row is valid from its source version's ``last_updated`` until the next version of that
resource (or its delete) closes it, so "the twin now" reads open rows and "the twin as the
server held it at R" (``recorded``) reads rows valid at R — from the same table the live write
path keeps. Clinical time (``at``) is another axis: what the rows say happened before T.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)

from fhir_twin.store.driver import first_row
from fhir_twin.store.repository import DatabaseTransaction
from fhir_twin.store.schema import (
    TWIN_TABLES,
    idx_reference,
    resource,
    resource_version,
    twin_case,
    twin_measurement,
)
from fhir_twin.store.version import CURRENT, Version, columns

MEASUREMENT_COLUMNS = tuple(c.name for c in twin_measurement.c if c.name != "seq")
# What the Digital Body reads of a measurement (twin/body.py): its field, reading and source.
_READ = tuple(
    twin_measurement.c[name]
    for name in (
        "field",
        "effective",
        "value",
        "category",
        "original_value",
        "original_unit",
        "converted",
        "flag",
        "res_type",
        "res_id",
        "res_version",
    )
)
CASE_COLUMNS = tuple(c.name for c in twin_case.c if c.name != "seq")

_CLOSE = {
    table.name: update(table)
    .where(table.c.res_type == bindparam("key_type"), table.c.res_id == bindparam("key_id"), table.c.valid_to.is_(None))
    .values(valid_to=bindparam("closed"))
    .returning(table.c.patient_id)
    for table in TWIN_TABLES
}


def close_facts(tx: DatabaseTransaction, version: Version) -> set[str]:
    """End the facts of ``version``'s resource where ``version`` replaces them; the patients they were of."""
    connection = tx.connection
    patients: set[str] = set()
    for statement in _CLOSE.values():
        result = connection.execute(
            statement, {"key_type": version.res_type, "key_id": version.res_id, "closed": version.last_updated}
        )
        patients.update(result.scalars())
    return patients


def stage_facts(
    tx: DatabaseTransaction,
    version: Version,
    measurements: list[dict[str, Any]],
    entries: list[dict[str, Any]],
) -> None:
    """Insert the facts ``version`` gives, valid from it on unless a row says until when."""
    source = {
        "res_type": version.res_type,
        "res_id": version.res_id,
        "res_version": version.version,
        "valid_from": version.last_updated,
        "valid_to": None,
    }
    if measurements:
        tx.stage(twin_measurement, [{**source, **row} for row in measurements])
    if entries:
        tx.stage(twin_case, [{**source, **row} for row in entries])


def measurement_rows(
    connection: Connection,
    patient_id: str,
    *,
    at: datetime | None = None,
    recorded: datetime | None = None,
    field: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[dict[str, Any]]:
    """A patient's measurements as the server held them at ``recorded`` (now when None), taken
    before ``at`` (exclusive) when given, oldest first. A measurement with no time cannot be
    placed before ``at`` and is left out then.

    Each row holds the columns the Body reads, as a dict built from the result's keys once: a
    patient may have 100,000 rows, and ``Row._mapping`` per row cost more than the query
    (docs/performance.md §3.12)."""
    bounds = _bounds(patient_id, at=at, recorded=recorded, field=field, start=start, end=end)
    result = connection.execute(_measurements(*(name in bounds for name in _OPTIONAL)), bounds)
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


def measured_fields(
    connection: Connection, patient_id: str, *, at: datetime | None = None, recorded: datetime | None = None
) -> set[str]:
    """The fields of which ``measurement_rows`` (with the same times) would give any row: read
    from the patient's index alone, without the rows."""
    bounds = _bounds(patient_id, at=at, recorded=recorded)
    return set(connection.execute(_fields("at" in bounds, "recorded" in bounds), bounds).scalars())


def case_rows(
    connection: Connection, patient_id: str, *, at: datetime | None = None, recorded: datetime | None = None
) -> list[dict[str, Any]]:
    """A patient's case entries as the server held them at ``recorded`` (now when None), by
    kind then start; with ``at``, those that had started before it, and those with no start,
    which the record does not place in time."""
    bounds = _bounds(patient_id, at=at, recorded=recorded)
    return [dict(row._mapping) for row in connection.execute(_cases("at" in bounds, "recorded" in bounds), bounds)]


def version_at(connection: Connection, res_type: str, res_id: str, recorded: datetime | None) -> Version | None:
    """The version current just before ``recorded`` (the newest when None); a delete included."""
    bounds = {"res_type": res_type, "res_id": res_id} | ({} if recorded is None else {"recorded": recorded})
    row = connection.execute(_version_at(recorded is not None), bounds).first()
    return Version(*row) if row else None


# The readers' statements, one per shape of their optional bounds, built once with bound
# parameters: the Doctor reads a twin for every patient it assesses, and building and compiling
# the expressions anew cost more than running them.
_OPTIONAL = ("at", "recorded", "field", "start", "end")


def _bounds(patient_id: str, **optional: Any) -> dict[str, Any]:
    return {"patient_id": patient_id} | {name: value for name, value in optional.items() if value is not None}


@cache
def _measurements(at: bool, recorded: bool, field: bool, start: bool, end: bool) -> Select[Any]:
    t = twin_measurement
    conditions = [t.c.patient_id == bindparam("patient_id"), _valid(t, recorded)]
    if at:
        conditions.append(t.c.effective < bindparam("at"))
    if field:
        conditions.append(t.c.field == bindparam("field"))
    if start:
        conditions.append(t.c.effective >= bindparam("start"))
    if end:
        conditions.append(t.c.effective < bindparam("end"))
    # NULLs sort first on both databases, so every client sees one order.
    return select(*_READ).where(*conditions).order_by(t.c.field, t.c.effective.is_not(None), t.c.effective, t.c.res_id)


@cache
def _fields(at: bool, recorded: bool) -> Select[Any]:
    t = twin_measurement
    conditions = [t.c.patient_id == bindparam("patient_id"), _valid(t, recorded)]
    if at:
        conditions.append(t.c.effective < bindparam("at"))
    return select(t.c.field).where(*conditions).distinct()


@cache
def _cases(at: bool, recorded: bool) -> Select[Any]:
    t = twin_case
    conditions = [t.c.patient_id == bindparam("patient_id"), _valid(t, recorded)]
    if at:
        conditions.append(or_(t.c.start.is_(None), t.c.start < bindparam("at")))
    return select(t).where(*conditions).order_by(t.c.kind, t.c.start.is_not(None), t.c.start, t.c.res_id)


@cache
def _version_at(recorded: bool) -> Select[Any]:
    v = resource_version
    query = select(*columns(v)).where(v.c.res_type == bindparam("res_type"), v.c.res_id == bindparam("res_id"))
    if recorded:
        query = query.where(v.c.last_updated < bindparam("recorded"))
    return query.order_by(v.c.version.desc()).limit(1)


def _valid(table: Table, recorded: bool) -> ColumnElement[bool]:
    """Rows the server held just before the bound ``recorded`` (exclusive: the end of the time a
    client named); the open rows without it."""
    if not recorded:
        return table.c.valid_to.is_(None)
    at: BindParameter[datetime] = bindparam("recorded")
    return and_(table.c.valid_from < at, or_(table.c.valid_to.is_(None), table.c.valid_to >= at))


# One statement for every table: each new Patient's write asks it, holding SQLite's write gate.
_HOLDS_FACTS = select(
    or_(
        *(
            exists().where(table.c.patient_id == bindparam("patient_id"), table.c.valid_to.is_(None))
            for table in TWIN_TABLES
        )
    )
)


def holds_facts(tx: DatabaseTransaction, patient_id: str) -> bool:
    """Whether the patient's twin holds any current fact (a measurement or a case entry)."""
    row = first_row(tx.connection, _HOLDS_FACTS, {"patient_id": patient_id})
    return bool(row and row[0])


def lock_facts(connection: Connection) -> None:
    """Hold writers of twin facts off until this transaction ends (PostgreSQL; SQLite's write
    transactions are serialised already), so a rebuild and a live write cannot interleave."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("LOCK TABLE twin_measurement, twin_case IN EXCLUSIVE MODE"))


def sources_of(connection: Connection, patient_id: str, types: frozenset[str]) -> set[tuple[str, str]]:
    """Resources that feed, fed, or may feed a patient's twin: its rows' sources, its current
    referrers, and every resource any version of which names it (deleted and moved ones too)."""
    found: set[tuple[str, str]] = set()
    v = resource_version
    # Resource ids are [A-Za-z0-9.-]: nothing in them is a LIKE wildcard.
    named = or_(v.c.body.like(f'%Patient/{patient_id}"%'), v.c.body.like(f"%Patient/{patient_id}/_history/%"))
    query = select(v.c.res_type, v.c.res_id).where(v.c.res_type.in_(sorted(types)), named).distinct()
    found.update((row[0], row[1]) for row in connection.execute(query))
    for table in TWIN_TABLES:
        query = select(table.c.res_type, table.c.res_id).where(table.c.patient_id == patient_id).distinct()
        found.update((row[0], row[1]) for row in connection.execute(query))
    r = idx_reference
    query = (
        select(r.c.res_type, r.c.res_id)
        .where(r.c.target_type == "Patient", r.c.target_id == patient_id, r.c.res_type.in_(sorted(types)))
        .distinct()
    )
    found.update((row[0], row[1]) for row in connection.execute(query))
    return found


def clear_facts(connection: Connection, sources: set[tuple[str, str]] | None = None) -> None:
    """Remove every fact row, or those of the given source resources."""
    for table in TWIN_TABLES:
        if sources is None:
            connection.execute(delete(table))
            continue
        keys = sorted(sources)
        for first in range(0, len(keys), 500):
            chunk = keys[first : first + 500]
            connection.execute(delete(table).where(tuple_(table.c.res_type, table.c.res_id).in_(chunk)))


def versions_of(
    connection: Connection, types: frozenset[str], sources: set[tuple[str, str]] | None = None, batch: int = 2000
) -> Iterator[Version]:
    """Every stored version of the given types (or of just ``sources``), per resource in order."""
    v = resource_version
    if sources is not None:
        keys = sorted(sources)
        for first in range(0, len(keys), 500):
            chunk = keys[first : first + 500]
            query = select(*columns(v)).where(tuple_(v.c.res_type, v.c.res_id).in_(chunk))
            rows = connection.execute(query.order_by(v.c.res_type, v.c.res_id, v.c.version)).all()
            yield from (Version(*row) for row in rows)
        return
    after: tuple[str, str, int] = ("", "", 0)
    while True:
        query = (
            select(*columns(v))
            .where(v.c.res_type.in_(sorted(types)), tuple_(v.c.res_type, v.c.res_id, v.c.version) > tuple_(*after))
            .order_by(v.c.res_type, v.c.res_id, v.c.version)
            .limit(batch)
        )
        rows = connection.execute(query).all()
        if not rows:
            return
        yield from (Version(*row) for row in rows)
        last = rows[-1]
        after = (last[0], last[1], last[2])


def count_versions(connection: Connection, types: frozenset[str]) -> int:
    """How many versions ``versions_of`` will give for a full rebuild (for progress)."""
    v = resource_version
    return connection.execute(select(func.count()).where(v.c.res_type.in_(sorted(types)))).scalar_one()


def fact_table_rows(connection: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every fact row without its surrogate key, sorted: for comparing two builds of a twin."""
    out = {}
    for table, names in ((twin_measurement, MEASUREMENT_COLUMNS), (twin_case, CASE_COLUMNS)):
        rows = connection.execute(select(*(table.c[name] for name in names))).all()
        out[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return out


def population(
    connection: Connection, condition_kind: str, patient_id: str | None = None
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every live patient (or one) and the twin's current usable measurements and case entries
    of ``condition_kind``, for training and learned models: (patient id, body), (patient, field,
    time, value, category, source type, id, version), (patient, code, display, onset, source
    type, id, version)."""

    def patient(column: Any) -> list[ColumnElement[bool]]:
        return [column == patient_id] if patient_id is not None else []

    patients = connection.execute(
        select(resource.c.res_id, resource_version.c.body)
        .select_from(CURRENT)
        .where(resource.c.res_type == "Patient", resource.c.deleted.is_(False), *patient(resource.c.res_id))
        .order_by(resource.c.res_id)
    ).all()
    m = twin_measurement.c
    measurements = connection.execute(
        select(m.patient_id, m.field, m.effective, m.value, m.category, m.res_type, m.res_id, m.res_version)
        .where(m.valid_to.is_(None), m.flag.is_(None), *patient(m.patient_id))
        .order_by(m.patient_id, m.field, m.effective)
    ).all()
    c = twin_case.c
    conditions = connection.execute(
        select(c.patient_id, c.code, c.display, c.start, c.res_type, c.res_id, c.res_version)
        .where(c.valid_to.is_(None), c.kind == condition_kind, *patient(c.patient_id))
        .order_by(c.patient_id, c.start)
    ).all()
    return [tuple(row) for row in patients], [tuple(row) for row in measurements], [tuple(row) for row in conditions]
