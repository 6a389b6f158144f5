"""read, vread, create, update and delete with their headers (R4 http.html)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

FHIR_JSON = "application/fhir+json"


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Peter"]}], "gender": "male", **extra}


def create(client: FlaskClient, resource: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, content_type=FHIR_JSON)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    return body["id"], body


def test_create_assigns_id_version_and_headers(client: FlaskClient) -> None:
    """R4 http.html#create: 201, Location with the version, ETag and Last-Modified."""
    response = client.post("/fhir/Patient", json=patient(id="client-chosen"), content_type=FHIR_JSON)
    assert response.status_code == 201
    body = response.get_json()
    assert body["id"] != "client-chosen"  # "If an id is provided, the server SHALL ignore it"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("+00:00")
    assert response.headers["Location"] == f"http://localhost/fhir/Patient/{body['id']}/_history/1"
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Last-Modified"].endswith("GMT")
    assert response.headers["Content-Type"] == "application/fhir+json; charset=utf-8"


def test_read_serves_what_was_stored(client: FlaskClient) -> None:
    res_id, created = create(client, patient(birthDate="1974-12-25"))
    response = client.get(f"/fhir/Patient/{res_id}")
    assert response.status_code == 200
    assert response.get_json() == created
    assert response.headers["ETag"] == 'W/"1"'


@pytest.mark.parametrize(
    "prefer, body_kind",
    [
        (None, "resource"),
        ("return=representation", "resource"),
        ("return=minimal", "empty"),
        ("return=OperationOutcome", "outcome"),
    ],
)
def test_prefer_return(client: FlaskClient, prefer: str | None, body_kind: str) -> None:
    """R4 http.html#ops: the Prefer header chooses the body of a write's answer."""
    headers = {"Prefer": prefer} if prefer else {}
    response = client.post("/fhir/Patient", json=patient(), content_type=FHIR_JSON, headers=headers)
    assert response.status_code == 201
    assert response.headers["Location"]
    if body_kind == "empty":
        assert response.data == b""
    elif body_kind == "outcome":
        outcome = response.get_json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["severity"] == "information"
    else:
        assert response.get_json()["resourceType"] == "Patient"


def test_update_creates_new_version(client: FlaskClient) -> None:
    res_id, created = create(client, patient())
    changed = {**created, "gender": "female"}
    response = client.put(f"/fhir/Patient/{res_id}", json=changed, content_type=FHIR_JSON)
    assert response.status_code == 200
    assert response.get_json()["meta"]["versionId"] == "2"
    assert response.headers["ETag"] == 'W/"2"'
    assert response.headers["Location"].endswith(f"/Patient/{res_id}/_history/2")
    assert client.get(f"/fhir/Patient/{res_id}").get_json()["gender"] == "female"
    assert client.get(f"/fhir/Patient/{res_id}/_history/1").get_json()["gender"] == "male"


def test_update_without_change_keeps_the_version(client: FlaskClient) -> None:
    """Like HAPI FHIR, an update that changes nothing creates no new version."""
    res_id, created = create(client, patient())
    response = client.put(f"/fhir/Patient/{res_id}", json=created, content_type=FHIR_JSON)
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"1"'
    assert client.get(f"/fhir/Patient/{res_id}/_history").get_json()["total"] == 1


def test_update_as_create_with_client_id(client: FlaskClient) -> None:
    """R4 http.html#upsert: PUT to a new id creates it (201) at version 1."""
    response = client.put("/fhir/Patient/pat-42", json=patient(id="pat-42"), content_type=FHIR_JSON)
    assert response.status_code == 201
    assert response.headers["Location"] == "http://localhost/fhir/Patient/pat-42/_history/1"
    assert client.get("/fhir/Patient/pat-42").status_code == 200


@pytest.mark.parametrize(
    "body, expression",
    [
        (patient(), "Patient.id"),
        (patient(id="other"), "Patient.id"),
        ({"resourceType": "Observation", "id": "p1", "status": "final", "code": {"text": "x"}}, "resourceType"),
    ],
)
def test_update_refuses_wrong_identity(client: FlaskClient, body: dict[str, Any], expression: str) -> None:
    """R4 http.html#update: the body's id must equal the URL's; the type must match."""
    response = client.put("/fhir/Patient/p1", json=body, content_type=FHIR_JSON)
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "invalid"
    assert issue["expression"] == [expression]
    assert client.get("/fhir/Patient/p1").status_code == 404


def test_if_match(client: FlaskClient) -> None:
    """R4 http.html#concurrency: a stale If-Match is 412 and changes nothing."""
    res_id, created = create(client, patient())

    def update_if_match(etag: str) -> TestResponse:
        return client.put(
            f"/fhir/Patient/{res_id}",
            json={**created, "gender": "other"},
            content_type=FHIR_JSON,
            headers={"If-Match": etag},
        )

    stale = update_if_match('W/"9"')
    assert stale.status_code == 412
    assert stale.get_json()["issue"][0]["code"] == "conflict"
    assert update_if_match('W/"1"').status_code == 200
    assert client.get(f"/fhir/Patient/{res_id}").get_json()["gender"] == "other"
    malformed = client.put(f"/fhir/Patient/{res_id}", json=created, content_type=FHIR_JSON, headers={"If-Match": "W/"})
    assert malformed.status_code == 400


def test_conditional_read(client: FlaskClient) -> None:
    """R4 http.html#cread: If-None-Match and If-Modified-Since answer 304 when current."""
    res_id, _ = create(client, patient())
    url = f"/fhir/Patient/{res_id}"
    last_modified = client.get(url).headers["Last-Modified"]
    assert client.get(url, headers={"If-None-Match": 'W/"1"'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": 'W/"0"'}).status_code == 200
    not_modified = client.get(url, headers={"If-Modified-Since": last_modified})
    assert not_modified.status_code == 304
    assert not_modified.data == b""
    assert not_modified.headers["ETag"] == 'W/"1"'
    assert client.get(url, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200


def test_delete_is_logical_and_versioned(client: FlaskClient) -> None:
    """R4 http.html#delete: read answers 410 afterwards, older versions stay readable."""
    res_id, _ = create(client, patient())
    response = client.delete(f"/fhir/Patient/{res_id}")
    assert response.status_code == 200
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert response.headers["ETag"] == 'W/"2"'
    gone = client.get(f"/fhir/Patient/{res_id}")
    assert gone.status_code == 410
    assert gone.get_json()["issue"][0]["code"] == "deleted"
    assert client.get(f"/fhir/Patient/{res_id}/_history/1").status_code == 200
    assert client.get(f"/fhir/Patient/{res_id}/_history/2").status_code == 410
    search = client.get(f"/fhir/Patient?_id={res_id}").get_json()
    assert search["total"] == 0


def test_delete_of_missing_or_deleted_resource_is_200(client: FlaskClient) -> None:
    """R4 http.html#delete: deleting what does not exist still succeeds, without a new version."""
    assert client.delete("/fhir/Patient/never-was").status_code == 200
    res_id, _ = create(client, patient())
    assert client.delete(f"/fhir/Patient/{res_id}").status_code == 200
    again = client.delete(f"/fhir/Patient/{res_id}")
    assert again.status_code == 200
    assert again.headers["ETag"] == 'W/"2"'
    assert client.get(f"/fhir/Patient/{res_id}/_history").get_json()["total"] == 2


def test_update_after_delete_revives_the_resource(client: FlaskClient) -> None:
    res_id, created = create(client, patient())
    client.delete(f"/fhir/Patient/{res_id}")
    response = client.put(f"/fhir/Patient/{res_id}", json=created, content_type=FHIR_JSON)
    assert response.status_code == 201
    assert response.headers["ETag"] == 'W/"3"'
    assert client.get(f"/fhir/Patient/{res_id}").status_code == 200


@pytest.mark.parametrize(
    "path, status",
    [
        ("/fhir/Patient/unknown", 404),
        ("/fhir/Patient/unknown/_history/1", 404),
        ("/fhir/Foo/1", 404),
        ("/fhir/Patient/bad%20id", 400),
        ("/fhir/Patient/" + "x" * 65, 400),
    ],
)
def test_read_errors(client: FlaskClient, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_vread_unknown_version(client: FlaskClient) -> None:
    res_id, _ = create(client, patient())
    for version in ("2", "abc"):
        response = client.get(f"/fhir/Patient/{res_id}/_history/{version}")
        assert response.status_code == 404
        assert response.get_json()["issue"][0]["code"] == "not-found"


@pytest.mark.parametrize(
    "resource_type, resource",
    [
        ("Encounter", {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}}),
        (
            "Claim",
            {
                "resourceType": "Claim",
                "status": "active",
                "type": {"text": "oral"},
                "use": "claim",
                "patient": {"reference": "Patient/1"},
                "created": "2024-01-01",
                "provider": {"reference": "Practitioner/1"},
                "priority": {"text": "normal"},
                "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/1"}}],
            },
        ),
        (
            "RiskAssessment",
            {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/1"}},
        ),
        (
            "Immunization",
            {
                "resourceType": "Immunization",
                "status": "completed",
                "vaccineCode": {"text": "flu"},
                "patient": {"reference": "Patient/1"},
                "occurrenceDateTime": "2024-01-01",
            },
        ),
        (
            "SubscriptionTopic",
            {
                "resourceType": "SubscriptionTopic",
                "url": "http://example.org/t",
                "status": "draft",
                "resourceTrigger": [{"resource": "http://hl7.org/fhir/StructureDefinition/Patient"}],
            },
        ),
    ],
)
def test_every_resource_type_is_stored(make_app: Any, resource_type: str, resource: dict[str, Any]) -> None:
    """Every type fhir.resources R4B defines can be created, read, updated and deleted (their
    references dangle, so referential integrity is off)."""
    client = make_app(referential_integrity=False).test_client()
    res_id, created = create(client, resource)
    assert client.get(f"/fhir/{resource_type}/{res_id}").get_json() == created
    assert client.put(f"/fhir/{resource_type}/{res_id}", json={**created, "language": "en"}).status_code == 200
    assert client.delete(f"/fhir/{resource_type}/{res_id}").status_code == 200
    assert client.get(f"/fhir/{resource_type}/{res_id}").status_code == 410


def test_head_reads_headers_only(client: FlaskClient) -> None:
    res_id, _ = create(client, patient())
    response = client.head(f"/fhir/Patient/{res_id}")
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"1"'
    assert response.data == b""
