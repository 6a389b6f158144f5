"""The AuditEvents the server records are indexed from their Occurrence directly (``audit_index``);
every search on the trail relies on those rows being exactly what the search parameters'
FHIRPath expressions select from the stored event (``extract``)."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from fhir_twin.audit.event import Occurrence, audit_event
from fhir_twin.audit.index import audit_index
from fhir_twin.search.extract import extract

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


@pytest.mark.parametrize("occurrence", occurrences(), ids=lambda occurrence: occurrence.event_id)
def test_the_direct_rows_are_those_the_search_parameters_select(occurrence: Occurrence) -> None:
    event = audit_event(occurrence)
    event["meta"] = {"versionId": "1", "lastUpdated": "2026-11-30T12:00:00.000+00:00"}

    direct = audit_index(occurrence)

    assert len(direct) == len(set(direct))
    assert set(direct) == set(extract(event))
