"""A search matched against one resource in memory (``search.resource_match``): the same answers
the database gives for the forms topics and backport filters use, and a refusal for the rest."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from fhir_twin.search.parser import parse
from fhir_twin.search.resource_match import matches, unsupported

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "gender": "female",
    "name": [{"family": "Ólafsdóttir", "given": ["Anna"]}],
    "generalPractitioner": [{"reference": "Practitioner/gp1"}],
    "identifier": [{"system": "urn:oid:1.2.36", "value": "12345"}],
}


def search(query: str) -> Any:
    pairs = [tuple(part.split("=", 1)) for part in query.split("&")]
    return parse(("Patient",), pairs, strict=True, default_count=1, max_count=1)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("gender=female", True),
        ("gender=male", False),
        ("gender:not=male", True),
        ("gender:not=female", False),
        ("gender=male,female", True),
        ("family=olaf", True),
        ("family:exact=Olafsdottir", False),
        ("family:exact=Ólafsdóttir", True),
        ("general-practitioner=Practitioner/gp1", True),
        ("general-practitioner=Practitioner/gp2", False),
        ("identifier=urn:oid:1.2.36|12345", True),
        ("identifier=urn:oid:9|12345", False),
        ("gender=female&family=smith", False),
    ],
)
def test_a_search_is_answered_from_the_body(query: str, expected: bool) -> None:
    searched = search(query)
    assert unsupported(searched) is None
    assert matches(searched, PATIENT) is expected
    assert matches(searched, None) is False


@pytest.mark.parametrize(
    ("query", "named"),
    [("birthdate=ap2000", "birthdate=ap"), ("family:contains=laf", "family:contains"), ("_id=p1", "_id")],
)
def test_what_cannot_be_answered_in_memory_is_named(query: str, named: str) -> None:
    reason = unsupported(search(query))
    assert reason is not None and named in reason


DATED: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "born-day", "birthDate": "1990-06-15"},
    {"resourceType": "Patient", "id": "born-year", "birthDate": "1990"},
    {"resourceType": "Patient", "id": "born-later", "birthDate": "1991-03-01"},
    {"resourceType": "Patient", "id": "no-birth-date"},
]
DATE_QUERIES = [
    f"birthdate={prefix}{value}"
    for prefix in ("", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
    for value in ("1990", "1990-06", "1990-06-15", "1990-06-16", "1989-12-31", "1991-01-01")
]


ENCOUNTERS: list[dict[str, Any]] = [
    {"resourceType": "Encounter", "id": f"e-{name}", "status": "finished", "class": {"code": "AMB"}, **period}
    for name, period in (
        ("closed", {"period": {"start": "1990-06-15T08:00:00Z", "end": "1990-06-20T10:00:00Z"}}),
        ("open-end", {"period": {"start": "1990-06-15T08:00:00Z"}}),
        ("open-start", {"period": {"end": "1990-06-15T08:00:00Z"}}),
        ("none", {}),
    )
]
ENCOUNTER_QUERIES = [
    f"date={prefix}{value}"
    for prefix in ("", "ne", "gt", "lt", "ge", "le", "sa", "eb")
    for value in ("1990", "1990-06-15", "1990-06-18", "1989", "2100")
]


@pytest.mark.parametrize(
    ("resources", "queries"), [(DATED, DATE_QUERIES), (ENCOUNTERS, ENCOUNTER_QUERIES)], ids=["dates", "periods"]
)
def test_dates_are_answered_as_the_database_answers_them(
    app: Flask, resources: list[dict[str, Any]], queries: list[str]
) -> None:
    """Every prefix but ``ap``, against days, a year, Periods open at either end and no date at
    all: the in-memory answer is the search's, resource by resource."""
    client = app.test_client()
    res_type = resources[0]["resourceType"]
    for resource in resources:
        assert client.put(f"/fhir/{res_type}/{resource['id']}", json=resource).status_code == 201
    for query in queries:
        found = client.get(f"/fhir/{res_type}?{query}&_count=50").get_json()
        by_database = {entry["resource"]["id"] for entry in found.get("entry", [])}
        pairs = [tuple(part.split("=", 1)) for part in query.split("&")]
        searched = parse((res_type,), pairs, strict=True, default_count=1, max_count=1)
        assert unsupported(searched) is None
        in_memory = {resource["id"] for resource in resources if matches(searched, resource)}
        assert in_memory == by_database, query
