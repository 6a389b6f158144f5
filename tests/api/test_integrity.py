"""Referential integrity (on by default): no dangling local references are written (422), and
no referenced resource is deleted (409), unless the server is configured otherwise."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests import factories

# Named by text alone, so only the reference matters.
observation = partial(factories.observation, code_text="x")


def test_reference_to_a_missing_resource_is_422(client: FlaskClient) -> None:
    response = client.post("/fhir/Observation", json=observation(subject="Patient/nobody"))
    assert response.status_code == 422
    assert "Patient/nobody" in response.get_json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Observation").get_json()["total"] == 0


def test_reference_to_an_existing_resource_is_accepted(client: FlaskClient) -> None:
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 201
    assert client.post("/fhir/Observation", json=observation(subject="Patient/p1")).status_code == 201


@pytest.mark.parametrize("reference", ["http://elsewhere.org/fhir/Patient/1", "#contained"])
def test_references_that_are_not_local_are_not_checked(client: FlaskClient, reference: str) -> None:
    body = observation(subject=reference)
    if reference.startswith("#"):
        body["contained"] = [{"resourceType": "Patient", "id": "contained"}]
    assert client.post("/fhir/Observation", json=body).status_code == 201


def test_reference_to_a_deleted_resource_is_422(client: FlaskClient) -> None:
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    client.delete("/fhir/Patient/p1")
    assert client.post("/fhir/Observation", json=observation(subject="Patient/p1")).status_code == 422


def test_deleting_a_referenced_resource_is_409(client: FlaskClient) -> None:
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    created = client.post("/fhir/Observation", json=observation(subject="Patient/p1")).get_json()
    response = client.delete("/fhir/Patient/p1")
    assert response.status_code == 409
    assert f"Observation/{created['id']}" in response.get_json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient/p1").status_code == 200
    assert client.delete(f"/fhir/Observation/{created['id']}").status_code == 200
    assert client.delete("/fhir/Patient/p1").status_code == 200


def test_integrity_can_be_switched_off(make_app: Any) -> None:
    client = make_app(referential_integrity=False).test_client()
    assert client.post("/fhir/Observation", json=observation(subject="Patient/nobody")).status_code == 201
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    client.post("/fhir/Observation", json=observation(subject="Patient/p1"))
    assert client.delete("/fhir/Patient/p1").status_code == 200


MISSING = "urn:uuid:99999999-9999-4999-8999-999999999999"


def assert_unresolved(response: Any, *where: str) -> None:
    """A 422 naming where the unresolved ``urn:`` reference sits and what it is."""
    assert response.status_code == 422, response.get_data(as_text=True)
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "processing"
    for text in (*where, "Observation.subject", MISSING, "does not exist"):
        assert text in issue["diagnostics"]


def test_an_unresolved_urn_reference_in_a_transaction_is_422_naming_the_entry(client: FlaskClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                "resource": observation(subject=MISSING),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert_unresolved(response, "Bundle.entry[1]", "urn:uuid:22222222-2222-4222-8222-222222222222")
    assert response.get_json()["issue"][0]["expression"] == ["Bundle.entry[1]", "Observation.subject"]
    assert client.get("/fhir/Patient").get_json()["total"] == 0
    assert client.get("/fhir/Observation").get_json()["total"] == 0


def test_an_unresolved_urn_reference_in_a_batch_entry_fails_that_entry(client: FlaskClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {
                "fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                "resource": observation(subject="urn:oid:1.2.3.4"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200
    first, second = response.get_json()["entry"]
    assert first["response"]["status"].startswith("201")
    assert second["response"]["status"] == "422 Unprocessable Entity"
    diagnostics = second["response"]["outcome"]["issue"][0]["diagnostics"]
    for text in (
        "Bundle.entry[1]",
        "urn:uuid:22222222-2222-4222-8222-222222222222",
        "Observation.subject",
        "urn:oid:1.2.3.4",
    ):
        assert text in diagnostics
    assert client.get("/fhir/Observation").get_json()["total"] == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_an_urn_reference_in_a_plain_write_is_422(client: FlaskClient, method: str) -> None:
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    client.put("/fhir/Observation/o1", json={**observation(subject="Patient/p1"), "id": "o1"})
    if method == "POST":
        response = client.post("/fhir/Observation", json=observation(subject=MISSING))
    elif method == "PUT":
        response = client.put("/fhir/Observation/o1", json={**observation(subject=MISSING), "id": "o1"})
    else:
        patch = [{"op": "replace", "path": "/subject/reference", "value": MISSING}]
        response = client.patch(
            "/fhir/Observation/o1", json=patch, headers={"Content-Type": "application/json-patch+json"}
        )
    assert_unresolved(response)
    assert client.get("/fhir/Observation/o1").get_json()["subject"]["reference"] == "Patient/p1"
    assert client.get("/fhir/Observation").get_json()["total"] == 1


def test_urn_references_are_stored_as_sent_with_integrity_off(make_app: Any) -> None:
    client = make_app(referential_integrity=False).test_client()
    created = client.post("/fhir/Observation", json=observation(subject=MISSING))
    assert created.status_code == 201
    assert created.get_json()["subject"]["reference"] == MISSING


def test_a_document_bundle_keeps_its_own_urn_references(client: FlaskClient) -> None:
    """Inside a stored Bundle, ``urn:uuid:`` references resolve to its own entries (R4
    bundle.html#references): they are not the Bundle's references to the server."""
    document = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": {"resourceType": "Patient"}},
            {
                "fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                "resource": observation(subject=MISSING),
            },
        ],
    }
    assert client.post("/fhir/Bundle", json=document).status_code == 201
