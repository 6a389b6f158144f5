"""Referential integrity (on by default): no dangling local references are written (422), and
no referenced resource is deleted (409), unless the server is configured otherwise."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient


def observation(subject: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": subject}}


def test_reference_to_a_missing_resource_is_422(client: FlaskClient) -> None:
    response = client.post("/fhir/Observation", json=observation("Patient/nobody"))
    assert response.status_code == 422
    assert "Patient/nobody" in response.get_json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Observation").get_json()["total"] == 0


def test_reference_to_an_existing_resource_is_accepted(client: FlaskClient) -> None:
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 201
    assert client.post("/fhir/Observation", json=observation("Patient/p1")).status_code == 201


@pytest.mark.parametrize(
    "reference", ["http://elsewhere.org/fhir/Patient/1", "#contained", "urn:uuid:0d5a5a3e-4f2b-4d9e-9d1e-6b8e5f0d6a11"]
)
def test_references_that_are_not_local_are_not_checked(client: FlaskClient, reference: str) -> None:
    body = observation(reference)
    if reference.startswith("#"):
        body["contained"] = [{"resourceType": "Patient", "id": "contained"}]
    assert client.post("/fhir/Observation", json=body).status_code == 201


def test_reference_to_a_deleted_resource_is_422(client: FlaskClient) -> None:
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    client.delete("/fhir/Patient/p1")
    assert client.post("/fhir/Observation", json=observation("Patient/p1")).status_code == 422


def test_deleting_a_referenced_resource_is_409(client: FlaskClient) -> None:
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    created = client.post("/fhir/Observation", json=observation("Patient/p1")).get_json()
    response = client.delete("/fhir/Patient/p1")
    assert response.status_code == 409
    assert f"Observation/{created['id']}" in response.get_json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient/p1").status_code == 200
    assert client.delete(f"/fhir/Observation/{created['id']}").status_code == 200
    assert client.delete("/fhir/Patient/p1").status_code == 200


def test_integrity_can_be_switched_off(make_app: Any) -> None:
    client = make_app(referential_integrity=False).test_client()
    assert client.post("/fhir/Observation", json=observation("Patient/nobody")).status_code == 201
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    client.post("/fhir/Observation", json=observation("Patient/p1"))
    assert client.delete("/fhir/Patient/p1").status_code == 200
