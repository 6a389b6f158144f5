"""``Patient/$everything`` over HTTP (R4 patient-operation-everything.html)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from tests.factories import observation, put

LOINC = "http://loinc.org"


def record(client: FlaskClient, patient: str, organization: str | None = None) -> None:
    """A patient with encounters, observations, conditions, a report and a prescription."""
    put(
        client,
        {
            "resourceType": "Patient",
            "id": patient,
            "name": [{"family": patient}],
            **({"managingOrganization": {"reference": f"Organization/{organization}"}} if organization else {}),
        },
    )
    for number in (1, 2):
        put(
            client,
            {
                "resourceType": "Encounter",
                "id": f"{patient}-enc{number}",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": f"Patient/{patient}"},
                "serviceProvider": {"reference": "Organization/org"},
            },
        )
    for number in (1, 2, 3):
        put(
            client,
            observation(
                "8867-4",
                res_id=f"{patient}-obs{number}",
                patient=patient,
                when=f"2024-01-0{number}T10:00:00Z",
                encounter={"reference": f"Encounter/{patient}-enc1"},
                performer=[{"reference": "Practitioner/doc"}],
            ),
        )
    for number in (1, 2):
        put(
            client,
            {
                "resourceType": "Condition",
                "id": f"{patient}-cond{number}",
                "code": {"text": f"problem {number}"},
                "subject": {"reference": f"Patient/{patient}"},
            },
        )
    put(
        client,
        {
            "resourceType": "DiagnosticReport",
            "id": f"{patient}-rep",
            "status": "final",
            "code": {"text": "vitals"},
            "subject": {"reference": f"Patient/{patient}"},
            "result": [{"reference": f"Observation/{patient}-obs1"}, {"reference": f"Observation/{patient}-obs2"}],
        },
    )
    put(
        client,
        {
            "resourceType": "MedicationRequest",
            "id": f"{patient}-rx",
            "status": "active",
            "intent": "order",
            "medicationReference": {"reference": "Medication/med"},
            "subject": {"reference": f"Patient/{patient}"},
            "requester": {"reference": "Practitioner/doc"},
        },
    )


P1_COMPARTMENT = {
    "Patient/p1",
    "Encounter/p1-enc1",
    "Encounter/p1-enc2",
    "Observation/p1-obs1",
    "Observation/p1-obs2",
    "Observation/p1-obs3",
    "Condition/p1-cond1",
    "Condition/p1-cond2",
    "DiagnosticReport/p1-rep",
    "MedicationRequest/p1-rx",
}
P1_REFERENCED = {"Organization/org", "Organization/hq", "Practitioner/doc", "Medication/med"}


@pytest.fixture
def records(client: FlaskClient) -> FlaskClient:
    put(client, {"resourceType": "Organization", "id": "org", "name": "General Hospital"})
    put(client, {"resourceType": "Organization", "id": "hq", "name": "Head Office"})
    put(client, {"resourceType": "Organization", "id": "unused", "name": "Nobody's"})
    put(client, {"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Who"}]})
    put(client, {"resourceType": "Practitioner", "id": "other-doc", "name": [{"family": "Else"}]})
    put(client, {"resourceType": "Medication", "id": "med", "code": {"text": "aspirin"}})
    record(client, "p1", organization="hq")
    record(client, "p2")
    put(
        client,
        observation(res_id="p2-own", patient="p2", code_text="x", performer=[{"reference": "Practitioner/other-doc"}]),
    )
    # A Group holding both patients is in each compartment, but must not bring the other one along.
    put(
        client,
        {
            "resourceType": "Group",
            "id": "both",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": "Patient/p1"}}, {"entity": {"reference": "Patient/p2"}}],
        },
    )
    return client


def get(client: FlaskClient, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return body


def keys(bundle: dict[str, Any], mode: str | None = None) -> list[str]:
    return [
        f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
        for entry in bundle.get("entry", [])
        if mode is None or entry["search"]["mode"] == mode
    ]


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {item["relation"]: item["url"] for item in bundle["link"]}


def follow(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def all_pages(client: FlaskClient, url: str) -> list[dict[str, Any]]:
    pages = [get(client, url)]
    while (next_url := links(pages[-1]).get("next")) is not None:
        pages.append(get(client, follow(next_url)))
    return pages


def test_everything_is_the_compartment_and_what_it_refers_to(records: FlaskClient) -> None:
    body = get(records, "/fhir/Patient/p1/$everything")
    assert sorted(keys(body, "match")) == sorted(P1_COMPARTMENT | {"Group/both"})
    assert sorted(keys(body, "include")) == sorted(P1_REFERENCED)
    assert len(keys(body)) == len(set(keys(body)))
    assert body["total"] == len(keys(body))
    for entry in body["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"] == f"http://localhost/fhir/{resource['resourceType']}/{resource['id']}"
    assert links(body)["self"].startswith("http://localhost/fhir/Patient/p1/$everything")


def test_another_patients_record_stays_out(records: FlaskClient) -> None:
    everything = set(keys(get(records, "/fhir/Patient/p1/$everything")))
    assert not {key for key in everything if "p2" in key}
    assert "Practitioner/other-doc" not in everything
    assert "Organization/unused" not in everything


def test_post_with_parameters(records: FlaskClient) -> None:
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Condition"}]}
    response = records.post("/fhir/Patient/p1/$everything", json=parameters)
    assert response.status_code == 200, response.get_json()
    assert sorted(keys(response.get_json())) == ["Condition/p1-cond1", "Condition/p1-cond2"]


@pytest.mark.parametrize(
    "types, expected",
    [
        ("Observation", ["Observation/p1-obs1", "Observation/p1-obs2", "Observation/p1-obs3"]),
        ("Patient,Medication", ["Medication/med", "Patient/p1"]),
        ("Practitioner&_type=Encounter", ["Encounter/p1-enc1", "Encounter/p1-enc2", "Practitioner/doc"]),
    ],
)
def test_type_restricts_the_types_returned(records: FlaskClient, types: str, expected: list[str]) -> None:
    assert sorted(keys(get(records, f"/fhir/Patient/p1/$everything?_type={types}"))) == expected


def test_since_keeps_what_changed_at_or_after(records: FlaskClient) -> None:
    time.sleep(0.01)
    condition = records.get("/fhir/Condition/p1-cond1").get_json()
    condition["code"] = {"text": "changed"}
    response = records.put("/fhir/Condition/p1-cond1", json=condition)
    assert response.status_code == 200
    stamp = response.get_json()["meta"]["lastUpdated"]
    put(records, {"resourceType": "Practitioner", "id": "new-doc"})
    changed = records.get("/fhir/Encounter/p1-enc2").get_json()
    changed["participant"] = [{"individual": {"reference": "Practitioner/new-doc"}}]
    assert records.put("/fhir/Encounter/p1-enc2", json=changed).status_code == 200
    body = get(records, f"/fhir/Patient/p1/$everything?_since={stamp.replace('+', '%2B')}")
    assert sorted(keys(body)) == ["Condition/p1-cond1", "Encounter/p1-enc2", "Practitioner/new-doc"]
    assert keys(body, "include") == ["Practitioner/new-doc"]


def test_paging_gives_each_resource_exactly_once(records: FlaskClient) -> None:
    pages = all_pages(records, "/fhir/Patient/p1/$everything?_count=3")
    assert len(pages) == 5
    assert all(len(keys(page)) == 3 for page in pages[:-1])
    seen = [key for page in pages for key in keys(page)]
    assert sorted(seen) == sorted(P1_COMPARTMENT | P1_REFERENCED | {"Group/both"})
    modes = {key: mode for page in pages for mode in ("match", "include") for key in keys(page, mode)}
    assert {key for key, mode in modes.items() if mode == "include"} == P1_REFERENCED
    assert "_count=3" in links(pages[1])["self"] and "first" in links(pages[1])
    back = pages[-1]
    walked = [keys(back)]
    while (previous := links(back).get("previous")) is not None:
        back = get(records, follow(previous))
        walked.append(keys(back))
    assert walked == [keys(page) for page in reversed(pages)]


def test_paging_with_type_and_since_keeps_them(records: FlaskClient) -> None:
    pages = all_pages(records, "/fhir/Patient/p1/$everything?_type=Observation,Encounter&_since=2000-01-01&_count=2")
    assert [len(keys(page)) for page in pages] == [2, 2, 1]
    assert "_since=2000-01-01" in links(pages[1])["self"]
    assert sorted(key for page in pages for key in keys(page)) == sorted(
        key for key in P1_COMPARTMENT if key.startswith(("Observation", "Encounter"))
    )


def test_type_level_spans_every_patient(records: FlaskClient) -> None:
    seen = [key for page in all_pages(records, "/fhir/Patient/$everything?_count=7") for key in keys(page)]
    assert len(seen) == len(set(seen))
    assert {"Patient/p1", "Patient/p2", "Observation/p2-own", "Practitioner/other-doc"} <= set(seen)
    assert "Organization/unused" not in seen


def test_unknown_patient_is_404(records: FlaskClient) -> None:
    response = records.get("/fhir/Patient/nobody/$everything")
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_deleted_patient_is_410(records: FlaskClient) -> None:
    put(records, {"resourceType": "Patient", "id": "gone"})
    assert records.delete("/fhir/Patient/gone").status_code in (200, 204)
    response = records.get("/fhir/Patient/gone/$everything")
    assert response.status_code == 410
    assert response.get_json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("_type=Nonsense", "_type"),
        ("_since=yesterday", "_since"),
        ("_count=x", "_count"),
        ("_cursor=not-a-cursor", "_cursor"),
        ("start=2024-01-01", "start"),
    ],
)
def test_bad_parameters_are_400(records: FlaskClient, query: str, parameter: str) -> None:
    response = records.get(f"/fhir/Patient/p1/$everything?{query}")
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == [parameter]


def test_only_on_patient(records: FlaskClient) -> None:
    assert records.get("/fhir/Observation/p1-obs1/$everything").status_code == 404
    assert records.delete("/fhir/Patient/p1/$everything").status_code == 405
