"""A search matched against one resource in memory (``search.resource_match``): the same answers
the database gives for the forms topics and backport filters use, and a refusal for the rest."""

from __future__ import annotations

from typing import Any

import pytest

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
    [("birthdate=gt2000", "birthdate"), ("family:contains=laf", "family:contains"), ("_id=p1", "_id")],
)
def test_what_cannot_be_answered_in_memory_is_named(query: str, named: str) -> None:
    reason = unsupported(search(query))
    assert reason is not None and named in reason
