"""fhirclient (SMART on FHIR's Python client, unmodified) against a live server: its models parse
every answer strictly, so a field out of place in a served resource fails here."""

from __future__ import annotations

import uuid

import pytest
import requests
from fhirclient import client as smart_client
from fhirclient.models.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRNotFoundException, FHIRServer

from tests.clients.conftest import Live

OBSERVATIONS = 5


@pytest.fixture
def server(live: Live) -> FHIRServer:
    smart = smart_client.FHIRClient(settings={"app_id": "fhir-twin-tests", "api_base": live.base})
    smart.server.session.headers["Authorization"] = f"Bearer {live.token}"
    return smart.server


def _observation(subject: str, number: int) -> Observation:
    return Observation(
        {
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
            "subject": {"reference": subject},
            "effectiveDateTime": f"2024-02-0{number + 1}T08:00:00Z",
            "valueQuantity": {"value": 36.5, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"},
        }
    )


def _patient_with_observations(server: FHIRServer) -> str:
    """A transaction of a Patient and its Observations; the Patient's id."""
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    patient = Patient({"name": [{"family": "Smart"}]})
    entries = [BundleEntry({"fullUrl": patient_url})]
    entries[0].resource = patient
    entries[0].request = BundleEntryRequest({"method": "POST", "url": "Patient"})
    for number in range(OBSERVATIONS):
        entry = BundleEntry()
        entry.resource = _observation(patient_url, number)
        entry.request = BundleEntryRequest({"method": "POST", "url": "Observation"})
        entries.append(entry)
    bundle = Bundle({"type": "transaction"})
    bundle.entry = entries
    answer = Bundle(bundle.create(server))
    assert answer.type == "transaction-response"
    assert [entry.response.status[:3] for entry in answer.entry] == ["201"] * (OBSERVATIONS + 1)
    return answer.entry[0].response.location.split("/")[1]


def test_transaction_read_and_search_pages(server: FHIRServer) -> None:
    patient_id = _patient_with_observations(server)
    assert Patient.read(patient_id, server).name[0].family == "Smart"

    search = Observation.where({"subject": f"Patient/{patient_id}", "_count": "2"})
    pages = list(search.perform_iter(server))
    assert [len(page.entry) for page in pages] == [2, 2, 1]
    found = [entry.resource for page in pages for entry in page.entry]
    assert {observation.subject.reference for observation in found} == {f"Patient/{patient_id}"}
    assert len({observation.id for observation in found}) == OBSERVATIONS


def test_include(server: FHIRServer) -> None:
    patient_id = _patient_with_observations(server)
    search = Observation.where({"subject": f"Patient/{patient_id}"}).include("subject")
    (page,) = list(search.perform_iter(server))
    included = [entry.resource for entry in page.entry if entry.search.mode == "include"]
    assert [(patient.resource_type, patient.id) for patient in included] == [("Patient", patient_id)]


def test_create_update_delete(server: FHIRServer) -> None:
    patient = Patient()
    patient.name = [HumanName({"family": "Created"})]
    patient.identifier = [Identifier({"system": "urn:fhirclient-test", "value": uuid.uuid4().hex})]
    created = Patient(patient.create(server))
    assert created.id and created.meta.versionId == "1"

    created.gender = "other"
    updated = Patient(created.update(server))
    assert updated.meta.versionId == "2"
    assert Patient.read(created.id, server).gender == "other"

    created.delete(server)
    with pytest.raises(requests.HTTPError) as raised:  # R4 http.html#read: a deleted resource is 410 Gone
        Patient.read(created.id, server)
    assert raised.value.response.status_code == 410
    with pytest.raises(FHIRNotFoundException):
        Patient.read(uuid.uuid4().hex, server)


def test_everything(server: FHIRServer) -> None:
    patient_id = _patient_with_observations(server)
    bundle = Bundle(server.request_json(f"Patient/{patient_id}/$everything"))
    types = sorted(entry.resource.resource_type for entry in bundle.entry)
    assert types == ["Observation"] * OBSERVATIONS + ["Patient"]
