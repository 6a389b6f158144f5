"""fhirpy (the sync client, unmodified) against a live server: what an integrator's first script does."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from tests.clients.conftest import Live

OBSERVATIONS = 7


@pytest.fixture
def client(live: Live) -> SyncFHIRClient:
    return SyncFHIRClient(live.base, authorization=f"Bearer {live.token}")


def _patient_with_observations(client: SyncFHIRClient) -> tuple[str, str]:
    """A transaction of a Patient and its Observations; the Patient's id and the run's marker."""
    marker = uuid.uuid4().hex
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": patient_url,
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:fhirpy-test", "value": marker}],
                "name": [{"family": "Fhirpy", "given": ["Ada"]}],
            },
            "request": {"method": "POST", "url": "Patient"},
        }
    ]
    entries += [
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": patient_url},
                "effectiveDateTime": f"2024-01-0{number + 1}T10:00:00Z",
                "valueQuantity": {"value": 60 + number, "unit": "/min", "system": "http://unitsofmeasure.org"},
            },
            "request": {"method": "POST", "url": "Observation"},
        }
        for number in range(OBSERVATIONS)
    ]
    answer = client.execute("", method="post", data={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert answer["type"] == "transaction-response"
    assert [entry["response"]["status"][:3] for entry in answer["entry"]] == ["201"] * (OBSERVATIONS + 1)
    patient_id = answer["entry"][0]["response"]["location"].split("/")[1]
    return patient_id, marker


def test_transaction_then_read(client: SyncFHIRClient) -> None:
    patient_id, marker = _patient_with_observations(client)
    patient = client.reference("Patient", patient_id).to_resource()
    assert patient["name"][0]["family"] == "Fhirpy"
    assert patient["identifier"][0]["value"] == marker
    assert patient["meta"]["versionId"] == "1"


def test_search_follows_every_page(client: SyncFHIRClient) -> None:
    patient_id, _ = _patient_with_observations(client)
    search = client.resources("Observation").search(subject=f"Patient/{patient_id}").sort("date").limit(3)
    first_page = search.fetch()
    assert len(first_page) == 3
    found = list(search)  # three pages: 3 + 3 + 1
    assert len(found) == OBSERVATIONS
    assert len({observation["id"] for observation in found}) == OBSERVATIONS
    values = [observation["valueQuantity"]["value"] for observation in found]
    assert values == list(range(60, 60 + OBSERVATIONS))


def test_include_brings_the_subject(client: SyncFHIRClient) -> None:
    patient_id, _ = _patient_with_observations(client)
    bundle = (
        client.resources("Observation")
        .search(subject=f"Patient/{patient_id}")
        .include("Observation", "subject")
        .limit(100)
        .fetch_raw()
    )
    modes = [(entry["resource"]["resourceType"], entry["search"]["mode"]) for entry in bundle["entry"]]
    assert modes.count(("Observation", "match")) == OBSERVATIONS
    assert modes.count(("Patient", "include")) == 1


def test_count(client: SyncFHIRClient) -> None:
    patient_id, _ = _patient_with_observations(client)
    assert client.resources("Observation").search(subject=f"Patient/{patient_id}").count() == OBSERVATIONS


def test_search_for_an_id_that_cannot_exist_finds_nothing(client: SyncFHIRClient) -> None:
    with pytest.raises(ResourceNotFound):
        client.resources("Patient").search(_id="FHIRPypy_not_existing_id").get()


def test_create_update_delete(client: SyncFHIRClient) -> None:
    patient = client.resource("Patient", name=[{"family": "Created"}], gender="female")
    patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"

    patient["gender"] = "male"
    patient.save()
    assert patient["meta"]["versionId"] == "2"
    assert client.reference("Patient", patient.id).to_resource()["gender"] == "male"

    patient.delete()
    with pytest.raises(ResourceNotFound):
        client.reference("Patient", patient.id).to_resource()


def test_invalid_create_is_an_operation_outcome(client: SyncFHIRClient) -> None:
    with pytest.raises(OperationOutcome) as raised:
        client.resource("Patient", gender="mal").save()
    assert "gender" in str(raised.value)


def test_everything(client: SyncFHIRClient) -> None:
    patient_id, _ = _patient_with_observations(client)
    bundle = client.reference("Patient", patient_id).execute("$everything", method="get")
    types = sorted(entry["resource"]["resourceType"] for entry in bundle["entry"])
    assert types == ["Observation"] * OBSERVATIONS + ["Patient"]
