"""Search over HTTP: paging, includes, chains, compartments, result parameters (R4 search.html)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from tests.factories import observation, outcome, put

LOINC = "http://loinc.org"


@pytest.fixture
def population(client: FlaskClient) -> FlaskClient:
    put(client, {"resourceType": "Organization", "id": "org1", "name": "General Hospital"})
    put(
        client,
        {
            "resourceType": "Patient",
            "id": "p1",
            "gender": "female",
            "birthDate": "1970-05-01",
            "name": [{"family": "Müller", "given": ["Anna"]}],
            "identifier": [{"system": "urn:mrn", "value": "111"}],
            "managingOrganization": {"reference": "Organization/org1"},
        },
    )
    put(
        client,
        {
            "resourceType": "Patient",
            "id": "p2",
            "gender": "male",
            "birthDate": "1980-01-01",
            "name": [{"family": "Chalmers", "given": ["Peter"]}],
            "identifier": [{"system": "urn:mrn", "value": "222"}],
        },
    )
    put(
        client,
        observation(
            "8867-4", code_text="code 8867-4", res_id="o1", patient="p1", value=72, when="2024-01-01T10:00:00Z"
        ),
    )
    put(
        client,
        observation(
            "8867-4", code_text="code 8867-4", res_id="o2", patient="p1", value=110, when="2024-01-02T10:00:00Z"
        ),
    )
    put(
        client,
        observation(
            "8310-5",
            code_text="code 8310-5",
            res_id="o3",
            patient="p1",
            value=37.2,
            when="2024-01-03T10:00:00Z",
            unit="Cel",
        ),
    )
    put(
        client,
        observation(
            "8867-4", code_text="code 8867-4", res_id="o4", patient="p2", value=64, when="2024-01-04T10:00:00Z"
        ),
    )
    put(
        client,
        {
            "resourceType": "DiagnosticReport",
            "id": "r1",
            "status": "final",
            "code": {"text": "vitals"},
            "subject": {"reference": "Patient/p1"},
            "result": [{"reference": "Observation/o1"}, {"reference": "Observation/o2"}],
        },
    )
    return client


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", []) if entry["search"]["mode"] == mode]


def get(client: FlaskClient, url: str, **headers: str) -> dict[str, Any]:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    return body


@pytest.mark.parametrize(
    "query, expected",
    [
        ("Patient?name=mul", ["p1"]),
        ("Patient?name=MÜLLER", ["p1"]),
        ("Patient?name:exact=Müller", ["p1"]),
        ("Patient?name:exact=muller", []),
        ("Patient?name:contains=alm", ["p2"]),
        ("Patient?identifier=urn:mrn|222", ["p2"]),
        ("Patient?identifier=222", ["p2"]),
        ("Patient?gender=female,male", ["p1", "p2"]),
        ("Patient?gender:not=female", ["p2"]),
        ("Patient?birthdate=lt1975", ["p1"]),
        ("Patient?birthdate=1980", ["p2"]),
        ("Patient?organization=Organization/org1", ["p1"]),
        ("Patient?organization:missing=true", ["p2"]),
        ("Observation?code=http://loinc.org|8867-4", ["o1", "o2", "o4"]),
        ("Observation?code=8867-4&subject=Patient/p1", ["o1", "o2"]),
        ("Observation?patient=p1&code=8310-5", ["o3"]),
        ("Observation?value-quantity=gt100", ["o2"]),
        ("Observation?value-quantity=gt100&value-quantity=lt200", ["o2"]),
        ("Observation?date=ge2024-01-03", ["o3", "o4"]),
        ("Observation?subject:Patient.name=chalmers", ["o4"]),
        ("Observation?subject:Patient.organization.name=general", ["o1", "o2", "o3"]),
        ("Patient?_has:Observation:patient:code=8310-5", ["p1"]),
        ("Observation?code:text=code 8310", ["o3"]),
        ("Observation?_id=o1,o4", ["o1", "o4"]),
    ],
)
def test_search_finds(population: FlaskClient, query: str, expected: list[str]) -> None:
    body = get(population, f"/fhir/{query}")
    assert sorted(ids(body)) == expected
    for entry in body.get("entry", []):
        assert (
            entry["fullUrl"] == f"http://localhost/fhir/{entry['resource']['resourceType']}/{entry['resource']['id']}"
        )


def test_post_search_equals_get(population: FlaskClient) -> None:
    posted = population.post("/fhir/Observation/_search", data={"code": "8867-4", "subject": "Patient/p1"}).get_json()
    assert sorted(ids(posted)) == ["o1", "o2"]


def test_sort_descending_by_date_with_count(population: FlaskClient) -> None:
    body = get(population, "/fhir/Observation?patient=p1&_sort=-date&_count=2")
    assert ids(body) == ["o3", "o2"]
    next_url = {link["relation"]: link["url"] for link in body["link"]}["next"]
    assert next_url.startswith("http://localhost/fhir/Observation?")
    second = get(population, next_url.removeprefix("http://localhost"))
    assert ids(second) == ["o1"]
    assert "next" not in {link["relation"] for link in second["link"]}


def test_paging_survives_concurrent_inserts(population: FlaskClient) -> None:
    """Keyset pages: resources written between pages neither repeat nor hide older ones."""
    body = get(population, "/fhir/Observation?_sort=date&_count=2")
    seen = ids(body)
    put(
        population,
        observation(
            "8867-4", code_text="code 8867-4", res_id="o0", patient="p2", value=60, when="2023-01-01T00:00:00Z"
        ),
    )
    while (next_url := {link["relation"]: link["url"] for link in body["link"]}.get("next")) is not None:
        parts = urlsplit(next_url)
        body = get(population, f"{parts.path}?{parts.query}")
        seen += ids(body)
    assert seen == ["o1", "o2", "o3", "o4"]


def test_previous_links_walk_back(population: FlaskClient) -> None:
    """``previous`` pages mirror ``next`` pages (R4 http.html#paging)."""
    pages = [get(population, "/fhir/Observation?_sort=-date&_count=1")]
    while (next_url := {link["relation"]: link["url"] for link in pages[-1]["link"]}.get("next")) is not None:
        pages.append(get(population, next_url.removeprefix("http://localhost")))
    assert [ids(page) for page in pages] == [["o4"], ["o3"], ["o2"], ["o1"]]
    assert "previous" not in {link["relation"] for link in pages[0]["link"]}
    back = pages[-1]
    walked = [ids(back)]
    while (previous := {link["relation"]: link["url"] for link in back["link"]}.get("previous")) is not None:
        back = get(population, previous.removeprefix("http://localhost"))
        walked.append(ids(back))
    assert walked == [["o1"], ["o2"], ["o3"], ["o4"]]
    assert {link["relation"] for link in back["link"]} >= {"self", "first", "next"}


def test_include_and_revinclude(population: FlaskClient) -> None:
    body = get(population, "/fhir/DiagnosticReport?_include=DiagnosticReport:result&_include=DiagnosticReport:subject")
    assert ids(body) == ["r1"]
    assert sorted(ids(body, "include")) == ["o1", "o2", "p1"]
    reverse = get(population, "/fhir/Patient?_id=p1&_revinclude=Observation:subject")
    assert sorted(ids(reverse, "include")) == ["o1", "o2", "o3"]
    iterated = get(
        population, "/fhir/DiagnosticReport?_include=DiagnosticReport:subject&_include:iterate=Patient:organization"
    )
    assert sorted(ids(iterated, "include")) == ["org1", "p1"]


def test_compartment_search(population: FlaskClient) -> None:
    body = get(population, "/fhir/Patient/p1/Observation?code=8867-4")
    assert sorted(ids(body)) == ["o1", "o2"]
    assert body["link"][0]["url"].startswith("http://localhost/fhir/Patient/p1/Observation")


def test_system_search_with_type(population: FlaskClient) -> None:
    body = get(population, "/fhir?_type=Patient,Organization&_id=p1,org1")
    assert sorted(ids(body)) == ["org1", "p1"]


@pytest.mark.parametrize(
    "summary, present, absent",
    [
        ("true", ["gender", "name"], ["text"]),
        ("data", ["gender", "name"], ["text"]),
    ],
)
def test_summary(population: FlaskClient, summary: str, present: list[str], absent: list[str]) -> None:
    body = get(population, f"/fhir/Patient?_id=p1&_summary={summary}")
    resource = body["entry"][0]["resource"]
    assert all(name in resource for name in present)
    assert all(name not in resource for name in absent)
    assert {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "SUBSETTED",
        "display": "subsetted",
    } in resource["meta"]["tag"]


def test_summary_count(population: FlaskClient) -> None:
    body = get(population, "/fhir/Observation?_summary=count")
    assert body["total"] == 4
    assert "entry" not in body


def test_elements(population: FlaskClient) -> None:
    body = get(population, "/fhir/Patient?_id=p1&_elements=gender")
    resource = body["entry"][0]["resource"]
    assert resource["gender"] == "female"
    assert "name" not in resource and "birthDate" not in resource
    assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"


def test_total(population: FlaskClient) -> None:
    assert get(population, "/fhir/Observation?_count=1&_total=accurate")["total"] == 4
    assert "total" not in get(population, "/fhir/Observation?_count=1")


def test_lenient_and_strict_handling(population: FlaskClient) -> None:
    """R4 search.html#errors: unknown parameters are refused unless lenient, then left out of ``self``."""
    response = population.get("/fhir/Patient?nonsense=1&gender=female", headers={"Prefer": "handling=lenient"})
    body = response.get_json()
    assert ids(body) == ["p1"]
    assert "nonsense" not in body["link"][0]["url"]
    strict = population.get("/fhir/Patient?nonsense=1")
    assert strict.status_code == 400
    assert strict.get_json()["issue"][0]["expression"] == ["nonsense"]


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("Observation?date=2024-13-45", "date"),
        ("Observation?value-quantity=xx100", "value-quantity"),
        ("Patient?name:nonsense=x", "name"),
        ("Observation?subject:Nope.name=x", "subject"),
        ("Observation?_count=abc", "_count"),
        ("Observation?_sort=nonsense", "_sort"),
        ("Observation?_include=Observation:nonsense", "_include"),
    ],
)
def test_malformed_values_are_400(population: FlaskClient, query: str, parameter: str) -> None:
    issue = outcome(population.get(f"/fhir/{query}"), 400)
    assert parameter in (issue.get("expression") or [""])[0] or parameter in issue["diagnostics"]


def test_deleted_and_updated_resources_are_reindexed(population: FlaskClient) -> None:
    assert population.delete("/fhir/DiagnosticReport/r1").status_code == 200
    assert population.delete("/fhir/Observation/o2").status_code == 200
    assert ids(get(population, "/fhir/Observation?value-quantity=gt100")) == []
    changed = observation(
        "8867-4", code_text="code 8867-4", res_id="o1", patient="p1", value=150, when="2024-01-01T10:00:00Z"
    )
    assert population.put("/fhir/Observation/o1", json=changed).status_code == 200
    assert ids(get(population, "/fhir/Observation?value-quantity=gt100")) == ["o1"]


def test_conditional_create_by_identifier(population: FlaskClient) -> None:
    """With identifier search, If-None-Exist finds the existing patient."""
    response = population.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "gender": "other"},
        headers={"If-None-Exist": "identifier=urn:mrn|111"},
    )
    assert response.status_code == 200
    assert response.get_json()["id"] == "p1"
