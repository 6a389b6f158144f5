"""The index rows of the AuditEvents this server records, made straight from their Occurrence.

Every read is audited, so these records are the server's most frequent write, and running the
FHIRPath expressions of AuditEvent's search parameters (``search.extract``) on each cost more
than serving the read. The rows here are exactly those ``extract`` gives for the event that
``audit_event`` builds (tests/audit/test_audit_index.py holds the two together on every shape
of event); only their making is direct. R4 auditevent.html#search gives the parameters.
"""

from __future__ import annotations

import re
from datetime import timedelta

from fhir_twin.audit.event import (
    CLIENT_SYSTEM,
    ENTITY_TYPE,
    OBJECT_ROLE,
    OPERATION_SYSTEM,
    REST_TYPE,
    RESTFUL_INTERACTION,
    SERVER_NAME,
    TOKEN_SYSTEM,
    Occurrence,
    outcome,
)
from fhir_twin.search.fhirpath import reference_target
from fhir_twin.search.index import DateRow, IndexRow, ReferenceRow, StringRow, TokenRow
from fhir_twin.search.text import fold

_MILLISECOND = timedelta(milliseconds=1)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_TYPE = TokenRow("type", REST_TYPE["system"], REST_TYPE["code"], fold(REST_TYPE["display"]))
_SERVER_NAME = StringRow("agent-name", fold(SERVER_NAME), SERVER_NAME)
# The three kinds of entity: (entity-type, entity-role) rows of each.
_RESOURCE = (
    TokenRow("entity-type", ENTITY_TYPE, "2", fold("System Object")),
    TokenRow("entity-role", OBJECT_ROLE, "4", fold("Domain Resource")),
)
_PERSON = (
    TokenRow("entity-type", ENTITY_TYPE, "1", fold("Person")),
    TokenRow("entity-role", OBJECT_ROLE, "1", fold("Patient")),
)
_QUERY = (_RESOURCE[0], TokenRow("entity-role", OBJECT_ROLE, "24", fold("Query")))


def audit_index(occurrence: Occurrence) -> list[IndexRow]:
    """The index rows of ``audit_event(occurrence)``, each once."""
    system = TOKEN_SYSTEM if occurrence.agent_kind == "token" else CLIENT_SYSTEM
    low = occurrence.recorded.replace(microsecond=occurrence.recorded.microsecond // 1000 * 1000)
    rows: list[IndexRow] = [
        TokenRow("action", None, occurrence.action),
        TokenRow("outcome", None, outcome(occurrence.status)),
        _TYPE,
        TokenRow("subtype", RESTFUL_INTERACTION, occurrence.interaction),
        DateRow("date", low, low + _MILLISECOND),
        ReferenceRow("agent", None, None, None, system, occurrence.agent),
    ]
    if occurrence.operation:
        rows.append(TokenRow("subtype", OPERATION_SYSTEM, occurrence.operation))
    if occurrence.agent:
        rows.append(StringRow("agent-name", fold(occurrence.agent), occurrence.agent))
    if occurrence.address:
        rows.append(StringRow("address", fold(occurrence.address), occurrence.address))
    if occurrence.user:
        rows.append(StringRow("agent-name", fold(occurrence.user), occurrence.user))
        rows += _user(occurrence.user)
    rows.append(_SERVER_NAME)
    if occurrence.site:
        rows.append(StringRow("address", fold(occurrence.site), occurrence.site))
        rows.append(TokenRow("site", None, occurrence.site))
    for reference in occurrence.resources:
        rows += _RESOURCE
        rows += _what(reference)
    for patient in occurrence.patients:
        rows += _PERSON
        rows += _what(f"Patient/{patient}")
    if occurrence.query is not None:
        rows += _QUERY
    return list(dict.fromkeys(rows))


def _user(user: str) -> list[IndexRow]:
    """The human user agent: a reference when the JWT named a resource, else an identifier."""
    if "/" in user and not user.startswith("http"):
        return _referenced("agent", user)
    return [ReferenceRow("agent", None, None, None, CLIENT_SYSTEM, user)]


def _what(reference: str) -> list[IndexRow]:
    return _referenced("entity", reference)


def _referenced(param: str, reference: str) -> list[IndexRow]:
    """The rows of ``param`` and, when it names a Patient, of ``patient``: an absolute reference
    is kept as its URL (no server base is known here), a relative one as ``Type/id``."""
    target = reference_target(reference)
    values = (None, None, reference) if _SCHEME.match(reference) else target
    if values is None:
        return []
    rows: list[IndexRow] = [ReferenceRow(param, *values)]
    if target is not None and target[0] == "Patient":
        rows.append(ReferenceRow("patient", *values))
    return rows
