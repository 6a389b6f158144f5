"""Live sync: every write through the FHIR API (create, update, patch, delete, status changes,
Bundles, ``fhir-twin load``) shows in the patient's twin as soon as the write has answered, in
every process on the database, and a write that fails leaves no trace in the twin."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin import cli
from fhir_twin.app import services_of
from fhir_twin.store.twin_facts import fact_table_rows, holds_facts

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
JSON_PATCH = "application/json-patch+json"
PATIENT_URN = "urn:uuid:7d0b43f2-3c55-4a8e-9d7f-0a6c1b2e3f41"
HEART_URN = "urn:uuid:8e1c54a3-4d66-4b9f-8e80-1b7d2c3f4a52"
PANEL_URN = "urn:uuid:9f2d65b4-5e77-4c0a-9f91-2c8e3d4a5b63"


def heart_rate(
    patient: str, value: float, *, effective: str = "2024-03-01T08:00:00Z", status: str = "final", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": patient if ":" in patient or "/" in patient else f"Patient/{patient}"},
        "effectiveDateTime": effective,
        "valueQuantity": {"value": value, "unit": "/min", "system": UCUM, "code": "/min"},
        **extra,
    }


def blood_pressure(patient: str, systolic: float, diastolic: float, effective: str) -> dict[str, Any]:
    def component(code: str, value: float) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        }

    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": patient},
        "effectiveDateTime": effective,
        "component": [component("8480-6", systolic), component("8462-4", diastolic)],
    }


def condition(patient: str, code: str = "44054006", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": SNOMED, "code": code, "display": "Diabetes mellitus type 2"}]},
        "subject": {"reference": patient},
        "onsetDateTime": "2020-06-01",
        **extra,
    }


def write(client: FlaskClient, method: str, url: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
    """A write that must succeed; returns the stored resource."""
    response = client.open(url, method=method, json=body, **kwargs)
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


def make_patient(client: FlaskClient, patient_id: str) -> None:
    write(client, "PUT", f"/fhir/Patient/{patient_id}", {"resourceType": "Patient", "id": patient_id})


def points(client: FlaskClient, patient_id: str, field: str = "heart_rate") -> list[tuple[str, float | None, str]]:
    """The series as (time, value, source)."""
    response = client.get(f"/twin/patients/{patient_id}/series/{field}")
    assert response.status_code == 200, response.get_json()
    return [(p["time"], p["value"], p["source"]) for p in response.get_json()["points"]]


def document(client: FlaskClient, patient_id: str) -> dict[str, Any]:
    response = client.get(f"/twin/patients/{patient_id}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def facts(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    with services_of(app).repository.engine.connect() as connection:
        return fact_table_rows(connection)


def test_create_shows_at_once(client: FlaskClient) -> None:
    make_patient(client, "p1")
    created = write(client, "POST", "/fhir/Observation", heart_rate("p1", 72))
    assert points(client, "p1") == [("2024-03-01T08:00:00.000+00:00", 72.0, f"Observation/{created['id']}/_history/1")]
    body = document(client, "p1")["body"]["heart_rate"]
    assert (body["count"], body["latest"]["value"], body["latest"]["unit"]) == (1, 72.0, "/min")


def test_update_replaces_the_point(client: FlaskClient) -> None:
    make_patient(client, "p1")
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p1", 72, id="o1"))
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p1", 95, id="o1", effective="2024-03-02T09:30:00Z"))
    assert points(client, "p1") == [("2024-03-02T09:30:00.000+00:00", 95.0, "Observation/o1/_history/2")]
    assert document(client, "p1")["body"]["heart_rate"]["count"] == 1


def test_patch_changes_the_value(client: FlaskClient) -> None:
    make_patient(client, "p1")
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p1", 72, id="o1"))
    operations = [{"op": "replace", "path": "/valueQuantity/value", "value": 64}]
    response = client.patch("/fhir/Observation/o1", json=operations, content_type=JSON_PATCH)
    assert response.status_code == 200, response.get_json()
    assert points(client, "p1") == [("2024-03-01T08:00:00.000+00:00", 64.0, "Observation/o1/_history/2")]


def test_delete_removes_the_point(client: FlaskClient) -> None:
    make_patient(client, "p1")
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p1", 72, id="o1"))
    write(client, "PUT", "/fhir/Observation/o2", heart_rate("p1", 80, id="o2", effective="2024-03-05T08:00:00Z"))
    assert client.delete("/fhir/Observation/o2").status_code in (200, 204)
    assert points(client, "p1") == [("2024-03-01T08:00:00.000+00:00", 72.0, "Observation/o1/_history/1")]
    assert client.delete("/fhir/Observation/o1").status_code in (200, 204)
    assert points(client, "p1") == []
    twin = document(client, "p1")
    assert twin["body"]["heart_rate"] == {**twin["body"]["heart_rate"], "count": 0, "latest": None, "stale": None}
    assert "heart_rate" in twin["quality"]["missing"]


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_a_withdrawn_observation_leaves_the_twin(client: FlaskClient, status: str) -> None:
    make_patient(client, "p1")
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p1", 72, id="o1"))
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p1", 72, id="o1", status=status))
    assert points(client, "p1") == []
    assert document(client, "p1")["quality"]["fields"]["heart_rate"]["total"] == 0


def test_a_corrected_observation_replaces_the_value(client: FlaskClient) -> None:
    make_patient(client, "p1")
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p1", 27, id="o1"))
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p1", 72, id="o1", status="corrected"))
    response = client.get("/twin/patients/p1/series/heart_rate").get_json()
    assert [(p["value"], p["flag"], p["source"]) for p in response["points"]] == [
        (72.0, None, "Observation/o1/_history/2")
    ]


def test_moving_an_observation_to_another_patient_moves_the_point(client: FlaskClient) -> None:
    make_patient(client, "p1")
    make_patient(client, "p2")
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p1", 72, id="o1"))
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p2", 72, id="o1"))
    assert points(client, "p1") == []
    assert points(client, "p2") == [("2024-03-01T08:00:00.000+00:00", 72.0, "Observation/o1/_history/2")]
    assert document(client, "p1")["body"]["heart_rate"]["latest"] is None


@pytest.mark.parametrize(
    "reference", ["Patient/p1", "Patient/p1/_history/1", "https://twin.example.org/fhir/Patient/p1"]
)
def test_every_local_form_of_the_subject_reference_feeds_the_twin(make_app: Any, reference: str) -> None:
    """Relative, version-specific, or absolute under this server's base."""
    client = make_app(base_url="https://twin.example.org/fhir").test_client()
    make_patient(client, "p1")
    write(client, "PUT", "/fhir/Observation/o1", heart_rate(reference, 72, id="o1"))
    assert [
        entry["resource"]["id"] for entry in client.get("/fhir/Observation?subject=Patient/p1").get_json()["entry"]
    ] == ["o1"]
    assert points(client, "p1") == [("2024-03-01T08:00:00.000+00:00", 72.0, "Observation/o1/_history/1")]


def test_an_observation_about_a_patient_of_another_server_is_not_in_the_twin(client: FlaskClient) -> None:
    """Same id, other server: search leaves it out of Patient/p1's Observations, so must the twin."""
    make_patient(client, "p1")
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("http://other.example.org/fhir/Patient/p1", 72, id="o1"))
    assert client.get("/fhir/Observation?subject=Patient/p1").get_json().get("entry", []) == []
    assert points(client, "p1") == []
    twins = services_of(client.application).twins
    twins.rebuild("p1")
    assert points(client, "p1") == []
    twins.rebuild()
    assert points(client, "p1") == []


def vitals_entries(pulse: float, systolic: float, diastolic: float) -> list[dict[str, Any]]:
    """Transaction entries that POST a heart rate and a blood-pressure panel (at 08:05) of the
    Patient at PATIENT_URN."""
    return [
        {
            "fullUrl": HEART_URN,
            "resource": heart_rate(PATIENT_URN, pulse),
            "request": {"method": "POST", "url": "Observation"},
        },
        {
            "fullUrl": PANEL_URN,
            "resource": blood_pressure(PATIENT_URN, systolic, diastolic, "2024-03-01T08:05:00Z"),
            "request": {"method": "POST", "url": "Observation"},
        },
    ]


def test_a_transaction_updates_the_twin(client: FlaskClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            *vitals_entries(88, 128, 84),
            {"resource": condition(PATIENT_URN), "request": {"method": "POST", "url": "Condition"}},
            {
                "fullUrl": PATIENT_URN,
                "resource": {"resourceType": "Patient", "gender": "male"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.get_json()
    locations = [entry["response"]["location"].split("/_history")[0] for entry in response.get_json()["entry"]]
    patient_id = locations[3].split("/")[1]
    assert points(client, patient_id) == [("2024-03-01T08:00:00.000+00:00", 88.0, f"{locations[0]}/_history/1")]
    assert [p[1] for p in points(client, patient_id, "systolic_bp")] == [128.0]
    assert [p[1] for p in points(client, patient_id, "diastolic_bp")] == [84.0]
    conditions = document(client, patient_id)["case"]["conditions"]
    assert [(c["source"], c["code"], c["status"]) for c in conditions] == [
        (f"{locations[2]}/_history/1", f"{SNOMED}|44054006", "active")
    ]


def test_a_transaction_of_updates_patches_and_deletes(client: FlaskClient) -> None:
    make_patient(client, "p1")
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p1", 60, id="o1"))
    write(client, "PUT", "/fhir/Observation/o2", heart_rate("p1", 61, id="o2", effective="2024-03-02T08:00:00Z"))
    write(client, "PUT", "/fhir/Observation/o3", heart_rate("p1", 62, id="o3", effective="2024-03-03T08:00:00Z"))
    patch = [{"op": "replace", "path": "/valueQuantity/value", "value": 71}]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": heart_rate("p1", 70, id="o1"), "request": {"method": "PUT", "url": "Observation/o1"}},
            {
                "resource": {
                    "resourceType": "Binary",
                    "contentType": JSON_PATCH,
                    "data": base64.b64encode(json.dumps(patch).encode()).decode(),
                },
                "request": {"method": "PATCH", "url": "Observation/o2"},
            },
            {"request": {"method": "DELETE", "url": "Observation/o3"}},
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.get_json()
    assert points(client, "p1") == [
        ("2024-03-01T08:00:00.000+00:00", 70.0, "Observation/o1/_history/2"),
        ("2024-03-02T08:00:00.000+00:00", 71.0, "Observation/o2/_history/2"),
    ]


def test_a_batch_updates_the_twin_entry_by_entry(client: FlaskClient) -> None:
    make_patient(client, "p1")
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": heart_rate("p1", 70), "request": {"method": "POST", "url": "Observation"}},
            {"resource": heart_rate("ghost", 99), "request": {"method": "POST", "url": "Observation"}},
            {
                "resource": heart_rate("p1", 75, effective="2024-03-02T08:00:00Z"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {"resource": heart_rate("p1", 1, status="bogus"), "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.get_json()
    statuses = [entry["response"]["status"][:3] for entry in response.get_json()["entry"]]
    assert statuses[0] == statuses[2] == "201"
    assert statuses[1][0] == statuses[3][0] == "4"
    assert [p[1] for p in points(client, "p1")] == [70.0, 75.0]
    assert client.get("/twin/patients/ghost").status_code == 404
    counts = {table: len(rows) for table, rows in facts(client.application).items()}
    assert counts == {"twin_measurement": 2, "twin_case": 0}


@pytest.mark.parametrize(
    "failing, status",
    [
        # Refused before any write: an invalid resource.
        ({"resource": heart_rate("p1", 1, status="bogus"), "request": {"method": "POST", "url": "Observation"}}, 400),
        # Refused while writing, after the other entries' facts were staged: a stale If-Match.
        (
            {
                "resource": {"resourceType": "Patient", "id": "p1"},
                "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": 'W/"9"'},
            },
            412,
        ),
        # Refused at commit: a reference to a patient that does not exist.
        ({"resource": heart_rate("ghost", 99), "request": {"method": "POST", "url": "Observation"}}, 422),
    ],
    ids=["invalid", "stale-if-match", "dangling-reference"],
)
def test_a_failed_transaction_leaves_the_twin_unchanged(
    client: FlaskClient, failing: dict[str, Any], status: int
) -> None:
    make_patient(client, "p1")
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p1", 60, id="o1"))
    write(client, "PUT", "/fhir/Observation/o2", heart_rate("p1", 61, id="o2", effective="2024-03-02T08:00:00Z"))
    before = facts(client.application)
    twin_before = document(client, "p1")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": heart_rate("p1", 70, id="o1"), "request": {"method": "PUT", "url": "Observation/o1"}},
            {"request": {"method": "DELETE", "url": "Observation/o2"}},
            {
                "resource": heart_rate("p1", 80, effective="2024-03-09T08:00:00Z"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {"resource": condition("Patient/p1"), "request": {"method": "POST", "url": "Condition"}},
            failing,
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == status, response.get_json()
    assert facts(client.application) == before
    twin_after = document(client, "p1")
    assert {**twin_after, "referenceTime": None} == {**twin_before, "referenceTime": None}
    assert [p[1] for p in points(client, "p1")] == [60.0, 61.0]


def test_load_updates_the_twin(make_app: Any, database_url: str, tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": PATIENT_URN,
                "resource": {"resourceType": "Patient", "id": "loaded", "gender": "female"},
                "request": {"method": "PUT", "url": "Patient/loaded"},
            },
            *vitals_entries(66, 141, 92),
        ],
    }
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    result = CliRunner().invoke(cli.main, ["load", str(path), "--database", database_url])
    assert result.exit_code == 0, result.output
    assert "1 files, 3 resources loaded" in result.output
    client = make_app().test_client()
    assert [p[1] for p in points(client, "loaded")] == [66.0]
    assert [p[1] for p in points(client, "loaded", "systolic_bp")] == [141.0]
    assert document(client, "loaded")["body"]["diastolic_bp"]["latest"]["value"] == 92.0


def test_twin_off_writes_no_facts(make_app: Any) -> None:
    app = make_app(twin=False)
    client = app.test_client()
    make_patient(client, "p1")
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p1", 72, id="o1"))
    write(client, "PUT", "/fhir/Observation/o1", heart_rate("p1", 74, id="o1"))
    write(client, "POST", "/fhir/Condition", condition("Patient/p1"))
    assert facts(app) == {"twin_measurement": [], "twin_case": []}
    # The twin API still answers, from the facts there are: none.
    assert points(client, "p1") == []
    assert document(client, "p1")["quality"]["used"] == 0
    # A rebuild catches up with what was written meanwhile.
    services_of(app).twins.rebuild()
    assert points(client, "p1") == [("2024-03-01T08:00:00.000+00:00", 74.0, "Observation/o1/_history/2")]
    assert len(document(client, "p1")["case"]["conditions"]) == 1


def test_two_apps_on_one_database_see_each_others_writes(make_app: Any) -> None:
    first, second = make_app().test_client(), make_app().test_client()
    make_patient(first, "p1")
    write(first, "PUT", "/fhir/Observation/o1", heart_rate("p1", 72, id="o1"))
    assert points(second, "p1") == [("2024-03-01T08:00:00.000+00:00", 72.0, "Observation/o1/_history/1")]
    write(second, "PUT", "/fhir/Observation/o1", heart_rate("p1", 76, id="o1"))
    assert points(first, "p1") == [("2024-03-01T08:00:00.000+00:00", 76.0, "Observation/o1/_history/2")]
    assert second.delete("/fhir/Observation/o1").status_code in (200, 204)
    assert points(first, "p1") == []


def test_concurrent_writers_lose_nothing(make_app: Any) -> None:
    """Threads, each writing through its own app (as server processes would), add different
    Observations of one patient at the same time; every one of them reaches the twin."""
    writers, per_writer = 4, 6
    apps = [make_app() for _ in range(writers)]
    make_patient(apps[0].test_client(), "p1")
    created: list[list[str]] = [[] for _ in range(writers)]
    failures: list[str] = []
    start = threading.Barrier(writers)

    def run(number: int) -> None:
        client = apps[number].test_client()
        start.wait()
        for index in range(per_writer):
            value = 40 + number * per_writer + index
            body = heart_rate("p1", value, effective=f"2024-04-{index + 1:02d}T{number:02d}:00:00Z")
            for attempt in range(50):
                response = client.post("/fhir/Observation", json=body)
                if response.status_code != 409:
                    break
                assert "retry" in response.get_json()["issue"][0]["diagnostics"]
                time.sleep(0.01 * (attempt + 1))
            if response.status_code != 201:
                failures.append(f"writer {number}: {response.status_code} {response.get_json()}")
                return
            created[number].append(response.get_json()["id"])

    threads = [threading.Thread(target=run, args=(number,)) for number in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    reader = make_app().test_client()
    found = points(reader, "p1")
    assert sorted(p[1] or 0 for p in found) == [float(40 + n) for n in range(writers * per_writer)]
    assert {p[2] for p in found} == {f"Observation/{id_}/_history/1" for ids in created for id_ in ids}
    assert document(reader, "p1")["body"]["heart_rate"]["count"] == writers * per_writer


def test_whether_a_twin_holds_facts(make_app: Any) -> None:
    """What decides if a new Patient's write tells the Doctor of a twin to assess: a current
    measurement or case entry of either kind counts; facts of a deleted resource do not."""
    app = make_app(referential_integrity=False)
    client = app.test_client()
    observation = write(client, "POST", "/fhir/Observation", heart_rate("p1", 72))
    write(client, "POST", "/fhir/Condition", condition("Patient/p2"))
    repository = services_of(app).repository

    def holds(patient_id: str) -> bool:
        with repository.transaction() as tx:
            return holds_facts(tx, patient_id)

    assert (holds("p1"), holds("p2"), holds("p3")) == (True, True, False)
    assert client.delete(f"/fhir/Observation/{observation['id']}").status_code in (200, 204)
    assert (holds("p1"), holds("p2")) == (False, True)
