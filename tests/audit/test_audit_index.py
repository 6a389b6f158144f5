"""The AuditEvents the server records are indexed in the audit trail's own tables
(``store.audit_index``); every search on the trail relies on the rows its views unfold being
exactly what the search parameters' FHIRPath expressions select from the stored event
(``extract``), on both databases."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from fhir_twin.audit.event import Occurrence, audit_event
from fhir_twin.audit.recorder import write_records
from fhir_twin.search.extract import extract
from fhir_twin.search.index import DateRow, IndexRow, ReferenceRow, StringRow, TokenRow
from fhir_twin.store import audit_index
from fhir_twin.store.database import make_engine, migrate
from fhir_twin.store.repository import Repository

USERS = (
    None,
    "Practitioner/pr1",
    "Patient/p9",
    "https://idp.example/users/7",
    "alice",
    "a/b/c",
    "urn:x/y",
    "urn:a/Patient/p4",
    "Ünïcode User",
)
AGENTS = (("ehr", "token"), ("client-app", "client"), ("fhir-twin doctor", "server"), ("", "token"))
ADDRESSES = (None, "10.1.2.3", "::1")
SITES = ("", "http://localhost/fhir", "https://fhir.example.org/R4")
TOUCHED = (
    ([], set()),
    (["Patient/p1/_history/2"], {"p1"}),
    (["Observation/o1/_history/1", "Condition/c1/_history/3"], {"p1", "p2"}),
    (["Patient/p1"], set()),
    (["http://other.example/fhir/Patient/p5/_history/1"], set()),
    ([], {"p3"}),
)
QUERIES = (None, "/fhir/Observation?subject=Patient%2Fp1&code=8867-4")
ENDINGS = (
    ("read", "R", 200, None, None),
    ("operation", "E", 200, None, "everything"),
    ("create", "C", 403, "denied", None),
)
RECORDED = (datetime(2026, 11, 30, 12, 0, 0, 123456), datetime(2026, 1, 1), datetime(2026, 6, 30, 23, 59, 59, 999999))


def occurrences() -> list[Occurrence]:
    found = []
    cases = itertools.product(USERS, AGENTS, ADDRESSES, SITES, TOUCHED, QUERIES, ENDINGS)
    for number, (user, agent, address, site, touched, query, ending) in enumerate(cases):
        if number % 29:  # One in 29 of the combinations, spread over all of them.
            continue
        interaction, action, status, diagnostics, operation = ending
        found.append(
            Occurrence(
                event_id=f"e{number}",
                recorded=RECORDED[number % len(RECORDED)],
                interaction=interaction,
                action=action,
                status=status,
                agent=agent[0],
                agent_kind=agent[1],
                user=user,
                address=address,
                diagnostics=diagnostics,
                operation=operation,
                query=query,
                resources=list(touched[0]),
                patients=set(touched[1]),
                site=site,
            )
        )
    return found


ROWS = {"token": TokenRow, "string": StringRow, "reference": ReferenceRow, "date": DateRow}


def indexed(repository: Repository, res_id: str) -> list[IndexRow]:
    """The rows the audit trail's views show for one AuditEvent, as index rows."""
    found: list[IndexRow] = []
    with repository.transaction() as tx:
        for kind, row_type in ROWS.items():
            view = audit_index.view(kind)
            names = [name for name in row_type.__dataclass_fields__ if name != "group"]
            rows = tx.connection.execute(
                select(*(view.c[name] for name in names), view.c.grp).where(view.c.res_id == res_id)
            )
            found += [row_type(*row) for row in rows]
    return found


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, postgres_database: str | None) -> Iterator[Repository]:
    """Every occurrence recorded, on the database the tests run on."""
    url = postgres_database or f"sqlite:///{tmp_path_factory.mktemp('audit-index') / 'fhir-twin.db'}"
    engine = make_engine(url)
    migrate(engine)
    repository = Repository(engine)
    with repository.transaction(write=True) as tx:
        tx.connection.execute(audit_index.audit_record.delete())
        tx.connection.execute(audit_index.audit_entity.delete())
        write_records(tx, occurrences(), "")
    yield repository
    engine.dispose()


@pytest.mark.parametrize("occurrence", occurrences(), ids=lambda occurrence: occurrence.event_id)
def test_the_audit_index_shows_the_rows_the_search_parameters_select(
    recorded: Repository, occurrence: Occurrence
) -> None:
    event = audit_event(occurrence)
    event["meta"] = {"versionId": "1", "lastUpdated": "2026-11-30T12:00:00.000+00:00"}

    assert set(indexed(recorded, occurrence.event_id)) == set(extract(event))


def test_a_reindex_writes_the_same_rows(recorded: Repository) -> None:
    chosen = occurrences()[:20]
    before = {occurrence.event_id: set(indexed(recorded, occurrence.event_id)) for occurrence in chosen}
    events: list[dict[str, Any]] = [audit_event(occurrence) for occurrence in chosen]
    with recorded.transaction(write=True) as tx:
        audit_index.rewrite(tx.connection, events)
    assert {res_id: set(indexed(recorded, res_id)) for res_id in before} == before
