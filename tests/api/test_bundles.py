"""Batch and transaction Bundles (R4 http.html#transaction, bundle.html)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.factories import EHR_BUNDLES, HEART_RATE, observation

PATIENT_URN = "urn:uuid:1f0b6c0e-5a7e-4c3b-9e7d-3c1d2e4f5a60"
OBSERVATION_URN = "urn:uuid:2a1c7d1f-6b8f-4d4c-8f8e-4d2e3f5a6b71"


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None, **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": "Chalmers"}], **extra}


def count(client: FlaskClient, resource_type: str) -> int:
    return client.get(f"/fhir/{resource_type}?_summary=count").get_json()["total"]


def test_transaction_rewrites_urn_references_everywhere(client: FlaskClient) -> None:
    """urn:uuid fullUrls become real ids; references to them are rewritten wherever they sit."""
    bundle = transaction(
        post(
            observation(
                HEART_RATE,
                subject=PATIENT_URN,
                extension=[{"url": "http://example.org/source", "valueReference": {"reference": PATIENT_URN}}],
                text={"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{PATIENT_URN}</div>'},
            ),
            OBSERVATION_URN,
        ),
        post(patient(), PATIENT_URN),
    )
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["type"] == "transaction-response"
    # Answers come in the order of the request, whatever the processing order.
    observation_location, patient_location = (entry["response"]["location"] for entry in body["entry"])
    assert observation_location.startswith("Observation/") and patient_location.startswith("Patient/")
    assert all(entry["response"]["status"] == "201 Created" for entry in body["entry"])
    assert all(entry["response"]["etag"] == 'W/"1"' for entry in body["entry"])
    patient_ref = "/".join(patient_location.split("/")[:2])
    stored = client.get("/fhir/" + "/".join(observation_location.split("/")[:2])).get_json()
    assert stored["subject"]["reference"] == patient_ref
    assert stored["extension"][0]["valueReference"]["reference"] == patient_ref
    assert PATIENT_URN not in json.dumps(stored)
    assert patient_ref in stored["text"]["div"]


def test_transaction_processing_order(client: FlaskClient) -> None:
    """DELETE, then POST, then PUT, then GET (R4 http.html#trules), whatever the entry order."""
    client.put("/fhir/Patient/old", json=patient(id="old"))
    bundle = transaction(
        {"request": {"method": "GET", "url": "Patient?_id=old,new"}},
        {"resource": patient(id="new"), "request": {"method": "PUT", "url": "Patient/new"}},
        {"request": {"method": "DELETE", "url": "Patient/old"}},
    )
    body = client.post("/fhir", json=bundle).get_json()
    statuses = [entry["response"]["status"] for entry in body["entry"]]
    assert statuses == ["200 OK", "201 Created", "200 OK"]
    searched = body["entry"][0]["resource"]
    assert [entry["resource"]["id"] for entry in searched.get("entry", [])] == ["new"]


def test_transaction_is_atomic(client: FlaskClient) -> None:
    """Any failure rolls everything back; the OperationOutcome names the failing entry."""
    bundle = transaction(
        post(patient(), PATIENT_URN),
        post(observation(HEART_RATE, subject=PATIENT_URN, status="bogus"), OBSERVATION_URN),
    )
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["expression"][0] == "Bundle.entry[1]"
    assert OBSERVATION_URN in issue["diagnostics"]
    assert count(client, "Patient") == 0
    assert count(client, "Observation") == 0
    assert client.get("/fhir/_history").get_json()["total"] == 0


def test_conditional_create_in_a_transaction_reuses_the_match(client: FlaskClient) -> None:
    client.put("/fhir/Patient/p1", json=patient(id="p1", identifier=[{"system": "urn:mrn", "value": "7"}]))
    bundle = transaction(
        post(
            patient(identifier=[{"system": "urn:mrn", "value": "7"}]), PATIENT_URN, ifNoneExist="identifier=urn:mrn|7"
        ),
        post(observation(HEART_RATE, subject=PATIENT_URN)),
    )
    body = client.post("/fhir", json=bundle).get_json()
    assert body["entry"][0]["response"]["status"] == "200 OK"
    created = body["entry"][1]["response"]["location"].split("/_history")[0]
    assert client.get(f"/fhir/{created}").get_json()["subject"]["reference"] == "Patient/p1"
    assert count(client, "Patient") == 1


def test_conditional_references(client: FlaskClient) -> None:
    """``Patient?identifier=...`` in a reference resolves to the one match, or fails."""
    client.put("/fhir/Patient/p1", json=patient(id="p1", identifier=[{"system": "urn:mrn", "value": "1"}]))
    ok = client.post("/fhir", json=transaction(post(observation(HEART_RATE, subject="Patient?identifier=urn:mrn|1"))))
    assert ok.status_code == 200
    location = ok.get_json()["entry"][0]["response"]["location"].split("/_history")[0]
    assert client.get(f"/fhir/{location}").get_json()["subject"]["reference"] == "Patient/p1"
    none = client.post(
        "/fhir", json=transaction(post(observation(HEART_RATE, subject="Patient?identifier=urn:mrn|404")))
    )
    assert none.status_code == 422
    client.put("/fhir/Patient/p2", json=patient(id="p2", identifier=[{"system": "urn:mrn", "value": "1"}]))
    several = client.post(
        "/fhir", json=transaction(post(observation(HEART_RATE, subject="Patient?identifier=urn:mrn|1")))
    )
    assert several.status_code == 412
    assert count(client, "Observation") == 1


def test_two_entries_claiming_one_identity_are_refused(client: FlaskClient) -> None:
    same_url = transaction(
        {"resource": patient(id="x"), "request": {"method": "PUT", "url": "Patient/x"}},
        {"request": {"method": "DELETE", "url": "Patient/x"}},
    )
    assert client.post("/fhir", json=same_url).status_code == 400
    same_full_url = transaction(post(patient(), PATIENT_URN), post(patient(), PATIENT_URN))
    response = client.post("/fhir", json=same_full_url)
    assert response.status_code == 400
    assert "both claim" in response.get_json()["issue"][0]["diagnostics"]
    assert count(client, "Patient") == 0


def test_dangling_reference_fails_the_transaction(client: FlaskClient) -> None:
    response = client.post(
        "/fhir", json=transaction(post(patient()), post(observation(HEART_RATE, subject="Patient/ghost")))
    )
    assert response.status_code == 422
    assert count(client, "Patient") == 0


def test_patch_entry(client: FlaskClient) -> None:
    client.put("/fhir/Patient/p1", json=patient(id="p1", gender="male"))
    operations = [{"op": "replace", "path": "/gender", "value": "female"}]
    entry = {
        "resource": {
            "resourceType": "Binary",
            "contentType": "application/json-patch+json",
            "data": base64.b64encode(json.dumps(operations).encode()).decode(),
        },
        "request": {"method": "PATCH", "url": "Patient/p1"},
    }
    response = client.post("/fhir", json=transaction(entry))
    assert response.status_code == 200, response.get_json()
    assert client.get("/fhir/Patient/p1").get_json()["gender"] == "female"


def test_entry_conditional_headers_behave_like_top_level(client: FlaskClient) -> None:
    client.put("/fhir/Patient/p1", json=patient(id="p1"))
    stale = {
        "resource": patient(id="p1", gender="male"),
        "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": 'W/"9"'},
    }
    assert client.post("/fhir", json=transaction(stale)).status_code == 412
    batch = client.post("/fhir", json=transaction(stale, kind="batch")).get_json()
    assert batch["entry"][0]["response"]["status"] == "412 Precondition Failed"
    assert batch["entry"][0]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    read = {"request": {"method": "GET", "url": "Patient/p1", "ifNoneMatch": 'W/"1"'}}
    answer = client.post("/fhir", json=transaction(read, kind="batch")).get_json()
    assert answer["entry"][0]["response"]["status"] == "304 Not Modified"


def test_batch_entries_are_independent(client: FlaskClient) -> None:
    bundle = transaction(
        post(patient()),
        post(observation(HEART_RATE, subject="Patient/ghost")),
        {"request": {"method": "GET", "url": "Patient/none"}},
        post(patient(gender="bogus")),
        post(patient(gender="female")),
        kind="batch",
    )
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200
    body = response.get_json()
    assert body["type"] == "batch-response"
    statuses = [entry["response"]["status"][:3] for entry in body["entry"]]
    assert statuses == ["201", "422", "404", "400", "201"]
    assert count(client, "Patient") == 2


@pytest.mark.parametrize(
    "body, status",
    [
        ({"resourceType": "Patient"}, 400),
        ({"resourceType": "Bundle", "type": "collection", "entry": []}, 400),
        ({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}}]}, 400),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "FETCH", "url": "Patient"}}],
            },
            400,
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "POST", "url": "Patient"}}],
            },
            400,
        ),
    ],
)
def test_malformed_bundles(client: FlaskClient, body: dict[str, Any], status: int) -> None:
    response = client.post("/fhir", json=body)
    assert response.status_code == status
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_bundle_size_limit(make_app: Any) -> None:
    client = make_app(max_bundle_entries=2).test_client()
    response = client.post("/fhir", json=transaction(post(patient()), post(patient()), post(patient())))
    assert response.status_code == 413
    assert count(client, "Patient") == 0


@pytest.mark.parametrize(
    "path",
    EHR_BUNDLES,
    ids=lambda p: p.stem,
)
def test_ehr_bundles_are_kept_whole(client: FlaskClient, path: Path) -> None:
    """Every entry of a Synthea or carebundle transaction is stored, versioned and searchable."""
    bundle = json.loads(path.read_text())
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.get_json()
    entries = response.get_json()["entry"]
    assert len(entries) == len(bundle["entry"])
    assert all(entry["response"]["status"] == "201 Created" for entry in entries)
    by_type: dict[str, int] = {}
    for entry in bundle["entry"]:
        by_type[entry["resource"]["resourceType"]] = by_type.get(entry["resource"]["resourceType"], 0) + 1
    for resource_type, expected in by_type.items():
        assert count(client, resource_type) == expected
    # Every reference between entries now names a stored resource.
    patient_id = next(
        e["response"]["location"] for e in entries if e["response"]["location"].startswith("Patient/")
    ).split("/")[1]
    assert client.get(f"/fhir/Observation?patient={patient_id}&_summary=count").get_json()["total"] == by_type.get(
        "Observation", 0
    )


def test_updates_by_id_in_a_transaction_answer_as_if_each_were_alone(client: FlaskClient) -> None:
    """The resources a transaction updates by id are locked and read in one go beforehand: each
    entry still sees its resource's own current version (created, changed, unchanged, deleted)."""
    kept = client.post("/fhir/Patient", json=patient()).get_json()
    changed = client.post("/fhir/Patient", json=patient()).get_json()
    gone = client.post("/fhir/Patient", json=patient()).get_json()
    assert client.delete(f"/fhir/Patient/{gone['id']}").status_code == 200

    def put(res_id: str, **extra: Any) -> dict[str, Any]:
        body = {**patient(), "id": res_id, **extra}
        return {"resource": body, "request": {"method": "PUT", "url": f"Patient/{res_id}"}}

    answer = client.post(
        "/fhir",
        json=transaction(
            put("brand-new"),
            put(kept["id"]),
            put(changed["id"], gender="female"),
            put(gone["id"]),
        ),
    )
    assert answer.status_code == 200, answer.get_json()
    statuses = [(e["response"]["status"], e["response"]["etag"]) for e in answer.get_json()["entry"]]
    assert statuses == [("201 Created", 'W/"1"'), ("200 OK", 'W/"1"'), ("200 OK", 'W/"2"'), ("201 Created", 'W/"3"')]
    assert client.get(f"/fhir/Patient/{changed['id']}").get_json()["gender"] == "female"
    assert client.get(f"/fhir/Patient/{kept['id']}/_history").get_json()["total"] == 1
    assert client.get("/fhir/Patient/brand-new").status_code == 200
    # The same transaction again: nothing new stored.
    again = client.post("/fhir", json=transaction(put("brand-new"), put(changed["id"], gender="female")))
    assert [e["response"]["etag"] for e in again.get_json()["entry"]] == ['W/"1"', 'W/"2"']
    # An If-Match on an entry is checked against the version read ahead.
    stale = put(changed["id"], gender="male")
    stale["request"]["ifMatch"] = 'W/"1"'
    assert client.post("/fhir", json=transaction(stale)).status_code == 412
    assert client.get(f"/fhir/Patient/{changed['id']}").get_json()["gender"] == "female"
