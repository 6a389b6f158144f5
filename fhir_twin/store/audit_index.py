"""The audit trail's search index: a row per AuditEvent (``audit_record``) and per entity or user
it names (``audit_entity``), seen by searches in the shape of the generic index tables.

Every read is audited, so AuditEvents are the most written resources, and their ~18 generic
index rows cost more than serving the read. These rows hold the same facts: ``view`` unfolds
them into exactly the rows ``search.extract`` gives for the stored event
(tests/audit/test_audit_index.py), so every search feature works on AuditEvent unchanged
(R4 auditevent.html#search).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    String,
    Subquery,
    Text,
    cast,
    delete,
    literal_column,
    null,
    or_,
    select,
    union_all,
)

from fhir_twin.fhir.balp import (
    CLIENT_SYSTEM,
    DCM,
    ENTITY_TYPE,
    OBJECT_ROLE,
    OPERATION_SYSTEM,
    PATIENT_ENTITY,
    QUERY_ENTITY,
    RESOURCE_ENTITY,
    REST_TYPE,
    RESTFUL_INTERACTION,
    SERVER_NAME,
)
from fhir_twin.search.extract import extract
from fhir_twin.search.fhirpath import reference_target
from fhir_twin.search.index import DateRow
from fhir_twin.search.text import fold
from fhir_twin.store.indexing import insert_many
from fhir_twin.store.schema import audit_entity, audit_record

AUDIT_TYPE = "AuditEvent"
_MILLISECOND = timedelta(milliseconds=1)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_ROLES = {RESOURCE_ENTITY[1][0]: "resource", PATIENT_ENTITY[1][0]: "patient"}


def audit_rows(event: dict[str, Any], low: datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``audit_record`` row and ``audit_entity`` rows of ``event``, recorded at ``low`` (to
    the millisecond)."""
    res_id = event["id"]
    subtypes = {coding.get("system"): coding.get("code") for coding in event.get("subtype", [])}
    agents = event.get("agent", [])
    client = agents[0] if agents else {}
    identifier = client.get("who", {}).get("identifier", {})
    agent = identifier.get("value", "")
    address = client.get("network", {}).get("address")
    # Agents are the client, the human user a JWT named (if any), then this server.
    user = user_who = None
    for other in agents[1:-1]:
        user, user_who = other.get("name"), other.get("who", {})
    site = event.get("source", {}).get("site") or None
    entities: list[dict[str, Any]] = []
    query = False
    for entity in event.get("entity", []):
        role = _ROLES.get(entity.get("role", {}).get("code"))
        if role is None:
            query = True
            continue
        entities.append(_entity(res_id, role, entity.get("what", {}).get("reference", "")))
    user_reference = user_who is not None and "reference" in user_who
    if user_who is not None and user_reference:
        entities.append(_entity(res_id, "user", user_who["reference"]))
    record = {
        "res_id": res_id,
        "low": low,
        "high": low + _MILLISECOND,
        "action": event["action"],
        "outcome": event["outcome"],
        "interaction": subtypes.get(RESTFUL_INTERACTION, ""),
        "operation": subtypes.get(OPERATION_SYSTEM),
        "agent_system": identifier.get("system", ""),
        "agent": agent,
        "agent_folded": fold(agent),
        "address": address,
        "address_folded": fold(address) if address else None,
        "user_name": user,
        "user_folded": fold(user) if user else None,
        "user_reference": user_reference,
        "site": site,
        "site_folded": fold(site) if site else None,
        "query": query,
    }
    return record, entities


def _entity(res_id: str, role: str, reference: str) -> dict[str, Any]:
    """A named resource's row: an absolute reference kept as its URL (no server base is known
    here), a relative one as type and id, an unparsable one as neither."""
    target = reference_target(reference)
    absolute = _SCHEME.match(reference) is not None
    return {
        "res_id": res_id,
        "role": role,
        "target_type": None if absolute or target is None else target[0],
        "target_id": None if absolute or target is None else target[1],
        "url": reference if absolute else None,
        "patient": target is not None and target[0] == "Patient",
    }


def write(connection: Connection, records: list[dict[str, Any]], entities: list[dict[str, Any]]) -> None:
    """Insert the rows of newly recorded AuditEvents."""
    insert_many(connection, audit_record, records)
    insert_many(connection, audit_entity, entities)


def clear(connection: Connection, ids: list[str]) -> None:
    """Remove the rows of the given AuditEvents (a reindex batch)."""
    for table in (audit_record, audit_entity):
        connection.execute(delete(table).where(table.c.res_id.in_(ids)))


def rewrite(connection: Connection, events: list[dict[str, Any]]) -> None:
    """Replace the rows of stored ``events`` (a reindex, an upgrade)."""
    clear(connection, [event["id"] for event in events])
    records, entities = [], []
    for event in events:
        lows = [row.low for row in extract(event) if isinstance(row, DateRow) and row.param == "date"]
        record, named = audit_rows(event, lows[0])
        records.append(record)
        entities += named
    write(connection, records, entities)


# --- the rows searches see ---------------------------------------------------------------------


def _sql(value: str) -> ColumnElement[Any]:
    """A constant written into the SQL (not bound), so the database drops a view's branches
    whose parameter is not the one searched before reading anything."""
    if "'" in value:
        raise ValueError(f"not a constant for SQL: {value!r}")
    return literal_column(f"'{value}'", Text)


def _null(kind: Any = Text) -> ColumnElement[Any]:
    return cast(null(), kind)


def _head(table: Any, param: str) -> list[ColumnElement[Any]]:
    return [
        literal_column(f"'{AUDIT_TYPE}'", String(64)).label("res_type"),
        table.c.res_id.label("res_id"),
        _sql(param).label("param"),
        literal_column("0", Integer).label("grp"),
    ]


def _value(value: Any) -> ColumnElement[Any]:
    if value is None:
        return _null()
    return _sql(value) if isinstance(value, str) else value


def _token(table: Any, param: str, system: Any, code: Any, text: str | None, *where: Any) -> Select[Any]:
    return select(
        *_head(table, param),
        _value(system).label("system"),
        _value(code).label("code"),
        _value(fold(text) if text else None).label("text"),
        _null().label("type_system"),
        _null().label("type_code"),
    ).where(*where)


def _tokens() -> list[Select[Any]]:
    r, e = audit_record, audit_entity
    arms = [
        _token(r, "action", None, r.c.action, None),
        _token(r, "outcome", None, r.c.outcome, None),
        _token(r, "type", DCM, REST_TYPE["code"], REST_TYPE["display"]),
        _token(r, "subtype", RESTFUL_INTERACTION, r.c.interaction, None),
        _token(r, "subtype", OPERATION_SYSTEM, r.c.operation, None, r.c.operation.is_not(None)),
        _token(r, "site", None, r.c.site, None, r.c.site.is_not(None)),
    ]
    for role, ((type_code, type_display), (role_code, role_display)) in (
        ("resource", RESOURCE_ENTITY),
        ("patient", PATIENT_ENTITY),
    ):
        arms.append(_token(e, "entity-type", ENTITY_TYPE, type_code, type_display, e.c.role == _sql(role)))
        arms.append(_token(e, "entity-role", OBJECT_ROLE, role_code, role_display, e.c.role == _sql(role)))
    (type_code, type_display), (role_code, role_display) = QUERY_ENTITY
    arms.append(_token(r, "entity-type", ENTITY_TYPE, type_code, type_display, r.c.query.is_(True)))
    arms.append(_token(r, "entity-role", OBJECT_ROLE, role_code, role_display, r.c.query.is_(True)))
    return arms


def _string(param: str, normalized: Any, exact: Any, *where: Any) -> Select[Any]:
    r = audit_record
    return select(*_head(r, param), _value(normalized).label("normalized"), _value(exact).label("exact")).where(*where)


def _strings() -> list[Select[Any]]:
    r = audit_record
    return [
        _string("agent-name", r.c.agent_folded, r.c.agent, r.c.agent != _sql("")),
        _string("agent-name", r.c.user_folded, r.c.user_name, r.c.user_name.is_not(None)),
        _string("agent-name", fold(SERVER_NAME), SERVER_NAME),
        _string("address", r.c.address_folded, r.c.address, r.c.address.is_not(None)),
        _string("address", r.c.site_folded, r.c.site, r.c.site.is_not(None)),
    ]


def _reference(
    table: Any, param: str, target: tuple[Any, Any, Any], identifier: tuple[Any, Any], *where: Any
) -> Select[Any]:
    return select(
        *_head(table, param),
        (target[0] if target[0] is not None else _null(String(64))).label("target_type"),
        (target[1] if target[1] is not None else _null(String(64))).label("target_id"),
        (target[2] if target[2] is not None else _null()).label("url"),
        _value(identifier[0]).label("identifier_system"),
        _value(identifier[1]).label("identifier_value"),
    ).where(*where)


def _references() -> list[Select[Any]]:
    r, e = audit_record, audit_entity
    named = (e.c.target_type, e.c.target_id, e.c.url)
    parsed = or_(e.c.target_id.is_not(None), e.c.url.is_not(None))
    return [
        _reference(r, "agent", (None, None, None), (r.c.agent_system, r.c.agent)),
        _reference(
            r,
            "agent",
            (None, None, None),
            (CLIENT_SYSTEM, r.c.user_name),
            r.c.user_name.is_not(None),
            r.c.user_reference.is_(False),
        ),
        _reference(e, "agent", named, (None, None), e.c.role == _sql("user"), parsed),
        _reference(e, "entity", named, (None, None), e.c.role != _sql("user"), parsed),
        _reference(e, "patient", named, (None, None), e.c.patient.is_(True), parsed),
    ]


def _dates() -> list[Select[Any]]:
    r = audit_record
    return [select(*_head(r, "date"), r.c.low.label("low"), r.c.high.label("high"))]


_ARMS = {"token": _tokens, "string": _strings, "reference": _references, "date": _dates}
KINDS = frozenset(_ARMS)


def view(kind: str) -> Subquery:
    """The AuditEvent rows of the generic index table of ``kind`` (token, string, reference or
    date), with its columns; a new alias each call, as a table's ``alias()``."""
    arms = _ARMS[kind]()
    return union_all(*arms).subquery()
